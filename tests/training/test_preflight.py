"""`lora-repro preflight`: what would fail once a sweep runs, found before it is launched, through the command."""

from __future__ import annotations

import os
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


@pytest.mark.parametrize(("patch", "message"), [
    (TWO_GPUS, "2 GPUs are visible to this single process"),
    (FULL_DISK, "checkpoints of 1 concurrent run(s) need about"),
], ids=["two-gpus-one-process", "full-disk"])
def test_what_the_machine_cannot_hold_is_found_before_launch(tmp_path, glue_dir, patch, message):
    result = preflight([*TINY, "task=rte", "train.precision=fp32"], tmp_path, glue_dir, patch)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert written(tmp_path) == []


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
