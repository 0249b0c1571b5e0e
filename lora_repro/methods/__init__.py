"""Fine-tuning methods: one registry, one way to apply, count and save them.

Each method is a small module of this package, found and imported here, that declares everything it is with
`registry.register`: a validated config dataclass, an `apply(model, cfg, model_cfg)` function, a predicate naming
its own parameters, and how it is shown and judged. This package does the parts every method shares, so they live in one
place:

* `apply_method` freezes the backbone, lets the method add or unfreeze its parameters, then unfreezes the
  classification head named by `model_cfg.head_modules` (module-name prefixes, never architecture if-chains).
* `count_parameters` reports the paper's count (the method's own parameters, head excluded), everything that
  trains, and the model's total.
* `trainable_state_dict` / `load_trainable_state_dict` save and restore exactly what trains.

Parameter names are those of the transformers model (for LoRA: inside PEFT's wrapper), so checkpoints do not
depend on whether PEFT is in the way.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from peft import PeftModel
from torch import nn

from lora_repro.errors import UserError
from lora_repro.methods.registry import METHODS, Method, check_int, method_names, method_of, register

# Importing every module of this package registers its methods: a new method is a new module, listed nowhere.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "METHODS",
    "Method",
    "ParamCounts",
    "apply_method",
    "check_int",
    "count_parameters",
    "in_head",
    "load_trainable_state_dict",
    "method_names",
    "register",
    "check_method_config",
    "trainable_state_dict",
    "training_callbacks",
    "decay_exempt",
    "final_budget",
]

# Where apply_method leaves the head prefixes, because count_parameters only gets the method config.
HEAD_ATTR = "lora_repro_head_modules"


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts of a model with a method applied.

    Attributes:
        method: what the method itself trains, head excluded (the paper's "# Trainable Parameters").
        trainable: everything that trains (method + head + e.g. Houlsby's layer norms).
        total: every parameter of the final model (backbone + added).
    """

    method: int
    trainable: int
    total: int


def check_method_config(method_cfg: DictConfig) -> None:
    """Validate a method config on its own, before any model is loaded.

    Raises:
        UserError: unknown method or a bad option value.
    """
    _build_config(_method(method_cfg.name), method_cfg)


def apply_method(model: nn.Module, method_cfg: DictConfig, model_cfg: DictConfig) -> nn.Module:
    """Prepare `model` for training with the method `method_cfg.name`.

    Args:
        model: a transformers sequence-classification model (on any device, including meta).
        method_cfg: the `method` config group (its name and the method's own options).
        model_cfg: the `model` config group; `head_modules` names the head that always trains.

    Returns:
        The model to train: `model` itself, changed in place, or PEFT's `PeftModel` wrapping it for LoRA.

    Raises:
        UserError: unknown method, bad option value, or a config that does not fit this model.
    """
    method = _method(method_cfg.name)
    cfg = _build_config(method, method_cfg)
    heads = tuple(model_cfg.head_modules)
    model.requires_grad_(False)
    model = method.apply(model, cfg, model_cfg)
    _unfreeze_head(_inner(model), heads)
    return model


def training_callbacks(method_cfg: DictConfig) -> list[Any]:
    """The Trainer callbacks the method needs while it trains (AdaLoRA's rank budget); most need none."""
    method = _method(method_cfg.name)
    return [method.callback(_build_config(method, method_cfg))] if method.callback else []


def decay_exempt(method_cfg: DictConfig) -> Callable[[str], bool]:
    """Predicate on a parameter name: True where weight decay must not apply.

    Those are the method's `off_zero` parameters when its config sets `exempt_from_decay`; the Trainer's own
    exemptions (biases, layer norms) stay as they are.
    """
    method = _method(method_cfg.name)
    if method.off_zero is None or not method_cfg.get("exempt_from_decay", False):
        return lambda name: False
    return method.off_zero


def final_budget(model: nn.Module, method_cfg: DictConfig) -> tuple[dict[str, int] | None, int | None]:
    """The final rank of each adapted weight and the parameters in use, for a method that budgets its ranks."""
    method = _method(method_cfg.name)
    return method.final_budget(model) if method.final_budget else (None, None)


def count_parameters(model: nn.Module, method_cfg: DictConfig) -> ParamCounts:
    """Count the parameters of a model returned by `apply_method` (works on the meta device).

    Args:
        model: the model `apply_method` returned.
        method_cfg: the method config it was applied with.

    Returns:
        The method's own, trainable and total parameter counts.

    Raises:
        ValueError: if the model did not go through `apply_method` (its head is unknown).
    """
    owns = _method(method_cfg.name).owns
    inner = _inner(model)
    heads = getattr(inner, HEAD_ATTR, None)
    if heads is None:
        raise ValueError("count_parameters needs a model returned by apply_method")
    method = trainable = total = 0
    for name, param in inner.named_parameters():
        total += param.numel()
        if param.requires_grad:
            trainable += param.numel()
            # The paper counts what the method adds or unfreezes; the head trains under every method.
            if owns(name) and not in_head(name, heads):
                method += param.numel()
    return ParamCounts(method=method, trainable=trainable, total=total)


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Return every parameter that trains, by name: what a run saves (ready for safetensors)."""
    return {name: p.detach() for name, p in _inner(model).named_parameters() if p.requires_grad}


def load_trainable_state_dict(model: nn.Module, state: dict[str, torch.Tensor], skip_head: bool = False) -> None:
    """Copy a saved `trainable_state_dict` into a fresh model with the same method applied.

    Args:
        model: the model `apply_method` returned, built like the one that was saved.
        state: the saved tensors.
        skip_head: leave the head as it is and load only the method's weights: a run that starts from
            another task's run (`train.init_from`), whose head has another task's shape.

    Raises:
        UserError: a missing or unexpected key, or a shape that differs (wrong method, model or options).
    """
    inner = _inner(model)
    heads = getattr(inner, HEAD_ATTR, ()) if skip_head else ()
    params = {name: p for name, p in inner.named_parameters() if p.requires_grad and not in_head(name, heads)}
    state = {name: t for name, t in state.items() if not in_head(name, heads)}
    missing, unexpected = sorted(params.keys() - state.keys()), sorted(state.keys() - params.keys())
    if missing or unexpected:
        raise UserError(f"saved parameters do not fit this model and method: missing {missing[:5]} "
                        f"({len(missing)} in all), unexpected {unexpected[:5]} ({len(unexpected)} in all)")
    for name, param in params.items():
        if param.shape != state[name].shape:
            raise UserError(f"saved parameter {name} has shape {tuple(state[name].shape)}, "
                            f"the model expects {tuple(param.shape)}")
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(state[name])


def _method(name: str) -> Method:
    return method_of({"name": name})


def _build_config(method: Method, method_cfg: DictConfig) -> Any:
    """Build the method's config dataclass from its config group, rejecting unknown and missing keys."""
    values = OmegaConf.to_container(method_cfg, resolve=True)
    values.pop("name", None)  # which method, not one of its options
    fields = {f.name for f in dataclasses.fields(method.config_cls)}
    required = {f.name for f in dataclasses.fields(method.config_cls) if f.default is dataclasses.MISSING}
    unknown, missing = sorted(values.keys() - fields), sorted(required - values.keys())
    if unknown or missing:
        raise UserError(f"method {method.name}: unknown options {unknown}, missing options {missing}; "
                        f"it takes exactly {sorted(fields)} (see conf/method/{method.name}.yaml)")
    return method.config_cls(**values)


def _inner(model: nn.Module) -> nn.Module:
    """The transformers model itself: PEFT injects LoRA into it in place, so names stay the model's own."""
    return model.get_base_model() if isinstance(model, PeftModel) else model


def _unfreeze_head(inner: nn.Module, heads: tuple[str, ...]) -> None:
    """Unfreeze every parameter under the head prefixes, and remember them for counting."""
    for head in heads:
        params = [p for name, p in inner.named_parameters() if in_head(name, (head,))]
        if not params:
            raise UserError(f"model.head_modules entry {head!r} matches no parameter of this model; "
                            f"list the module-name prefixes of its classification head (e.g. classifier)")
        for param in params:
            param.requires_grad_(True)
    setattr(inner, HEAD_ATTR, heads)


def in_head(name: str, heads: tuple[str, ...]) -> bool:
    """True if parameter or key `name` lies under one of the head's module prefixes."""
    return any(name == h or name.startswith(h + ".") for h in heads)


