"""`lora-repro migrate DIR ...`: give older run records today's identity (config hash) and folder name.

Run identities changed twice (version 2: numbers compared as numbers, LoRA weight sets as sets, settings
that do not change the result left out, the data files' checksums in; version 3: the precision as computed,
not `auto`, the selection split, and no method default rate beside the rate that trained). A version-2 record
with `train.precision: auto` ran in fp32 on a CPU (auto was fp32 there); one from a GPU cannot be migrated.
A record's resolved config is all it takes to recompute its identity; its folder is renamed to match, so that
sweeps skip it again.
The data checksums are those of the files in the record's data.glue_dir, or in GLUE_DIR when that
folder is not on this machine.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from omegaconf import OmegaConf, open_dict

from lora_repro.config import on_this_machine
from lora_repro.errors import UserError
from lora_repro.records.identity import RunId, run_folder_name
from lora_repro.records.record import RECORD_FILE, read_record, write_record
from lora_repro.records.schema import CompletedRecord

__all__ = ["main", "migrate_run"]


def is_completed(run_dir: Path) -> bool:
    """Whether `run_dir` holds a readable, completed record (of any identity version)."""
    try:
        return isinstance(read_record(run_dir, verify=False), CompletedRecord)
    except UserError:
        return False


def migrate_run(run_dir: Path) -> Path:
    """Recompute the identity of the run in `run_dir`; returns its folder (renamed when the hash changed).

    Raises:
        UserError: A broken record, or a folder of the same identity that already holds another run.
    """
    record = read_record(run_dir, verify=False)  # an older record: its identity is what this recomputes
    cfg = on_this_machine(OmegaConf.create(record.run_info.config), paths=False)
    with open_dict(cfg):
        if cfg.train.precision == "auto":
            if record.run_info.device != "cpu":
                raise UserError(f"{run_dir} ran with train.precision=auto on {record.run_info.device}, "
                                "which does not say whether it computed in bf16; rerun that run")
            cfg.train.precision = "fp32"
        cfg.method.pop("learning_rate", None)  # version 2 kept the method file's default beside train's
        cfg.data.setdefault("selection", "none")
    run = RunId.of(cfg)
    target = run_dir.with_name(run_folder_name(cfg.seed, run.hash))
    if record.config_hash == run.hash and target == run_dir:
        return run_dir
    if target.exists() and target != run_dir:
        if is_completed(target) or not is_completed(run_dir):
            raise UserError(f"{target} already holds this run; delete one of {target} and {run_dir}")
        os.rename(target, target.with_name(target.name + ".superseded"))  # an unfinished attempt, kept aside
    info = record.run_info.model_copy(update={"config": OmegaConf.to_container(cfg),
                                              "hashed_config": run.hashed_config})
    write_record(run_dir, record.model_copy(update={"config_hash": run.hash, "run_info": info}))
    os.rename(run_dir, target)
    return target


def main() -> None:
    """Entry point: migrate every record under the folders given."""
    parser = argparse.ArgumentParser(prog="lora-repro migrate", description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+", help="folders of run records, searched recursively")
    args = parser.parse_args()
    changed = total = 0
    for folder in args.folders:
        if not folder.is_dir():
            raise UserError(f"no folder {folder}")
        for file in sorted(folder.rglob(RECORD_FILE)):
            total += 1
            new = migrate_run(file.parent)
            if new != file.parent:
                changed += 1
                print(f"{file.parent} -> {new.name}")
    print(f"{total} records, {changed} renamed", file=sys.stderr)
