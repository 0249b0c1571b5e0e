"""The schema of `record.json` (version `SCHEMA_VERSION`): the typed objects writers build and readers receive.

A record is one of `RunningRecord`, `CompletedRecord` and `FailedRecord`, told apart by its `status`. The
status decides what `train_info` and `artifacts` must hold: a completed run's metrics and files, a failed
run's one-line error. Every number a completed run reports is finite: a run whose loss or metric went NaN
fails instead (`training.run.check_finite`), and the schema refuses such a record even so.
Records are checked when written and when read, so readers use fields (`record.train_info.best.value`),
never string keys. Fields a later version added are optional, so older records still read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lora_repro.errors import UserError

__all__ = ["COMPLETED", "FAILED", "RUNNING", "SCHEMA_VERSION", "Artifacts", "CompletedRecord", "EpochValue",
           "FailedRecord", "Failure", "ParamCounts", "Record", "RunInfo", "RunningRecord", "SelectionInfo",
           "TrainInfo", "parse_record", "record_text"]

SCHEMA_VERSION = 1
RUNNING, COMPLETED, FAILED = "running", "completed", "failed"

Finite = Annotated[float, Field(allow_inf_nan=False)]


class EpochValue(BaseModel):
    """The headline value of one epoch and every metric of that epoch."""

    epoch: int
    value: Finite
    metrics: dict[str, Finite]


class SelectionInfo(BaseModel):
    """How the run chose its reported epoch: the protocol and the rows of each eval split."""

    protocol: str
    rows: dict[str, int]


class ParamCounts(BaseModel):
    """Parameters the method adds or unfreezes, all that train (method + head), and the model's total."""

    method: int
    trainable: int
    total: int
    # A method that cuts its ranks while training (AdaLoRA): the parameters its final ranks use, and those ranks.
    method_final: int | None = None
    final_ranks: dict[str, int] | None = None


class TrainInfo(BaseModel, extra="allow"):
    """What a completed run measured. Fields added after schema 1 first shipped are optional."""

    headline_metric: str = Field(pattern=r"^[^/]+/[^/]+$")  # <split>/<metric>, e.g. dev/accuracy
    selection_metric: str | None = None  # absent in records from before the selection split
    final: EpochValue
    best: EpochValue  # the reported epoch: chosen on the selection split (on the report split without one)
    report_best: EpochValue | None = None  # the paper's convention: the epoch the report split likes best
    selection: SelectionInfo | None = None
    epochs: list[dict[str, Any]]
    params: ParamCounts
    train_examples: int | None = None
    eval_examples: dict[str, int] | None = None
    train_seconds: Finite | None = None  # every attempt of a resumed run
    train_examples_per_second: Finite | None = None
    train_loss: Finite | None = None
    peak_memory_bytes: int | None = None
    batch: dict[str, Any] | None = None

    @property
    def chosen_by(self) -> str:
        """The metric that picked the reported epoch (the headline itself in records without a selection split)."""
        return self.selection_metric or self.headline_metric


class Failure(BaseModel, extra="allow"):
    """What a failed run says: the one-line error."""

    error: str


class Artifacts(BaseModel, extra="allow"):
    """The files a completed run left beside its record (names relative to the run folder)."""

    predictions: dict[str, str]
    best_predictions: dict[str, str] | None = None  # absent in records older than best-epoch predictions
    weights: str  # "" when none were kept (full_ft by default)
    best_weights: str | None = None
    lora_factors: str | None = None
    epoch_logits: str | None = None  # absent in records from before per-epoch logits were kept


class RunInfo(BaseModel, extra="allow"):
    """Where the run came from: its resolved and hashed config, code version, machine and times."""

    config: dict[str, Any]
    hashed_config: dict[str, Any]
    git_commit: str | None = None
    device: str | None = None
    host: str | None = None
    started_at: str
    finished_at: str | None = None


class _Record(BaseModel, extra="allow"):
    model_config = ConfigDict(populate_by_name=True)
    schema_version: Literal[1] = Field(SCHEMA_VERSION, alias="schema")
    status: str
    config_hash: str = Field(pattern=r"^[0-9a-f]{12}$")
    run_info: RunInfo
    meta_info: dict[str, Any] = Field(default_factory=dict)


class RunningRecord(_Record):
    """A run that started and has not ended (or was killed: nothing else could be said)."""

    status: Literal["running"] = RUNNING
    train_info: dict[str, Any] = Field(default_factory=dict)
    artifacts: dict[str, Any] = Field(default_factory=dict)


class CompletedRecord(_Record):
    """A finished run: its metrics per epoch, the reported ones, its costs and files."""

    status: Literal["completed"] = COMPLETED
    train_info: TrainInfo
    artifacts: Artifacts


class FailedRecord(_Record):
    """A run that raised: the error in one line."""

    status: Literal["failed"] = FAILED
    train_info: Failure
    artifacts: dict[str, Any] = Field(default_factory=dict)


Record = RunningRecord | CompletedRecord | FailedRecord
BY_STATUS: dict[str, type[_Record]] = {RUNNING: RunningRecord, COMPLETED: CompletedRecord, FAILED: FailedRecord}


def parse_record(payload: Any, where: Path) -> Record:
    """The record `payload` (parsed JSON) describes; a `UserError` naming the file and the first bad field."""
    model = BY_STATUS.get(payload.get("status")) if isinstance(payload, dict) else None
    if model is None:
        raise _invalid(where, "status", f"not one of {', '.join(BY_STATUS)}")
    try:
        return model.model_validate(payload)
    except ValidationError as err:
        first = err.errors()[0]
        raise _invalid(where, ".".join(map(str, first["loc"])) or "the record", first["msg"]) from None


def record_text(record: Record, where: Path) -> str:
    """`record` as the JSON written to `where`, checked against the schema on the way out as on the way in."""
    payload = record.model_dump(mode="json", by_alias=True)
    parse_record(payload, where)  # what was built in code gets the same check as what is read from disk
    return json.dumps(payload, indent=2) + "\n"


def _invalid(where: Path, field: str, why: str) -> UserError:
    return UserError(f"{where} is not a valid lora-repro run record (schema {SCHEMA_VERSION}): {field}: {why}; "
                     "delete that run folder and rerun it")
