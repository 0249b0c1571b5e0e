"""The Hydra application behind `lora-repro train` (also `python -m lora_repro.training.app`).

`--help`, `--cfg job`, `-m` (multirun) and the launcher plugins (joblib, submitit) work as Hydra
users expect. Bad input ends with one line on stderr and exit status 2.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from lora_repro.config import CONF_DIR
from lora_repro.distributed import from_main, is_main_process
from lora_repro.errors import EXIT_USER_ERROR, user_error_in
from lora_repro.records.identity import RunId, run_config
from lora_repro.records.record import completed_value
from lora_repro.settings import check_run_settings
from lora_repro.training.spawn import gpus_to_spawn, run_under_torchrun
from lora_repro.training.sweep_summary import FAILED_SWEEPS, OUTCOME_ENV, write_outcome

_job_started = False
# What SLURM sets in a job that was given GPUs (--gpus-per-node / --gres=gpu:N).
SLURM_GPU_VARIABLES = ("SLURM_GPUS_ON_NODE", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS")
log = logging.getLogger(__name__)


def join_submitit_tasks() -> None:
    """Make the tasks of one submitit job (SLURM `tasks_per_node` > 1) one distributed run.

    Without this every task would run the whole job by itself; submitit's helper exports what
    torch.distributed reads (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, LOCAL_RANK) and gives each task
    its own GPU.
    """
    if not os.environ.get("SUBMITIT_EXECUTOR") or "RANK" in os.environ:
        return
    from submitit import JobEnvironment
    from submitit.helpers import TorchDistributedEnvironment

    if JobEnvironment().num_tasks > 1:
        # Whether the job has GPUs comes from SLURM, not from torch: asking torch.cuda would start CUDA before
        # CUDA_VISIBLE_DEVICES is exported, and every task would then see (and may pick) the same GPU.
        TorchDistributedEnvironment().export(set_cuda_visible_devices=any(
            os.environ.get(name) for name in SLURM_GPU_VARIABLES))


def discard_hydra_output(root: Path) -> None:
    """Remove the log folder Hydra made for a run that bad input stopped: bad input leaves nothing behind.

    Empty folders above it go too, up to but never including `root` (paths.root): the user's own folder stays,
    even when it was empty.
    """
    output, root = Path(HydraConfig.get().runtime.output_dir).resolve(), root.resolve()
    logging.shutdown()  # close the job's log file before its folder goes
    shutil.rmtree(output, ignore_errors=True)
    for parent in output.parents:  # the date folder, experiments/logs, experiments/ itself, if now empty
        if root not in parent.parents:
            break
        try:
            parent.rmdir()
        except OSError:
            break


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def train(cfg: DictConfig) -> float:
    """Run one fine-tuning job; returns the headline dev metric for sweepers."""
    global _job_started
    _job_started = True
    join_submitit_tasks()
    # In a sweep a failing run is recorded and reported at the end, and the other runs go on.
    sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    reports_outcome = sweep or OUTCOME_ENV in os.environ  # a sweep's job, or a run its job relaunched
    try:
        check_run_settings(cfg)  # where Hydra composed it, before anything reads it
        cfg = run_config(cfg)
        run_id = RunId.of(cfg)  # computed once, passed on
        done = from_main(None if cfg.train.force else completed_value(run_id, cfg.paths.reuse_runs_dirs))
        if done is not None:  # resume without paying for transformers imports
            print(f"skipping {run_id.run_dir}: already completed with this config (train.force=true reruns it)")
            if reports_outcome:
                write_outcome("skipped", value=done)
            return done
        if gpus := gpus_to_spawn():  # one process on a multi-GPU node: the run is one process per GPU
            from lora_repro.training.run import check_settings

            check_settings(cfg)  # bad settings as one line here, before torchrun starts a process per GPU
            value, relaunched = run_under_torchrun(gpus)
            if not sweep and relaunched["status"] == "failed":  # bad input: the relaunched run printed its line
                if relaunched["exit_code"] == EXIT_USER_ERROR:
                    discard_hydra_output(Path(cfg.paths.root))
                else:
                    print(f"error: {relaunched['detail']}", file=sys.stderr)
                sys.exit(relaunched["exit_code"] or 1)
            return value
        from lora_repro.training.run import run  # heavy imports only for a run that trains

        outcome = run(cfg, run_id)
    except Exception as err:
        user_error = user_error_in(err)
        if reports_outcome:
            write_outcome("failed", str(user_error) if user_error else f"{type(err).__name__}: {err}")
        if sweep:
            log.error("run failed: %s: %s", type(err).__name__, err)
            if os.environ.get("SUBMITIT_EXECUTOR") == "slurm":  # the job fails: SLURM cancels the runs after it
                raise RuntimeError(f"run failed: {type(err).__name__}: {err}") from None
            return math.nan
        if user_error is not None:
            discard_hydra_output(Path(cfg.paths.root))
            if is_main_process():  # the other processes of a distributed run meet the same error
                print(f"error: {user_error}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        raise
    if reports_outcome:
        write_outcome("trained" if outcome.trained else "skipped", value=outcome.value)
    return outcome.value


def main() -> None:
    """Console entry point; Hydra's own composition errors (bad overrides) also exit with 2."""
    try:
        train()
        if FAILED_SWEEPS:
            sys.exit(1)
    except SystemExit as exit_:
        if exit_.code == 1 and not _job_started and not FAILED_SWEEPS:  # Hydra could not compose: bad input
            sys.exit(EXIT_USER_ERROR)
        raise


if __name__ == "__main__":
    main()
