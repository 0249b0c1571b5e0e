"""A sweep that keeps going, says where it is, and sums up at the end (a Hydra callback).

Each job says which run of how many it is and leaves its outcome behind; the sweep ends with a summary
(trained / skipped / failed, with the failures' one-line errors), and `lora-repro train -m` exits with
status 1 if anything failed. Registered in conf/hydra/default.yaml.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

__all__ = ["FAILED_SWEEPS", "OUTCOME_FILE", "SweepSummary", "write_outcome"]

OUTCOME_FILE = "lora_repro_outcome.json"  # in each job's Hydra output folder
TOTAL_FILE = "lora_repro_jobs.json"  # in the sweep folder: how many jobs the sweep has
log = logging.getLogger(__name__)


FAILED_SWEEPS: list[str] = []  # filled in the launching process when a summary found failures (exit status 1)


def write_outcome(status: str, detail: str = "") -> None:
    """Record this job's outcome (`trained`, `skipped` or `failed`) for the sweep's summary."""
    output = Path(HydraConfig.get().runtime.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / OUTCOME_FILE).write_text(json.dumps({
        "status": status, "detail": detail, "overrides": list(HydraConfig.get().overrides.task)}))


class SweepSummary(Callback):
    """Says "run k of N" as each job starts, and sums the sweep up at its end."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:  # noqa: D102 (Hydra hook)
        from lora_repro.training.plan import sweep_jobs

        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        total = len(sweep_jobs(dict(config.hydra.sweeper.get("params") or {}), list(config.hydra.overrides.task)))
        (sweep_dir / TOTAL_FILE).write_text(json.dumps({"jobs": total}))

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:  # noqa: D102 (Hydra hook)
        hydra = HydraConfig.get()
        total_file = Path(hydra.sweep.dir) / TOTAL_FILE
        if hydra.mode is None or not total_file.is_file():
            return
        total = json.loads(total_file.read_text())["jobs"]
        log.info("run %d of %d: %s", hydra.job.num + 1, total, " ".join(hydra.overrides.task))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:  # noqa: D102 (Hydra hook)
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
