"""bf16 on the CPU: `auto` resolves by what the CPU has, and bf16 really computes in bf16 (autocast engages)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lora_repro import hardware
from lora_repro.data.glue import build_datasets
from lora_repro.hardware import cpu_has_native_bf16, resolve_precision
from lora_repro.methods import apply_method
from lora_repro.models import load_model, load_tokenizer
from lora_repro.records.identity import run_config
from lora_repro.training.trainer import make_trainer
from tests.conftest import write_tiny_glue
from tests.training.test_run import tiny_run_cfg


def test_cpu_flags_decide_auto(tmp_path, monkeypatch):
    with_bf16, without = tmp_path / "with", tmp_path / "without"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_tile\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n")
    assert cpu_has_native_bf16(with_bf16) and not cpu_has_native_bf16(without)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for flags, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda flags=flags: flags)
        assert resolve_precision("auto") == expected
    assert resolve_precision("fp32") == "fp32" and resolve_precision("bf16") == "bf16"


@pytest.mark.parametrize(("precision", "dtype"), [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_the_trainer_computes_the_attention_projections_in_the_precision_asked_for(tmp_path, glue_dir, precision,
                                                                                   dtype):
    cfg = run_config(tiny_run_cfg(tmp_path, glue_dir, overrides=["method=full_ft", f"train.precision={precision}"]))
    tokenizer = load_tokenizer(cfg.model)
    data = build_datasets(cfg.task, cfg.data, tokenizer, cfg.train.max_seq_length)
    model = apply_method(load_model(cfg.model, data.num_labels), cfg.method, cfg.model)
    seen = []
    query = model.bert.encoder.layer[0].attention.self.query
    query.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    trainer, _ = make_trainer(model, data, cfg, tokenizer, tmp_path / "out")
    trainer.train()
    assert seen and set(seen) == {dtype}
    assert query.weight.dtype == torch.float32  # autocast: the weights (and AdamW's state) stay fp32


def test_lora_repro_train_in_bf16_and_fp32_are_two_runs_with_different_numbers(tmp_path, here):
    glue_dir = write_tiny_glue(tmp_path / "glue")
    losses = {}
    for precision in ("bf16", "fp32"):
        done = here(["train", "model=tiny_bert", "task=rte", "method=full_ft", f"train.precision={precision}",
                     "train.batch_size=8", "train.max_seq_length=32"], tmp_path, glue_dir)
        assert done.returncode == 0, done.stderr[-2000:]
    for record_file in Path(tmp_path).glob("experiments/runs/rte/tiny_bert/full_ft/*/record.json"):
        record = json.loads(record_file.read_text())
        losses[record["run_info"]["config"]["train"]["precision"]] = record["train_info"]["train_loss"]
    assert set(losses) == {"bf16", "fp32"}  # two identities, two records
    assert losses["bf16"] != losses["fp32"] and losses["bf16"] == pytest.approx(losses["fp32"], rel=0.05)
