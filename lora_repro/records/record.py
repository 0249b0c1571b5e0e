"""The run folder: one self-describing folder per run, named after its identity (`records.identity`).

Layout of `<runs_dir>/<task>/<model>/<method>/s<seed>-<hash>/`:
    record.json                   status, resolved config, metrics per epoch, counts, costs, versions
                                  (schema: `records.schema`)
    trained_weights.safetensors   every parameter that trained (method + head), final epoch; the full
                                  model only for full_ft with train.save_full_model
    trained_weights_best.safetensors   the same at the best epoch, when that is not the final one
    predictions_<split>.csv       one row per reported dev example: idx, label, prediction (+ logits)
    epoch_logits.npz              every epoch's logits on every eval split (selection and report)

Every file is written atomically (`records.io`), and `record.json` says `completed` only after everything
else is on disk, so a killed run never looks finished.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lora_repro.distributed import is_main_process
from lora_repro.errors import UserError
from lora_repro.records.identity import RunId, hashed_of, identity_digest, run_folder_name
from lora_repro.records.io import atomic_write
from lora_repro.records.provenance import git_commit, now, package_versions
from lora_repro.records.schema import (
    SCHEMA_VERSION,
    Artifacts,
    CompletedRecord,
    Failure,
    Record,
    RunInfo,
    RunningRecord,
    TrainInfo,
    parse_record,
    record_text,
)

RECORD_FILE = "record.json"
WEIGHTS_FILE = "trained_weights.safetensors"
BEST_WEIGHTS_FILE = "trained_weights_best.safetensors"  # the best epoch's, when it is not the final one
# LoRA's A and B of the final epoch in fp16: small enough to commit, all `lora-repro analyze` needs.
FACTORS_FILE = "lora_factors.safetensors"
# Every epoch's logits on every eval split (selection and report): the bootstrap re-selects the epoch from them.
EPOCH_LOGITS_FILE = "epoch_logits.npz"


def write_record(run_dir: Path, record: Record) -> None:
    """Write `record` as `run_dir/record.json`, atomically, after checking it against the schema."""
    path = run_dir / RECORD_FILE
    text = record_text(record, path)
    atomic_write(path, lambda tmp: tmp.write_text(text))


class UntrustedRecord(UserError):
    """A record that is not what it says: never taken as done, reported, or overwritten.

    Its identity does not follow from its own config (edited by hand, or written by another version), or a newer
    lora-repro wrote it.
    """


class NewerRecord(UntrustedRecord):
    """A record written by a newer lora-repro (a schema this version does not read)."""


def read_record(run_dir: Path, verify: bool = True) -> Record:
    """The record in `run_dir`, verified; a missing, unreadable, broken or invalid file is a `UserError` naming it.

    `verify=False` skips the identity check: for `lora-repro migrate`, whose job is to give older records theirs.

    Raises:
        UntrustedRecord: The record's identity, recomputed from its own config, is not its `config_hash` and folder
            name, or its schema is newer than this version reads.
    """
    path = Path(run_dir) / RECORD_FILE
    try:
        payload = json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError):
        raise UserError(f"no run record at {path}; pass a run folder written by `lora-repro train`") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise UserError(f"broken run record {path}: {type(err).__name__}; delete the folder and rerun that run"
                        ) from None
    except OSError as err:  # a folder, a symlink loop, no permission
        raise UserError(f"cannot read run record {path} ({err.strerror or err}); delete or fix that path") from None
    schema = payload.get("schema") if isinstance(payload, dict) else None
    if isinstance(schema, int) and schema > SCHEMA_VERSION:
        raise NewerRecord(f"run record {path} was written by a newer lora-repro (schema {schema}; this one reads "
                              f"{SCHEMA_VERSION}); upgrade lora-repro to use it (it is never overwritten)")
    try:
        record = parse_record(payload, path)
    except RecursionError:
        raise UserError(f"broken run record {path}: nested too deeply; delete the folder and rerun that run") from None
    if verify:
        check_identity(record, path)
    return record


def check_identity(record: Record, path: Path) -> None:
    """Raise `UntrustedRecord` unless the record's identity, recomputed from its own config, names it.

    Catches an edited config, `config_hash` or folder name, and a record of another identity version. Not a metric
    edited alone (metrics are not part of the identity): the report checks those against the stored predictions.
    """
    config = record.run_info.config
    try:
        files = (record.run_info.hashed_config.get("data") or {}).get("files")
        digest = identity_digest(hashed_of(config, files))
        folder = run_folder_name(int(config["seed"]), digest)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise UntrustedRecord(f"run record {path} lacks part of its config ({type(err).__name__}: {err}); it was "
                              "edited by hand or written by another version: delete the folder and rerun that run"
                              ) from None
    if record.config_hash != digest or path.parent.name != folder:
        raise UntrustedRecord(f"run record {path} does not match its own config: its identity is {digest}, its "
                              f"config_hash says {record.config_hash} and its folder {path.parent.name}. It was "
                              "edited by hand or written by another version (older records: `lora-repro migrate`); "
                              "delete the folder and rerun that run (train.force=true)")


def completed_record(run_dir: Path) -> CompletedRecord | None:
    """The record in `run_dir` if it is readable and `completed`, else None.

    Raises:
        UntrustedRecord: A record that is not what it says is never taken as done (nor silently replaced).
    """
    try:
        record = read_record(run_dir)
    except UntrustedRecord:
        raise
    except UserError:
        return None
    return record if isinstance(record, CompletedRecord) else None


def reusable_run(run: RunId, reuse_runs_dirs: Sequence[str | Path]) -> Path | None:
    """A completed run of the same identity in one of `reuse_runs_dirs` (`paths.reuse_runs_dirs`), if any.

    One experiment can build on another's runs (the mini's seed-0 runs are the learning-rate search's
    winners); the hash guarantees that the run is the one asked for.
    """
    for folder in reuse_runs_dirs:
        candidate = Path(folder) / run.relative_dir
        if candidate.resolve() != run.run_dir.resolve() and completed_record(candidate):
            return candidate
    return None


def completed_value(run: RunId, reuse_runs_dirs: Sequence[str | Path] = ()) -> float | None:
    """The headline value of `run` if its record is already `completed` (resume), else None.

    A completed copy in `reuse_runs_dirs` is copied into this run's folder first, so every
    experiment's folder holds all of its records.
    """
    run_dir = run.run_dir
    source = None if completed_record(run_dir) or not is_main_process() else reusable_run(run, reuse_runs_dirs)
    if source is not None:
        tmp = run_dir.with_name(f".{run_dir.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("logs"))
        shutil.rmtree(run_dir, ignore_errors=True)  # a failed or killed attempt of the same run
        os.replace(tmp, run_dir)
    record = completed_record(run_dir)
    return record.train_info.best.value if record else None


@dataclass
class RunRecord:
    """The record of one run as it is written: at the start (`running`), then at the end (`completed`/`failed`)."""

    run_dir: Path
    record: Record

    @classmethod
    def start(cls, cfg: DictConfig, run: RunId, device: str) -> RunRecord:
        """Write a `running` record for the run config `cfg` of `run` (after all input has been validated).

        Raises:
            UntrustedRecord: The folder holds a record of a newer schema, which this version must not replace.
        """
        try:
            read_record(run.run_dir)
        except NewerRecord:
            raise
        except UserError:  # none yet, or a broken or edited record of this run: replaced (train.force=true)
            pass
        info = RunInfo(config=OmegaConf.to_container(cfg, resolve=True), hashed_config=run.hashed_config,
                       git_commit=git_commit(), device=device, host=platform.node(), started_at=now())
        started = cls(run.run_dir, RunningRecord(config_hash=run.hash, run_info=info,
                                                 meta_info={"packages": package_versions()}))
        write_record(started.run_dir, started.record)
        return started

    def finish(self, outcome: TrainInfo | Failure, artifacts: Artifacts | None = None) -> None:
        """Write the completed record (`TrainInfo` and its files) or the failed one (`Failure`)."""
        payload = self.record.model_dump(by_alias=True) | {
            "status": "completed" if isinstance(outcome, TrainInfo) else "failed",
            "train_info": outcome.model_dump(), "artifacts": artifacts.model_dump() if artifacts else {}}
        payload["run_info"]["finished_at"] = now()
        ended = parse_record(payload, self.run_dir / RECORD_FILE)
        write_record(self.run_dir, ended)
        self.record = ended
