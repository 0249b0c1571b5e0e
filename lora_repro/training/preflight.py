"""Check a sweep before it spends GPU hours: `lora-repro preflight experiment=table2_roberta_base [overrides]`.

Takes the arguments of `lora-repro train -m` (and `make ... ARGS=...`), checks every run's settings as
`plan` does, then what would otherwise fail only once the jobs run:

* a run this machine or cluster cannot run: its data files are missing, or it asks for fp16 without a GPU;
* a model that cannot be loaded here: not in the hub cache and no network, or a local folder without weights;
* a launch that gives a run fewer processes than GPUs (the batch would silently change; the run refuses);
* a run that starts from an MNLI run that is neither completed nor in the sweep;
* on SLURM, a run whose estimated GPU time exceeds its time limit times its requeues;
* a per-device batch that will not fit in one GPU's memory (`hydra.launcher.gpu_memory_gb` on SLURM, the GPU's own
  size on a local node), with the per-device batch that would;
* checkpoints that would not fit on the disk of the runs folder.

One line per problem and exit status 2 if there is any; nothing is written. Notes (a checkpoint that needs a
longer warning before a time limit than configured, which the SLURM launcher then gives it) need no action.
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
from lora_repro.training.estimate import (
    CHECKPOINTS_KEPT,
    DeviceMemory,
    checkpoint_bytes,
    device_memory,
    gpu_hours,
    save_seconds,
    signal_delay_for,
)
from lora_repro.training.init_from import find_source_run
from lora_repro.training.plan import plan, submits_to_slurm, sweep_base


def launcher_problems(launcher: DictConfig, todo: pd.DataFrame) -> list[str]:
    """What the launcher would get wrong: processes per GPU, and (SLURM) time limits against estimated run time."""
    if not submits_to_slurm(launcher):  # a local launch: every run's settings check already counted this machine's GPUs
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


# A device's memory beyond what the run allocates: CUDA's context and the allocator's slack.
USABLE_GPU_MEMORY = 0.9


def gpu_memory_and_processes(launcher: DictConfig) -> tuple[float | None, int]:
    """The memory of one GPU that runs the sweep (bytes; None: no GPU to check against) and a run's processes."""
    if submits_to_slurm(launcher):
        gpus = launcher.get("gpus_per_node") or 0
        memory = launcher.get("gpu_memory_gb")
        processes = (launcher.get("tasks_per_node") or 1) * (launcher.get("nodes") or 1)
        return (memory * 1e9 if gpus and memory else None), processes
    import torch

    if not torch.cuda.is_available():
        return None, 1
    try:
        memory = float(torch.cuda.get_device_properties(0).total_memory)
    except (RuntimeError, AssertionError):  # CUDA present but not usable from here: nothing to check against
        memory = None
    return memory, max(torch.cuda.device_count(), 1)


def memory_problems(todo: pd.DataFrame, launcher: DictConfig) -> list[str]:
    """Runs whose per-device batch will not fit in one GPU's memory (analytic estimate, `estimate.device_memory`)."""
    memory, processes = gpu_memory_and_processes(launcher)
    if memory is None or todo.empty:
        return []
    problems = []
    for _, runs in todo.groupby(["task", "model", "method_config", "batch", "max_len", "recipe_precision"],
                                sort=False):
        run = runs.iloc[0]
        train = run.config.train
        per_device = train.per_device_batch_size or max(train.batch_size // processes, 1)

        def needed(batch: int, run=run) -> DeviceMemory:
            return device_memory(run.total_params, run.trainable_params, run.config.model.shape, batch,
                                 run.max_len, run.recipe_precision)

        estimate = needed(per_device)
        if estimate.total <= USABLE_GPU_MEMORY * memory:
            continue
        fits = [b for b in range(per_device, 0, -1) if per_device % b == 0
                and needed(b).total <= USABLE_GPU_MEMORY * memory]
        fix = (f"set train.per_device_batch_size={fits[0]} (gradient accumulation keeps the global batch)" if fits
               else "not even one example per device fits: more GPUs per run do not help; use a larger GPU")
        gb = {k: v / 1e9 for k, v in vars(estimate).items()}
        problems.append(f"{run.task} {run.model} {run.method} {run.method_config} ({len(runs)} runs): about "
                        f"{estimate.total / 1e9:.3g} GB "
                        f"per GPU at a per-device batch of {per_device} (weights {gb['weights']:.3g}, gradients "
                        f"{gb['gradients']:.3g}, AdamW {gb['optimizer']:.3g}, activations {gb['activations']:.3g}; "
                        f"{processes} process(es) per run), more than {USABLE_GPU_MEMORY:.0%} of a "
                        f"{memory / 1e9:.3g} GB GPU; {fix}")
    return problems


def save_notes(todo: pd.DataFrame, launcher: DictConfig) -> list[str]:
    """Runs whose checkpoint takes longer to save than SLURM's warning before a time limit (`signal_delay_s`)."""
    if not submits_to_slurm(launcher) or todo.empty:
        return []
    warning = launcher.get("signal_delay_s") or 120
    notes = []
    for (model, method), runs in todo.groupby(["model", "method"], sort=False):
        trainable = int(runs.trainable_params.max())
        if save_seconds(trainable) > warning:
            notes.append(f"{model} {method}: a checkpoint ({checkpoint_bytes(trainable) / 1e9:.3g} GB) takes about "
                         f"{save_seconds(trainable):.0f} s to save (at an assumed 200 MB/s), longer than "
                         f"hydra.launcher.signal_delay_s={warning}: the launcher gives these jobs "
                         f"{signal_delay_for(warning, trainable)} s of warning instead")
    return notes


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


def preflight(overrides: list[str]) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The sweep's plan, every problem found in it (empty: ready to launch), and notes that need no action."""
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
    problems += memory_problems(todo, hydra.launcher)
    problems += missing_sources(todo)
    concurrent = hydra.launcher.get("n_jobs") or hydra.launcher.get("array_parallelism") or 1
    runs_dir = Path(todo.iloc[0].config.paths.runs_dir) if not todo.empty else Path(".")
    if (disk := disk_problem(todo, runs_dir, concurrent)) is not None:
        problems.append(disk)
    return table, problems, save_notes(todo, hydra.launcher)


def preflight_main() -> None:
    """`lora-repro preflight [overrides]`: every problem of a sweep, one line each, before it is launched."""
    try:
        table, problems, notes = preflight(sys.argv[1:])
    except HydraException as err:  # a bad override: bad input like any other
        raise UserError(str(err)) from None
    todo = (~table.status.isin(["completed", "reusable"])).sum()
    for note in notes:
        print(f"note: {note}")
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    if problems:
        print(f"preflight: {len(problems)} problem(s) in a sweep of {len(table)} runs ({todo} to run); fix them "
              "before launching", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    print(f"preflight: {len(table)} runs ({todo} to run): settings, data, models, launcher, GPU memory, MNLI starts "
          "and disk checked; no problem found")
