"""LoRA (Hu et al., 2021) through PEFT: W x + (alpha / r) · B A x on the chosen attention weights.

Targets are the paper's names (q, k, v, o), mapped to this architecture's module names by
`model_cfg.lora_targets`. Each target is checked against the model before PEFT sees it, because PEFT
silently skips a target name that matches nothing as long as another one matches. PEFT's
`task_type`/`modules_to_save` are not used: they would copy the head and inflate the counts; the head is
unfrozen by name by `apply_method`, as for every method.

The method's count is lora_A + lora_B: layers x targets x r x (d_in + d_out).
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig
from peft import LoraConfig as PeftLoraConfig
from peft import get_peft_model
from torch import nn

from lora_repro.errors import UserError
from lora_repro.methods import check_int, register

PREFIX = "lora_"


@dataclass(frozen=True)
class LoraConfig:
    """Options of `conf/method/lora.yaml` (documented there); validated on construction."""

    r: int
    alpha: float
    dropout: float
    targets: list[str]

    def __post_init__(self) -> None:
        check_int("lora rank r", self.r, 1)
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, int | float) or self.alpha <= 0:
            raise UserError(f"lora alpha must be a number > 0, got {self.alpha!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, int | float) \
                or not 0 <= self.dropout < 1:
            raise UserError(f"lora dropout must be in [0, 1), got {self.dropout!r}")
        if not isinstance(self.targets, list) or not self.targets:
            raise UserError(f"lora targets must be a non-empty list such as [q, v], got {self.targets!r}")
        repeated = sorted({t for t in self.targets if self.targets.count(t) > 1})
        if repeated:
            raise UserError(f"lora targets repeat {repeated}: list each weight once, got {self.targets}")


def owns(name: str) -> bool:
    """True for LoRA's own parameters (PEFT names them lora_A / lora_B)."""
    return PREFIX in name


@register("lora", config=LoraConfig, owns=owns)
def apply(model: nn.Module, cfg: LoraConfig, model_cfg: DictConfig) -> nn.Module:
    """Wrap the model with PEFT LoRA on the configured targets.

    Args:
        model: the model, already frozen by `apply_method`.
        cfg: the validated LoRA config.
        model_cfg: the model config: `lora_targets` maps q/k/v/o to module-name suffixes.

    Returns:
        PEFT's `PeftModel` around `model` (into which the LoRA layers are injected in place).

    Raises:
        UserError: an unknown target, a target that matches no linear layer, or a rank larger than a
            targeted layer allows.
    """
    suffixes = [_suffix(target, model_cfg.lora_targets) for target in cfg.targets]
    for target, suffix in zip(cfg.targets, suffixes, strict=True):
        _check_rank(model, target, suffix, cfg.r)
    peft_cfg = PeftLoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                              target_modules=suffixes, bias="none")
    return get_peft_model(model, peft_cfg)


def _suffix(target: str, lora_targets: DictConfig) -> str:
    if target not in lora_targets:
        raise UserError(f"lora target {target!r} not in {{{', '.join(lora_targets)}}} (model.lora_targets)")
    return lora_targets[target]


def _check_rank(model: nn.Module, target: str, suffix: str, r: int) -> None:
    """Check that `suffix` matches Linear layers (whole name or dotted suffix, as PEFT matches) that fit r."""
    layers = [(name, module) for name, module in model.named_modules()
              if name == suffix or name.endswith("." + suffix)]
    if not layers:
        raise UserError(f"lora target {target!r} ({suffix!r}) matches no module of this model; "
                        f"fix model.lora_targets.{target}")
    for name, module in layers:
        if not isinstance(module, nn.Linear):
            raise UserError(f"lora target {target!r} matches {name}, a {type(module).__name__}, "
                            f"not a Linear layer; fix model.lora_targets.{target}")
        bound = min(module.in_features, module.out_features)
        if r > bound:
            raise UserError(f"lora rank r={r} is larger than layer {name} allows "
                            f"({module.in_features} -> {module.out_features}): r must be <= {bound}")
