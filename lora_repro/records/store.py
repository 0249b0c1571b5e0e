"""The result store: every run record under some folders, as one pandas table (one row per record).

Reports are built from this table only. Each row carries what identifies a table cell (task, model,
setup, the method's paper-style label and row key, seed), the hyperparameters, the parameter counts
and the best-epoch metrics. `family` hashes the run's config without its seed: records of one cell
that differ in anything but the seed have different families, so a report can flag them instead of
averaging them.

Records that are `running` or `failed` stay in the table with their status; they are never results.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from lora_repro.config import CONF_DIR
from lora_repro.errors import UserError
from lora_repro.methods.registry import method_label, method_row_key
from lora_repro.records.record import RECORD_FILE, read_record
from lora_repro.records.schema import CompletedRecord, Record

__all__ = ["default_runs_dir", "load_predictions", "load_records"]

# The columns of the store, in order; `train.*`, `method.*` and `metric.*` columns follow them.
COLUMNS = ["status", "task", "model", "method", "label", "row_key", "setup", "seed", "config_hash", "family",
           "params_method", "params_method_final", "params_trainable", "params_total", "headline_metric",
           "selection", "selection_metric", "selection_value", "best", "best_epoch", "report_best",
           "report_best_epoch", "final", "train_seconds", "path", "predictions", "epoch_logits"]


def default_runs_dir() -> Path:
    """`paths.runs_dir` of conf/paths/default.yaml (the folder `lora-repro train` writes to)."""
    paths = OmegaConf.create({"paths": OmegaConf.load(CONF_DIR / "paths" / "default.yaml")})
    return Path(paths.paths.runs_dir)


def family_hash(hashed_config: Mapping[str, Any]) -> str:
    """A hash of everything that decides a run's result except its seed."""
    rest = {key: value for key, value in hashed_config.items() if key != "seed"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, default=str).encode()).hexdigest()[:12]


def flat(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """`{prefix.key: value}`, lists as comma-joined text so that every column stays hashable."""
    return {f"{prefix}.{key}": ",".join(map(str, value)) if isinstance(value, list) else value
            for key, value in values.items()}


def record_row(record: Record, path: Path) -> dict[str, Any]:
    """One store row from one record; the metric columns are empty unless it is `completed`."""
    config = record.run_info.config
    method = config["method"]
    row = dict.fromkeys(COLUMNS) | {
        "status": record.status, "task": config["task"]["name"], "model": config["model"]["name"],
        "method": method["name"], "label": method_label(method), "row_key": method_row_key(method),
        "setup": config["setup"], "seed": config["seed"], "config_hash": record.config_hash,
        "family": family_hash(record.run_info.hashed_config),
        "selection": config["data"].get("selection", "none"),
        "path": str(path), **flat("train", config["train"]), **flat("method", method),
    }
    if isinstance(record, CompletedRecord):
        row |= completed_columns(record, Path(path).parent)
    return row


def completed_columns(record: CompletedRecord, folder: Path) -> dict[str, Any]:
    """The columns only a completed run fills: parameter counts, the reported values, costs and files."""
    info, files = record.train_info, record.artifacts
    best = info.best
    # The paper's convention: the epoch the report split likes best (the same as `best` without a selection split).
    report_best = info.report_best or best
    return {
        "params_method": info.params.method, "params_method_final": info.params.method_final,
        "params_trainable": info.params.trainable,
        "params_total": info.params.total, "headline_metric": info.headline_metric,
        # What chose the reported epoch (and what a search compares): the selection split's value there.
        "selection_metric": info.chosen_by, "selection_value": best.metrics.get(info.chosen_by),
        "best": best.value, "best_epoch": best.epoch,
        "report_best": report_best.value, "report_best_epoch": report_best.epoch,
        "final": info.final.value, "train_seconds": info.train_seconds,
        "predictions": best_predictions_file(record, folder),
        "epoch_logits": str(folder / files.epoch_logits) if files.epoch_logits else None,
        **flat("metric", best.metrics),
    }


def best_predictions_file(record: CompletedRecord, folder: Path) -> str | None:
    """The per-example dev predictions behind the record's best value (the headline split, best epoch).

    Records written before best-epoch predictions were kept have only the final epoch's: those are
    returned only when the final epoch was the best one.
    """
    info, files = record.train_info, record.artifacts
    split = info.headline_metric.partition("/")[0]
    chosen = files.best_predictions
    if chosen is None and info.best.epoch == info.final.epoch:
        chosen = files.predictions
    name = (chosen or {}).get(split)
    return str(folder / name) if name else None


def load_epoch_logits(file: str | Path) -> dict[str, np.ndarray]:
    """A run's every-epoch logits (`epoch_logits.npz`: `<split>/epoch<k>`, `<split>/labels`, `<split>/idx`)."""
    try:
        with np.load(file) as arrays:
            return {key: arrays[key] for key in arrays.files}
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read the epoch logits {file}: {err}; rerun that run (delete its folder)") from None


def load_predictions(file: str | Path) -> pd.DataFrame:
    """A run's per-example dev predictions (idx, label, prediction, logit_k), as `lora-repro train` wrote them."""
    try:
        return pd.read_csv(file)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read the predictions {file}: {err}; rerun that run (delete its folder)") from None


def record_files(paths: Sequence[Path]) -> list[Path]:
    """Every record file under `paths`, sorted, each once (a missing folder is a `UserError`)."""
    files: dict[Path, Path] = {}
    for folder in map(Path, paths):
        if not folder.is_dir():
            raise UserError(f"no run folder {folder}; pass --runs with a folder `lora-repro train` wrote to")
        # os.walk lists a record.json that is a broken or looping link, which rglob passes over in silence (and one
        # that is a folder, among the folders): each is named when it is read.
        found = sorted(Path(top) / RECORD_FILE for top, dirs, names in os.walk(folder)
                       if RECORD_FILE in names or RECORD_FILE in dirs)
        for file in found:
            try:
                key = file.resolve(strict=True)
            except (OSError, RuntimeError) as err:
                raise UserError(f"cannot read run record {file} ({type(err).__name__}: a broken or looping link?); "
                                "remove or fix it") from None
            files[key] = file  # overlapping folders (runs/ and runs/rte/) must not count a run twice
    return list(files.values())


def load_records(paths: Sequence[Path] | None = None) -> pd.DataFrame:
    """Every run record under `paths`, one row per record.

    Args:
        paths: Folders searched recursively for `record.json`; None = `default_runs_dir()`
            (`experiments/runs`).

    Returns:
        A table with the columns of `COLUMNS`, then `train.<key>` (hyperparameters), `method.<key>`
        (the method config) and `metric.<split>/<name>` (every metric of the best epoch). Rows of
        `running` and `failed` records have no metrics.

    Raises:
        UserError: A folder that does not exist, or a record that is broken or incomplete (the
            message names the file and says to delete that run folder and rerun it).
    """
    rows = []
    for file in record_files([default_runs_dir()] if paths is None else paths):
        record = read_record(file.parent)
        try:
            rows.append(record_row(record, file))
        except (KeyError, TypeError, AttributeError) as err:  # a config without a section every run has
            raise UserError(f"incomplete run record {file} (no {err}); delete the folder {file.parent} "
                            "and rerun that run") from None
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=COLUMNS)
    extra = sorted(c for c in table.columns if c not in COLUMNS)
    return table[COLUMNS + extra].reset_index(drop=True)
