"""Which process of a distributed launch this is (torchrun and accelerate set RANK and WORLD_SIZE).

Every process of a launch trains; only the main one writes run records and artifacts.
"""

from __future__ import annotations

import os
from typing import TypeVar

from lora_repro.errors import UserError

T = TypeVar("T")

__all__ = ["any_process", "check_one_process_per_gpu", "from_main", "is_main_process", "mean_over_processes",
           "world_size"]


def world_size() -> int:
    """Processes of a distributed launch, else 1."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """True in the one process that writes records and artifacts (rank 0, or the only process)."""
    return int(os.environ.get("RANK", "0")) == 0


def from_main(value: T) -> T:
    """The main process's `value`, in every process of a distributed launch (`value` itself in a single one).

    Only the main process takes a run's lock and copies reused runs; what it decides (skip, or train) must be
    every process's decision, or the others would wait in the process group for a rank that left.
    """
    if world_size() == 1:
        return value
    from datetime import timedelta

    import torch
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list
    from transformers import TrainingArguments

    # Joins the process group torchrun set up, as the Trainer's arguments would a moment later and with theirs
    # (accelerate keeps the first settings): gloo on the CPU, else the GPU backend with the Trainer's timeout.
    if torch.cuda.is_available():
        PartialState(timeout=timedelta(seconds=TrainingArguments.__dataclass_fields__["ddp_timeout"].default))
    else:
        PartialState(cpu=True)
    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]


def check_one_process_per_gpu() -> None:
    """Refuse a launch that sees more GPUs than it has processes (before anything is loaded or written).

    One process that sees several GPUs gets wrapped by the Trainer in DataParallel over all of them, which
    splits every batch across them and multiplies the batch the optimizer sees: another experiment than the
    record would claim. One process per GPU keeps `train.batch_size` the global batch.

    Raises:
        UserError: Naming the command to use instead.
    """
    import torch

    if not torch.cuda.is_available():
        return
    gpus = torch.cuda.device_count()
    if world_size() == 1 and gpus > 1:
        raise UserError(f"{gpus} GPUs are visible to this single process, and the Trainer would split every batch "
                        f"over all of them (DataParallel), which changes the experiment. Run one process per GPU: "
                        f"`torchrun --nproc_per_node {gpus} -m lora_repro train ...` (on SLURM: "
                        "hydra.launcher.tasks_per_node equal to gpus_per_node), or one GPU: "
                        "`CUDA_VISIBLE_DEVICES=0 lora-repro train ...`")


def any_process(flag: bool, device: object) -> bool:
    """Whether `flag` is set in any process of a distributed run; every process calls it and gets the answer."""
    if world_size() == 1:
        return flag
    import torch

    box = torch.tensor([float(flag)], device=device)
    torch.distributed.all_reduce(box, op=torch.distributed.ReduceOp.MAX)
    return bool(box.item())


def mean_over_processes(value: object, device: object) -> float:
    """A scalar tensor averaged over the processes of a distributed run (itself in one); every process calls it."""
    if world_size() == 1:
        return float(value)
    import torch

    box = value.to(device=device, dtype=torch.float32).reshape(1)
    torch.distributed.all_reduce(box)
    return float(box) / world_size()
