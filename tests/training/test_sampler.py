"""The order of a distributed epoch: every process draws the same one, and each example trains once."""

from __future__ import annotations

import pytest
import torch
from accelerate.data_loader import BatchSamplerShard, SeedableRandomSampler
from torch.utils.data import BatchSampler
from transformers.trainer_pt_utils import LengthGroupedSampler

from lora_repro.training.trainer import SharedOrderSampler

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


@pytest.mark.parametrize("grouped", [True, False], ids=["length-grouped", "random"])
@pytest.mark.parametrize("rows", [96, 61, 3])
def test_every_example_trains_once_and_the_filler_row_completes_the_last_round(grouped, rows):
    for epoch in range(3):
        first, second = shards(lambda: SharedOrderSampler(rows, 16, seed=42, lengths=LENGTHS[:rows] if grouped
                                                          else None, group_size=8 if grouped else None), epoch)
        assert len(first) == len(second)  # the processes step together
        real = sorted(i for i in first + second if i != rows)
        assert real == list(range(rows))
        assert (first + second).count(rows) == -rows % 16  # accelerate would have repeated this many examples


def test_the_random_order_is_the_single_process_runs(monkeypatch):
    # One process draws accelerate's seedable order: a permutation seeded with seed + epoch.
    for epoch in range(3):
        torch.manual_seed(42)
        theirs = SeedableRandomSampler(range(61))
        theirs.set_epoch(epoch)
        ours = SharedOrderSampler(61, 16, seed=42)
        ours.set_epoch(epoch)
        assert list(ours)[:61] == list(theirs)


def test_the_order_depends_on_the_epoch_only_so_a_resumed_run_gets_the_same_batches():
    running = SharedOrderSampler(96, 16, seed=42, lengths=LENGTHS, group_size=8)
    orders = []
    for epoch in range(3):
        running.set_epoch(epoch)
        orders.append(list(running))
    resumed = SharedOrderSampler(96, 16, seed=42, lengths=LENGTHS, group_size=8)  # a new process, at epoch 2
    resumed.set_epoch(2)
    assert list(resumed) == orders[2] and orders[0] != orders[1]
