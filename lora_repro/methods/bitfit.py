"""BitFit (Ben Zaken et al., 2021): only the bias terms train, plus the task head.

"Bias terms" are all of them: of the attention projections, the feed-forward layers, every LayerNorm (the
embedding one included) and, in DeBERTa, the relative-position convolution. On RoBERTa-base this is exactly
the LoRA paper's 102,144 (12 layers x 8,448 + the embedding LayerNorm's 768): the paper's figure leaves out
the head's biases (classifier.dense 768 + out_proj 2), as `count_parameters` does.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig
from torch import nn

from lora_repro.methods.registry import Row, register
from lora_repro.paper.names import BITFIT


@dataclass(frozen=True)
class BitFitConfig:
    """BitFit has no options of its own (its learning rate belongs to the runner)."""


def owns(name: str) -> bool:
    """True for bias parameters (by name, as transformers and torch name them)."""
    return name == "bias" or name.endswith(".bias")


@register("bitfit", config=BitFitConfig, owns=owns, rows=(Row(BITFIT, "tab:brown"),), order=1, bench=("bitfit",),
          paper_presets={(BITFIT, None): "bitfit"})
def apply(model: nn.Module, cfg: BitFitConfig, model_cfg: DictConfig) -> nn.Module:
    """Unfreeze every bias of the (frozen) model.

    Args:
        model: the model, already frozen by `apply_method`.
        cfg: the (empty) method config.
        model_cfg: the model config (unused: biases are found by name in any architecture).

    Returns:
        The same model with its biases trainable.
    """
    for name, param in model.named_parameters():
        if owns(name):
            param.requires_grad_(True)
    return model
