"""Writing run folders safely: atomic file writes and the run folder's lock.

Every file of a run is written to a temporary name and renamed into place, so a reader sees the old file or
the new one, never half of one. A write killed before its rename leaves its temporary file behind; the next
process to take the folder's lock removes it (no one else can be writing there then).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from lora_repro.distributed import is_main_process
from lora_repro.errors import UserError

if TYPE_CHECKING:
    from transformers import TrainerState, TrainingArguments

__all__ = ["LOCK_FILE", "atomic_write", "check_writable", "checkpoint_folder", "claim"]

LOCK_FILE = ".lock"
TEMPORARY = ".{name}.{token}.tmp"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Let `write(tmp_path)` produce a file (e.g. a safetensors save), then rename it onto `path`.

    The temporary name is unique and removed on failure; the file gets the usual permissions
    (0666 less the umask), whatever the writer used.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(TEMPORARY.format(name=path.name, token=uuid.uuid4().hex))
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def check_writable(folder: Path, setting: str) -> None:
    """Raise a `UserError` unless `folder` exists as a writable folder or could be made (nothing is written)."""
    existing = next(p for p in (folder.absolute(), *folder.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"{setting}={folder}: {existing} is a file, not a folder; set {setting} to a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{setting}={folder}: {existing} is not writable (read-only, or owned by someone else); "
                        f"set {setting} to a folder you can write to")


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
        for leftover in run_dir.glob(TEMPORARY.format(name="*", token="*")):  # from a write that was killed
            leftover.unlink(missing_ok=True)
        yield True


def checkpoint_folder(args: TrainingArguments, state: TrainerState) -> Path:
    """The folder of the checkpoint at the Trainer's current step (being saved in `on_save`, resumed from at start)."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR  # here: reading a record needs no transformers
    return Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
