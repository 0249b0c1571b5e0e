"""Full fine-tuning: every parameter of the model trains."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig
from torch import nn

from lora_repro.methods.registry import Row, register
from lora_repro.paper.names import FT


@dataclass(frozen=True)
class FullFTConfig:
    """Full fine-tuning has no options of its own (its learning rate belongs to the runner)."""


def owns(name: str) -> bool:
    """Every parameter is the method's own; the head is subtracted by `count_parameters`."""
    return True


@register("full_ft", config=FullFTConfig, owns=owns, rows=(Row(FT, "tab:gray"),), order=0, whole_model=True,
          bench=("full_ft",), paper_presets={(FT, None): "full_ft"})
def apply(model: nn.Module, cfg: FullFTConfig, model_cfg: DictConfig) -> nn.Module:
    """Unfreeze the whole model.

    Args:
        model: the model to fine-tune.
        cfg: the (empty) method config.
        model_cfg: the model config (unused: nothing here depends on the architecture).

    Returns:
        The same model, every parameter trainable.
    """
    return model.requires_grad_(True)
