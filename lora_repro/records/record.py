"""The run record: one self-describing folder per run, named after its identity (`records.identity`).

Layout of `<runs_dir>/<task>/<model>/<method>/s<seed>-<hash>/`:
    record.json                   status, resolved config, metrics per epoch, counts, costs, versions
    trained_weights.safetensors   every parameter that trained (method + head), final epoch; the full
                                  model only for full_ft with train.save_full_model
    trained_weights_best.safetensors   the same at the best epoch, when that is not the final one
    predictions_<split>.csv       one row per dev example: idx, label, prediction (+ logits)

Every file is written to a temporary name and renamed into place, and `record.json` says
`completed` only after everything else is on disk, so a killed run never looks finished.

`Record` is the schema of `record.json` (version `SCHEMA_VERSION`): it is checked when a record is
written and when one is read, so every reader (the store and its reports, `eval`, `init_from`, `analyze`)
can rely on the fields a record of its status must have.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from omegaconf import DictConfig, OmegaConf
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lora_repro.distributed import is_main_process
from lora_repro.errors import UserError
from lora_repro.records.identity import RunId

RECORD_FILE = "record.json"
LOCK_FILE = ".lock"
WEIGHTS_FILE = "trained_weights.safetensors"
BEST_WEIGHTS_FILE = "trained_weights_best.safetensors"  # the best epoch's, when it is not the final one
# LoRA's A and B of the final epoch in fp16: small enough to commit, all `lora-repro analyze` needs.
FACTORS_FILE = "lora_factors.safetensors"
# Every epoch's logits on every eval split (selection and report): the bootstrap re-selects the epoch from them.
EPOCH_LOGITS_FILE = "epoch_logits.npz"
SCHEMA_VERSION = 1
RUNNING, COMPLETED, FAILED = "running", "completed", "failed"

PACKAGES = ("torch", "transformers", "peft", "accelerate", "datasets", "hydra-core", "safetensors",
            "scikit-learn", "scipy", "numpy", "pandas", "lora-repro")


@contextlib.contextmanager
def claim(run_dir: Path) -> Iterator[bool]:
    """Hold the run folder's lock while the block runs; yields False if another process holds it.

    Two launches of one sweep then split its runs between them instead of training each twice, and a
    record is never overwritten by a second process. Only the main process of a distributed launch
    takes it (the others write nothing). The lock goes with the process, so a killed run leaves none.
    """
    if not is_main_process():
        yield True
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK_FILE, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Let `write(tmp_path)` produce a file (e.g. a safetensors save), then rename it onto `path`.

    The temporary name is unique and removed on failure; the file gets the usual permissions
    (0666 less the umask), whatever the writer used.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


class EpochValue(BaseModel):
    """The headline value of one epoch and every metric of that epoch."""

    epoch: int
    value: float
    metrics: dict[str, float]


class TrainInfo(BaseModel, extra="allow"):
    """What a completed run measured (more fields, e.g. costs, are kept as they are)."""

    headline_metric: str = Field(pattern=r"^[^/]+/[^/]+$")  # <split>/<metric>, e.g. dev/accuracy
    final: EpochValue
    best: EpochValue  # the reported epoch: chosen on the selection split (on the report split without one)
    report_best: EpochValue | None = None  # the paper's convention: the epoch the report split likes best
    selection_metric: str | None = None  # absent in records from before the selection split
    epochs: list[dict[str, Any]]
    params: dict[str, int]


class Artifacts(BaseModel, extra="allow"):
    """The files a completed run left beside its record (names relative to the run folder)."""

    predictions: dict[str, str]
    best_predictions: dict[str, str] | None = None  # absent in records older than best-epoch predictions
    weights: str                                       # "" when none were kept (full_ft by default)
    best_weights: str | None = None
    lora_factors: str | None = None
    epoch_logits: str | None = None  # absent in records from before per-epoch logits were kept


class RunInfo(BaseModel, extra="allow"):
    """Where the run came from: its resolved and hashed config, code version, machine and times."""

    config: dict[str, Any]
    hashed_config: dict[str, Any]
    started_at: str
    finished_at: str | None


class Record(BaseModel, extra="allow"):
    """The schema of `record.json`: the fields every record has, and those its status requires."""

    model_config = ConfigDict(populate_by_name=True)
    schema_version: Literal[1] = Field(alias="schema")
    status: Literal["running", "completed", "failed"]
    config_hash: str = Field(pattern=r"^[0-9a-f]{12}$")
    run_info: RunInfo
    train_info: dict[str, Any]
    meta_info: dict[str, Any]
    artifacts: dict[str, Any]


class Failure(BaseModel, extra="allow"):
    """What a failed run says: the one-line error."""

    error: str


# The parts a record's status requires beyond `Record` itself.
STATUS_PARTS: dict[str, dict[str, type[BaseModel]]] = {
    COMPLETED: {"train_info": TrainInfo, "artifacts": Artifacts}, FAILED: {"train_info": Failure}, RUNNING: {}}


def check_record(payload: Any, where: Path) -> dict[str, Any]:
    """`payload` if it fits `Record` and its status's parts, else a `UserError` naming the file and field."""
    status = _validated(Record, payload, "", where).status
    for key, model in STATUS_PARTS[status].items():
        _validated(model, payload[key], f"{key}.", where)
    return payload


def _validated(model: type[BaseModel], value: Any, prefix: str, where: Path) -> Any:
    try:
        return model.model_validate(value)
    except ValidationError as err:
        first = err.errors()[0]
        field = prefix + ".".join(str(part) for part in first["loc"]) if first["loc"] else prefix or "the record"
        raise UserError(f"{where} is not a valid lora-repro run record (schema {SCHEMA_VERSION}): {field}: "
                        f"{first['msg']}; delete that run folder and rerun it") from None


def write_json(path: Path, payload: dict[str, Any]) -> None:
    text = json.dumps(payload, indent=2, default=str) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))


def read_record(run_dir: Path) -> dict[str, Any]:
    """Read `run_dir/record.json`; a missing or broken file is a `UserError` that names it."""
    path = Path(run_dir) / RECORD_FILE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"no run record at {path}; pass a run folder written by `lora-repro train`") from None
    except json.JSONDecodeError as err:
        raise UserError(f"broken run record {path}: {err}; delete the folder and rerun that run") from None
    return check_record(record, path)


def is_completed(run_dir: Path) -> bool:
    """True when `run_dir` holds a readable record whose status is `completed`."""
    try:
        return read_record(run_dir)["status"] == COMPLETED
    except UserError:
        return False


def reusable_run(run: RunId, reuse_runs_dirs: Sequence[str | Path]) -> Path | None:
    """A completed run of the same identity in one of `reuse_runs_dirs` (`paths.reuse_runs_dirs`), if any.

    One experiment can build on another's runs (the mini's seed-0 runs are the learning-rate search's
    winners); the hash guarantees that the run is the one asked for.
    """
    for folder in reuse_runs_dirs:
        candidate = Path(folder) / run.relative_dir
        if candidate.resolve() != run.run_dir.resolve() and is_completed(candidate):
            return candidate
    return None


def completed_value(run: RunId, reuse_runs_dirs: Sequence[str | Path] = ()) -> float | None:
    """The headline value of `run` if its record is already `completed` (resume), else None.

    A completed copy in `reuse_runs_dirs` is copied into this run's folder first, so every
    experiment's folder holds all of its records.
    """
    run_dir = run.run_dir
    source = None if is_completed(run_dir) or not is_main_process() else reusable_run(run, reuse_runs_dirs)
    if source is not None:
        tmp = run_dir.with_name(f".{run_dir.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("logs"))
        shutil.rmtree(run_dir, ignore_errors=True)  # a failed or killed attempt of the same run
        os.replace(tmp, run_dir)
    return float(read_record(run_dir)["train_info"]["best"]["value"]) if is_completed(run_dir) else None


def git_commit() -> str | None:
    """The project's git commit (with `+dirty` when the work tree has changes), if it is a checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunRecord:
    """The record of one run, written at start (`running`) and at the end (`completed`/`failed`)."""

    run_dir: Path
    payload: dict[str, Any]

    @classmethod
    def start(cls, cfg: DictConfig, run: RunId, device: str) -> RunRecord:
        """Write a `running` record for the run config `cfg` of `run` (after all input has been validated)."""
        payload = {
            "schema": SCHEMA_VERSION,
            "status": RUNNING,
            "config_hash": run.hash,
            "run_info": {
                "config": OmegaConf.to_container(cfg, resolve=True),
                "hashed_config": run.hashed_config,
                "git_commit": git_commit(),
                "device": device,
                "host": platform.node(),
                "started_at": now(),
                "finished_at": None,
            },
            "train_info": {},
            "meta_info": {"packages": package_versions()},
            "artifacts": {},
        }
        record = cls(run.run_dir, payload)
        record.save()
        return record

    def save(self) -> None:
        path = self.run_dir / RECORD_FILE
        write_json(path, check_record(self.payload, path))

    def finish(self, status: str, train_info: dict[str, Any], artifacts: dict[str, Any]) -> None:
        self.payload.update(status=status, train_info=train_info, artifacts=artifacts)
        self.payload["run_info"]["finished_at"] = now()
        self.save()
