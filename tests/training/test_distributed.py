"""A distributed launch trains one run, numerically the single-process run with the same global batch,
also when the training set does not divide by it.

Launched as users launch it on GPUs (`torchrun --nproc_per_node N -m lora_repro train ...`), here on the
CPU with the gloo backend. Dropout is off so that the runs can be compared number for number.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

# fp32: the comparison is exact only when no process rounds to bf16 (`auto` is bf16 on a CPU with AVX512-BF16).
ARGS = ["model=tiny_bert", "task=rte", "method=lora", "train.precision=fp32", "train.batch_size=8",
        "train.max_seq_length=32", "train.epochs=2", "train.learning_rate=1e-2", "+model.shape.hidden_dropout_prob=0.0",
        "+model.shape.attention_probs_dropout_prob=0.0"]

pytestmark = pytest.mark.slow  # minutes: see `make test` and `make test-all`


def launch(root: Path, glue_dir: Path, prefix: list[str], *extra: str) -> Path:
    """Run one training launch in its own folder; return its run folder."""
    env = {**os.environ, "GLUE_DIR": str(glue_dir), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([*prefix, "-m", "lora_repro", "train", *ARGS, *extra, f"paths.root={root}",
                             f"hydra.run.dir={root}/hydra"], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    records = list(root.rglob("record.json"))
    assert len(records) == 1  # one run, one record: the other processes write nothing
    return records[0].parent


# 64 rows divide by the global batch of 8; 61 leave a last batch of 5, which accelerate would fill with 3
# repeated examples on one process, and which 4-step accumulation would split into micro-batches of 2, 2 and 1.
@pytest.fixture(scope="module", params=[64, 61], ids=["divides", "remainder"])
def runs(tmp_path_factory, request) -> dict[str, Path]:
    from tests.conftest import write_tiny_glue

    root = tmp_path_factory.mktemp("distributed")
    glue_dir = write_tiny_glue(root / "glue", n_train=request.param, n_dev=24)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517"]
    return {"single": launch(root / "single", glue_dir, [sys.executable]),
            "ddp": launch(root / "ddp", glue_dir, torchrun),
            "accumulated": launch(root / "accumulated", glue_dir, [sys.executable], "train.per_device_batch_size=2")}


@pytest.mark.parametrize("other", ["ddp", "accumulated"])
def test_same_losses_weights_and_predictions_as_one_process(runs, other):
    single, run = (json.loads((runs[k] / "record.json").read_text())["train_info"] for k in ("single", other))
    assert [e["train_loss"] for e in run["epochs"]] == pytest.approx([e["train_loss"] for e in single["epochs"]],
                                                                     abs=1e-5)
    assert run["best"]["metrics"] == pytest.approx(single["best"]["metrics"], abs=1e-5)
    ours, theirs = (load_file(str(runs[k] / "trained_weights.safetensors")) for k in (other, "single"))
    assert ours.keys() == theirs.keys()
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], atol=1e-5, rtol=1e-4)


def test_the_record_states_how_the_global_batch_was_made(runs):
    batches = {k: json.loads((runs[k] / "record.json").read_text())["train_info"]["batch"] for k in runs}
    assert batches["single"] == {"processes": 1, "per_device": 8, "accumulation": 1, "global": 8}
    assert batches["ddp"] == {"processes": 2, "per_device": 4, "accumulation": 1, "global": 8}
    assert batches["accumulated"] == {"processes": 1, "per_device": 2, "accumulation": 4, "global": 8}
    # Same run identity: the layout on the hardware is not part of what the run computes.
    assert len({path.name for path in runs.values()}) == 1


# As on a node with 2 GPUs, where the Trainer would wrap one process's model in DataParallel over both: the CUDA
# calls of the launching process are patched; the processes it starts under torchrun see the CPU and use gloo.
FAKE_TWO_GPU_NODE = ("import sys, torch; torch.cuda.is_available = lambda: True; torch.cuda.device_count = lambda: 2; "
                     "sys.argv = ['lora-repro'] + sys.argv[1:]; from lora_repro.cli import main; main()")


def on_two_gpu_node(tmp_path: Path, glue_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GLUE_DIR": str(glue_dir), "LORA_REPRO_ROOT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    return subprocess.run([sys.executable, "-c", FAKE_TWO_GPU_NODE, "train", *args], capture_output=True, text=True,
                          env=env, timeout=600)


def test_a_sweep_on_a_two_gpu_node_runs_each_run_as_two_processes(tmp_path):
    # `make table2-*` on an 8-GPU node launched every run as one process, and the DataParallel guard refused them all.
    from tests.conftest import write_tiny_glue

    glue_dir = write_tiny_glue(tmp_path / "glue", n_train=32, n_dev=16)
    result = on_two_gpu_node(tmp_path, glue_dir, "-m", *ARGS, "train.epochs=1", "seed=0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 GPUs: running this run as 2 processes" in result.stdout
    assert "sweep done: 1 trained, 0 skipped" in result.stdout
    (record,) = (tmp_path / "experiments" / "runs").rglob("record.json")
    info = json.loads(record.read_text())
    assert info["status"] == "completed"
    assert info["train_info"]["batch"] == {"processes": 2, "per_device": 4, "accumulation": 1, "global": 8}
    again = on_two_gpu_node(tmp_path, glue_dir, "-m", *ARGS, "train.epochs=1", "seed=0")
    assert again.returncode == 0 and "sweep done: 0 trained, 1 skipped" in again.stdout  # resumes, no relaunch


def test_bad_input_in_the_relaunched_run_is_one_line_and_exit_2(tmp_path, glue_dir):
    result = on_two_gpu_node(tmp_path, glue_dir, *ARGS, "method.r=0")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "error: " in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "experiments" / "runs").exists()  # no record
    assert not list((tmp_path / "experiments").rglob("*.json"))  # nor a log folder left behind


@pytest.mark.parametrize(("slurm_gpus", "expected"), [("2", True), (None, False)])
def test_submitit_tasks_get_their_own_gpu_before_cuda_starts(monkeypatch, slurm_gpus, expected):
    import submitit
    import submitit.helpers

    from lora_repro.training import app

    exported = []

    class Job:
        num_tasks = 2

    class Distributed:
        def export(self, set_cuda_visible_devices: bool) -> None:
            exported.append(set_cuda_visible_devices)

    def cuda_touched() -> bool:
        raise AssertionError("CUDA was started before CUDA_VISIBLE_DEVICES was exported")

    monkeypatch.setattr(torch.cuda, "is_available", cuda_touched)
    monkeypatch.setattr(torch.cuda, "device_count", cuda_touched)
    monkeypatch.setattr(submitit, "JobEnvironment", Job)
    monkeypatch.setattr(submitit.helpers, "TorchDistributedEnvironment", Distributed)
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    monkeypatch.delenv("RANK", raising=False)
    for name in app.SLURM_GPU_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    if slurm_gpus:
        monkeypatch.setenv("SLURM_GPUS_ON_NODE", slurm_gpus)
    app.join_submitit_tasks()
    assert exported == [expected]


def test_when_another_process_holds_the_run_every_rank_skips_it(tmp_path):
    # Rank 0 alone takes a run's lock; before the ranks agreed on its answer, rank 1 went on to train and waited
    # for rank 0 in the process group until the 30-minute timeout.
    from tests.conftest import write_tiny_glue

    glue_dir = write_tiny_glue(tmp_path / "glue", n_train=32, n_dev=16)
    run_dir = launch(tmp_path / "root", glue_dir, [sys.executable])
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29519"]
    env = {**os.environ, "GLUE_DIR": str(glue_dir), "OMP_NUM_THREADS": "1"}
    with open(run_dir / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as a second copy of the sweep, training this run right now
        result = subprocess.run([*torchrun, "-m", "lora_repro", "train", *ARGS, "train.force=true",
                                 f"paths.root={tmp_path / 'root'}", f"hydra.run.dir={tmp_path}/hydra"],
                                env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "another process is running it" in result.stderr + result.stdout
