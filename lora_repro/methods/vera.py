"""VeRA (Kopiczko et al., 2024) through PEFT: ΔW = Λ_b B Λ_d A with A, B random, frozen and shared.

A and B are shared by every adapted layer; each layer trains only the two scaling vectors d (length r) and
b (length d_out).

A and B are drawn from `projection_seed`, so a rebuilt model has the same ones and a run saves only the
vectors. b starts at zero, so training starts exactly at the backbone. The method's count is
layers x targets x (r + d_out); VeRA's rank is large (256 in the paper) because it costs only r per layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig
from peft import VeraConfig as PeftVeraConfig
from peft import get_peft_model
from torch import nn

from lora_repro.methods.registry import Row, check_dropout, check_int, check_number, check_targets, register
from lora_repro.methods.targets import linear_layers, targets_key
from lora_repro.paper.claims import MATCHES, Claim
from lora_repro.paper.names import LORA


@dataclass(frozen=True)
class VeraConfig:
    """Options of `conf/method/vera.yaml` (documented there); validated on construction."""

    r: int
    d_initial: float
    dropout: float
    targets: list[str]
    projection_seed: int

    def __post_init__(self) -> None:
        check_int("vera rank r", self.r, 1)
        check_int("vera projection_seed", self.projection_seed, 0)
        check_number("vera d_initial", self.d_initial)
        check_dropout("vera dropout", self.dropout)
        check_targets("vera targets", self.targets)


def owns(name: str) -> bool:
    """True for VeRA's trained vectors (PEFT names them vera_lambda_b / vera_lambda_d)."""
    return "vera_lambda_" in name


def row_key(label: str, method: Mapping[str, Any]) -> str:
    """The label, rank and weight set: `VeRA r=256 {q,v}`."""
    return f"{label} r={method['r']} {{{targets_key(method['targets'])}}}"


CLAIM = Claim("VeRA", "VeRA matches or exceeds LoRA with fewer parameters", "VeRA", LORA, MATCHES,
              "Kopiczko et al. (2024): VeRA matches LoRA on GLUE with 10x fewer trainable parameters, counting the "
              "method's own (head excluded)", scale="its paper: RoBERTa-base/large, 60 epochs on SST-2, 80 on CoLA")


@register("vera", config=VeraConfig, owns=owns, rows=(Row("VeRA", "tab:pink"),), order=7, row_key=row_key,
          bench=("vera",), merges=True, untrained_start={"vera_lambda_b": 0.0}, claim=CLAIM)
def apply(model: nn.Module, cfg: VeraConfig, model_cfg: DictConfig) -> nn.Module:
    """Wrap the model with PEFT VeRA on the configured targets.

    Returns:
        PEFT's `PeftModel` around `model`.

    Raises:
        UserError: a target that is unknown or matches no Linear layer.
    """
    layers = linear_layers(model, "vera", cfg.targets, model_cfg)
    peft_cfg = PeftVeraConfig(r=cfg.r, target_modules=sorted(layers), projection_prng_key=cfg.projection_seed,
                              vera_dropout=cfg.dropout, d_initial=cfg.d_initial)
    return get_peft_model(model, peft_cfg)
