"""What a sweep's runs will cost, from the suite's own measured run times (CPU) and the recipe's precision (GPU).

* **CPU.** Every completed record holds its measured `train_seconds` (every attempt, evaluations included) with
  its task, model, method, training examples, epochs and precision. A planned run costs the median seconds per
  training example-epoch of the records most like it, times its own examples x epochs: first those of the same
  model, task, method and precision, then the same model, task and method in the other precision (scaled by the
  records' own bf16/fp32 ratio), then the same model, task and precision, then the records' seconds per PFLOP.
  A number measured once and kept, so the estimate does not swing with the machine's load at planning time.
  bf16 on a CPU that emulates it (no AVX512-BF16 or AMX) costs `EMULATED_BF16_SLOWDOWN` x the fp32 time.
* **GPU.** FLOPs (inputs padded to max_seq_length, an upper bound) at an assumed share of the card's peak in
  the recipe's precision: fp32 recipes (RoBERTa's) at the fp32 peak, since TF32 is off (PyTorch's default for
  matmuls, and the Trainer's `tf32` is unset); fp16/bf16 at the tensor-core peak.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lora_repro.hardware import cpu_has_native_bf16
from lora_repro.methods.registry import trains_whole_model

__all__ = ["ASSUMED_UTILIZATION", "CHECKPOINTS_KEPT", "EMULATED_BF16_SLOWDOWN", "GPU_PEAK_TFLOPS", "DeviceMemory",
           "MeasuredRuns", "checkpoint_bytes", "device_memory", "gpu_hours", "save_seconds", "signal_delay_for"]

# Emulated bf16 autocast against fp32, MiniLM shapes, one thread: 42-60x on an AVX2-only CPU (measured on that
# machine, issue 27); 12x for one MiniLM-sized linear layer with oneDNN capped at AVX2 (ONEDNN_MAX_CPU_ISA=AVX2) on
# an AVX512 CPU (measured 2026-12-02). The larger is what a user of an AVX2 machine meets.
EMULATED_BF16_SLOWDOWN = 50.0
# NVIDIA's A100 and H100 SXM datasheets, dense TFLOP/s: fp32 without TF32, and bf16/fp16 tensor cores.
GPU_PEAK_TFLOPS = {"A100": {"fp32": 19.5, "half": 312.0}, "H100": {"fp32": 67.0, "half": 989.0}}
# Fine-tuning encoders at batch 16-32 typically reaches 30-50% of peak: an assumption, and the plan says so.
ASSUMED_UTILIZATION = 0.4


# A checkpoint holds the trained weights, AdamW's two moments (fp32) and this project's copy of the trained
# weights: 4 fp32 copies of what trains. Two are kept per run (see `trainer.training_arguments`).
CHECKPOINT_BYTES_PER_TRAINABLE = 4 * 4
CHECKPOINTS_KEPT = 2
# How fast a checkpoint is written: an assumption for a cluster's shared filesystem under load (local NVMe is
# 10x faster). DeBERTa-XXL full fine-tuning, 24 GB, then takes 120 s: the whole of submitit's default warning.
SAVE_BYTES_PER_SECOND = 200e6
# The warning also covers finishing the optimizer step in progress (a DeBERTa-XXL step takes seconds).
STEP_ALLOWANCE_S = 60


def checkpoint_bytes(trainable_params: int) -> int:
    """The size of one checkpoint of a run that trains `trainable_params` parameters."""
    return trainable_params * CHECKPOINT_BYTES_PER_TRAINABLE


def save_seconds(trainable_params: int) -> float:
    """The assumed time to write one checkpoint (`SAVE_BYTES_PER_SECOND`)."""
    return checkpoint_bytes(trainable_params) / SAVE_BYTES_PER_SECOND


def signal_delay_for(configured_s: int, trainable_params: int) -> int:
    """SLURM's warning before a time limit (`signal_delay_s`) that leaves a run time to step, save and requeue.

    On the warning (USR2) the run finishes its step and saves before submitit requeues the job; a warning shorter
    than that lets SLURM kill the job first, and the run is lost. Half again the save time, for a slow disk.
    """
    return max(int(configured_s), math.ceil(1.5 * save_seconds(trainable_params)) + STEP_ALLOWANCE_S)


@dataclass(frozen=True)
class DeviceMemory:
    """What one device holds at the peak of a training step, in bytes (as `torch.cuda.max_memory_allocated`)."""

    weights: float
    gradients: float
    optimizer: float
    activations: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations


def activation_bytes(shape: Any, batch: int, length: int, precision: str) -> float:
    """Bytes autograd keeps for the backward pass of an encoder, per device: eager attention, every layer.

    Per layer and token: 11 h + 2 i values (the projections' inputs, Q, K, V and their head-split copies, the
    context, the feed-forward input, pre-activation and activation, the layer norms' inputs), 2 a s per token for
    each head's softmax output and its dropped-out copy, and one-byte dropout masks (2 h + a s). Checked against
    the tensors autograd saves in transformers' RoBERTa-base (`tests/training/test_plan.py`): within 6%.
    Under autocast the layer norms and softmax keep fp32: 2.5 bytes a value (measured: 0.59 x fp32's bytes per
    example; autocast's 16-bit copies of the weights, a fixed cost, are counted with the weights).
    An upper bound where the backbone is frozen (a frozen projection keeps no input: 1.34 x measured with LoRA on
    q, v) or attention is fused (SDPA/flash keeps no s x s matrix).
    """
    h, i, a, layers = shape.hidden_size, shape.intermediate_size, shape.num_attention_heads, shape.num_hidden_layers
    value = 4 if precision == "fp32" else 2.5
    tokens = batch * length
    per_layer = tokens * ((11 * h + 2 * i + 2 * a * length) * value + 2 * h + a * length)
    return float(layers * per_layer)


def device_memory(total_params: int, trainable_params: int, shape: Any, per_device_batch: int, length: int,
                  precision: str) -> DeviceMemory:
    """The analytic peak memory of one device of a run: weights, gradients, AdamW state and activations.

    Weights stay fp32 (autocast adds a 16-bit copy of each weight it casts); gradients are fp32 for what trains;
    AdamW keeps two fp32 moments of what trains. CUDA's own context and allocator slack come on top.
    """
    weights = total_params * 4 + (total_params * 2 if precision in ("fp16", "bf16") else 0)
    return DeviceMemory(weights=weights, gradients=trainable_params * 4, optimizer=trainable_params * 8,
                        activations=activation_bytes(shape, per_device_batch, length, precision))


def gpu_hours(pflops: float, precision: str) -> dict[str, float]:
    """Hours of one GPU of each kind for `pflops` PFLOP in `precision` (the recipe's), at the assumed utilization."""
    kind = "fp32" if precision == "fp32" else "half"
    return {gpu: pflops * 1e15 / (peaks[kind] * 1e12 * ASSUMED_UTILIZATION) / 3600
            for gpu, peaks in GPU_PEAK_TFLOPS.items()}


def run_pflops(total_params: int, max_seq_length: int, epochs: int, train_examples: int, eval_examples: int,
               full_ft: bool) -> float:
    """Upper bound on a run's PFLOPs: inputs padded to max_seq_length.

    Training costs about 6 x params per token when every weight gets a gradient and about 4 x when the backbone
    is frozen (no weight gradients); evaluation 2 x params per token.
    """
    per_token = 6 if full_ft else 4
    return float(total_params) * max_seq_length * epochs * (per_token * train_examples + 2 * eval_examples) / 1e15


@dataclass(frozen=True)
class Measured:
    """One completed CPU run's cost: its seconds per training example-epoch, and what it was."""

    config_hash: str
    model: str
    task: str
    method: str
    precision: str
    seconds_per_example_epoch: float
    seconds: float
    pflops: float


def read_measured(record_file: Path) -> Measured | None:
    """The cost a completed CPU record measured, or None (another status, another device, no timing)."""
    try:
        record = json.loads(record_file.read_text())
        info, config = record["train_info"], record["run_info"]["config"]
        if record["status"] != "completed" or not str(record["run_info"].get("device", "cpu")).startswith("cpu"):
            return None
        epochs, train = len(info["epochs"]), info["train_examples"]
        pflops = run_pflops(info["params"]["total"], config["train"]["max_seq_length"], epochs, train,
                            sum(info["eval_examples"].values()), trains_whole_model(config["method"]))
        return Measured(record["config_hash"], config["model"]["name"], config["task"]["name"],
                        config["method"]["name"], config["train"]["precision"],
                        info["train_seconds"] / (train * epochs), info["train_seconds"], pflops)
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return None  # an unreadable record costs nothing here; the reports and `train` name it


class MeasuredRuns:
    """The measured costs of every completed CPU record under some folders, and estimates drawn from them."""

    def __init__(self, folders: Iterable[Path]) -> None:
        files = {f.resolve() for folder in folders if Path(folder).is_dir() for f in Path(folder).rglob("record.json")}
        self.runs = [m for m in map(read_measured, sorted(files)) if m is not None]
        self.bf16_ratio = self.bf16_over_fp32()  # once: every planned run is scaled by it

    def rate(self, exclude: str | None = None, **match: str) -> float | None:
        """Median seconds per example-epoch of the runs that match (leaving out the run `exclude`), or None."""
        rates = [m.seconds_per_example_epoch for m in self.runs
                 if m.config_hash != exclude and all(getattr(m, k) == v for k, v in match.items())]
        return statistics.median(rates) if rates else None

    def bf16_over_fp32(self) -> float:
        """The records' own bf16/fp32 time ratio: the median over the (model, task, method) measured in both."""
        ratios = []
        for key in {(m.model, m.task, m.method) for m in self.runs}:
            both = [self.rate(model=key[0], task=key[1], method=key[2], precision=p) for p in ("bf16", "fp32")]
            if None not in both:
                ratios.append(both[0] / both[1])
        return statistics.median(ratios) if ratios else 0.6  # `make bench`: bf16 steps take 0.5-0.6x of fp32

    def cpu_seconds(self, run: pd.Series, exclude: str | None = None) -> tuple[float | None, str]:
        """A planned run's CPU seconds at one thread (as the records measured), and what the estimate rests on."""
        precision = run.precision
        emulated = precision == "bf16" and not cpu_has_native_bf16()
        if emulated:
            precision = "fp32"  # bf16 here is emulated: the fp32 time, times the emulation's cost
        examples_epochs = run.train_examples * run.epochs
        same = {"model": run.model, "task": run.task, "method": run.method}
        other = "fp32" if precision == "bf16" else "bf16"
        ratio = self.bf16_ratio if precision == "bf16" else 1 / self.bf16_ratio
        seconds, basis = None, "no measured run to scale from"
        if (rate := self.rate(exclude, precision=precision, **same)) is not None:
            seconds, basis = rate * examples_epochs, "same model, task, method and precision"
        elif (rate := self.rate(exclude, precision=other, **same)) is not None:
            seconds, basis = rate * ratio * examples_epochs, f"same model, task and method in {other}"
        elif (rate := self.rate(exclude, model=run.model, task=run.task, precision=precision)) is not None:
            seconds, basis = rate * examples_epochs, "same model, task and precision"
        elif (per_pflop := self.seconds_per_pflop(exclude, precision)) is not None:
            seconds, basis = per_pflop * run.pflops, "measured seconds per (padded) PFLOP of other runs"
        if seconds is not None and emulated:
            seconds, basis = seconds * EMULATED_BF16_SLOWDOWN, basis + f", x{EMULATED_BF16_SLOWDOWN:g} emulated bf16"
        return seconds, basis

    def seconds_per_pflop(self, exclude: str | None, precision: str) -> float | None:
        """Median measured seconds per estimated PFLOP of the runs in `precision`, or None."""
        rates = [m.seconds / m.pflops for m in self.runs
                 if m.config_hash != exclude and m.precision == precision and m.pflops > 0]
        return statistics.median(rates) if rates else None
