"""The schema of a run's settings: every `train:` and `data:` field and the seed, with its type and range.

Checked where Hydra composes a config, before any code reads it (`check_run_settings`, from `lora-repro train`,
`plan` and `run.build`). A field's declaration is its check: its type (strict, so `1.5` is not a whole number
and `true` is not a number), its bounds (`Field(ge=...)`), whether it may be null, and that no other key is
there (a `+train.learnin_rate` typo). A new setting is declared here and in `conf/`; the one message builder
(`describe`) words every failure as one line from the declaration, so no field has checking code of its own.
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from typing import Any, Literal

from annotated_types import Ge, Gt, Le, Lt
from omegaconf import DictConfig, OmegaConf
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo

from lora_repro.errors import UserError
from lora_repro.hardware import PRECISIONS

__all__ = ["AUTO", "DEV_HALF", "MAX_SEED", "NO_SELECTION", "SELECTIONS", "TRAIN_HOLDOUT", "DataSettings", "RunSettings",
           "TrainSettings", "check_data_settings", "check_run_settings", "describe"]

MAX_SEED = 2**32 - 1  # numpy's legacy seeding, which transformers.set_seed calls, takes no larger seed
# The selection protocols (`data.selection`); see `data.tasks.selection_protocol`.
NO_SELECTION, DEV_HALF, TRAIN_HOLDOUT, AUTO = "none", "dev_half", "train_holdout", "auto"
SELECTIONS = (NO_SELECTION, DEV_HALF, TRAIN_HOLDOUT, AUTO)


class _Settings(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


class TrainSettings(_Settings):
    """`conf/train/default.yaml` (documented there)."""

    learning_rate: float = Field(gt=0)
    batch_size: int = Field(ge=1)
    per_device_batch_size: int | None = Field(ge=1)
    eval_batch_size: int = Field(ge=1)
    epochs: int = Field(ge=1)
    max_seq_length: int = Field(ge=1)
    warmup_ratio: float | None = Field(ge=0, le=1)
    warmup_steps: int | None = Field(ge=0)
    weight_decay: float = Field(ge=0)
    max_grad_norm: float = Field(ge=0)
    precision: Literal[PRECISIONS]
    init_from: str | None
    group_by_length: bool
    num_threads: int | None = Field(ge=1)
    save_full_model: bool
    force: bool
    progress_seconds: float = Field(ge=0)


class DataSettings(_Settings):
    """`conf/data/glue.yaml` (documented there)."""

    glue_dir: str | None
    hub_dataset: str
    max_train_samples: int | None = Field(ge=1)
    max_eval_samples: int | None = Field(ge=1)
    subset_seed: int = Field(ge=0, le=MAX_SEED)
    cache_dir: str
    selection: Literal[SELECTIONS]
    selection_rows: int = Field(ge=1)
    selection_seed: int = Field(ge=0, le=MAX_SEED)


class RunSettings(_Settings):
    """The settings of one run that no task, model or method config owns."""

    seed: int = Field(ge=0, le=MAX_SEED)
    train: TrainSettings
    data: DataSettings


def check_run_settings(cfg: DictConfig) -> RunSettings:
    """The run's settings, checked against the schema; a `UserError` naming the first bad field otherwise."""
    return validated(RunSettings, {"seed": cfg.get("seed"), "train": _plain(cfg.get("train")),
                                   "data": _plain(cfg.get("data"))})


def check_data_settings(data_cfg: DictConfig) -> DataSettings:
    """`data:` alone, for the loaders that take only it (the same schema and messages)."""
    return validated(DataSettings, _plain(data_cfg), prefix=["data"])


def validated(model: type[BaseModel], values: Any, prefix: list[str] | None = None) -> Any:
    """`values` as a `model`, or a `UserError` with `describe`'s line for the first bad field."""
    try:
        return model.model_validate(values)
    except ValidationError as err:
        raise UserError(describe(err.errors()[0], model, prefix or [])) from None


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def describe(error: dict[str, Any], model: type[BaseModel], prefix: list[str]) -> str:
    """One line for a pydantic error, worded from the field's declaration: what it must be, and what it got."""
    location = [str(part) for part in error["loc"]]
    name = ".".join(prefix + location)
    for part in location[:-1]:  # down to the section the field is in
        model = model.model_fields[part].annotation
    if error["type"] == "extra_forbidden":
        known = list(model.model_fields)
        close = difflib.get_close_matches(location[-1], known, n=1)
        hint = (f"did you mean {'.'.join(prefix + location[:-1] + close)}?" if close
                else f"the settings are: {', '.join(known)}")
        return f"unknown setting {name}; {hint}"
    got = error.get("input")
    if error["type"] == "missing":
        return f"{name} is missing; set it in conf/ or on the command line"
    if location[-1] not in model.model_fields:  # a whole section of the wrong kind
        return f"{name} must be a mapping of settings, got {got!r}"
    return f"{name} must be {rule(model.model_fields[location[-1]])}, got {got!r}"


def rule(field: FieldInfo) -> str:
    """What a field accepts, in words: `a whole number >= 1`, `a finite number >= 0 and <= 1, or null`, ..."""
    union = typing.get_origin(field.annotation) in (typing.Union, types.UnionType)
    options = typing.get_args(field.annotation) if union else (field.annotation,)
    kind = next(option for option in options if option is not type(None))
    nullable = type(None) in options
    if typing.get_origin(kind) is Literal:
        words = "one of " + ", ".join(map(str, typing.get_args(kind)))
    else:
        words = {int: "a whole number", float: "a finite number", bool: "true or false", str: "text"}[kind]
    bounds = [f"{sign} {_number(getattr(m, attr))}" for m in field.metadata
              for cls, sign, attr in ((Ge, ">=", "ge"), (Gt, ">", "gt"), (Le, "<=", "le"), (Lt, "<", "lt"))
              if isinstance(m, cls)]
    words += (" " + " and ".join(bounds)) if bounds else ""
    return words + (", or null" if nullable else "")


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) and math.isfinite(value) else str(value)

