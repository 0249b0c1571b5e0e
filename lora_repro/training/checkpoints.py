"""Where a run's checkpoints live and which of them a resume may take up.

The Trainer saves `checkpoint-<step>` folders in the run's output folder; the callbacks that save their own state
beside the Trainer's (the epoch log, AdaLoRA's rank pattern) find the folder through `records.io.checkpoint_folder`.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from transformers.trainer import TRAINING_ARGS_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

EPOCH_LOG_FILE, EPOCH_LOG_LOGITS = "epoch_log.json", "epoch_log_logits.npz"
TRAINABLE_FILE, BEST_TRAINABLE_FILE = "trainable.safetensors", "best_trainable.safetensors"
ORDER_RNG_FILE = "epoch_order_rng.safetensors"  # a mid-epoch checkpoint: the RNG state its epoch's order came from
logger = logging.getLogger(__name__)


def all_checkpoints(output_dir: Path) -> list[Path]:
    """The run's checkpoint folders, newest first."""
    return sorted(output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*"), key=lambda f: int(f.name.rpartition("-")[2]),
                  reverse=True)


def last_complete_checkpoint(output_dir: Path) -> Path | None:
    """The newest checkpoint that holds everything a resume needs and loads, or None.

    Newer, incomplete ones (a kill during a save) are deleted, so that the Trainer's rotation never keeps one of
    them in place of a complete one. The epoch log is written last, so a checkpoint is complete when it is there.
    A complete one that does not load (a damaged file, or a pickle that `weights_only` refuses) is set aside as
    `unloadable-checkpoint-<step>` with a warning, so that the run resumes from the one before, or from the start,
    instead of failing the same way on every rerun.
    """
    if not output_dir.is_dir():
        return None
    for folder in all_checkpoints(output_dir):
        if not ((folder / EPOCH_LOG_FILE).is_file() and (folder / "trainer_state.json").is_file()):
            logger.warning("discarding %s: it was not saved completely (the run was stopped during the save)",
                           folder)
            shutil.rmtree(folder, ignore_errors=True)
            continue
        if (problem := unloadable(folder)) is None:
            return folder
        aside = folder.with_name(f"unloadable-{folder.name}")
        shutil.rmtree(aside, ignore_errors=True)
        folder.rename(aside)
        logger.warning("setting aside the checkpoint %s as %s: %s; resuming from the one before, if any",
                       folder, aside.name, problem)
    return None


def unloadable(folder: Path) -> str | None:
    """Why a checkpoint's files would not load as the resume loads them (None: they would).

    Torch files open as the Trainer opens them, `weights_only`, memory-mapped so that nothing large is read;
    safetensors files by their header; JSON files whole.
    """
    import torch
    from safetensors import safe_open
    from transformers.trainer_pt_utils import safe_globals  # what the Trainer allows in its own files (numpy RNG)

    for file in sorted(folder.iterdir()):
        if file.name == TRAINING_ARGS_NAME:  # the Trainer saves its arguments (a pickle) and never loads them
            continue
        try:
            if file.suffix in (".pt", ".pth", ".bin"):
                with safe_globals():
                    torch.load(file, map_location="cpu", weights_only=True, mmap=True)
            elif file.suffix == ".safetensors":
                with safe_open(str(file), framework="pt") as opened:
                    opened.keys()
            elif file.suffix == ".json":
                json.loads(file.read_text())
        except Exception as err:  # noqa: BLE001 (whatever the loader raises, the resume would raise too)
            return f"{file.name} does not load ({type(err).__name__}: {str(err).splitlines()[0][:200]})"
    return None
