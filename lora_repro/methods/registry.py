"""The method registry: each method module declares everything the method is here, once.

A declaration holds how the method trains (config, apply, the parameters it owns, callback, weight-decay policy,
runner constraints) and how it is shown (its rows' labels and colours, its place in the tables, what tells its
rows apart, what the bench times, its paper's claim). Every list of methods in the code, the reports, the bench
and the Makefile's help derives from here, so a new method is one module and one config file.

Kept apart from the package's `__init__`, which imports every method module to fill the registry: a method
module imports this, never the package, so there is no import cycle.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig
from torch import nn

from lora_repro.errors import UserError, choose
from lora_repro.paper.claims import Claim

__all__ = ["METHODS", "Method", "Row", "bench_presets", "check_bool", "check_int", "label_colours", "label_order",
           "latency_presets", "method_label", "method_names", "method_of", "method_row_key", "name_of", "paper_presets",
           "register", "successor_claims", "trains_whole_model", "untrained_starts"]


@dataclass(frozen=True)
class Row:
    """A row a method prints under: its label, its colour in the figures, and the `variant` option behind it."""

    label: str
    colour: str
    variant: str | None = None  # None: every config of the method (adapters tell their rows apart by variant)


def label_only(label: str, method_cfg: Mapping[str, Any]) -> str:
    """The default row key: the label alone (a method with no options that tell its rows apart)."""
    return label


@dataclass(frozen=True)
class Method:
    """A registered method: its config schema, how to apply it, and which parameter names are its own."""

    name: str
    config_cls: type
    apply: Callable[[nn.Module, Any, DictConfig], nn.Module]
    owns: Callable[[str], bool]
    rows: tuple[Row, ...]
    order: float  # its place in every table and list: the paper's Table 2 order, then the successors
    # The row key from the label and the method config: the label plus the options that tell its rows apart.
    row_key: Callable[[str, Mapping[str, Any]], str] = label_only
    callback: Callable[[Any], Any] | None = None  # a Trainer callback the method needs while training, from its config
    # Parameters whose neutral value (the one that leaves the backbone unchanged) is not 0, e.g. (IA)^3's scalings:
    # weight decay would pull them off the backbone, so they train without it when the config says so.
    off_zero: Callable[[str], bool] | None = None
    # After training: the rank each adapted weight ended with and the parameters still in use (AdaLoRA's budget).
    final_budget: Callable[[nn.Module], tuple[dict[str, int], int]] | None = None
    # Trains every weight of the model: its weights are saved only on request, its backward runs through all.
    whole_model: bool = False
    # Needs one process and no gradient accumulation (AdaLoRA: its penalty rides in the model's own loss).
    single_process: bool = False
    bench: tuple[str, ...] = ()  # the `conf/method` presets `make bench` times
    merges: bool = False  # folds into the weights like LoRA: its latency is timed unmerged and merged
    inference_layers: bool = False  # adds layers that stay at inference (adapters): its latency is timed as is
    # Parameter-name marker -> the value it starts at, which training would have moved (the bench's weights).
    untrained_start: Mapping[str, float] = field(default_factory=dict)
    # The paper's Table 2 rows it reproduces: (label, printed count in millions or None for every count) -> preset.
    paper_presets: Mapping[tuple[str, str | None], str] = field(default_factory=dict)
    claim: Claim | None = None  # what its own paper claims against LoRA (LoRA's successors)


METHODS: dict[str, Method] = {}


def register(name: str, *, config: type, owns: Callable[[str], bool], rows: tuple[Row, ...], order: float,
             **declared: Any) -> Callable:
    """Register the decorated `apply(model, cfg, model_cfg)` function as method `name`.

    Args:
        name: the method's name, as in `conf/method/<name>.yaml`.
        config: the method's config dataclass, built from the method config minus the runner's keys.
        owns: predicate on a parameter name: True if the method counts it as its own.
        rows: the rows it prints under (one, or one per `variant`), with their labels and colours.
        order: its place in the tables (the paper's methods 0-3 in Table 2's order, the successors after).
        declared: the rest of `Method`'s fields (row_key, callback, off_zero, final_budget, whole_model,
            single_process, bench, merges, untrained_start, paper_presets, claim).

    Returns:
        A decorator that records the function and returns it unchanged.

    Raises:
        ValueError: if `name` is already registered (a programming error, not bad input).
    """
    def decorator(apply: Callable[[nn.Module, Any, DictConfig], nn.Module]) -> Callable:
        if name in METHODS:
            raise ValueError(f"method {name!r} is already registered")
        METHODS[name] = Method(name, config, apply, owns, rows, order, **declared)
        return apply

    return decorator


def method_names() -> list[str]:
    """Return the registered method names, in table order."""
    return [m.name for m in sorted(METHODS.values(), key=lambda m: m.order)]


def method_of(method_cfg: Mapping[str, Any]) -> Method:
    """The declaration of a method config (`name` picks it); unknown names get a `UserError` listing the known."""
    return METHODS[choose("method", method_cfg["name"], METHODS)]


def trains_whole_model(method_cfg: Mapping[str, Any]) -> bool:
    """True for a method that trains every weight: saved only on request, its backward through the whole model.

    False for a method this install does not declare (an old record's, say).
    """
    method = METHODS.get(method_cfg["name"])
    return method is not None and method.whole_model


def _row(method_cfg: Mapping[str, Any]) -> Row:
    if method_cfg["name"] not in METHODS:  # a record of a method this install does not declare: its own name
        return Row(method_cfg["name"], "black")
    method = METHODS[method_cfg["name"]]
    variant = method_cfg.get("variant")
    return next((row for row in method.rows if row.variant in (None, variant)), Row(f"{method.rows[0].label}-"
                                                                                     f"{variant}", "black"))


def method_label(method_cfg: Mapping[str, Any]) -> str:
    """The label a method config prints under: FT, BitFit, AdptP, LoRA, DoRA, ..."""
    return _row(method_cfg).label


def method_row_key(method_cfg: Mapping[str, Any]) -> str:
    """The label plus what tells one method's rows apart (bottleneck, rank, weights), e.g. `LoRA r=8 α=16 {q,v}`."""
    method = METHODS.get(method_cfg["name"])
    return method.row_key(method_label(method_cfg), method_cfg) if method else method_label(method_cfg)


def _rows_in_order() -> list[Row]:
    return [row for name in method_names() for row in METHODS[name].rows]


def label_order() -> tuple[str, ...]:
    """Every row label in table order: the paper's Table 2 order (FT ... LoRA), then LoRA's successors."""
    return tuple(row.label for row in _rows_in_order())


def label_colours() -> dict[str, str]:
    """Each row label's colour in the figures."""
    return {row.label: row.colour for row in _rows_in_order()}


def successor_claims() -> tuple[Claim, ...]:
    """The claims LoRA's successors' papers make against LoRA, in table order."""
    return tuple(METHODS[name].claim for name in method_names() if METHODS[name].claim is not None)


def bench_presets() -> tuple[str, ...]:
    """The `conf/method` presets `make bench` times, in table order."""
    return tuple(preset for name in method_names() for preset in METHODS[name].bench)


def name_of(label: str) -> str:
    """The method whose rows print under `label`, e.g. the one behind the paper's `LoRA`."""
    return next(m.name for m in METHODS.values() if any(row.label == label for row in m.rows))


def latency_presets() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The bench presets timed for latency as they are (adapters), and those timed unmerged and merged."""
    as_is = tuple(p for n in method_names() if METHODS[n].inference_layers for p in METHODS[n].bench)
    merging = tuple(p for n in method_names() if METHODS[n].merges for p in METHODS[n].bench)
    return as_is, merging


def untrained_starts() -> dict[str, float]:
    """Parameter-name marker -> start value, over every method (the bench moves those weights off their start)."""
    return {marker: value for method in METHODS.values() for marker, value in method.untrained_start.items()}


def paper_presets() -> dict[tuple[str, str | None], str]:
    """The paper's Table 2 row (label, printed count or None) -> the `conf/method` preset that reproduces it."""
    return {row: preset for method in METHODS.values() for row, preset in method.paper_presets.items()}


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


def check_number(what: str, value: Any, valid: Callable[[float], bool] = lambda v: v > 0, rule: str = "> 0") -> float:
    """Return `value` if it is a finite number (not a bool) for which `valid` holds, else raise a `UserError`.

    `rule` says `valid` in words, for the message: e.g. "lora alpha must be a finite number > 0, got nan".
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or not valid(value):
        raise UserError(f"{what} must be a finite number {rule}, got {value!r}")
    return value


def check_dropout(what: str, value: Any) -> float:
    """Return `value` if it is a dropout probability in [0, 1), else raise a `UserError` naming it."""
    return check_number(what, value, lambda v: 0 <= v < 1, "in [0, 1)")


def check_targets(what: str, value: Any, example: str = "[q, v]") -> list[str]:
    """Return `value` if it is a non-empty list naming each weight once, else raise a `UserError` naming it."""
    if not isinstance(value, list) or not value:
        raise UserError(f"{what} must be a non-empty list of weights such as {example}, got {value!r}")
    repeated = sorted({t for t in value if value.count(t) > 1})
    if repeated:
        raise UserError(f"{what} repeat {repeated}: list each weight once, got {value}")
    return value
