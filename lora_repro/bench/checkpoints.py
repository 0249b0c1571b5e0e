"""Checkpoint size per method: bytes on disk of what a run saves, written by the run's own `save_weights`."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

from lora_repro.bench.training import METHOD, Trainee
from lora_repro.methods.registry import name_of
from lora_repro.paper.names import FT
from lora_repro.training.run import save_weights

__all__ = ["FULL_MODEL", "checkpoint_sizes"]

# The method whose checkpoint is the whole model: the reference every other size is compared with.
FULL_MODEL = name_of(FT)


def checkpoint_sizes(trainees: list[Trainee]) -> dict[str, int]:
    """Bytes of each method's saved weights (`trained_weights.safetensors`).

    A full_ft run keeps its weights only with `train.save_full_model=true`; here it is always saved, since
    the full model's checkpoint is what the others are compared with.

    Returns:
        trainee name -> bytes, for the trainees that are methods (not the lower bound or PEFT baseline).
    """
    sizes = {}
    with tempfile.TemporaryDirectory() as scratch:
        for trainee in trainees:
            if trainee.kind != METHOD:
                continue
            cfg = copy.deepcopy(trainee.cfg)
            if cfg.method.name == FULL_MODEL:
                cfg.train.save_full_model = True
            run_dir = Path(scratch) / trainee.name
            sizes[trainee.name] = (run_dir / save_weights(run_dir, trainee.model, cfg)["weights"]).stat().st_size
    return sizes
