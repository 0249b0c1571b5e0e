"""A run killed mid-training (SIGKILL, as a preempted cluster job) resumes from its last epoch checkpoint
and ends with exactly the numbers of a run that was never interrupted; checkpoints go once it is done."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import write_tiny_glue

ARGS = ["model=tiny_bert", "task=sst2", "method=lora", "train.batch_size=8", "train.max_seq_length=32",
        "train.epochs=3"]

# Where a run's checkpoints are (<run>/logs/checkpoint-<step>). Polling there, not over the whole root: a walk of
# the root can meet the tokenized cache's temporary folder just as the run renames it into place.
CHECKPOINTS = "experiments/runs/*/*/*/*/logs/checkpoint-*"

pytestmark = pytest.mark.slow  # minutes: see `make test` and `make test-all`


def start(root: Path, glue_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lora_repro", "train", *ARGS, *extra, f"paths.root={root}",
                             f"hydra.run.dir={root}/hydra"], env={**os.environ, "GLUE_DIR": str(glue_dir)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def resumed_from(root: Path) -> list[str]:
    """The checkpoints a run in `root` said it resumed from, and those it set aside (its Hydra log)."""
    text = "".join(log.read_text() for log in (root / "hydra").glob("*.log"))
    return [line.split(" - ", 1)[-1] for line in text.splitlines()
            if "resuming from" in line or "setting aside" in line]


def finish(process: subprocess.Popen, root: Path) -> dict:
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    return json.loads(next(root.rglob("record.json")).read_text())


@pytest.fixture(scope="module")
def glue_and_uninterrupted(tmp_path_factory) -> tuple[Path, dict]:
    """Data with epochs long enough to kill inside, and the record of a run on it that nobody interrupted."""
    root = tmp_path_factory.mktemp("resume")
    glue_dir = write_tiny_glue(root / "glue", n_train=1500, n_dev=40)
    return glue_dir, finish(start(root / "once", glue_dir), root / "once")


def test_sigkill_then_rerun_gives_the_uninterrupted_result(tmp_path, glue_and_uninterrupted):
    glue_dir, uninterrupted = glue_and_uninterrupted

    killed = tmp_path / "killed"
    process = start(killed, glue_dir)
    deadline = time.monotonic() + 300
    while not list(killed.glob(f"{CHECKPOINTS}/epoch_log.json")):  # epoch 1 is saved: now kill it in epoch 2
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    record = json.loads(next(killed.rglob("record.json")).read_text())
    assert record["status"] == "running"  # killed: no chance to say anything else
    # The killed attempt's training time, as its checkpoint saved it, made large enough to tell apart from
    # anything the resumed attempt could measure by itself.
    before_the_kill = 1000.0
    for saved in killed.glob(f"{CHECKPOINTS}/epoch_log.json"):
        log = json.loads(saved.read_text())
        assert log["seconds"] > 0
        saved.write_text(json.dumps({**log, "seconds": before_the_kill}))
    resumed = finish(start(killed, glue_dir), killed)

    assert resumed["status"] == "completed"
    assert resumed["train_info"]["epochs"] == uninterrupted["train_info"]["epochs"]  # every loss and metric
    assert resumed["train_info"]["best"] == uninterrupted["train_info"]["best"]
    # Totals over both attempts: the loss of every epoch, the time up to the kill's last checkpoint too.
    assert resumed["train_info"]["train_loss"] == uninterrupted["train_info"]["train_loss"]
    assert before_the_kill < resumed["train_info"]["train_seconds"] < before_the_kill + 600
    assert not list(killed.glob(CHECKPOINTS))  # done: no checkpoint left on disk


def test_a_kill_during_a_checkpoint_save_resumes_from_the_last_complete_checkpoint(tmp_path, glue_and_uninterrupted):
    glue_dir, uninterrupted = glue_and_uninterrupted
    killed = tmp_path / "killed"
    process = start(killed, glue_dir)
    deadline = time.monotonic() + 300
    while len(list(killed.glob(f"{CHECKPOINTS}/epoch_log.json"))) < 2:  # epochs 1 and 2 saved
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    # As if the kill had come inside the save of epoch 2: the Trainer's files are there, this project's are not.
    newest = max(killed.glob(CHECKPOINTS), key=lambda f: int(f.name.rpartition("-")[2]))
    for name in ("epoch_log.json", "trainable.safetensors"):
        (newest / name).unlink()
    resumed = finish(start(killed, glue_dir), killed)
    assert resumed["status"] == "completed"
    assert resumed["train_info"]["epochs"] == uninterrupted["train_info"]["epochs"]


@pytest.fixture(scope="module", params=[(), ("train.group_by_length=true",)], ids=["random", "length-grouped"])
def order_and_uninterrupted(request, glue_and_uninterrupted, tmp_path_factory) -> tuple[Path, tuple, dict]:
    """The random order's uninterrupted run, and a length-grouped one (the order drawn from the global RNG)."""
    glue_dir, uninterrupted = glue_and_uninterrupted
    if request.param:
        root = tmp_path_factory.mktemp("grouped")
        uninterrupted = finish(start(root, glue_dir, *request.param), root)
    return glue_dir, request.param, uninterrupted


def test_the_preemption_signal_saves_mid_epoch_and_the_rerun_gives_the_uninterrupted_result(
        tmp_path, order_and_uninterrupted):
    # SLURM sends submitit's signal (USR2) before a time limit and on preemption; submitit would requeue at once.
    # With length-grouped batches the resumed epoch drew another order (epoch-2 loss 0.6940022 vs 0.6940115).
    glue_dir, extra, uninterrupted = order_and_uninterrupted
    preempted = tmp_path / "preempted"
    process = start(preempted, glue_dir, *extra)
    deadline = time.monotonic() + 300
    while not list(preempted.glob(f"{CHECKPOINTS}/epoch_log.json")):  # epoch 1 is saved: signal it in epoch 2
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before the signal"
        time.sleep(0.005)
    time.sleep(0.5)
    process.send_signal(signal.SIGUSR2)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGUSR2, stderr[-3000:]
    steps = sorted(int(folder.name.rpartition("-")[2]) for folder in preempted.glob(CHECKPOINTS))
    assert len(steps) == 2 and steps[1] % steps[0] != 0  # the end of epoch 1, then mid-epoch 2 (not lost)
    assert json.loads(next(preempted.rglob("record.json")).read_text())["status"] == "running"

    resumed = finish(start(preempted, glue_dir, *extra), preempted)
    # A run started over from scratch ends with the same numbers: it must have resumed, mid-epoch.
    assert [line.rpartition("-")[2] for line in resumed_from(preempted)] == [str(steps[1])]
    assert resumed["train_info"]["epochs"] == uninterrupted["train_info"]["epochs"]  # epoch 2's loss spans both
    assert resumed["train_info"]["best"] == uninterrupted["train_info"]["best"]
    assert resumed["train_info"]["train_loss"] == uninterrupted["train_info"]["train_loss"]


def test_a_checkpoint_that_does_not_load_is_set_aside_and_the_run_resumes_from_the_one_before(
        tmp_path, glue_and_uninterrupted):
    # A pickle where optimizer.pt was: `weights_only` rightly refuses it, and the run failed with an UnpicklingError
    # traceback on every rerun, since the checkpoint stayed.
    import pickle

    glue_dir, uninterrupted = glue_and_uninterrupted
    preempted = tmp_path / "preempted"
    process = start(preempted, glue_dir)
    deadline = time.monotonic() + 300
    while not list(preempted.glob(f"{CHECKPOINTS}/epoch_log.json")):
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before the signal"
        time.sleep(0.005)
    time.sleep(0.5)
    process.send_signal(signal.SIGUSR2)
    process.communicate(timeout=300)
    newest = max(preempted.glob(CHECKPOINTS), key=lambda f: int(f.name.rpartition("-")[2]))
    (newest / "optimizer.pt").write_bytes(pickle.dumps({"not": "a torch file"}))
    rerun = start(preempted, glue_dir)
    _, stderr = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    said = resumed_from(preempted)
    assert any(f"setting aside the checkpoint {newest}" in line for line in said), said
    assert said[-1].startswith("resuming from") and int(said[-1].rpartition("-")[2]) < int(newest.name[11:])
    resumed = json.loads(next(preempted.rglob("record.json")).read_text())
    assert resumed["train_info"]["epochs"] == uninterrupted["train_info"]["epochs"]  # from the end of epoch 1
