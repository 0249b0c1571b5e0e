"""Check a sweep before it spends GPU hours: `lora-repro preflight experiment=table2_roberta_base [overrides]`.

Takes the arguments of `lora-repro train -m` (and `make ... ARGS=...`), checks every run's settings as
`plan` does, then what would otherwise fail only once the jobs run:

* a run this machine or cluster cannot run: its data files are missing, or it asks for fp16 without a GPU;
* a model that cannot be loaded here: not in the hub cache and no network, or a local folder without weights;
* a launch that gives a run fewer processes than GPUs (the batch would silently change; the run refuses);
* a run that starts from an MNLI run that is neither completed nor in the sweep;
* on SLURM, a run whose estimated GPU time exceeds its time limit times its requeues;
* checkpoints that would not fit on the disk of the runs folder.

One line per problem and exit status 2 if there is any; nothing is written.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pandas as pd
from hydra.errors import HydraException
from omegaconf import DictConfig

from lora_repro.errors import EXIT_USER_ERROR, UserError
from lora_repro.models import check_loadable
from lora_repro.training.estimate import CHECKPOINTS_KEPT, checkpoint_bytes, gpu_hours
from lora_repro.training.init_from import find_source_run
from lora_repro.training.plan import plan, sweep_base

SLURM_LAUNCHER = "Slurm"


def launcher_problems(launcher: DictConfig, todo: pd.DataFrame) -> list[str]:
    """What the launcher would get wrong: processes per GPU, and (SLURM) time limits against estimated run time."""
    target = str(launcher.get("_target_", ""))
    if SLURM_LAUNCHER not in target:  # a local launch: every run's settings check already counted this machine's GPUs
        return []
    problems = []
    gpus, tasks = launcher.get("gpus_per_node") or 0, launcher.get("tasks_per_node") or 1
    if gpus and tasks != gpus:
        problems.append(f"hydra.launcher.tasks_per_node={tasks} with gpus_per_node={gpus}: every run would refuse "
                        "to start (one process per GPU); set tasks_per_node equal to gpus_per_node")
    if not todo.empty:
        run = todo.loc[todo.pflops.idxmax()]
        hours = gpu_hours(run.pflops, run.recipe_precision)["A100"] / max(gpus, 1)
        allowed = launcher.timeout_min / 60 * (launcher.max_num_timeout + 1)
        if hours > allowed:
            problems.append(f"the longest run ({run.task} {run.model} {run.method}) needs about {hours:.3g} h on "
                            f"{max(gpus, 1)} A100(s) (plan's estimate), more than hydra.launcher.timeout_min="
                            f"{launcher.timeout_min} x {launcher.max_num_timeout + 1} attempts allow; raise "
                            "timeout_min or max_num_timeout")
    return problems


def missing_sources(todo: pd.DataFrame) -> list[str]:
    """Runs starting from another task's run (`train.init_from`) whose source is neither done nor in the sweep."""
    problems = []
    planned = {(r.task, r.model, r.method_config, r.seed) for r in todo.itertuples()}
    for row in todo[todo.init_from.notna()].itertuples():
        if row.init_from != row.task and (row.init_from, row.model, row.method_config, row.seed) in planned:
            continue
        try:
            find_source_run(row.config)
        except UserError as err:
            problems.append(f"{row.task} {row.model} {row.method} seed {row.seed}: {err}")
    return problems


def disk_problem(todo: pd.DataFrame, runs_dir: Path, concurrent: int) -> str | None:
    """Whether the checkpoints of the runs that can run at once fit on the runs folder's disk."""
    if todo.empty:
        return None
    largest = todo.trainable_params.nlargest(max(concurrent, 1)).sum()
    needed = checkpoint_bytes(largest) * CHECKPOINTS_KEPT
    existing = next(p for p in [runs_dir, *runs_dir.parents] if p.exists())
    free = shutil.disk_usage(existing).free
    if needed > free:
        return (f"checkpoints of {min(concurrent, len(todo))} concurrent run(s) need about {needed / 1e9:.3g} GB and "
                f"{existing} has {free / 1e9:.3g} GB free; free space, or set paths.runs_dir to a larger disk")
    return None


def preflight(overrides: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """The sweep's plan and every problem found in it (empty: ready to launch)."""
    table = plan(overrides, warn=False)  # a bad value stops here, as it would stop the run
    todo = table[~table.status.isin(["completed", "reusable"])]
    problems = list(dict.fromkeys(todo.unavailable.dropna()))
    for model in dict.fromkeys(todo.model):
        try:
            check_loadable(todo[todo.model == model].iloc[0].config.model)
        except UserError as err:
            problems.append(str(err))
    hydra = sweep_base(overrides).hydra
    problems += launcher_problems(hydra.launcher, todo)
    problems += missing_sources(todo)
    concurrent = hydra.launcher.get("n_jobs") or hydra.launcher.get("array_parallelism") or 1
    runs_dir = Path(todo.iloc[0].config.paths.runs_dir) if not todo.empty else Path(".")
    if (disk := disk_problem(todo, runs_dir, concurrent)) is not None:
        problems.append(disk)
    return table, problems


def preflight_main() -> None:
    """`lora-repro preflight [overrides]`: every problem of a sweep, one line each, before it is launched."""
    try:
        table, problems = preflight(sys.argv[1:])
    except HydraException as err:  # a bad override: bad input like any other
        raise UserError(str(err)) from None
    todo = (~table.status.isin(["completed", "reusable"])).sum()
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    if problems:
        print(f"preflight: {len(problems)} problem(s) in a sweep of {len(table)} runs ({todo} to run); fix them "
              "before launching", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    print(f"preflight: {len(table)} runs ({todo} to run): settings, data, models, launcher, MNLI starts and disk "
          "checked; no problem found")
