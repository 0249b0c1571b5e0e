"""One run on every GPU of a node: a one-process launch on an N-GPU node relaunches its run under torchrun.

A run started as one process on a node with N GPUs runs itself as `torchrun --standalone --nproc_per_node N`
and waits for it. So `lora-repro train ...`, `lora-repro train -m ...` and `make table2-*` use all of a node's
GPUs with no torchrun typed by the user, each run as one N-process distributed run, one run after another (a
sweep's MNLI runs still come before the runs that start from them). The processes under torchrun are the run;
this process only waits. Under torchrun already, or in a submitit job (whose tasks are the processes:
`app.join_submitit_tasks`), nothing is relaunched. `CUDA_VISIBLE_DEVICES` chooses the GPUs.

The relaunched run writes its outcome (trained, skipped or failed) where this process's sweep summary looks
for it, so a sweep sums up exactly as without the relaunch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig

from lora_repro.distributed import world_size
from lora_repro.training.sweep_summary import OUTCOME_ENV, OUTCOME_FILE

__all__ = ["gpus_to_spawn", "run_under_torchrun"]


def gpus_to_spawn() -> int:
    """The GPUs a one-process launch should spread its run over (0: run here, as it is)."""
    if world_size() > 1 or os.environ.get("SUBMITIT_EXECUTOR"):
        return 0
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return gpus if gpus > 1 else 0


def torchrun_command(processes: int, overrides: list[str], hydra_dir: Path) -> list[str]:
    """The command that runs this job's config as one `processes`-process distributed run."""
    return [sys.executable, "-m", __name__, "--standalone", "--nproc_per_node", str(processes),
            "-m", "lora_repro", "train", *overrides, f"hydra.run.dir={hydra_dir}"]


def run_under_torchrun(processes: int) -> tuple[float, dict]:
    """Run this Hydra job under torchrun; returns its headline value and its outcome (status, detail).

    Bad input in the relaunched run has already printed its one line; the outcome says `failed` with the exit
    status when the processes died before writing one (killed, or out of memory).
    """
    hydra = HydraConfig.get()
    output = Path(hydra.runtime.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    outcome_file = output / OUTCOME_FILE
    outcome_file.unlink(missing_ok=True)
    overrides = list(hydra.overrides.task)
    command = torchrun_command(processes, overrides, output / "torchrun")
    print(f"{processes} GPUs: running this run as {processes} processes (torchrun): "
          f"{' '.join(command[command.index('lora_repro'):])}", flush=True)
    code = subprocess.run(command, env={**os.environ, OUTCOME_ENV: str(outcome_file)}).returncode
    if outcome_file.is_file():
        outcome = json.loads(outcome_file.read_text())
    else:
        outcome = {"status": "failed", "detail": f"torchrun exited with status {code} before the run ended "
                   "(its output is above)", "overrides": overrides, "value": float("nan")}
        outcome_file.write_text(json.dumps(outcome))
    outcome["exit_code"] = code
    return float(outcome.get("value", float("nan"))), outcome



def torchrun_main() -> None:
    """torchrun, ending with the failed processes' exit status instead of its own traceback and report.

    The processes print why they failed (bad input as one line, exit status 2); torchrun would add a
    `ChildFailedError` traceback and a failure table to every one of them.
    """
    import logging

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed.elastic"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        run(get_args_parser().parse_args())
    except ChildFailedError as err:
        _, failure = err.get_first_failure()
        sys.exit(failure.exitcode if failure.exitcode > 0 else 1)


if __name__ == "__main__":
    torchrun_main()
