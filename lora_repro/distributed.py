"""Which process of a distributed launch this is (torchrun and accelerate set RANK and WORLD_SIZE).

Every process of a launch trains; only the main one writes run records and artifacts.
"""

from __future__ import annotations

import os

__all__ = ["is_main_process", "world_size"]


def world_size() -> int:
    """Processes of a distributed launch, else 1."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """True in the one process that writes records and artifacts (rank 0, or the only process)."""
    return int(os.environ.get("RANK", "0")) == 0
