"""The method registry: each method module registers its config, apply function and parameter predicate here.

Kept apart from the package's `__init__`, which imports every method module to fill the registry: a method
module imports this, never the package, so there is no import cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig
from torch import nn

from lora_repro.errors import UserError

__all__ = ["METHODS", "Method", "check_bool", "check_int", "method_names", "register"]


@dataclass(frozen=True)
class Method:
    """A registered method: its config schema, how to apply it, and which parameter names are its own."""

    name: str
    config_cls: type
    apply: Callable[[nn.Module, Any, DictConfig], nn.Module]
    owns: Callable[[str], bool]
    callback: Callable[[Any], Any] | None = None  # a Trainer callback the method needs while training, from its config
    # Parameters whose neutral value (the one that leaves the backbone unchanged) is not 0, e.g. (IA)^3's scalings:
    # weight decay would pull them off the backbone, so they train without it when the config says so.
    off_zero: Callable[[str], bool] | None = None
    # After training: the rank each adapted weight ended with and the parameters still in use (AdaLoRA's budget).
    final_budget: Callable[[nn.Module], tuple[dict[str, int], int]] | None = None


METHODS: dict[str, Method] = {}


def register(name: str, *, config: type, owns: Callable[[str], bool],
             callback: Callable[[Any], Any] | None = None, off_zero: Callable[[str], bool] | None = None,
             final_budget: Callable[[nn.Module], tuple[dict[str, int], int]] | None = None) -> Callable:
    """Register the decorated `apply(model, cfg, model_cfg)` function as method `name`.

    Args:
        name: the method's name, as in `conf/method/<name>.yaml`.
        config: the method's config dataclass, built from the method config minus the runner's keys.
        owns: predicate on a parameter name: True if the method counts it as its own.
        callback: from the method's config, a `TrainerCallback` it needs during training (AdaLoRA's budget).
        off_zero: predicate on a parameter name: True where the neutral value is not 0 (exempt from decay).
        final_budget: from the trained model, the final rank per adapted weight and the parameters in use.

    Returns:
        A decorator that records the function and returns it unchanged.

    Raises:
        ValueError: if `name` is already registered (a programming error, not bad input).
    """
    def decorator(apply: Callable[[nn.Module, Any, DictConfig], nn.Module]) -> Callable:
        if name in METHODS:
            raise ValueError(f"method {name!r} is already registered")
        METHODS[name] = Method(name, config, apply, owns, callback, off_zero, final_budget)
        return apply

    return decorator


def method_names() -> list[str]:
    """Return the registered method names, sorted."""
    return sorted(METHODS)


def check_int(what: str, value: Any, low: int, high: int | None = None) -> int:
    """Return `value` if it is an int in [low, high], else raise a `UserError` naming it and the range.

    Args:
        what: the option, as the user would name it (e.g. "lora rank r").
        value: the value given.
        low: the smallest accepted value.
        high: the largest accepted value, or None for no upper bound.

    Returns:
        `value`, unchanged.

    Raises:
        UserError: e.g. "lora rank r must be > 0, got -4".
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{what} must be an integer, got {value!r}")
    if value < low:
        raise UserError(f"{what} must be > {low - 1}, got {value}")
    if high is not None and value > high:
        raise UserError(f"{what} must be <= {high}, got {value}")
    return value


def check_bool(what: str, value: Any) -> bool:
    """Return `value` if it is true or false, else raise a `UserError` naming it."""
    if not isinstance(value, bool):
        raise UserError(f"{what} must be true or false, got {value!r}")
    return value
