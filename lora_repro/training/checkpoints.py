"""Where a run's checkpoints live and which of them a resume may take up.

The Trainer saves `checkpoint-<step>` folders in the run's output folder; the callbacks that save their own state
beside the Trainer's (the epoch log, AdaLoRA's rank pattern) find the folder through `checkpoint_folder`.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from transformers import TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

EPOCH_LOG_FILE, EPOCH_LOG_LOGITS = "epoch_log.json", "epoch_log_logits.npz"
TRAINABLE_FILE, BEST_TRAINABLE_FILE = "trainable.safetensors", "best_trainable.safetensors"
ORDER_RNG_FILE = "epoch_order_rng.safetensors"  # a mid-epoch checkpoint: the RNG state its epoch's order came from
logger = logging.getLogger(__name__)


def checkpoint_folder(args: TrainingArguments, state: TrainerState) -> Path:
    """The folder of the checkpoint at the Trainer's current step (being saved in `on_save`, resumed from at start)."""
    return Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"


def all_checkpoints(output_dir: Path) -> list[Path]:
    """The run's checkpoint folders, newest first."""
    return sorted(output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*"), key=lambda f: int(f.name.rpartition("-")[2]),
                  reverse=True)


def last_complete_checkpoint(output_dir: Path) -> Path | None:
    """The newest checkpoint that holds everything a resume needs, or None.

    Newer, incomplete ones (a kill during a save) are deleted, so that the Trainer's rotation never keeps one of
    them in place of a complete one. The epoch log is written last, so a checkpoint is complete when it is there.
    """
    if not output_dir.is_dir():
        return None
    for folder in all_checkpoints(output_dir):
        if (folder / EPOCH_LOG_FILE).is_file() and (folder / "trainer_state.json").is_file():
            return folder
        logger.warning("discarding %s: it was not saved completely (the run was stopped during the save)", folder)
        shutil.rmtree(folder, ignore_errors=True)
    return None
