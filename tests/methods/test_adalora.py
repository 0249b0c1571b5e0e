"""AdaLoRA trains through `lora-repro train`: its schedule comes from the run's steps and its budget is kept."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lora_repro.records.store import load_records
from tests.conftest import write_tiny_glue


def test_the_rank_budget_is_spent_by_the_end_of_a_run_from_the_command_line(tmp_path, glue_dir, here):
    result = here(["train", "model=tiny_bert", "task=rte", "method=adalora", "method.init_r=4", "method.target_r=2",
                   "method.delta_t=1", "train.epochs=4", "train.batch_size=8", "train.max_seq_length=32",
                   "train.precision=fp32"], tmp_path, glue_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    weights = load_file(str(next(tmp_path.rglob("trained_weights.safetensors"))))
    singular = torch.cat([t.flatten() for name, t in weights.items() if ".lora_E." in name])
    adapted = 2 * 2  # tiny_bert: 2 layers x [q, v]
    assert singular.numel() == 4 * adapted
    # Budgeted down from init_r 4 to target_r 2 per weight on average: half of Λ is held at exactly zero.
    assert int((singular == 0).sum()) == (4 - 2) * adapted
    # Every report reads the record through the store, which names AdaLoRA's row by its rank budget.
    assert load_records([tmp_path])["row_key"].tolist() == ["AdaLoRA r=4→2 α=32 {q,v}"]
    # The record keeps the final rank of each weight and what those ranks hold: r x (d_in + d_out + 1) each.
    params = json.loads(next(tmp_path.rglob("record.json")).read_text())["train_info"]["params"]
    kept = {name: int((weights[f"{name}.lora_E.default"] != 0).sum()) for name in params["final_ranks"]}
    assert params["final_ranks"] == kept and sum(kept.values()) == 2 * adapted
    assert params["method_final"] == sum(kept.values()) * (32 + 32 + 1)  # tiny_bert: hidden size 32


def train_loss(here, root: Path, glue_dir: Path, *overrides: str) -> float:
    result = here(["train", "model=tiny_bert", "task=rte", "method=adalora", "train.epochs=1", "train.batch_size=8",
                   "train.max_seq_length=32", "train.precision=fp32", *overrides], root, glue_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(next(root.rglob("record.json")).read_text())["train_info"]["epochs"][0]["train_loss"]


def test_the_orthogonality_penalty_is_in_the_training_loss_from_the_command_line(tmp_path, glue_dir, here):
    # PEFT adds it in AdaLoraModel.forward, which a PeftModel without a task type skips (huggingface/peft#432):
    # there, every weight gave the same loss.
    without = train_loss(here, tmp_path / "w0", glue_dir, "method.orth_reg_weight=0")
    penalised = train_loss(here, tmp_path / "w1", glue_dir, "method.orth_reg_weight=1")
    # P and Q start as random init_r x d matrices, far from orthonormal: ‖PPᵀ - I‖_F is of order 1 or more.
    assert math.isfinite(without) and math.isfinite(penalised) and penalised - without > 0.5


@pytest.mark.slow  # three short runs
def test_a_run_killed_once_its_ranks_are_fixed_resumes_to_the_uninterrupted_result(tmp_path):
    # PEFT saved checkpoints cut to the rank pattern, which the resumed run's full-size modules could not load.
    glue_dir = write_tiny_glue(tmp_path / "glue", n_train=1500, n_dev=40)
    # Ranks budgeted over the first 40% of the steps, then fixed: the kill comes after epoch 2 of 3, when the
    # run only applies its saved pattern, so the resumed run must end exactly where the uninterrupted one does.
    args = ["model=tiny_bert", "task=sst2", "method=adalora", "method.init_r=4", "method.target_r=2",
            "method.delta_t=1", "method.tinit=0", "method.tfinal=0.6", "train.epochs=3", "train.batch_size=8",
            "train.max_seq_length=32", "train.precision=fp32"]

    def start(root: Path) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "lora_repro", "train", *args, f"paths.root={root}",
                                 f"hydra.run.dir={root}/hydra"], env={**os.environ, "GLUE_DIR": str(glue_dir)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def finish(process: subprocess.Popen, root: Path) -> tuple[dict, dict]:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
        record = json.loads(next(root.rglob("record.json")).read_text())
        return record, load_file(str(next(root.rglob("trained_weights.safetensors"))))

    uninterrupted, weights = finish(start(tmp_path / "once"), tmp_path / "once")
    killed = tmp_path / "killed"
    process = start(killed)
    deadline = time.monotonic() + 300
    # Not a walk of the whole root: it can meet the tokenized cache's temporary folder as it is renamed.
    logs = lambda: killed.glob("experiments/runs/*/*/*/*/logs/checkpoint-*/epoch_log.json")  # noqa: E731
    while not any(len(json.loads(log.read_text())["epochs"]) == 2 for log in logs()):
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    resumed, resumed_weights = finish(start(killed), killed)

    assert resumed["status"] == "completed"
    assert resumed["train_info"]["epochs"] == uninterrupted["train_info"]["epochs"]
    assert weights.keys() == resumed_weights.keys()
    assert all(torch.equal(weights[name], resumed_weights[name]) for name in weights)
    singular = torch.cat([t.flatten() for name, t in weights.items() if ".lora_E." in name])
    assert int((singular == 0).sum()) == (4 - 2) * 2 * 2  # the budget was really spent: 2 layers x [q, v]
