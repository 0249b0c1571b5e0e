"""(IA)³ (Liu et al., 2022) through PEFT: learned vectors that rescale activations.

The vectors rescale the outputs of the chosen attention weights (keys and values in the paper) and the input
of the feed-forward output layer (`ffn`), i.e. the feed-forward activations.
They start at one, so training starts exactly at the backbone, and they merge into the weights. The
method's count is layers x (d_out per attention target + d_ff for ffn). One, not zero, is their neutral value:
with `exempt_from_decay` (on in ia3.yaml; T-Few trains without weight decay) they train without weight decay.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig
from peft import IA3Config as PeftIA3Config
from peft import get_peft_model
from torch import nn

from lora_repro.methods.registry import Row, check_bool, check_targets, register
from lora_repro.methods.targets import FFN, linear_layers, targets_key
from lora_repro.paper.claims import MATCHES, Claim
from lora_repro.paper.names import LORA


@dataclass(frozen=True)
class IA3Config:
    """Options of `conf/method/ia3.yaml` (documented there); validated on construction."""

    targets: list[str]
    exempt_from_decay: bool = False

    def __post_init__(self) -> None:
        check_bool("ia3 exempt_from_decay", self.exempt_from_decay)
        check_targets("ia3 targets", self.targets, "[k, v, ffn]")


def owns(name: str) -> bool:
    """True for (IA)³'s vectors (PEFT names them ia3_l)."""
    return "ia3_l" in name


def row_key(label: str, method: Mapping[str, Any]) -> str:
    """The label and weight set: `(IA)³ {k,v,ffn}`."""
    return f"{label} {{{targets_key(method['targets'])}}}"


CLAIM = Claim("(IA)³", "(IA)³ matches or exceeds LoRA with fewer parameters", "(IA)³", LORA, MATCHES,
              "Liu et al. (2022): (IA)³ matches or beats LoRA with fewer parameters, counting the method's own",
              scale="its paper: T0-3B, few-shot, 1,000 steps, no GLUE")


@register("ia3", config=IA3Config, owns=owns, off_zero=owns, rows=(Row("(IA)³", "black"),), order=8, row_key=row_key,
          bench=("ia3",), merges=True, untrained_start={"ia3_l": 1.0}, claim=CLAIM)
def apply(model: nn.Module, cfg: IA3Config, model_cfg: DictConfig) -> nn.Module:
    """Wrap the model with PEFT (IA)³: `ffn` rescales its layer's input, every other target its output.

    Returns:
        PEFT's `PeftModel` around `model`.

    Raises:
        UserError: a target that is unknown or matches no Linear layer.
    """
    layers = linear_layers(model, "ia3", cfg.targets, model_cfg)
    feedforward = linear_layers(model, "ia3", [FFN], model_cfg) if FFN in cfg.targets else {}
    peft_cfg = PeftIA3Config(target_modules=sorted(layers), feedforward_modules=sorted(feedforward))
    return get_peft_model(model, peft_cfg)
