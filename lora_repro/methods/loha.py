"""LoHa (Hyeon-Woo et al., 2022, FedPara; the LyCORIS family) through PEFT: ΔW = (B₁ A₁) ⊙ (B₂ A₂).

A Hadamard product of two rank-r products reaches rank r² with the parameters of two rank-r LoRA updates:
layers x targets x 2r x (d_in + d_out). One factor (B₂) starts at zero, so training starts exactly at the backbone,
and the update merges into the weights as LoRA's does. The scale is alpha / r, as in PEFT.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig
from peft import LoHaConfig as PeftLoHaConfig
from peft import get_peft_model
from torch import nn

from lora_repro.methods.registry import Row, check_int, check_number, check_targets, register
from lora_repro.methods.targets import linear_layers, targets_key


@dataclass(frozen=True)
class LoHaConfig:
    """Options of `conf/method/loha.yaml` (documented there); validated on construction."""

    r: int
    alpha: float
    targets: list[str]

    def __post_init__(self) -> None:
        check_int("loha rank r", self.r, 1)
        check_number("loha alpha", self.alpha)
        check_targets("loha targets", self.targets)


def owns(name: str) -> bool:
    """True for LoHa's four factors per weight (PEFT names them hada_w1_a, hada_w1_b, hada_w2_a, hada_w2_b)."""
    return ".hada_" in name


def row_key(label: str, method: Mapping[str, Any]) -> str:
    """The label, rank, alpha and weight set: `LoHa r=4 α=8 {q,v}`."""
    return f"{label} r={method['r']} α={method['alpha']} {{{targets_key(method['targets'])}}}"


@register("loha", config=LoHaConfig, owns=owns, rows=(Row("LoHa", "magenta"),), order=10, row_key=row_key,
          bench=("loha",), merges=True, untrained_start={"hada_w2_b": 0.0})
def apply(model: nn.Module, cfg: LoHaConfig, model_cfg: DictConfig) -> nn.Module:
    """Wrap the model with PEFT LoHa on the configured targets.

    Returns:
        PEFT's `PeftModel` around `model`.

    Raises:
        UserError: a target that is unknown or matches no Linear layer.
    """
    layers = linear_layers(model, "loha", cfg.targets, model_cfg)
    return get_peft_model(model, PeftLoHaConfig(r=cfg.r, alpha=cfg.alpha, target_modules=sorted(layers)))
