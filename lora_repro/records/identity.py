"""A run's identity: the one owner of the hashed config and of the run folder's name.

`run_config(cfg)` turns a composed config into the run's config: every interpolation resolved, every `auto`
made concrete (the precision this machine computes in, the selection protocol this task follows). Its one
learning rate is `train.learning_rate`, which each `conf/method` file sets as its default.
`RunId.of(run_config)` then computes the identity once; the resume check, the lock and the record receive it
instead of recomputing it.

The identity covers exactly what decides a run's result: the task, model, method, training settings, seed
and setup, the data (each local file's SHA-256, subset and selection split), and the precision. Not paths,
loggers, Hydra's settings, or how the computation is laid out on the hardware. Numbers compare as numbers
(alpha 16 = 16.0) and LoRA's weight set as a set ([v,q] = [q,v]). Older records: `lora-repro migrate`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from lora_repro.errors import UserError

__all__ = ["IDENTITY_VERSION", "RunId", "canonical", "check_plain_name", "hashed_config", "hashed_of",
           "identity_digest", "method_identity", "run_config", "run_folder_name"]

IDENTITY_VERSION = 3  # 3: resolved precision, selection split, no method.learning_rate
HASHED_SECTIONS = ("task", "method", "model", "train", "seed", "setup")
HASHED_DATA_KEYS = ("max_train_samples", "max_eval_samples", "subset_seed", "selection", "selection_rows",
                    "selection_seed")
UNHASHED_TRAIN_KEYS = ("per_device_batch_size", "num_threads", "eval_batch_size", "save_full_model", "force",
                       "progress_seconds")
UNORDERED_METHOD_KEYS = ("targets",)


def run_config(cfg: DictConfig, on_cuda: bool | None = None) -> DictConfig:
    """The config a run records and hashes: resolved, with precision and selection made concrete.

    Idempotent: the config of a record is its own run config. `on_cuda`: whether the run will have a CUDA GPU
    (a plan made on a login node for GPU nodes); None = this machine.

    Raises:
        UserError: An unknown precision or selection protocol, or fp16 without a GPU.
    """
    from lora_repro.data.tasks import selection_protocol
    from lora_repro.hardware import resolve_precision

    resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    with open_dict(resolved):
        resolved.train.precision = resolve_precision(resolved.train.precision, on_cuda)
        resolved.data.selection = selection_protocol(resolved.task, resolved.data)
    return resolved


def canonical(value: Any) -> Any:
    """`value` with every number as a float (bools and strings kept), so that 16 and 16.0 hash alike.

    Settings that are unset (null or an empty mapping) are left out: a setting added later with an
    unset default does not change the identity of the runs made before it existed.
    """
    if isinstance(value, dict):
        return {key: canonical(item) for key, item in value.items() if item is not None and item != {}}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def method_identity(method: dict[str, Any]) -> dict[str, Any]:
    """A method config as the identity sees it: canonical, its weight set a set."""
    method = dict(method)
    for key in UNORDERED_METHOD_KEYS:
        if isinstance(method.get(key), list):
            method[key] = sorted(set(method[key]))
    return canonical(method)


def hashed_config(cfg: DictConfig) -> dict[str, Any]:
    """The part of a run config (`run_config`) that determines the run's result, in canonical form.

    Raises:
        UserError: The task's local data files are missing (their checksums are part of the identity).
    """
    from lora_repro.data.tasks import data_identity  # reads the data files' checksums

    return hashed_of(OmegaConf.to_container(cfg, resolve=True), data_identity(cfg.task, cfg.data))


def hashed_of(resolved: dict[str, Any], files: dict[str, str] | None) -> dict[str, Any]:
    """`hashed_config` of a resolved config (a record's own), with its data files' checksums given."""
    hashed = {key: resolved[key] for key in HASHED_SECTIONS}
    hashed["method"] = method_identity(hashed["method"])
    hashed["train"] = {k: v for k, v in hashed["train"].items() if k not in UNHASHED_TRAIN_KEYS}
    data = {key: resolved["data"].get(key) for key in HASHED_DATA_KEYS}
    data["files"] = files
    return canonical({**hashed, "data": data, "identity_version": IDENTITY_VERSION})


def identity_digest(hashed: dict[str, Any]) -> str:
    """The 12 hex digits that name a run: SHA-256 of its hashed config in canonical JSON."""
    return hashlib.sha256(json.dumps(hashed, sort_keys=True, default=str).encode()).hexdigest()[:12]


# A name that becomes a folder of a run's path: no separator, no `..`, nothing absolute.
PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def check_plain_name(setting: str, value: object) -> str:
    """`value` if it is a plain name (letters, digits, `_ . + -`, not starting with `.`), else a `UserError`.

    Task, model and method names become folders of the run's path (and of the tokenized cache's): a name with
    a separator or `..` would put the run outside the runs folder.
    """
    if not isinstance(value, str) or not PLAIN_NAME.match(value) or ".." in value:
        raise UserError(f"{setting}={value!r} is not a plain name; it names a folder of the run's path, so use "
                        "letters, digits, '_', '.', '+' and '-' only, with no path separator or '..'")
    return value


def run_folder_name(seed: int, config_hash: str) -> str:
    """The run folder's own name, `s<seed>-<hash>`."""
    return f"s{seed}-{config_hash}"


@dataclass(frozen=True)
class RunId:
    """Who a run is, computed once: its hash, its folder and the config the hash was taken of."""

    hash: str
    relative_dir: Path  # <task>/<model>/<method>/s<seed>-<hash>, below a runs folder
    run_dir: Path
    hashed_config: dict[str, Any]

    @classmethod
    def of(cls, cfg: DictConfig) -> RunId:
        """The identity of the run of `cfg` (a `run_config`)."""
        names = [check_plain_name(f"{section}.name", cfg[section].name) for section in ("task", "model", "method")]
        hashed = hashed_config(cfg)
        digest = identity_digest(hashed)
        relative = Path(*names) / run_folder_name(cfg.seed, digest)
        return cls(digest, relative, Path(cfg.paths.runs_dir) / relative, hashed)
