"""The whole benchmark of one model: memory, step time, profile, checkpoint size, then inference latency.

`run_bench` reads top to bottom, one named step per measurement. The memory children run first, while the
parent holds no model; the interleaved step timing then sees the same machine for every method.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from lora_repro.bench.checkpoints import FULL_MODEL, checkpoint_sizes
from lora_repro.bench.harness import check_seq_len, environment, random_inputs, set_threads
from lora_repro.bench.latency import LORA, build_variants, measure_latency, variant_methods
from lora_repro.bench.memory import MemoryRequest, measure_peaks
from lora_repro.bench.profiling import profile_steps
from lora_repro.bench.timing import Budget, interleave, median, paired_ratio, ratio_noise, spread
from lora_repro.bench.training import (
    BOUND,
    METHOD,
    PEFT_BASELINE,
    PHASES,
    Trainee,
    build_trainee,
    state_bytes,
    train_step,
)
from lora_repro.hardware import cpu_has_native_bf16
from lora_repro.methods.registry import bench_presets

__all__ = ["BenchResult", "BenchSpec", "DEFAULT_METHODS", "needed_configs", "run_bench"]

# The paper's methods, then LoRA's successors (each also timed unmerged and merged in the latency table): every
# method's declared bench presets.
DEFAULT_METHODS = bench_presets()


@dataclass(frozen=True)
class BenchSpec:
    """What to measure and how long; the CLI's defaults are these (about 18 min on 2 idle CPU cores)."""

    model: str = "minilm"
    methods: tuple[str, ...] = DEFAULT_METHODS
    batch_size: int = 32
    seq_len: int = 128
    latency_batches: tuple[int, ...] = (1, 16, 32)
    latency_lengths: tuple[int, ...] = (128, 512)
    device: str = "cpu"
    # One thread: ratios that hold while other jobs share the machine (no thread waits at a barrier for a
    # core another process holds), and two memory children can run side by side on two cores.
    threads: int = 1
    random_init: bool = False
    train_budget: Budget = Budget(seconds=120, min_rounds=4, max_rounds=12)
    latency_budget: Budget = Budget(seconds=180, min_rounds=4, max_rounds=30)  # all shapes together
    memory_steps: int = 2       # the first step creates the optimizer state, the second trains with it
    memory: bool = True         # False: skip the subprocesses (peak memory columns stay empty)
    profile_top: int = 6        # operators shown per trainee in the profile; 0 = no profile
    seed: int = 0

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """(batch, length) pairs of the latency table."""
        return [(b, n) for b in self.latency_batches for n in self.latency_lengths]


@dataclass
class BenchResult:
    """Everything `run_bench` measured, as tables, plus where and how."""

    spec: BenchSpec
    env: dict[str, object]
    training: pd.DataFrame
    latency: pd.DataFrame
    profile: pd.DataFrame | None
    seconds: float = 0.0
    raw: dict[str, object] = field(default_factory=dict)


BF16_SUFFIX, BF16_TWIN = "@bf16", "bf16_twin"  # a method's step again in bf16: its name and trainee kind


def needed_configs(spec: BenchSpec) -> list[str]:
    """Method configs the run needs: the timed methods and those the latency variants apply."""
    extra = [m for m in variant_methods(spec.methods).values() if m is not None and m not in spec.methods]
    return list(dict.fromkeys([*spec.methods, *extra]))


def run_bench(spec: BenchSpec, cfgs: Mapping[str, DictConfig], command: str) -> BenchResult:
    """Measure everything `spec` asks for; `cfgs` maps each of `needed_configs(spec)` to its run config."""
    started = time.perf_counter()
    for length in (spec.seq_len, *spec.latency_lengths):  # fail before minutes of work, not after
        check_seq_len(next(iter(cfgs.values())).model, length)
    set_threads(spec.threads)
    torch.manual_seed(spec.seed)  # the fresh classification heads
    peaks = measure_memory(spec, cfgs) if spec.memory else {}
    trainees = [build_trainee(name, kind, cfgs[source], spec.random_init, spec.device, precision)
                for name, kind, source, precision in trainee_plan(spec)]
    batch = random_inputs(trainees[0].cfg.model, spec.batch_size, spec.seq_len, spec.device, spec.seed)
    samples = interleave({t.name: partial(train_step, t, batch) for t in trainees}, spec.train_budget)
    profiled = _profiled(trainees)
    profile = profile_steps(profiled, batch, spec.profile_top) if spec.profile_top and profiled else None
    training = training_table(trainees, samples, peaks, checkpoint_sizes(trainees), spec)
    del trainees
    gc.collect()
    models = build_variants(cfgs, spec.random_init, spec.device, spec.seed, variant_methods(spec.methods))
    latency = measure_latency(models, cfgs[LORA].model, spec.shapes, spec.latency_budget, spec.device, spec.seed)
    raw = {"training_samples": samples, "memory": peaks}
    return BenchResult(spec, environment(spec.device, command), training, latency, profile,
                       time.perf_counter() - started, raw)


def trainee_plan(spec: BenchSpec) -> list[tuple[str, str, str, str | None]]:
    """(name, kind, config, precision) of each trainee.

    The methods, LoRA with PEFT's forward, the lower bound, and, on a CPU that computes bf16 natively, each
    method again in bf16 autocast (`<method>@bf16`; precision None = the run's own, fp32 on the CPU).
    """
    plan = [(method, METHOD, method, None) for method in spec.methods]
    if LORA in spec.methods:
        plan.append((PEFT_BASELINE, PEFT_BASELINE, LORA, None))
    plan.append((BOUND, BOUND, spec.methods[0], None))
    if spec.device == "cpu" and cpu_has_native_bf16():
        plan += [(f"{method}{BF16_SUFFIX}", BF16_TWIN, method, "bf16") for method in spec.methods]
    return plan


def measure_memory(spec: BenchSpec, cfgs: Mapping[str, DictConfig]) -> dict[str, dict[str, int]]:
    """Peak memory of each method, in fresh subprocesses (several at once on the CPU if cores allow)."""
    requests = [MemoryRequest(method, METHOD, OmegaConf.to_container(cfgs[method], resolve=True),
                              spec.random_init, spec.device, spec.threads, spec.batch_size, spec.seq_len,
                              spec.memory_steps, spec.seed) for method in spec.methods]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    parallel = 1 if spec.device.startswith("cuda") else max(1, cores // spec.threads)
    return measure_peaks(requests, parallel)


def training_table(trainees: list[Trainee], samples: Mapping[str, list[dict[str, float]]],
                   peaks: Mapping[str, Mapping[str, int]], sizes: Mapping[str, int], spec: BenchSpec
                   ) -> pd.DataFrame:
    """One row per trainee: counts, step time by phase, ratios to full FT, memory and checkpoint size."""
    reference, bound = samples.get(FULL_MODEL), samples.get(BOUND)
    rows = []
    for trainee in trainees:
        runs, state = samples[trainee.name], state_bytes(trainee)
        step = median(runs)
        rows.append({
            "method": trainee.name, "kind": trainee.kind, "trainable_params": trainee.trainable,
            "step_ms": 1000 * step, **{f"{phase}_ms": 1000 * median(runs, phase) for phase in PHASES},
            "examples_per_s": spec.batch_size / step, "spread": spread(runs), "rounds": len(runs),
            "step_vs_full_ft": paired_ratio(runs, reference) if reference else float("nan"),
            "step_vs_full_ft_noise": ratio_noise(runs, reference) if reference else float("nan"),
            "step_vs_lower_bound": paired_ratio(runs, bound) if bound else float("nan"),
            # This method's step in bf16 autocast over the same step in fp32, both timed in the same rounds.
            "bf16_vs_fp32": paired_ratio(samples[trainee.name + BF16_SUFFIX], runs)
            if trainee.name + BF16_SUFFIX in samples else float("nan"),
            "peak_bytes": peaks.get(trainee.name, {}).get("peak"),
            "before_training_bytes": peaks.get(trainee.name, {}).get("before_training"),
            "weights_bytes": state["weights"], "gradient_bytes": state["gradients"],
            "optimizer_state_bytes": state["optimizer_state"], "checkpoint_bytes": sizes.get(trainee.name),
        })
    table = pd.DataFrame(rows)
    table["model_state_bytes"] = table[["weights_bytes", "gradient_bytes", "optimizer_state_bytes"]].sum(axis=1)
    for column, ratio in (("peak_bytes", "peak_vs_full_ft"), ("model_state_bytes", "model_state_vs_full_ft"),
                          ("checkpoint_bytes", "checkpoint_vs_full")):
        table[column] = table[column].astype("float")
        full = table.loc[table["method"] == FULL_MODEL, column]
        table[ratio] = table[column] / full.iloc[0] if len(full) else float("nan")
    return table


def _profiled(trainees: list[Trainee]) -> list[Trainee]:
    """Full FT, LoRA (both forwards) and the lower bound: the rows the step-time target is about."""
    wanted = (FULL_MODEL, PEFT_BASELINE, LORA, BOUND)
    return sorted((t for t in trainees if t.name in wanted), key=lambda t: wanted.index(t.name))
