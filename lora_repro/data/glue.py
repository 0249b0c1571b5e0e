"""Tokenized GLUE splits, cached on disk.

`build_datasets` is the data step of a run: it loads the raw splits (`lora_repro.data.tasks`), tokenizes
them without padding (the trainer pads each batch) and caches the result under `data.cache_dir/<key>/`.
The key hashes everything that changes the tokenized rows, so a cache is reused only when it is exact.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import datasets
from omegaconf import DictConfig, OmegaConf

from lora_repro.data.tasks import (
    SELECT,
    TEXT_COLUMNS,
    TRAIN,
    data_identity,
    load_raw,
    num_labels,
    selection_protocol,
)
from lora_repro.errors import UserError
from lora_repro.settings import check_data_settings

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["GlueData", "build_datasets", "cache_key", "check_max_seq_length", "load_raw"]

log = logging.getLogger(__name__)

# Room for [CLS] a [SEP] b [SEP] and a few tokens of each text; below this, pairs are mostly truncated away.
MIN_SEQ_LENGTH = 8
# Tokenizers with no known limit report model_max_length = int(1e30); anything above this means "no limit".
_NO_LIMIT = 1_000_000
# Bump when the tokenization below changes, so that caches written by older code are not reused.
_CACHE_FORMAT = 2
# The task config keys that change the data (the rest, e.g. metrics or hyperparameters, do not).
_TASK_DATA_KEYS = ("name", "glue_dir_name", "hub_config", "text_fields", "label_names", "eval_splits", "tsv")


@dataclass
class GlueData:
    """The tokenized splits of one task, ready for a `DataCollatorWithPadding`."""

    train: datasets.Dataset
    # Keyed by eval split name: "dev", or "matched"/"mismatched"; first "select" under a selection protocol.
    evals: dict[str, datasets.Dataset]
    num_labels: int  # 1 for regression (STS-B)
    is_regression: bool


def build_datasets(task_cfg: DictConfig, data_cfg: DictConfig, tokenizer: PreTrainedTokenizerBase,
                   max_seq_length: int, model_max_length: int | None = None) -> GlueData:
    """Load, tokenize and cache a task's splits; reuse the cache when nothing that matters changed.

    Args:
        task_cfg: A `conf/task/*.yaml` config.
        data_cfg: The `conf/data/glue.yaml` config.
        tokenizer: A Hugging Face tokenizer.
        max_seq_length: Inputs are truncated to this many tokens (no padding).
        model_max_length: The model's input limit, if it is tighter than the tokenizer's.

    Returns:
        The splits with columns input_ids, attention_mask, (token_type_ids,) labels and idx.

    Raises:
        UserError: Bad max_seq_length or subset sizes, missing or corrupt data, an unreachable hub.
    """
    check_max_seq_length(max_seq_length, tokenizer, model_max_length)
    check_data_settings(data_cfg)
    path = Path(data_cfg.cache_dir) / cache_key(task_cfg, data_cfg, tokenizer, max_seq_length)
    if path.is_dir():
        log.info("Using tokenized %s from cache %s", task_cfg.name, path)
    else:
        log.info("Tokenizing %s (max_seq_length=%d) into %s", task_cfg.name, max_seq_length, path)
        raw = load_raw(task_cfg, data_cfg)
        _save_atomically(datasets.DatasetDict(
            {name: _tokenize(ds, tokenizer, max_seq_length) for name, ds in raw.items()}), path)
    # Read back from disk on both paths, so a fresh build and a cache hit return the same thing.
    splits = datasets.load_from_disk(str(path))
    evals = [SELECT] * (SELECT in splits) + list(task_cfg.eval_splits)
    return GlueData(train=splits[TRAIN], evals={name: splits[name] for name in evals},
                    num_labels=num_labels(task_cfg), is_regression=task_cfg.label_names is None)


def check_max_seq_length(max_seq_length: int, tokenizer: PreTrainedTokenizerBase,
                         model_max_length: int | None = None) -> None:
    """Raise a `UserError` unless `MIN_SEQ_LENGTH <= max_seq_length <=` the tokenizer's and model's limits."""
    limits = [n for n in (tokenizer.model_max_length, model_max_length) if n is not None and n < _NO_LIMIT]
    upper = min(limits, default=None)
    valid = isinstance(max_seq_length, int) and not isinstance(max_seq_length, bool)
    if not valid or max_seq_length < MIN_SEQ_LENGTH or (upper is not None and max_seq_length > upper):
        accepted = f"{MIN_SEQ_LENGTH}..{upper}" if upper is not None else f">= {MIN_SEQ_LENGTH}"
        raise UserError(f"max_seq_length={max_seq_length!r} is out of range; accepted: {accepted} tokens "
                        f"(the upper bound is the tokenizer's/model's input limit)")


def cache_key(task_cfg: DictConfig, data_cfg: DictConfig, tokenizer: PreTrainedTokenizerBase,
              max_seq_length: int) -> str:
    """Name the cache folder after a hash of everything that changes the tokenized splits."""
    task = OmegaConf.to_container(task_cfg, resolve=True)
    identity = {
        "format": _CACHE_FORMAT,
        "task": {key: task[key] for key in _TASK_DATA_KEYS},
        "source": data_identity(task_cfg, data_cfg),  # content, not size and mtime: an edited file is new data
        "tokenizer": [type(tokenizer).__name__, tokenizer.name_or_path, len(tokenizer)],
        "max_seq_length": max_seq_length,
        "subset": [data_cfg.max_train_samples, data_cfg.max_eval_samples, data_cfg.subset_seed],
        "selection": [selection_protocol(task_cfg, data_cfg), data_cfg.selection_rows, data_cfg.selection_seed],
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return f"{task_cfg.name}-{digest}"


def _tokenize(ds: datasets.Dataset, tokenizer: PreTrainedTokenizerBase,
              max_seq_length: int) -> datasets.Dataset:
    texts = [name for name in TEXT_COLUMNS if name in ds.column_names]

    def encode(batch: dict[str, list]) -> dict[str, list]:
        # truncation=True is "longest_first" for pairs: the longer text loses tokens first, as in run_glue.
        return tokenizer(*(batch[name] for name in texts), truncation=True, max_length=max_seq_length)

    return ds.map(encode, batched=True, remove_columns=texts).rename_column("label", "labels")


def _save_atomically(splits: datasets.DatasetDict, path: Path) -> None:
    """Write to a temporary folder, then rename it, so a killed run never leaves a half-written cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    splits.save_to_disk(str(tmp))
    try:
        os.replace(tmp, path)
    except OSError:
        if not path.is_dir():
            raise
        shutil.rmtree(tmp)  # a concurrent run wrote the same cache first; theirs is identical
