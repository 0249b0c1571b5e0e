"""Interleaved timing: round-robin over the subjects, so drift in machine load hits every subject alike.

One round runs every subject once; each round starts one subject later (A B C, B C A, C A B), so every
subject takes every position and none ever runs twice in a row (a run straight after itself finds its
weights in cache and its buffers in the allocator, and looks faster than it is).

Ratios are the median over rounds of the ratio *within* a round, so a slow minute (another job on the
machine) raises both sides of each ratio instead of one subject's median; `ratio_noise` says how far that
median could move by chance. The number of rounds follows a time budget, between a minimum that keeps the
medians meaningful and a maximum that stops cheap subjects from spinning.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from lora_repro.errors import UserError

__all__ = ["Budget", "Sample", "interleave", "median", "paired_ratio", "ratio_noise", "spread", "timed"]

# Phase name -> seconds; every sample has TOTAL.
Sample = dict[str, float]
TOTAL = "total"


@dataclass(frozen=True)
class Budget:
    """How long to keep timing: at least `min_rounds`, then until `seconds` or `max_rounds` is reached."""

    seconds: float
    min_rounds: int
    max_rounds: int

    def __post_init__(self) -> None:
        if not 1 <= self.min_rounds <= self.max_rounds:
            raise UserError(f"rounds must satisfy 1 <= min <= max, got min {self.min_rounds}, "
                            f"max {self.max_rounds}")
        if self.seconds < 0:
            raise UserError(f"a time budget must be >= 0 seconds, got {self.seconds}")


def timed(run: Callable[[], object], sync: Callable[[], None]) -> Callable[[], Sample]:
    """Wrap `run` so that calling it returns its wall-clock time (after `sync`, for GPUs)."""
    def sample() -> Sample:
        sync()
        started = time.perf_counter()
        run()
        sync()
        return {TOTAL: time.perf_counter() - started}
    return sample


def interleave(subjects: Mapping[str, Callable[[], Sample]], budget: Budget, warmup: int = 1
               ) -> dict[str, list[Sample]]:
    """Time every subject in rounds, after `warmup` untimed rounds (allocator, caches, lazy state).

    Args:
        subjects: name -> a callable that does the work once and returns its `Sample`.
        budget: when to stop; a round is not started if the budget would run out during it.
        warmup: untimed rounds first.

    Returns:
        name -> one sample per timed round, in round order (so rounds pair up across subjects).
    """
    names = list(subjects)
    for _ in range(warmup):
        for name in names:
            subjects[name]()
    samples: dict[str, list[Sample]] = {name: [] for name in names}
    started = time.perf_counter()
    rounds = 0
    while rounds < budget.max_rounds:
        elapsed = time.perf_counter() - started
        if rounds >= budget.min_rounds and elapsed * (rounds + 1) / rounds > budget.seconds:
            break
        # Two subjects keep A B: rotating them would run each twice in a row across the round boundary.
        shift = rounds % len(names) if len(names) > 2 else 0
        for name in names[shift:] + names[:shift]:
            samples[name].append(subjects[name]())
        rounds += 1
    return samples


def median(samples: list[Sample], phase: str = TOTAL) -> float:
    """Median seconds of one phase over the rounds."""
    return statistics.median(sample[phase] for sample in samples)


def paired_ratio(samples: list[Sample], reference: list[Sample], phase: str = TOTAL) -> float:
    """Median over rounds of (this subject's time / the reference's time in the same round)."""
    return statistics.median(s[phase] / r[phase] for s, r in zip(samples, reference, strict=True))


def ratio_noise(samples: list[Sample], reference: list[Sample], phase: str = TOTAL) -> float:
    """Half-width of the ~95% interval of `paired_ratio`: 1.58 IQR / sqrt(n) (McGill et al.'s notch)."""
    ratios = [s[phase] / r[phase] for s, r in zip(samples, reference, strict=True)]
    if len(ratios) < 2:
        return float("nan")
    quartiles = statistics.quantiles(ratios, n=4, method="inclusive")
    return 1.58 * (quartiles[2] - quartiles[0]) / math.sqrt(len(ratios))


def spread(samples: list[Sample], phase: str = TOTAL) -> float:
    """Interquartile range over median: how noisy the rounds were (0.05 = 5%)."""
    values = [sample[phase] for sample in samples]
    if len(values) < 2:
        return 0.0
    quartiles = statistics.quantiles(values, n=4, method="inclusive")
    return (quartiles[2] - quartiles[0]) / statistics.median(values)
