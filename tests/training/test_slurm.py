"""A sweep submitted to SLURM: all at once, dependents `afterok` on their source, nothing waiting on the login node.

SLURM is played by scripts on PATH: `sbatch` keeps each submission file and answers with a job id, `sacct` reports
the states a test sets. The launcher is Hydra's submitit launcher, as users select it (`hydra/launcher=slurm`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

FAKE_SBATCH = """#!/bin/sh
n=$(( $(cat "$FAKE_SLURM/count" 2>/dev/null || echo 100) + 1 ))
echo $n > "$FAKE_SLURM/count"
cp "$1" "$FAKE_SLURM/sbatch_$n.sh"
echo "Submitted batch job $n"
"""
FAKE_SACCT = """#!/bin/sh
cat "$FAKE_SLURM/sacct.txt"
"""
# MNLI, then RTE started from it (the paper's recipe), as one sweep.
SWEEP = ["hydra/launcher=slurm", "model=tiny_bert", "task=mnli,rte", "seed=0", "method=lora", "train.precision=fp32",
         "+start_from={rte: mnli}", "train.init_from='${oc.select:start_from.${task.name},null}'"]


@pytest.fixture
def fake_slurm(tmp_path) -> dict[str, str]:
    bin_dir, state = tmp_path / "bin", tmp_path / "slurm"
    bin_dir.mkdir()
    state.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("sacct", FAKE_SACCT), ("srun", "#!/bin/sh\nexit 1\n")):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_SLURM": str(state),
            "LORA_REPRO_ROOT": str(tmp_path / "root")}


def lora_repro(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lora_repro", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_the_whole_sweep_is_submitted_at_once_with_afterok_dependencies(fake_slurm, glue_dir, tmp_path):
    env = {**fake_slurm, "GLUE_DIR": str(glue_dir)}
    started = time.monotonic()
    result = lora_repro(env, "train", "-m", *SWEEP, "hydra.launcher.signal_delay_s=90")
    assert result.returncode == 0, result.stderr[-3000:]
    assert time.monotonic() - started < 120  # returned without waiting for any job
    assert "Traceback" not in result.stderr
    state = Path(fake_slurm["FAKE_SLURM"])
    source, dependent = (state / "sbatch_101.sh").read_text(), (state / "sbatch_102.sh").read_text()
    assert "--dependency" not in source
    assert "#SBATCH --dependency=afterok:101\n" in dependent and "#SBATCH --kill-on-invalid-dep=yes" in dependent
    assert "#SBATCH --signal=USR2@90" in source  # a LoRA checkpoint saves in well under the warning
    sweep_dir = Path(re.search(r"lora-repro status ([^`\s]+)", result.stdout).group(1))
    jobs = json.loads((sweep_dir / "lora_repro_slurm_jobs.json").read_text())
    assert [(j["job_id"], j["after"]) for j in jobs] == [("101", None), ("102", "101")]
    assert "task=mnli" in jobs[0]["overrides"] and "task=rte" in jobs[1]["overrides"]

    # Later, from any shell: the source was killed (out of memory); SLURM cancelled its dependent.
    (state / "sacct.txt").write_text("101|OUT_OF_MEMORY\n102|CANCELLED by 0\n")
    status = lora_repro(env, "status", str(sweep_dir))
    assert status.returncode == 1, status.stderr
    assert re.search(r"job 101\s+failed .*task=mnli.*SLURM: OUT_OF_MEMORY", status.stdout)
    assert re.search(r"job 102\s+cancelled .*its source job 101 did not succeed", status.stdout)
    assert "1 failed, 1 cancelled" in status.stdout and "Traceback" not in status.stderr

    (state / "sacct.txt").write_text("101|RUNNING\n102|PENDING\n")
    status = lora_repro(env, "status", str(sweep_dir))
    assert status.returncode == 0 and "1 running, 1 queued" in status.stdout
    assert re.search(r"job 102\s+queued .*waiting for job 101", status.stdout)


def test_a_large_checkpoint_gets_a_longer_warning_before_the_time_limit():
    # DeBERTa-XXL full fine-tuning: a 24 GB checkpoint does not save in submitit's default 120 s warning.
    from lora_repro.training.estimate import save_seconds, signal_delay_for

    trainable = 1_500_000_000
    assert save_seconds(trainable) == pytest.approx(120)
    assert signal_delay_for(120, trainable) >= 1.5 * 120 + 60
    assert signal_delay_for(120, 300_000) == 120  # LoRA: the configured warning


def test_status_of_a_folder_without_submitted_jobs_is_one_line(tmp_path, fake_slurm):
    result = lora_repro(fake_slurm, "status", str(tmp_path))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "no list of submitted SLURM jobs" in result.stderr


@pytest.mark.slow
def test_a_source_job_killed_hard_is_one_line_in_the_summary_not_a_traceback(tmp_path, glue_dir):
    # submitit's local executor, the SLURM path on this machine: SIGKILL the MNLI job (as an out-of-memory kill
    # would) while it trains. The launcher used to end with submitit's UncompletedJobError traceback and exit 2.
    import signal

    import psutil

    env = {**os.environ, "GLUE_DIR": str(glue_dir), "LORA_REPRO_ROOT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    sweep = [arg.replace("hydra/launcher=slurm", "hydra/launcher=slurm_local") for arg in SWEEP]
    launch = subprocess.Popen([sys.executable, "-m", "lora_repro", "train", "-m", *sweep, "train.epochs=2000"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 240
    while not list(tmp_path.glob("experiments/runs/mnli/*/*/*/record.json")):  # the MNLI run is training
        assert time.monotonic() < deadline and launch.poll() is None, launch.communicate()
        time.sleep(0.5)
    (job_log,) = tmp_path.glob("experiments/logs/multirun/*/*/.submitit/*/*_log.out")
    controller = psutil.Process(int(job_log.name.split("_")[0]))  # a local job's id: the pid of its controller
    for task in controller.children():  # the process that trains, as the out-of-memory killer picks it
        os.kill(task.pid, signal.SIGKILL)
    out, err = launch.communicate(timeout=300)
    assert launch.returncode == 1, err[-3000:]
    assert "Traceback" not in out + err
    assert re.search(r"failed: .*task=mnli.*ended without a result \(killed\?\)", out)
    assert re.search(r"failed: .*task=rte.*train.init_from=mnli: no completed mnli run", out)
