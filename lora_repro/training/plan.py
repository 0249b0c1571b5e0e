"""Plan a sweep before launching it: `lora-repro plan experiment=table2_roberta_base [overrides]`.

Expands the sweep exactly as Hydra's basic sweeper does (the experiment's `hydra.sweeper.params`,
then the command line), composes every job's config, and lists each run with its hyperparameters,
whether its record is already `completed` (so a launch would skip it), and a rough cost.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pandas as pd
from hydra import compose
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from lora_repro.config import compose_config, config_context
from lora_repro.errors import Unavailable, UserError
from lora_repro.hardware import cpu_has_native_bf16
from lora_repro.methods.registry import trains_whole_model
from lora_repro.models import meta_counts
from lora_repro.records.identity import RunId, run_config
from lora_repro.records.record import RECORD_FILE, read_record, reusable_run
from lora_repro.settings import check_run_settings
from lora_repro.training.estimate import (
    ASSUMED_UTILIZATION,
    EMULATED_BF16_SLOWDOWN,
    MeasuredRuns,
    gpu_hours,
    run_pflops,
)
from lora_repro.training.run import check_settings

log = logging.getLogger(__name__)


def sweep_jobs(params: dict, overrides: list[str]) -> list[list[str]]:
    """Every job's override list, from the sweeper's `params` and the command line's overrides."""
    swept = [f"{key}={value}" for key, value in params.items()] + list(overrides)
    return BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(swept), max_batch_size=None)[0]


def sweep_base(overrides: list[str]) -> DictConfig:
    """The config every job of the sweep shares: the overrides that sweep nothing, composed with Hydra's section."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    return compose_config([o for o, p in zip(overrides, parsed, strict=True) if not p.is_sweep_override()],
                          hydra=True)


def expand_sweep(overrides: list[str], base: DictConfig | None = None) -> list[list[str]]:
    """Every job's override list, in the order Hydra's basic sweeper launches them (`base`: `sweep_base`)."""
    base = base if base is not None else sweep_base(overrides)
    return sweep_jobs(base.hydra.sweeper.get("params") or {}, overrides)


def compose_jobs(jobs: list[list[str]]) -> list[tuple[tuple[str, ...], DictConfig]]:
    """Every job's composed config, with the key it shares with the jobs that differ from it only in `seed`.

    Hydra composes a few configs per second, and a paper table has hundreds of jobs: one composition per key.
    """
    composed: dict[tuple[str, ...], DictConfig] = {}
    configs = []
    with config_context():
        for job in jobs:
            rest = tuple(o for o in job if not o.startswith("seed="))
            if rest not in composed:
                composed[rest] = compose(config_name="config", overrides=list(rest))
            cfg = composed[rest].copy()
            seeds = [o.split("=", 1)[1] for o in job if o.startswith("seed=")]
            if seeds:
                cfg.seed = int(seeds[-1])
            configs.append((rest, cfg))
    return configs


def submits_to_slurm(launcher: DictConfig) -> bool:
    """Whether the sweep's launcher submits to a SLURM cluster (Hydra's or the staged one), not to this machine."""
    return "Slurm" in str(launcher.get("_target_", ""))


def nodes_have_gpus(launcher: DictConfig) -> bool | None:
    """Whether the nodes that run the sweep have GPUs: True for a SLURM launch with GPUs, None for this machine."""
    return True if submits_to_slurm(launcher) and launcher.get("gpus_per_node") else None


class SharedRunConfigs:
    """`run_config` once per group of jobs that differ only in their seed.

    Resolving a paper recipe costs as much as composing it. A config that interpolates `${seed}` is resolved job
    by job.
    """

    def __init__(self, on_cuda: bool | None) -> None:
        self.on_cuda = on_cuda
        self.resolved: dict[tuple[str, ...], DictConfig | Unavailable | None] = {}

    def __call__(self, key: tuple[str, ...], cfg: DictConfig) -> DictConfig:
        if key not in self.resolved:
            try:
                seeded = "${seed" in OmegaConf.to_yaml(cfg)
                self.resolved[key] = None if seeded else run_config(cfg, self.on_cuda)
            except Unavailable as err:
                self.resolved[key] = err
        shared = self.resolved[key]
        if shared is None:
            return run_config(cfg, self.on_cuda)
        if isinstance(shared, Unavailable):
            raise shared
        shared = shared.copy()
        shared.seed = cfg.seed
        return shared


def run_status(run_dir: Path) -> str:
    """`completed`, `failed`, `running` (or killed while running), or `missing`."""
    if not (run_dir / RECORD_FILE).exists():
        return "missing"
    try:
        return read_record(run_dir).status
    except UserError:
        return "broken"


def plan_status(run_id: RunId, reuse_runs_dirs: list[str]) -> str:
    """`run_status`, or `reusable` when another experiment's identical run will be copied (paths.reuse_runs_dirs)."""
    status = run_status(run_id.run_dir)
    return "reusable" if status != "completed" and reusable_run(run_id, reuse_runs_dirs) is not None else status


def train_examples(cfg: DictConfig) -> int:
    """The training rows a run uses (the official split size, or the subset asked for)."""
    sizes = cfg.task.num_examples
    return min(sizes.train, cfg.data.max_train_samples or sizes.train)


def estimated_pflops(cfg: DictConfig, total_params: int, train_n: int) -> float:
    """Upper bound on a run's PFLOPs (`estimate.run_pflops`): its config, `train_n` examples, the official dev sizes."""
    sizes = cfg.task.num_examples
    eval_n = sum(min(sizes[s], cfg.data.max_eval_samples or sizes[s]) for s in cfg.task.eval_splits)
    return run_pflops(total_params, cfg.train.max_seq_length, cfg.train.epochs, train_n, eval_n,
                      trains_whole_model(cfg.method))


# Columns of the plan that `preflight` reads and `lora-repro plan` does not print.
UNPRINTED_COLUMNS = ("run_dir", "trainable_params", "total_params", "unavailable", "config", "train_examples",
                     "recipe_precision")


def plan(overrides: list[str], warn: bool = True) -> pd.DataFrame:
    """One row per run of the sweep: what it is, whether it is done, and its estimated cost.

    A run this machine cannot run is still planned, with its reason in `unavailable` (logged once if `warn`).
    """
    rows, counted, warned, checked = [], {}, set(), set()
    base = sweep_base(overrides)
    resolve = SharedRunConfigs(nodes_have_gpus(base.hydra.launcher))  # judged for the nodes that run the jobs
    for job_key, cfg in compose_jobs(expand_sweep(overrides, base)):
        if job_key not in checked:  # a bad value stops the plan as it would stop the run
            check_settings(cfg)
            checked.add(job_key)
        check_run_settings(cfg)  # the seed differs between jobs that share everything else
        key = (cfg.model.name, OmegaConf.to_yaml(cfg.method), cfg.task.name)
        if key not in counted:
            counted[key] = meta_counts(cfg)
        try:
            resolved = resolve(job_key, cfg)
            run_id = RunId.of(resolved)
            run_dir, status = run_id.run_dir, plan_status(run_id, cfg.paths.reuse_runs_dirs)
            precision = resolved.train.precision
        except Unavailable as err:
            # Its data is not here, or this machine cannot run it (fp16 without a GPU): still worth planning.
            run_dir, status, precision, unavailable = None, "unavailable here", cfg.train.precision, str(err)
            if warn and unavailable not in warned:
                warned.add(unavailable)
                log.warning("%s", err)
        else:
            unavailable = None
        examples = train_examples(cfg)
        rows.append({"task": cfg.task.name, "model": cfg.model.name, "method": cfg.method.name,
                     "method_config": " ".join(job_method_overrides(cfg)), "seed": cfg.seed,
                     "lr": cfg.train.learning_rate, "batch": cfg.train.batch_size, "epochs": cfg.train.epochs,
                     "max_len": cfg.train.max_seq_length, "precision": precision, "init_from": cfg.train.init_from,
                     "method_params": counted[key].method, "status": status,
                     "pflops": estimated_pflops(cfg, counted[key].total, examples), "run_dir": str(run_dir),
                     "train_examples": examples, "recipe_precision": cfg.train.precision,
                     "trainable_params": counted[key].trainable, "total_params": counted[key].total,
                     "unavailable": unavailable, "config": cfg})
    return pd.DataFrame(rows)


def job_method_overrides(cfg: DictConfig) -> list[str]:
    method = OmegaConf.to_container(cfg.method, resolve=True)
    return [f"{k}={v}" for k, v in method.items() if k != "name"]


def plan_main() -> None:
    """`lora-repro plan [overrides]`: print the plan of a sweep and what launching it would cost."""
    try:
        table = plan(sys.argv[1:])
    except HydraException as err:  # a bad override: bad input like any other
        raise UserError(str(err)) from None
    todo = table[~table.status.isin(["completed", "reusable"])]
    with pd.option_context("display.max_rows", None, "display.width", 250, "display.max_colwidth", 40):
        print(table.drop(columns=list(UNPRINTED_COLUMNS)).to_string(index=False))
    print(f"\n{len(table)} runs: {len(table) - len(todo)} completed or reusable (skipped on launch), "
          f"{len(todo)} to run")
    if not todo.empty:
        for line in cost_lines(todo, sweep_base(sys.argv[1:]).hydra.launcher):
            print(line)


def cost_lines(todo: pd.DataFrame, launcher: DictConfig) -> list[str]:
    """What the runs to train cost: CPU hours from the suite's measured runs, GPU hours in the recipe's precision."""
    measured = MeasuredRuns({Path(cfg.paths.results_dir) for cfg in todo.config}
                            | {Path(cfg.paths.runs_dir) for cfg in todo.config})
    estimates = [measured.cpu_seconds(row) for row in todo.itertuples()]
    known = [seconds for seconds, _ in estimates if seconds is not None]
    bases = pd.Series([basis for _, basis in estimates]).value_counts()
    lines = []
    if known:
        hours, parallel = sum(known) / 3600, launcher.get("n_jobs") or 1
        wall = f", about {hours / parallel:.3g} h of wall time {parallel} at a time" if parallel > 1 else ""
        lines.append(f"On this CPU: about {hours:.3g} CPU-hours at one thread per run{wall}, from "
                     f"{len(measured.runs)} measured runs ({'; '.join(f'{n} by {b}' for b, n in bases.items())})")
        if len(known) < len(todo):
            lines.append(f"  ({len(todo) - len(known)} runs have no measured run to scale from and are not counted)")
    if (emulated := todo[(todo.precision == "bf16")]).shape[0] and not cpu_has_native_bf16():
        lines.append(f"  {len(emulated)} of these runs are bf16, which this CPU emulates (no AVX512-BF16 or AMX): "
                     f"about {EMULATED_BF16_SLOWDOWN:g}x their fp32 time. The committed runs' tables rebuild without "
                     "training (`lora-repro report NAME`); train.precision=fp32 trains fp32 runs instead, which are "
                     "other runs (another identity): give them their own paths.runs_dir")
    for precision, runs in todo.groupby("recipe_precision"):
        gpus = ", ".join(f"{h:.3g} {gpu}-hours" for gpu, h in gpu_hours(runs.pflops.sum(), precision).items())
        peak = "fp32 peak (TF32 off, PyTorch's default)" if precision == "fp32" else "fp16/bf16 tensor-core peak"
        lines.append(f"On GPUs, the {len(runs)} {precision} runs: about {gpus}, assuming "
                     f"{ASSUMED_UTILIZATION:.0%} of each card's {peak} (NVIDIA datasheets) and inputs padded to "
                     "max_seq_length - an assumption, not a measurement")
    return lines
