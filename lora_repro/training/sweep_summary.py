"""A sweep that keeps going, says where it is, and sums up at the end (a Hydra callback).

Each job says which run of how many it is and leaves its outcome behind; the sweep ends with a summary
(trained / skipped / failed, with the failures' one-line errors), and `lora-repro train -m` exits with
status 1 if anything failed. Registered in conf/hydra/default.yaml.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

__all__ = ["FAILED_SWEEPS", "OUTCOME_ENV", "OUTCOME_FILE", "SweepSummary", "write_outcome"]

OUTCOME_FILE = "lora_repro_outcome.json"  # in each job's Hydra output folder
# Set by a job that relaunched its run under torchrun (`training.spawn`): the outcome goes to that job's folder.
OUTCOME_ENV = "LORA_REPRO_OUTCOME_FILE"
TOTAL_FILE = "lora_repro_jobs.json"  # in the sweep folder: how many jobs the sweep has
log = logging.getLogger(__name__)


FAILED_SWEEPS: list[str] = []  # filled in the launching process when a summary found failures (exit status 1)


def outcome_path() -> Path | None:
    """Where this job's outcome goes: its own folder, or (a run relaunched under torchrun) its launcher's."""
    relaunched = os.environ.get(OUTCOME_ENV)
    if relaunched:  # only the main process of the distributed run reports
        return Path(relaunched) if int(os.environ.get("RANK", "0")) == 0 else None
    return Path(HydraConfig.get().runtime.output_dir) / OUTCOME_FILE


def write_outcome(status: str, detail: str = "", value: float = math.nan) -> None:
    """Record this job's outcome (`trained`, `skipped` or `failed`) and headline value for the sweep's summary."""
    path = outcome_path()
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"status": status, "detail": detail, "value": value,
                                "overrides": list(HydraConfig.get().overrides.task)}))


def emulates_bf16() -> bool:
    """Whether bf16 runs here would be emulated: a CPU-only machine without AVX512-BF16 or AMX."""
    import torch

    from lora_repro.hardware import cpu_has_native_bf16

    return not torch.cuda.is_available() and not cpu_has_native_bf16()


def duration(seconds: float) -> str:
    """`seconds` as a person reads it: 45 s, 12 min, 3.4 h."""
    if not math.isfinite(seconds):
        return "unknown"
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400 else \
        f"{seconds / 3600:.1f} h"


class SweepSummary(Callback):
    """Says "run k of N" as each job starts, and sums the sweep up at its end."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:  # noqa: D102 (Hydra hook)
        from lora_repro.training.plan import sweep_jobs

        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        total = len(sweep_jobs(dict(config.hydra.sweeper.get("params") or {}), list(config.hydra.overrides.task)))
        (sweep_dir / TOTAL_FILE).write_text(json.dumps({"jobs": total, "started": time.time()}))
        if config.train.precision == "bf16" and emulates_bf16():
            log.warning("this sweep's runs are bf16, which this CPU emulates (no AVX512-BF16 or AMX): a run that "
                        "trains here takes about 50x its fp32 time. Completed runs are skipped; `lora-repro plan` "
                        "with these arguments lists the rest and their cost, and `lora-repro report NAME` rebuilds "
                        "committed tables without training")

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:  # noqa: D102 (Hydra hook)
        hydra = HydraConfig.get()
        total_file = Path(hydra.sweep.dir) / TOTAL_FILE
        if hydra.mode is None or not total_file.is_file():
            return
        sweep = json.loads(total_file.read_text())
        total = sweep["jobs"]
        # The pace of the runs that ended so far (skipped ones included: they cost what they cost).
        ended = len(list(Path(hydra.sweep.dir).glob(f"*/{OUTCOME_FILE}")))
        elapsed = time.time() - sweep.get("started", time.time())
        eta = f", ETA {duration(elapsed / ended * (total - ended))} at the pace so far" if ended and elapsed else ""
        log.info("run %d of %d%s: %s", hydra.job.num + 1, total, eta, " ".join(hydra.overrides.task))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:  # noqa: D102 (Hydra hook)
        from lora_repro.training.status import JOBS_FILE

        if (Path(config.hydra.sweep.dir) / JOBS_FILE).is_file():  # submitted to SLURM: `lora-repro status` sums up
            return
        outcomes = [json.loads(f.read_text()) for f in sorted(Path(config.hydra.sweep.dir).glob(f"*/{OUTCOME_FILE}"))]
        counts = {s: sum(o["status"] == s for o in outcomes) for s in ("trained", "skipped", "failed")}
        print(f"sweep done: {counts['trained']} trained, {counts['skipped']} skipped (already done or running "
              f"elsewhere), {counts['failed']} failed")
        for outcome in outcomes:
            if outcome["status"] == "failed":
                print(f"  failed: {' '.join(outcome['overrides'])}: {outcome['detail']}")
        if counts["failed"]:  # Hydra turns a callback's exception into a warning, so the exit status is main's
            FAILED_SWEEPS.append(str(config.hydra.sweep.dir))
            print("the other runs are recorded; rerunning the sweep runs only what is missing")
