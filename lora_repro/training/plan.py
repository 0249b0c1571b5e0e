"""Plan a sweep before launching it: `lora-repro plan experiment=table2_roberta_base [overrides]`.

Expands the sweep exactly as Hydra's basic sweeper does (the experiment's `hydra.sweeper.params`,
then the command line), composes every job's config, and lists each run with its hyperparameters,
whether its record is already `completed` (so a launch would skip it), and a rough cost.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from hydra import compose
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from lora_repro.config import compose_config, config_context
from lora_repro.errors import Unavailable, UserError
from lora_repro.models import meta_counts
from lora_repro.records.identity import RunId, run_config
from lora_repro.records.record import RECORD_FILE, read_record, reusable_run
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


def expand_sweep(overrides: list[str]) -> list[list[str]]:
    """Every job's override list, in the order Hydra's basic sweeper launches them."""
    return sweep_jobs(sweep_base(overrides).hydra.sweeper.get("params") or {}, overrides)


def compose_jobs(jobs: list[list[str]]) -> list[DictConfig]:
    """Every job's config; jobs that differ only in `seed` share one composition.

    Hydra composes a few configs per second, and a paper table has hundreds of jobs.
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
            configs.append(cfg)
    return configs


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


def matmul_flops_per_second() -> float:
    """This device's dense fp32 matmul rate, measured for about half a second."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    a = torch.randn(1024, 1024, device=device)
    torch.mm(a, a)
    started, n = time.perf_counter(), 0
    while time.perf_counter() - started < 0.5:
        torch.mm(a, a)
        n += 1
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * 1024**3 * n / (time.perf_counter() - started)


def estimated_flops(cfg: DictConfig, total_params: int) -> float:
    """Upper bound on a run's FLOPs: inputs padded to max_seq_length, official GLUE split sizes.

    Training costs about 6 x params per token when every weight gets a gradient and about 4 x when
    the backbone is frozen (no weight gradients); evaluation 2 x params per token.
    """
    sizes = cfg.task.num_examples
    train_n = min(sizes.train, cfg.data.max_train_samples or sizes.train)
    eval_n = sum(min(sizes[s], cfg.data.max_eval_samples or sizes[s]) for s in cfg.task.eval_splits)
    per_token = 6 if cfg.method.name == "full_ft" else 4
    tokens = cfg.train.max_seq_length * cfg.train.epochs
    return float(total_params) * tokens * (per_token * train_n + 2 * eval_n)


# Columns of the plan that `preflight` reads and `lora-repro plan` does not print.
UNPRINTED_COLUMNS = ("run_dir", "trainable_params", "unavailable", "config")


def plan(overrides: list[str], warn: bool = True) -> pd.DataFrame:
    """One row per run of the sweep: what it is, whether it is done, and its estimated cost.

    A run this machine cannot run is still planned, with its reason in `unavailable` (logged once if `warn`).
    """
    rows, counted, warned = [], {}, set()
    for cfg in compose_jobs(expand_sweep(overrides)):
        check_settings(cfg)  # a bad value stops the plan as it would stop the run
        key = (cfg.model.name, OmegaConf.to_yaml(cfg.method), cfg.task.name)
        if key not in counted:
            counted[key] = meta_counts(cfg)
        try:
            resolved = run_config(cfg)
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
        rows.append({"task": cfg.task.name, "model": cfg.model.name, "method": cfg.method.name,
                     "method_config": " ".join(job_method_overrides(cfg)), "seed": cfg.seed,
                     "lr": cfg.train.learning_rate, "batch": cfg.train.batch_size, "epochs": cfg.train.epochs,
                     "max_len": cfg.train.max_seq_length, "precision": precision, "init_from": cfg.train.init_from,
                     "method_params": counted[key].method, "status": status,
                     "pflops": estimated_flops(cfg, counted[key].total) / 1e15, "run_dir": str(run_dir),
                     "trainable_params": counted[key].trainable, "unavailable": unavailable, "config": cfg})
    return pd.DataFrame(rows)


def job_method_overrides(cfg: DictConfig) -> list[str]:
    method = OmegaConf.to_container(cfg.method, resolve=True)
    return [f"{k}={v}" for k, v in method.items() if k not in ("name", "learning_rate")]


# GPU hours are quoted for these cards at an assumed 40% of their dense bf16 tensor-core peak (NVIDIA's
# A100 and H100 SXM datasheets: 312 and 989 TFLOP/s); fine-tuning encoders at batch 16-32 typically reaches
# 30-50%. An assumption, not a measurement: the plan says so.
GPU_PEAK_TFLOPS = {"A100": 312.0, "H100": 989.0}
ASSUMED_UTILIZATION = 0.4


def gpu_hours(pflops: float) -> dict[str, float]:
    """Hours of one GPU of each kind for `pflops` PFLOP at the assumed utilization."""
    return {gpu: pflops * 1e15 / (peak * 1e12 * ASSUMED_UTILIZATION) / 3600 for gpu, peak in GPU_PEAK_TFLOPS.items()}


def plan_main() -> None:
    """`lora-repro plan [overrides]`: print the plan of a sweep and what launching it would cost."""
    try:
        table = plan(sys.argv[1:])
    except HydraException as err:  # a bad override: bad input like any other
        raise UserError(str(err)) from None
    todo = table[~table.status.isin(["completed", "reusable"])]
    with pd.option_context("display.max_rows", None, "display.width", 250, "display.max_colwidth", 40):
        print(table.drop(columns=list(UNPRINTED_COLUMNS)).to_string(index=False))
    rate = matmul_flops_per_second()
    hours = todo.pflops.sum() * 1e15 / rate / 3600
    device = "GPU" if torch.cuda.is_available() else "CPU"
    print(f"\n{len(table)} runs: {len(table) - len(todo)} completed or reusable (skipped on launch), "
          f"{len(todo)} to run; at most {todo.pflops.sum():.3g} PFLOP, about {hours:.3g} h on this {device} "
          f"at its measured matmul rate of {rate / 1e9:.0f} GFLOP/s (an upper bound: inputs are padded per batch, "
          "not to max_seq_length)")
    gpus = ", ".join(f"{h:.3g} {gpu}-hours" for gpu, h in gpu_hours(todo.pflops.sum()).items())
    print(f"On GPUs: about {gpus}, assuming {ASSUMED_UTILIZATION:.0%} of each card's dense bf16 peak "
          f"({', '.join(f'{g} {t:g} TFLOP/s' for g, t in GPU_PEAK_TFLOPS.items())}; NVIDIA datasheets) - an "
          "assumption, not a measurement")
