"""Training cost per method: one optimizer step (forward + backward + optimizer), timed by phase.

Every trainee is the model a run trains (`apply_method`) with the optimizer the run's `Trainer` builds
(same class, parameter groups and weight decay), stepped as the Trainer steps it: loss, backward, gradient
clipping at `train.max_grad_norm`, `optimizer.step()`, `zero_grad(set_to_none=True)`.

Two extra trainees put the LoRA numbers in context:
    lower_bound: every weight frozen, gradients flowing only to each layer's input (the input-gradient pass
        through every layer, no weight gradient, no optimizer): the work a LoRA step cannot avoid.
    lora_peft: LoRA with PEFT's own forward, i.e. without `FusedLoraLinear` (see lora_repro.methods.lora).
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn
from transformers import Trainer, TrainingArguments

from lora_repro.bench.harness import build_backbone, build_method_model, synchronize
from lora_repro.bench.timing import TOTAL, Sample
from lora_repro.hardware import resolve_precision
from lora_repro.methods import count_parameters
from lora_repro.methods.lora import restore_peft_forward
from lora_repro.training.trainer import training_arguments

__all__ = ["BOUND", "KINDS", "PEFT_BASELINE", "Trainee", "build_trainee", "lower_bound_model", "make_optimizer",
           "state_bytes", "train_step"]

BOUND, PEFT_BASELINE = "lower_bound", "lora_peft"
METHOD = "method"
# Trainee kinds: a method as configured, LoRA with PEFT's own forward, or the lower bound.
KINDS = (METHOD, PEFT_BASELINE, BOUND)
PHASES = ("forward", "backward", "optimizer")


@dataclass
class Trainee:
    """A model ready to step: the method's model, its run's optimizer (None for the lower bound)."""

    name: str
    kind: str
    cfg: DictConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer | None
    device: str
    precision: str = "fp32"  # what its matmuls compute in: fp32, or bf16/fp16 autocast

    @property
    def trainable(self) -> int:
        """Parameters that train (0 for the lower bound)."""
        if self.kind == BOUND:
            return 0
        return count_parameters(self.model, self.cfg.method).trainable


def build_trainee(name: str, kind: str, cfg: DictConfig, random_init: bool, device: str,
                  precision: str | None = None) -> Trainee:
    """Build the model and optimizer of one trainee (see the module docstring for the kinds).

    `precision` None: what the run would compute in on a GPU (`train.precision`), fp32 on the CPU.
    """
    if kind == BOUND:
        model, optimizer = lower_bound_model(cfg, random_init, device), None
    else:
        model = build_method_model(cfg, random_init, device)
        if kind == PEFT_BASELINE:
            restore_peft_forward(model)
        optimizer = make_optimizer(model, cfg, device)
    if precision is None:
        precision = resolve_precision(cfg.train.precision) if device.startswith("cuda") else "fp32"
    return Trainee(name, kind, cfg, model.train(), optimizer, device, precision)


def lower_bound_model(cfg: DictConfig, random_init: bool, device: str) -> nn.Module:
    """The run's model with every weight frozen and the input embeddings' output requiring gradients.

    Backward then runs the input-gradient pass through every layer and computes no weight gradient.
    It still differentiates the lowest layer's input, which LoRA on that layer does not need, so a LoRA step
    can come in slightly under it.
    """
    model = build_backbone(cfg, random_init, device).requires_grad_(False)
    model.enable_input_require_grads()
    return model


@dataclasses.dataclass
class ArgumentsInPlace(TrainingArguments):
    """`TrainingArguments` whose Trainer leaves the model where it is (it would move it to cuda:0)."""

    @property
    def place_model_on_device(self) -> bool:
        return False


def make_optimizer(model: nn.Module, cfg: DictConfig, device: str) -> torch.optim.Optimizer:
    """The optimizer the run's `Trainer` would build for `model` (class, groups, weight decay, lr).

    The model stays on the benchmarked device, `cuda:N` included: the Trainer only builds the optimizer here.
    """
    cfg = cfg.copy()
    cfg.train.precision = "fp32"  # the optimizer (groups, rates, decay) is the same in every precision
    with tempfile.TemporaryDirectory() as scratch:
        run_args = training_arguments(cfg, Path(scratch))
        fields = {f.name: getattr(run_args, f.name) for f in dataclasses.fields(run_args) if f.init}
        args = ArgumentsInPlace(**{**fields, "eval_strategy": "no", "use_cpu": device == "cpu"})
        return Trainer(model=model, args=args).create_optimizer()


def train_step(trainee: Trainee, batch: dict[str, torch.Tensor]) -> Sample:
    """One training step as the Trainer takes it; returns seconds per phase and in total."""
    model, optimizer, device = trainee.model, trainee.optimizer, trainee.device
    marks = [_mark(device)]
    with _autocast(trainee.precision, device):
        loss = model(**batch).loss
    marks.append(_mark(device))
    loss.backward()
    marks.append(_mark(device))
    if optimizer is not None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if trainee.cfg.train.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, trainee.cfg.train.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    marks.append(_mark(device))
    sample = {phase: end - start for phase, start, end in zip(PHASES, marks, marks[1:], strict=False)}
    sample[TOTAL] = marks[-1] - marks[0]
    return sample


def state_bytes(trainee: Trainee) -> dict[str, int]:
    """Bytes of the weights, of the gradients of what trains, and of the optimizer state (after a step)."""
    params = list(trainee.model.parameters())
    optimizer_state = 0
    if trainee.optimizer is not None:
        optimizer_state = sum(t.nbytes for state in trainee.optimizer.state.values()
                              for t in state.values() if torch.is_tensor(t))
    return {"weights": sum(p.nbytes for p in params),
            "gradients": sum(p.nbytes for p in params if p.requires_grad),
            "optimizer_state": optimizer_state}


def _mark(device: str) -> float:
    synchronize(device)
    return time.perf_counter()


def _autocast(precision: str, device: str) -> contextlib.AbstractContextManager:
    """Autocast as the run's Trainer (accelerate) applies it for `precision`, on `device`'s type."""
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in dtypes:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtypes[precision])
