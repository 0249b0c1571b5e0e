"""Where a training step's time goes: self time per operator (torch.profiler), one step per trainee."""

from __future__ import annotations

import pandas as pd
import torch
from torch.profiler import ProfilerActivity, profile

from lora_repro.bench.training import Trainee, train_step

__all__ = ["ALL_OPS", "PROFILE_ROUNDS", "profile_steps"]

ALL_OPS = "all operators"
PROFILE_ROUNDS = 2  # steps per trainee: one alone is at the mercy of whatever else the machine runs


def profile_steps(trainees: list[Trainee], batch: dict[str, torch.Tensor], top: int,
                  rounds: int = PROFILE_ROUNDS) -> pd.DataFrame:
    """Self time (ms per step) of each operator, averaged over `rounds` interleaved steps of each trainee.

    Args:
        trainees: already stepped at least once (optimizer state exists, allocator warm).
        batch: the benchmark batch.
        top: keep the operators among the `top` most expensive of any trainee.
        rounds: steps per trainee, in alternating order as the timing runs them (one step alone is noisy).

    Returns:
        Operators (index; the first row sums all operators) x trainee names, in ms per step, longest first
        by the first trainee.
    """
    rows = []
    for index in range(rounds):
        for trainee in trainees if index % 2 == 0 else trainees[::-1]:
            rows += _profile_one_step(trainee, batch)
    table = pd.DataFrame(rows).pivot_table(index="op", columns="trainee", values="ms", aggfunc="sum",
                                           fill_value=0.0)[[t.name for t in trainees]] / rounds
    keep = set().union(*(table[name].nlargest(top).index for name in table.columns))
    shown = table.loc[sorted(keep, key=lambda op: -table.loc[op].iloc[0])]
    total = table.sum().to_frame(ALL_OPS).T
    return pd.concat([total, shown])


def _profile_one_step(trainee: Trainee, batch: dict[str, torch.Tensor]) -> list[dict[str, object]]:
    on_gpu = trainee.device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    with profile(activities=activities) as prof:
        train_step(trainee, batch)
    return [{"trainee": trainee.name, "op": event.key,
             "ms": (_device_self_time(event) if on_gpu else event.self_cpu_time_total) / 1000}
            for event in prof.key_averages()]


def _device_self_time(event: object) -> float:
    # The attribute was renamed from cuda to device time across torch releases.
    return getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0.0)
