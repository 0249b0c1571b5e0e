"""`lora-repro preflight`: what would fail once a sweep runs, found before it is launched, through the command."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# The command as users type it, in a process where the machine can be patched first (GPUs, disk).
PATCHED = ("import sys, shutil, torch, collections; {patch}; sys.argv = ['lora-repro'] + sys.argv[1:]; "
           "from lora_repro.cli import main; main()")
TWO_GPUS = "torch.cuda.is_available = lambda: True; torch.cuda.device_count = lambda: 2"
FULL_DISK = "shutil.disk_usage = lambda path: collections.namedtuple('u', 'total used free')(10**9, 10**9, 1000)"
TINY = ["model=tiny_bert", "train.max_seq_length=32"]


def preflight(args: list[str], root: Path, glue_dir: Path, patch: str = "pass") -> subprocess.CompletedProcess:
    env = {**os.environ, "GLUE_DIR": str(glue_dir), "LORA_REPRO_ROOT": str(root), "HF_HUB_OFFLINE": "1"}
    env.pop("WORLD_SIZE", None)
    return subprocess.run([sys.executable, "-c", PATCHED.format(patch=patch), "preflight", *args],
                          capture_output=True, text=True, env=env, timeout=300)


def problems(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("problem: ")]


def written(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and "glue_data" not in p.parts]


def test_a_sweep_that_can_run_passes_and_nothing_is_written(tmp_path, glue_dir):
    result = preflight([*TINY, "task=rte,stsb", "method=lora,bitfit", "seed=0,1"], tmp_path, glue_dir)
    assert result.returncode == 0, result.stderr
    assert "preflight: 8 runs (8 to run)" in result.stdout and "no problem found" in result.stdout
    assert written(tmp_path) == []


def test_every_problem_is_one_line_and_the_exit_status_is_2(tmp_path, glue_dir):
    shutil.rmtree(glue_dir / "CoLA")
    result = preflight([*TINY, "task=rte,cola", "seed=0", "train.init_from=mnli", "hydra/launcher=slurm",
                        "hydra.launcher.gpus_per_node=4", "hydra.launcher.tasks_per_node=1",
                        "hydra.launcher.timeout_min=1", "hydra.launcher.max_num_timeout=0",
                        "train.epochs=100000"], tmp_path, glue_dir)
    assert result.returncode == 2, result.stderr
    found = problems(result)
    assert any("GLUE data for task 'cola' not found" in p for p in found), found
    assert any("rte tiny_bert lora seed 0: train.init_from=mnli: no completed mnli run" in p for p in found), found
    assert any("tasks_per_node=1 with gpus_per_node=4" in p for p in found), found
    assert any("more than hydra.launcher.timeout_min=1 x 1 attempts allow" in p for p in found), found
    assert "preflight: 5 problem(s) in a sweep of 2 runs" in result.stderr  # cola's own MNLI start is the 5th
    assert "Traceback" not in result.stderr and written(tmp_path) == []


def test_an_mnli_start_in_the_same_sweep_is_no_problem_but_a_start_from_itself_is(tmp_path, glue_dir):
    # One override sets the start for both tasks: RTE's source is in the sweep (no problem), MNLI's is itself.
    result = preflight([*TINY, "task=mnli,rte", "seed=0", "train.init_from=mnli"], tmp_path, glue_dir)
    assert problems(result) == ["problem: mnli tiny_bert lora seed 0: train.init_from=mnli starts the run from its "
                                "own task; set it on the tasks that start from it only"], result.stderr


def test_a_full_disk_is_found_before_launch(tmp_path, glue_dir):
    result = preflight([*TINY, "task=rte", "train.precision=fp32"], tmp_path, glue_dir, FULL_DISK)
    assert result.returncode == 2, result.stderr
    assert "checkpoints of 1 concurrent run(s) need about" in result.stderr and "Traceback" not in result.stderr
    assert written(tmp_path) == []


def test_a_two_gpu_node_is_no_problem_each_run_is_two_processes(tmp_path, glue_dir):
    # A one-process launch there used to be refused; it now runs each run as 2 processes (`training.spawn`).
    result = preflight([*TINY, "task=rte", "train.precision=fp32"], tmp_path, glue_dir, TWO_GPUS)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("gpu_gb", "fits"), [(4, False), (80, True)])
def test_a_per_device_batch_that_does_not_fit_names_the_batch_that_does(tmp_path, glue_dir, gpu_gb, fits):
    # RoBERTa-base full fine-tuning, batch 64 of 128 tokens on one GPU: ~9 GB (activations ~7 GB), from a login
    # node without a GPU (the jobs' GPUs are the launcher's). fp16 is the nodes' business, not this machine's.
    result = preflight(["model=roberta_base", "task=rte", "method=full_ft", "train.batch_size=64",
                        "train.max_seq_length=128", "train.precision=fp16", "hydra/launcher=slurm",
                        f"hydra.launcher.gpu_memory_gb={gpu_gb}"], tmp_path, glue_dir)
    memory = [p for p in problems(result) if "per GPU at a per-device batch of 64" in p]
    assert not any("fp16 needs a CUDA GPU" in p for p in problems(result)), result.stderr
    if fits:
        assert memory == [], memory
    else:
        assert len(memory) == 1, result.stderr
        assert re.search(r"more than 90% of a 4 GB GPU; set train.per_device_batch_size=(8|16) ", memory[0]), memory
    assert "Traceback" not in result.stderr and written(tmp_path) == []


@pytest.mark.slow
def test_the_activation_estimate_matches_what_autograd_saves_in_roberta_base():
    # No published torch.cuda.max_memory_allocated figures for RoBERTa fine-tuning were found; the activation term
    # is checked against the tensors autograd itself saves for backward (parameters excluded), on the CPU.
    import torch
    from omegaconf import OmegaConf
    from transformers import RobertaConfig, RobertaForSequenceClassification

    from lora_repro.training.estimate import activation_bytes

    torch.manual_seed(0)
    model = RobertaForSequenceClassification(RobertaConfig(attn_implementation="eager")).train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    shape = OmegaConf.create({"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                              "num_hidden_layers": 12})

    def saved_bytes(batch: int, length: int, autocast: bool) -> int:
        seen = {}

        def pack(tensor):
            if tensor.untyped_storage().data_ptr() not in params:
                seen[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
            return tensor

        ids = torch.randint(5, 1000, (batch, length))
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
                torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            model(input_ids=ids, labels=torch.zeros(batch, dtype=torch.long)).loss.backward()
        return sum(seen.values())

    # Bytes per 2 examples (the difference of two batch sizes): autocast's cached 16-bit weight copies, a fixed
    # cost that `device_memory` counts with the weights, drop out.
    for length, autocast in [(128, False), (256, False), (128, True)]:
        precision = "bf16" if autocast else "fp32"
        estimate = activation_bytes(shape, 4, length, precision) - activation_bytes(shape, 2, length, precision)
        measured = saved_bytes(4, length, autocast) - saved_bytes(2, length, autocast)
        assert 0.9 <= estimate / measured <= 1.1, (length, autocast, estimate / measured)


def test_a_local_model_without_safetensors_is_a_problem(tmp_path, glue_dir):
    from transformers import BertConfig

    folder = tmp_path / "pickled-model"
    BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37).save_pretrained(
        folder)
    (folder / "pytorch_model.bin").write_bytes(b"not read")
    result = preflight(["model=minilm", f"model.pretrained={folder}", f"model.tokenizer={folder}", "task=rte"],
                       tmp_path, glue_dir)
    assert result.returncode == 2, result.stderr
    assert any("has no safetensors weights" in p for p in problems(result)), result.stderr
