"""Bottleneck adapters: h + up(act(down(h))) on the output of a sub-layer's projection, backbone frozen.

Each matched `nn.Linear` (by the regexes in `model_cfg.adapter_sites`, group 1 = layer index) becomes an
`AdapterLinear`: the same weight and bias under the same names, followed by a residual bottleneck. It sits
before the sub-layer's dropout, residual add and LayerNorm, where Houlsby et al. (2019) put it.

Variants (the LoRA paper's AdptH, AdptP, AdptD rows):
    houlsby: after the attention output and the feed-forward output; the layers' LayerNorms train too.
    pfeiffer: after the feed-forward output only (Pfeiffer et al., 2021).
    adapterdrop: Pfeiffer placement, no adapters in the lowest `drop_lowest` layers (Rücklé et al., 2020).

The method's count is the adapters alone, adapted layers x sites x (2·d·m + m + d), as in the paper; the
LayerNorms Houlsby trains are counted in `trainable` only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from lora_repro.errors import UserError, choose
from lora_repro.methods.registry import Row, check_int, register
from lora_repro.paper.names import ADPT_D, ADPT_H, ADPT_P

PREFIX = "adapter_"
VARIANTS = ("houlsby", "pfeiffer", "adapterdrop")
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}


@dataclass(frozen=True)
class AdapterConfig:
    """Options of `conf/method/adapter.yaml` (documented there); validated on construction."""

    variant: str
    bottleneck: int
    drop_lowest: int | None
    activation: str

    def __post_init__(self) -> None:
        choose("adapter variant", self.variant, VARIANTS)
        choose("adapter activation", self.activation, ACTIVATIONS)
        check_int("adapter bottleneck", self.bottleneck, 1)
        if self.drop_lowest is not None:
            if self.variant != "adapterdrop":
                raise UserError(f"adapter drop_lowest={self.drop_lowest} only applies to variant "
                                f"adapterdrop, not {self.variant!r}; set method.drop_lowest=null")
            check_int("adapter drop_lowest", self.drop_lowest, 1)


class AdapterLinear(nn.Linear):
    """An `nn.Linear` whose output goes through a residual bottleneck adapter.

    It takes over the wrapped layer's weight and bias (same names, so checkpoints and the backbone are
    unchanged) and adds `adapter_down`, `adapter_act`, `adapter_up`.
    """

    def __init__(self, base: nn.Linear, bottleneck: int, activation: str) -> None:
        # Built on meta, then handed the base layer's own parameters: no copy, no allocation.
        super().__init__(base.in_features, base.out_features, bias=base.bias is not None, device="meta")
        self.weight, self.bias = base.weight, base.bias
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.adapter_down = nn.Linear(base.out_features, bottleneck, **factory)
        self.adapter_act = ACTIVATIONS[activation]()
        self.adapter_up = nn.Linear(bottleneck, base.out_features, **factory)
        # A zero up-projection makes the adapter the identity: training starts from the backbone.
        nn.init.zeros_(self.adapter_up.weight)
        nn.init.zeros_(self.adapter_up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = super().forward(x)
        return h + self.adapter_up(self.adapter_act(self.adapter_down(h)))


def owns(name: str) -> bool:
    """True for the adapters' own parameters."""
    return PREFIX in name


def row_key(label: str, method: Mapping[str, Any]) -> str:
    """The label, the bottleneck and (AdapterDrop) the layers dropped: `AdptP m=16`, `AdptD m=32 drop=half`."""
    drop = method["drop_lowest"]
    dropped = "" if method["variant"] != "adapterdrop" else f" drop={'half' if drop is None else drop}"
    return f"{label} m={method['bottleneck']}{dropped}"


@register("adapter", config=AdapterConfig, owns=owns, order=2, row_key=row_key,
          rows=(Row(ADPT_D, "tab:purple", "adapterdrop"), Row(ADPT_P, "tab:orange", "pfeiffer"),
                Row(ADPT_H, "tab:red", "houlsby")),
          bench=("houlsby", "pfeiffer"), inference_layers=True, untrained_start={"adapter_up": 0.0},
          paper_presets={(ADPT_D, "0.3"): "adapterdrop_m32", (ADPT_D, "0.9"): "adapterdrop_m96",
                         (ADPT_P, "3.0"): "pfeiffer_m64", (ADPT_P, "0.8"): "pfeiffer_m16",
                         (ADPT_H, "6.0"): "houlsby_m64", (ADPT_H, "0.8"): "houlsby_m8"})
def apply(model: nn.Module, cfg: AdapterConfig, model_cfg: DictConfig) -> nn.Module:
    """Insert bottleneck adapters into the (frozen) model; for Houlsby, also unfreeze the layer norms.

    Args:
        model: the model, already frozen by `apply_method`.
        cfg: the validated adapter config.
        model_cfg: the model config: `adapter_sites` and `layer_norm_pattern` locate the modules.

    Returns:
        The same model, changed in place.

    Raises:
        UserError: a site regex or LayerNorm pattern that matches nothing, a bottleneck wider than the
            hidden size, or a `drop_lowest` that leaves no (or every) layer adapted.
    """
    # Everything is checked before the model changes, so a bad config leaves it as it was.
    sites = _adapted_sites(model, cfg, model_cfg)
    norms = _layer_norms(model, model_cfg.layer_norm_pattern) if cfg.variant == "houlsby" else []
    for name, module in sites.items():
        model.set_submodule(name, AdapterLinear(module, cfg.bottleneck, cfg.activation))
    for param in norms:
        param.requires_grad_(True)
    return model


def _adapted_sites(model: nn.Module, cfg: AdapterConfig, model_cfg: DictConfig) -> dict[str, nn.Linear]:
    """The linear layers that get an adapter, by module name."""
    kinds = ("attention", "ffn") if cfg.variant == "houlsby" else ("ffn",)
    sites: dict[str, tuple[int, nn.Module]] = {}
    for kind in kinds:
        pattern = _site_pattern(kind, model_cfg.adapter_sites[kind])
        found = {name: (int(match.group(1)), module) for name, module in model.named_modules()
                 if (match := pattern.search(name))}
        if not found:
            raise UserError(f"model.adapter_sites.{kind} {pattern.pattern!r} matches no module of this model")
        sites.update(found)
    for name, (_, module) in sites.items():
        if not isinstance(module, nn.Linear):
            raise UserError(f"adapter site {name} is a {type(module).__name__}, not a Linear layer; "
                            f"fix model.adapter_sites")
        if cfg.bottleneck > module.out_features:
            raise UserError(f"adapter bottleneck {cfg.bottleneck} is larger than the hidden size "
                            f"{module.out_features} of {name}; choose 1..{module.out_features}")
    lowest = _drop_lowest(cfg, num_layers=len({layer for layer, _ in sites.values()}))
    return {name: module for name, (layer, module) in sites.items() if layer >= lowest}


def _site_pattern(kind: str, pattern: str) -> re.Pattern[str]:
    try:
        compiled = re.compile(pattern)
    except re.error as err:
        raise UserError(f"model.adapter_sites.{kind} {pattern!r} is not a regex: {err}") from None
    if compiled.groups < 1:
        raise UserError(f"model.adapter_sites.{kind} {pattern!r} needs a group capturing the layer index")
    return compiled


def _drop_lowest(cfg: AdapterConfig, num_layers: int) -> int:
    """How many of the lowest layers get no adapter (0 unless the variant is adapterdrop)."""
    if cfg.variant != "adapterdrop":
        return 0
    if num_layers < 2:
        raise UserError(f"adapterdrop needs at least 2 layers to drop some, the model has {num_layers}")
    drop = num_layers // 2 if cfg.drop_lowest is None else cfg.drop_lowest
    return check_int(f"adapter drop_lowest (model has {num_layers} layers)", drop, 1, num_layers - 1)


def _layer_norms(model: nn.Module, pattern: str) -> list[nn.Parameter]:
    """The transformer layers' LayerNorm parameters, which Houlsby et al. train with the adapters."""
    norms = [param for name, param in model.named_parameters() if re.search(pattern, name)]
    if not norms:
        raise UserError(f"model.layer_norm_pattern {pattern!r} matches no parameter of this model")
    return norms
