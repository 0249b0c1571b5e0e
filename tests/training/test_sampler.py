"""Length-grouped batches under DDP: every process draws the same order, so the shards cover each example once."""

from __future__ import annotations

import torch
from accelerate.data_loader import BatchSamplerShard
from torch.utils.data import BatchSampler
from transformers.trainer_pt_utils import LengthGroupedSampler

from lora_repro.training.trainer import SharedLengthGroupedSampler

LENGTHS = [int(n) for n in torch.randint(5, 60, (96,), generator=torch.Generator().manual_seed(0))]


def shards(make_sampler, epoch: int) -> list[list[int]]:
    """What each of two processes trains on in `epoch`, each with its own global RNG state (as after dropout)."""
    seen = []
    for rank in range(2):
        torch.manual_seed(100 + rank + epoch)  # the processes' global RNGs have drifted apart
        sampler = make_sampler()
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        batches = BatchSamplerShard(BatchSampler(sampler, 8, drop_last=False), num_processes=2, process_index=rank)
        seen.append([i for batch in batches for i in batch])
    return seen


def test_transformers_sampler_under_ddp_repeats_and_skips_examples():
    first, second = shards(lambda: LengthGroupedSampler(8, lengths=LENGTHS), epoch=1)
    assert sorted(first + second) != list(range(len(LENGTHS)))  # the defect this project's sampler removes


def test_every_process_draws_one_order_and_the_shards_cover_every_example_once():
    for epoch in range(3):
        first, second = shards(lambda: SharedLengthGroupedSampler(8, LENGTHS, seed=42), epoch)
        assert sorted(first + second) == list(range(len(LENGTHS)))


def test_the_order_depends_on_the_epoch_only_so_a_resumed_run_gets_the_same_batches():
    running = SharedLengthGroupedSampler(8, LENGTHS, seed=42)
    orders = []
    for epoch in range(3):
        running.set_epoch(epoch)
        orders.append(list(running))
    resumed = SharedLengthGroupedSampler(8, LENGTHS, seed=42)  # a new process, started at epoch 2
    resumed.set_epoch(2)
    assert list(resumed) == orders[2] and orders[0] != orders[1]
