"""`lora-repro status SWEEP_DIR`: where a sweep submitted to SLURM stands, after the login node was left.

The SLURM launcher lists every job it submitted in the sweep folder (`JOBS_FILE`); each job that ran leaves its
run's outcome (trained, skipped, failed and why) in its own folder. A job that has not run yet, or died before it
could say, is given SLURM's own state (`sacct`, else `squeue`). One line per job, then the counts; exit status 1
when a job failed or was cancelled (a dependent whose source failed: `--kill-on-invalid-dep`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from lora_repro.errors import UserError
from lora_repro.training.sweep_summary import OUTCOME_FILE

JOBS_FILE = "lora_repro_slurm_jobs.json"  # written by hydra_plugins.lora_repro_launchers.StagedSlurmLauncher
# SLURM job states, as this command counts them.
QUEUED = {"PENDING", "REQUEUED", "CONFIGURING", "SUSPENDED", "RESV_DEL_HOLD", "REQUEUE_HOLD", "REQUEUE_FED"}
RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING"}


def slurm_states(job_ids: list[str]) -> dict[str, str]:
    """SLURM's state of each job (`sacct`, else `squeue` for jobs still queued or running); {} without SLURM."""
    ids = ",".join(job_ids)
    for command in (["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ids],
                    ["squeue", "-h", "-o", "%i|%T", "-j", ids]):
        if shutil.which(command[0]) is None:
            continue
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if result.returncode == 0:
            states = dict(line.split("|", 1) for line in result.stdout.splitlines() if "|" in line)
            return {job: state.split()[0] for job, state in states.items()}  # "CANCELLED by 0" -> CANCELLED
    return {}


def job_state(job: dict, states: dict[str, str], sweep_dir: Path) -> tuple[str, str]:
    """(`queued` | `running` | `done` | `failed` | `cancelled` | `unknown`, detail) of one submitted job."""
    outcome_file = sweep_dir / str(job["job"]) / OUTCOME_FILE
    if outcome_file.is_file():
        outcome = json.loads(outcome_file.read_text())
        if outcome["status"] == "failed":
            return "failed", outcome.get("detail", "")
        return "done", outcome["status"]
    state = states.get(job["job_id"], "")
    if state in QUEUED:
        return "queued", f"waiting for job {job['after']}" if job.get("after") else ""
    if state in RUNNING:
        return "running", ""
    if state == "CANCELLED" and job.get("after") and states.get(job["after"]) not in (None, "COMPLETED"):
        return "cancelled", f"its source job {job['after']} did not succeed ({states.get(job['after'])})"
    if state == "CANCELLED":
        return "cancelled", ""
    if state:
        return "failed", f"SLURM: {state}"  # FAILED, OUT_OF_MEMORY, TIMEOUT, NODE_FAIL, ... without an outcome
    return "unknown", "not known to sacct or squeue"


def status_main() -> None:
    """`lora-repro status SWEEP_DIR`: one line per submitted job, then the counts."""
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        raise UserError("usage: lora-repro status SWEEP_DIR (the sweep folder the SLURM launcher printed)")
    sweep_dir = Path(sys.argv[1])
    try:
        jobs = json.loads((sweep_dir / JOBS_FILE).read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"no list of submitted SLURM jobs in {sweep_dir} ({type(err).__name__}); pass the sweep "
                        "folder that `lora-repro train -m ... hydra/launcher=slurm` printed") from None
    states = slurm_states([job["job_id"] for job in jobs])
    counts: Counter[str] = Counter()
    for job in jobs:
        state, detail = job_state(job, states, sweep_dir)
        counts[state] += 1
        print(f"job {job['job_id']:<14} {state:<9} {' '.join(job['overrides'])}{f'  ({detail})' if detail else ''}")
    print(", ".join(f"{counts[s]} {s}" for s in ("done", "running", "queued", "failed", "cancelled", "unknown")
                    if counts[s]))
    if counts["failed"] or counts["cancelled"]:
        print("rerunning the same `lora-repro train -m ...` submits only what is not completed")
        sys.exit(1)
