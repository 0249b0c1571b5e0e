"""LoRA (Hu et al., 2021) through PEFT, and the successors PEFT implements as LoRA options.

LoRA is W x + (alpha / r) · B A x on the chosen weights. The successors are registered as methods of their
own with the same config:

* `dora` (Liu et al., 2024): W' = m · (W + s·B A) / ‖W + s·B A‖_c, a learned magnitude per output column
  (`lora_magnitude_vector`, counted as the method's) beside LoRA on the direction.
* `rslora` (Kalajdzievski, 2023): the scale is alpha / sqrt(r) instead of alpha / r.
* `pissa` (Meng et al., 2024): A and B start as W's top-r singular directions and W keeps the rest, frozen;
  the start is still exactly W, and the rebuilt model redoes the (deterministic) SVD, so saving A and B is
  enough.

DoRA's magnitudes start at ‖W‖_c and PiSSA's factors at W's principal part: 0 is not their neutral value, so
weight decay would pull the model off the backbone. With `exempt_from_decay` (on in dora.yaml and pissa.yaml)
they train without it (`OFF_ZERO`); plain LoRA's B A is neutral at 0, so the option changes nothing there.

Targets are the paper's weight names (q, k, v, o, ffn), resolved by `methods.targets`. PEFT's
`task_type`/`modules_to_save` are not used: they would copy the head and inflate the counts; the head is
unfrozen by name by `apply_method`, as for every method.

The method's count is lora_A + lora_B: layers x targets x r x (d_in + d_out) (+ d_out per layer for DoRA).

Speed (see README.md, "Cost benchmarks"): while training, PEFT's unmerged path costs a skinny matmul pair,
a scale and an add over the whole activation per adapted layer, forward and backward. `FusedLoraLinear`
computes the same function as x (W + s·B A)ᵀ + b: one matmul, with hand-written gradients for A and B only.
It is used only where it is exact (no LoRA dropout, one active adapter, frozen base, no autocast); everything
else, inference included, goes through PEFT's own forward.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from peft import LoraConfig as PeftLoraConfig
from peft import get_peft_model
from peft.tuners.lora.layer import Linear as PeftLoraLinear
from torch import nn

from lora_repro.errors import UserError
from lora_repro.methods.registry import Row, check_bool, check_dropout, check_int, check_number, check_targets, register
from lora_repro.methods.targets import linear_layers, targets_key
from lora_repro.paper.claims import BEATS, Claim
from lora_repro.paper.names import LORA

__all__ = ["FACTOR_KEY", "FAMILY", "PLAIN_UPDATE", "FusedLoraLinear", "LoraConfig", "owns", "restore_peft_forward",
           "update_scale"]

PREFIX = "lora_"
# The name of a LoRA factor inside the model: `<module>.lora_A.<adapter>.weight` (B likewise).
FACTOR_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<factor>[AB])\.[^.]+\.weight$")


@dataclass(frozen=True)
class Member:
    """One method of the LoRA family: the PEFT options that make it, and how it is shown and judged."""

    options: dict[str, Any]  # its extra `peft.LoraConfig` options
    row: Row
    order: float
    off_zero: re.Pattern | None = None  # its parameters whose neutral value is not 0 (PEFT's names)
    claim: Claim | None = None


def _beats_lora(label: str, source: str, scale: str) -> Claim:
    return Claim(label, f"{label} beats LoRA at the same rank", label, LORA, BEATS, source, scale=scale)


# Method name -> its member of the family.
FAMILY: dict[str, Member] = {
    "lora": Member({}, Row(LORA, "tab:blue"), 3),
    "dora": Member({"use_dora": True}, Row("DoRA", "tab:cyan"), 4, re.compile(r"\.lora_magnitude_vector\."),
                   _beats_lora("DoRA", "Liu et al. (2024): DoRA \"consistently outperforms LoRA\", at the same rank "
                               "(its count: LoRA's plus a magnitude per output feature)",
                               "its paper: LLaMA 7B-13B and vision-language models, no GLUE")),
    "rslora": Member({"use_rslora": True}, Row("rsLoRA", "tab:green"), 5, None,
                     _beats_lora("rsLoRA", "Kalajdzievski (2023): alpha/sqrt(r) learns better than alpha/r (its gain "
                                 "grows with r), at the same rank (its count: LoRA's)",
                                 "its paper: LLaMA 2 7B, no GLUE")),
    "pissa": Member({"init_lora_weights": "pissa"}, Row("PiSSA", "tab:olive"), 6, re.compile(r"\.lora_[AB]\."),
                    _beats_lora("PiSSA", "Meng et al. (2024): PiSSA converges faster and ends higher than LoRA, at "
                                "the same rank (its count: LoRA's)", "its paper: 12 models from DeBERTa-v3-base "
                                "(184M) to 70B, GLUE among its NLU tasks")),
}


@dataclass(frozen=True)
class LoraConfig:
    """Options of `conf/method/lora.yaml` (documented there); validated on construction."""

    r: int
    alpha: float
    dropout: float
    targets: list[str]
    exempt_from_decay: bool = False

    def __post_init__(self) -> None:
        check_int("lora rank r", self.r, 1)
        check_bool("lora exempt_from_decay", self.exempt_from_decay)
        check_number("lora alpha", self.alpha)
        check_dropout("lora dropout", self.dropout)
        check_targets("lora targets", self.targets)


def owns(name: str) -> bool:
    """True for the parameters of LoRA and its variants (PEFT names them lora_A, lora_B, lora_magnitude_vector)."""
    return PREFIX in name


def update_scale(method: str, alpha: float, r: int) -> float:
    """The factor s on B A: alpha / r, or alpha / sqrt(r) for the members that scale as rsLoRA does."""
    return float(alpha) / (math.sqrt(r) if FAMILY[method].options.get("use_rslora") else r)


# The members whose update is s·B A from a zero start, which Section 7's analysis reads (PiSSA starts from W's
# directions; DoRA rescales the result).
PLAIN_UPDATE = tuple(name for name, member in FAMILY.items()
                     if not member.options.get("use_dora") and member.options.get("init_lora_weights", True) is True)


def row_key(label: str, method: Mapping[str, Any]) -> str:
    """The label, rank, alpha and weight set: `LoRA r=8 α=16 {q,v}`."""
    return f"{label} r={method['r']} α={method['alpha']} {{{targets_key(method['targets'])}}}"


def apply(model: nn.Module, cfg: LoraConfig, model_cfg: DictConfig, *, method: str,
          peft_options: dict[str, Any]) -> nn.Module:
    """Wrap the model with PEFT LoRA (as `method`, with its `FAMILY` options) on the configured targets.

    Args:
        model: the model, already frozen by `apply_method` (with its real weights, for PiSSA's SVD).
        cfg: the validated LoRA config.
        model_cfg: the model config: where the paper's weight names are in this architecture.
        method: the method's name (lora, dora, rslora or pissa), for the messages.
        peft_options: its extra `peft.LoraConfig` options.

    Returns:
        PEFT's `PeftModel` around `model` (into which the LoRA layers are injected in place).

    Raises:
        UserError: an unknown target, a target that matches no linear layer, or a rank larger than a
            targeted layer allows.
    """
    layers = linear_layers(model, method, cfg.targets, model_cfg)
    for name, module in layers.items():
        bound = min(module.in_features, module.out_features)
        if cfg.r > bound:
            raise UserError(f"{method} rank r={cfg.r} is larger than layer {name} allows "
                            f"({module.in_features} -> {module.out_features}): r must be <= {bound}")
    if any(module.weight.is_meta for module in layers.values()):
        peft_options = {**peft_options, "init_lora_weights": True}  # PiSSA's SVD needs weights; meta is counted only
    peft_cfg = PeftLoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                              target_modules=sorted(layers), bias="none", **peft_options)
    peft_model = get_peft_model(model, peft_cfg)
    for module in peft_model.modules():
        if type(module) is PeftLoraLinear:
            # Same parameters and state, one more forward path: a class swap, not a copy.
            module.__class__ = FusedLoraLinear
    return peft_model


def restore_peft_forward(model: nn.Module) -> nn.Module:
    """Put PEFT's own forward back on every LoRA layer (the bench's out-of-the-box baseline)."""
    for module in model.modules():
        if type(module) is FusedLoraLinear:
            module.__class__ = PeftLoraLinear
    return model


class _MergedWeightLora(torch.autograd.Function):
    """y = x (W + s·B A)ᵀ + b in one matmul, with gradients for A and B only (W and b are frozen).

    Backward: dA = s·(g B)ᵀ x and dB = s·gᵀ (x Aᵀ), where g B and x Aᵀ are (tokens x r), so LoRA's own
    gradients cost two skinny matmuls; dx = g (W + s·B A) is the one matmul a frozen layer needs anyway.
    The merged weight is rebuilt in backward (d·r·d work) rather than saved: saving it would hold a copy of
    every adapted weight until backward, which on a large model is hundreds of MB.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scaling):  # noqa: D102 (autograd hook)
        ctx.save_for_backward(x, weight, lora_a, lora_b)
        ctx.scaling = scaling
        return F.linear(x, torch.addmm(weight, lora_b, lora_a, alpha=scaling), bias)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102 (autograd hook)
        x, weight, lora_a, lora_b = ctx.saved_tensors
        g, x2 = grad.reshape(-1, grad.shape[-1]), x.reshape(-1, x.shape[-1])
        grad_a = (g @ lora_b).T.mm(x2).mul_(ctx.scaling) if ctx.needs_input_grad[3] else None
        grad_b = g.T.mm(x2 @ lora_a.T).mul_(ctx.scaling) if ctx.needs_input_grad[4] else None
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = grad @ torch.addmm(weight, lora_b, lora_a, alpha=ctx.scaling)
        return grad_x, None, None, grad_a, grad_b, None


class FusedLoraLinear(PeftLoraLinear):
    """PEFT's LoRA `Linear`, with the one-matmul training path of `_MergedWeightLora` where it is exact."""

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:  # noqa: D102 (nn.Module)
        if not self._fusable(x, args, kwargs):
            return super().forward(x, *args, **kwargs)
        name, base = self.active_adapters[0], self.base_layer
        return _MergedWeightLora.apply(x, base.weight, base.bias, self.lora_A[name].weight,
                                       self.lora_B[name].weight, self.scaling[name])

    def _fusable(self, x: torch.Tensor, args: tuple, kwargs: dict) -> bool:
        # Inference stays on PEFT's path, so "unmerged" latency is PEFT's; merging is the inference fix.
        if args or kwargs or not torch.is_grad_enabled() or self.disable_adapters or self.merged \
                or self.fan_in_fan_out or len(self.active_adapters) != 1:
            return False
        name, base = self.active_adapters[0], self.base_layer
        if name not in self.lora_A or name in self.lora_variant or not isinstance(self.lora_dropout[name],
                                                                                  nn.Identity):
            return False  # LoRA dropout applies to x on the LoRA path only, which one matmul cannot do
        frozen = not base.weight.requires_grad and (base.bias is None or not base.bias.requires_grad)
        return frozen and not _autocast_on(x.device.type) and x.dtype == base.weight.dtype \
            == self.lora_A[name].weight.dtype == self.lora_B[name].weight.dtype


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 has no device argument
        return torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()


for _method, _member in FAMILY.items():
    register(_method, config=LoraConfig, owns=owns, rows=(_member.row,), order=_member.order, row_key=row_key,
             off_zero=_member.off_zero.search if _member.off_zero else None, bench=(_method,), merges=True,
             untrained_start={"lora_B": 0.0}, claim=_member.claim,
             paper_presets={(LORA, None): "lora_paper"} if _member.row.label == LORA else {})(
        partial(apply, method=_method, peft_options=_member.options))
