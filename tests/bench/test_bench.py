"""The cost benchmark on the tiny test model: well-formed tables and files, merge exactness, the lower bound.

No test asserts a timing: the machine running the tests is shared and timings are noise here.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import DictConfig, open_dict

from lora_repro.bench import cli
from lora_repro.bench.harness import random_inputs
from lora_repro.bench.latency import BASE, LORA, MERGED, SUCCESSORS, VARIANTS, build_variants, variant_methods
from lora_repro.bench.render import targets, write_bench
from lora_repro.bench.runner import BenchResult, BenchSpec, needed_configs, run_bench
from lora_repro.bench.timing import Budget, interleave, paired_ratio
from lora_repro.bench.training import BOUND, PEFT_BASELINE, build_trainee, train_step
from lora_repro.errors import UserError
from lora_repro.hardware import cpu_has_native_bf16
from lora_repro.methods import apply_method, count_parameters
from lora_repro.models import build_model
from tests.conftest import compose_config, tiny_model_cfg

# Small adapters: the tiny model's hidden size is 32, below the configs' bottleneck of 64.
TINY_OVERRIDES = {"houlsby": ["method.bottleneck=4"], "pfeiffer": ["method.bottleneck=4"], "vera": ["method.r=16"]}
SPEC = BenchSpec(model="tiny_bert", methods=("full_ft", "bitfit", "lora"), batch_size=4, seq_len=16,
                 latency_batches=(1, 2), latency_lengths=(8, 16), train_budget=Budget(0.5, 2, 2),
                 latency_budget=Budget(0.5, 2, 2), profile_top=3)


def tiny_cfgs(methods: list[str]) -> dict[str, DictConfig]:
    """Run configs of `methods` on the tiny BERT, as `lora-repro bench` composes them."""
    cfgs = {}
    for method in methods:
        cfg = compose_config([f"method={method}", *TINY_OVERRIDES.get(method, [])])
        with open_dict(cfg):
            cfg.model = tiny_model_cfg("bert")
        cfgs[method] = cfg
    return cfgs


@pytest.fixture(scope="module")
def result() -> BenchResult:
    torch.manual_seed(0)
    return run_bench(SPEC, tiny_cfgs(needed_configs(SPEC)), "lora-repro bench --test")


def test_training_table_has_a_row_per_method_and_reference(result):
    table = result.training
    twins = [f"{m}@bf16" for m in SPEC.methods] if cpu_has_native_bf16() else []
    assert list(table["method"]) == [*SPEC.methods, PEFT_BASELINE, BOUND, *twins]
    ratios = table.set_index("method").loc[list(SPEC.methods), "bf16_vs_fp32"]
    assert ratios.map(math.isfinite).all() if twins else ratios.isna().all()  # bf16 timed beside fp32
    assert (table["rounds"] == 2).all()
    assert (table["step_ms"] > 0).all() and table["step_ms"].map(math.isfinite).all()
    full = table.set_index("method").loc["full_ft"]
    assert full["step_vs_full_ft"] == 1 and full["peak_vs_full_ft"] == 1 and full["checkpoint_vs_full"] == 1
    lora = table.set_index("method").loc["lora"]
    assert 0 < lora["checkpoint_vs_full"] < 0.05 and lora["optimizer_state_bytes"] < full["optimizer_state_bytes"]
    assert table.set_index("method").loc[BOUND, "trainable_params"] == 0
    methods = table[table["kind"] == "method"]
    assert (methods["peak_bytes"] >= methods["before_training_bytes"]).all() and (methods["peak_bytes"] > 0).all()
    assert methods["checkpoint_bytes"].notna().all()


def test_trainable_counts_are_count_parameters():
    cfg = tiny_cfgs(["lora"])["lora"]
    trainee = build_trainee("lora", "method", cfg, random_init=False, device="cpu")
    assert trainee.trainable == count_parameters(trainee.model, cfg.method).trainable
    assert {p for g in trainee.optimizer.param_groups for p in g["params"]} == \
        {p for p in trainee.model.parameters() if p.requires_grad}  # the optimizer sees only what trains


def test_latency_table_covers_every_shape_and_variant(result):
    table = result.latency
    assert len(table) == len(SPEC.shapes) * len(VARIANTS)
    assert set(zip(table["batch"], table["seq_len"], strict=True)) == set(SPEC.shapes)
    assert (table.loc[table["variant"] == BASE, "ratio_to_base"] == 1).all()
    assert table.loc[table["variant"] == MERGED, "max_abs_diff"].max() <= 1e-5


def test_files_name_device_threads_version_and_command(result, tmp_path: Path):
    written = write_bench(result, tmp_path)
    assert sorted(p.name for p in written) == sorted(
        ["tiny_bert.md", "tiny_bert_training.csv", "tiny_bert_latency.csv", "tiny_bert_raw.json", "tiny_bert.png"])
    markdown = (tmp_path / "tiny_bert.md").read_text()
    for fact in ("lora-repro bench --test", "torch threads 1", torch.__version__, "## Targets"):
        assert fact in markdown
    for name in ("tiny_bert_training.csv", "tiny_bert_latency.csv"):
        text = (tmp_path / name).read_text()
        assert text.startswith("# Produced by: lora-repro bench --test") and torch.__version__ in text
    training = pd.read_csv(tmp_path / "tiny_bert_training.csv", comment="#")
    assert list(training.columns) == list(result.training.columns)
    assert (tmp_path / "tiny_bert.png").read_bytes()[:4] == b"\x89PNG"
    assert [t.verdict for t in targets(result)].count("not measured") == 0


def test_merged_lora_equals_unmerged_and_is_not_trivially_the_base():
    models = build_variants(tiny_cfgs(["lora", "houlsby", "pfeiffer"]), random_init=False, device="cpu", seed=0)
    inputs = random_inputs(tiny_model_cfg("bert"), 3, 12, "cpu", seed=1, labels=False)
    with torch.inference_mode():
        logits = {name: models[name](**inputs).logits for name in (BASE, LORA, MERGED)}
    assert (logits[MERGED] - logits[LORA]).abs().max() <= 1e-5
    assert (logits[LORA] - logits[BASE]).abs().max() > 1e-4  # the update is not zero, so merging is tested
    assert not any("lora_" in name for name, _ in models[MERGED].named_parameters())


def test_successors_are_timed_unmerged_and_merged_and_merge_to_the_same_outputs():
    variants = variant_methods(["full_ft", *SUCCESSORS])
    assert list(variants)[:len(VARIANTS)] == list(VARIANTS)  # the paper's variants first, as before
    models = build_variants(tiny_cfgs(sorted({m for m in variants.values() if m})), random_init=False, device="cpu",
                            seed=0, variants=variants)
    inputs = random_inputs(tiny_model_cfg("bert"), 3, 12, "cpu", seed=1, labels=False)
    with torch.inference_mode():
        logits = {name: model(**inputs).logits for name, model in models.items()}
    for method in SUCCESSORS:
        assert (logits[f"{method}_merged"] - logits[method]).abs().max() <= 1e-5, method
        assert (logits[method] - logits[BASE]).abs().max() > 1e-4, method  # trained-looking, not the identity


def test_lower_bound_has_no_parameter_gradients_but_runs_the_input_gradient_pass():
    trainee = build_trainee(BOUND, BOUND, tiny_cfgs(["full_ft"])["full_ft"], random_init=False, device="cpu")
    reached = []

    def watch(module, inputs, output) -> None:  # returns None, so the output is left as it is
        output.register_hook(lambda grad: reached.append(grad.abs().sum()))

    trainee.model.get_input_embeddings().register_forward_hook(watch)
    train_step(trainee, random_inputs(trainee.cfg.model, 2, 8, "cpu", seed=0))
    assert trainee.optimizer is None
    assert all(p.grad is None and not p.requires_grad for p in trainee.model.parameters())
    assert len(reached) == 1 and reached[0] > 0


def test_interleave_pairs_rounds_and_respects_the_round_limits():
    calls = []
    subjects = {name: (lambda name=name: calls.append(name) or {"total": 2.0 if name == "b" else 1.0})
                for name in ("a", "b", "c")}
    samples = interleave(subjects, Budget(seconds=0, min_rounds=3, max_rounds=10), warmup=1)
    assert {name: len(s) for name, s in samples.items()} == {"a": 3, "b": 3, "c": 3}
    assert calls[3:6] == ["a", "b", "c"] and calls[6:9] == ["b", "c", "a"]  # warm-up, then rotated rounds
    assert all(x != y for x, y in zip(calls[3:], calls[4:], strict=False))  # nothing runs twice in a row
    assert paired_ratio(samples["b"], samples["a"]) == 2.0


@pytest.mark.parametrize("argv, message", [
    (["--model", "nope"], "unknown model 'nope'"),
    (["--methods", "full_ft", "nope"], "unknown method 'nope'"),
    (["--train-rounds", "5", "2"], "1 <= min <= max"),
    (["--batch-size", "0"], "must be an integer >= 1"),
    (["--model", "tiny_bert", "--lengths", "4096", "--no-memory"], "does not fit model tiny_bert"),
    (["--device", "tpu"], "use cpu, cuda or cuda:N"),
    (["--device", "cpu:1"], "use cpu, cuda or cuda:N"),
    (["--device", "cuda:1"], "CUDA"),
    (["--set", "bad"], "KEY=VALUE"),
    (["--set", "method.nope=1"], "none of the methods"),
    (["--set", "method.r=abc"], "lora rank r"),
    (["--set", "train.max_seq_length=x"], "train.max_seq_length must be a whole number"),
])
def test_bad_arguments_are_one_line_user_errors(argv, message, tmp_path):
    with pytest.raises(UserError, match=message):
        cli.run([*FAST, *argv, "--out", str(tmp_path)])  # FAST first: an argument given twice, the last wins


# A bench of seconds on the tiny model, should a bad argument ever get through.
FAST = ["--model", "tiny_bert", "--random-init", "--batch-size", "2", "--seq-len", "16", "--batches", "1",
        "--lengths", "16", "--train-seconds", "0", "--train-rounds", "1", "1", "--latency-seconds", "0",
        "--latency-rounds", "1", "1", "--no-memory", "--profile-top", "0"]


def test_set_applies_a_method_option_to_the_methods_that_have_it(tmp_path):
    # The README's `lora-repro bench --set method.r=16`, on the tiny model: full FT has no rank, LoRA gets 16.
    command = [sys.executable, "-m", "lora_repro.cli", "bench", *FAST, "--methods", "full_ft", "lora",
               "--set", "method.r=16", "--set", "method.bottleneck=4", "--out", str(tmp_path)]  # the latency adapters
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--set method.r=16" in next(tmp_path.glob("*_raw.json")).read_text()
    training = pd.read_csv(next(tmp_path.glob("*_training.csv")), comment="#").set_index("method")
    lora = {r: count_parameters(build_trainee_model(r), tiny_cfgs(["lora"])["lora"].method).trainable for r in (8, 16)}
    assert training.loc["lora", "trainable_params"] == lora[16] != lora[8]


def build_trainee_model(r: int) -> torch.nn.Module:
    cfg = tiny_cfgs(["lora"])["lora"]
    with open_dict(cfg):
        cfg.method.r = r
    return apply_method(build_model(cfg.model, 2, "meta"), cfg.method, cfg.model)


def test_the_optimizer_is_built_without_moving_the_model(monkeypatch):
    # `lora-repro bench --device cuda:1`: the Trainer that builds the optimizer moved the model to args.device,
    # cuda:0. Any move is recorded here, on the CPU: the bench's model must stay where the bench put it.
    from transformers import Trainer

    from lora_repro.bench.training import make_optimizer

    moves = []
    monkeypatch.setattr(Trainer, "_move_model_to_device", lambda self, model, device: moves.append(device))
    cfg = tiny_cfgs(["lora"])["lora"]
    model = apply_method(build_model(cfg.model, 2, "cpu"), cfg.method, cfg.model)
    optimizer = make_optimizer(model, cfg, "cpu")
    assert moves == [] and len(optimizer.param_groups) == 2
