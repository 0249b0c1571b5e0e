"""The weights a PEFT method adapts, named as in the paper and resolved against the model.

Configs name weights as the paper does: `q`, `k`, `v`, `o` (the attention projections, mapped to this
architecture's module-name suffixes by `model_cfg.lora_targets`) and `ffn` (the feed-forward block's output
layer, found by the regex `model_cfg.adapter_sites.ffn`). `linear_layers` turns a list of them into the full
names of the `nn.Linear` modules they denote, checked before PEFT sees them: PEFT silently skips a target that matches
nothing as long as another one matches. PEFT is then given these full names, so it adapts exactly them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from omegaconf import DictConfig
from torch import nn

from lora_repro.errors import UserError
from lora_repro.paper.names import WEIGHT_ORDER

__all__ = ["FFN", "layer_weight", "linear_layers", "targets_key", "weight_names"]

FFN = "ffn"


def targets_key(targets: Sequence[str]) -> str:
    """A weight set in the paper's order, e.g. `q,v` (the order given in the config is irrelevant)."""
    return ",".join(sorted(targets, key=lambda t: (WEIGHT_ORDER + (t,)).index(t)))


def weight_names(model_cfg: DictConfig) -> list[str]:
    """The weight names a config may use for this model: its `lora_targets` keys, then `ffn`."""
    return [*model_cfg.lora_targets, FFN]


def linear_layers(model: nn.Module, method: str, targets: list[str], model_cfg: DictConfig) -> dict[str, nn.Linear]:
    """The Linear layers (full name -> module) that the paper's weight names `targets` denote in `model`.

    Args:
        model: the model before PEFT wraps it.
        method: the method's name, for the messages (e.g. "lora").
        targets: weight names among q, k, v, o and ffn.
        model_cfg: the model config (`lora_targets`, `adapter_sites.ffn`).

    Raises:
        UserError: an unknown weight name, or one whose pattern matches no module or a module that is not
            a Linear layer (the message names the model-config field to fix).
    """
    layers: dict[str, nn.Linear] = {}
    for target in targets:
        layers.update(_target_layers(model, method, target, model_cfg))
    return layers


def _target_layers(model: nn.Module, method: str, target: str, model_cfg: DictConfig) -> dict[str, nn.Linear]:
    if target == FFN:
        field, pattern = "adapter_sites.ffn", model_cfg.adapter_sites.ffn
        matches = [(name, m) for name, m in model.named_modules() if re.search(pattern, name)]
    elif target in model_cfg.lora_targets:
        field, pattern = f"lora_targets.{target}", model_cfg.lora_targets[target]
        # PEFT's own rule for a name in a list: the whole module name, or a dotted suffix of it.
        matches = [(name, m) for name, m in model.named_modules() if name == pattern or name.endswith("." + pattern)]
    else:
        raise UserError(f"{method} target {target!r} not in {{{', '.join(weight_names(model_cfg))}}} "
                        "(model.lora_targets, plus ffn)")
    if not matches:
        raise UserError(f"{method} target {target!r} ({pattern!r}) matches no module of this model; "
                        f"fix model.{field}")
    for name, module in matches:
        if not isinstance(module, nn.Linear):
            raise UserError(f"{method} target {target!r} matches {name}, a {type(module).__name__}, "
                            f"not a Linear layer; fix model.{field}")
    return dict(matches)


def layer_weight(module: str, model_cfg: DictConfig) -> tuple[int, str] | None:
    """(layer index, paper weight name) of a module name, e.g. (3, "q"); None if no weight name matches it."""
    layer = re.search(r"layer\.(\d+)\.", module)
    if layer is None:
        return None
    for target, suffix in model_cfg.lora_targets.items():
        if module == suffix or module.endswith("." + suffix):
            return int(layer[1]), target
    if re.search(model_cfg.adapter_sites.ffn, module):
        return int(layer[1]), FFN
    return None
