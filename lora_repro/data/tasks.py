"""Raw (untokenized) GLUE splits, from a local folder in the original GLUE layout or from the hub.

Both sources give the same columns: `idx` (row index within the original split), `text_a`, `text_b`
(sentence-pair tasks only) and `label` (class id, or a float score for regression), with the same class
ids: `task.tsv.label_values` lists the file's label strings in the order of the hub's class ids
(`task.label_names`), and the hub's own label names are checked against `task.label_names` on load.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from omegaconf import DictConfig

from lora_repro.errors import Unavailable, UserError
from lora_repro.hub import ensure_reachable_or_offline
from lora_repro.settings import AUTO, DEV_HALF, NO_SELECTION, SELECTIONS, TRAIN_HOLDOUT, check_data_settings

TRAIN = "train"
SELECT = "select"  # the eval split that makes every choice from data (epoch, learning rate), when there is one
TEXT_COLUMNS = ("text_a", "text_b")
# `auto`: tasks with fewer training rows than this split dev in half, larger ones hold out training rows
# (Mahabadi et al. 2021, Compacter, Sec. 4; followed by later PEFT papers).
SMALL_TASK_ROWS = 10_000
# STS-B scores are stratified by these bins ([0, 1), [1, 2), ... [4, 5]) when its dev set is halved.
SCORE_BINS = (1.0, 2.0, 3.0, 4.0)


def num_labels(task_cfg: DictConfig) -> int:
    """The classifier's outputs for the task: its classes, or 1 for a regression score (STS-B)."""
    return 1 if task_cfg.label_names is None else len(task_cfg.label_names)


def load_raw(task_cfg: DictConfig, data_cfg: DictConfig) -> dict[str, datasets.Dataset]:
    """Load the train split and every eval split of a task, untokenized.

    Args:
        task_cfg: A `conf/task/*.yaml` config.
        data_cfg: The `conf/data/glue.yaml` config; a non-empty `glue_dir` selects the local files.

    Returns:
        `"train"` plus every key of `task_cfg.eval_splits`, each with columns `idx`, `text_a`,
        (`text_b`,) `label`, cut to `max_train_samples` / `max_eval_samples` rows when those are set.
        Under a selection protocol (`data.selection`, resolved by `selection_protocol`) also `"select"`:
        half of dev (`dev_half`, the other half stays the eval split) or training rows that are never
        trained on (`train_holdout`). `idx` is always the row's index in its source file.

    Raises:
        UserError: Missing or corrupt files, an unreachable hub, or a subset size that is not positive.
    """
    check_data_settings(data_cfg)
    if _uses_hub(data_cfg):
        splits = _load_hub(task_cfg, data_cfg)
    else:
        splits = {name: _read_tsv(path, task_cfg) for name, path in task_files(task_cfg, data_cfg).items()}
    splits = split_selection(splits, selection_protocol(task_cfg, data_cfg), data_cfg, task_cfg.label_names is None)
    return {
        name: _subset(ds, data_cfg.max_train_samples if name == TRAIN else data_cfg.max_eval_samples,
                      data_cfg.subset_seed)
        for name, ds in splits.items()
    }


def selection_protocol(task_cfg: DictConfig, data_cfg: DictConfig) -> str:
    """The concrete protocol `data.selection` names for this task: none, dev_half or train_holdout.

    `auto` follows Mahabadi et al. (2021): a task with fewer than `SMALL_TASK_ROWS` training rows (its official
    size, `task.num_examples.train`) has too few to spare, so half of its dev set selects and the other half
    reports; a larger task holds out `data.selection_rows` training rows to select on and reports all of dev.

    Raises:
        UserError: An unknown protocol, or dev_half on a task with more than one dev set (MNLI).
    """
    protocol = data_cfg.selection
    if protocol not in SELECTIONS:
        raise UserError(f"unknown data.selection {protocol!r}; choose one of: {', '.join(SELECTIONS)}")
    if protocol == AUTO:
        protocol = DEV_HALF if task_cfg.num_examples.train < SMALL_TASK_ROWS else TRAIN_HOLDOUT
    if protocol == DEV_HALF and len(task_cfg.eval_splits) != 1:
        raise UserError(f"data.selection=dev_half halves one dev set, but {task_cfg.name} has "
                        f"{len(task_cfg.eval_splits)} ({', '.join(task_cfg.eval_splits)}); use train_holdout")
    rows = data_cfg.selection_rows
    if protocol == TRAIN_HOLDOUT and (not isinstance(rows, int) or isinstance(rows, bool) or rows < 1):
        raise UserError(f"data.selection_rows must be a positive number of training rows, got {rows!r}")
    return protocol


def selection_metric(task_cfg: DictConfig, data_cfg: DictConfig) -> str:
    """The metric that picks a run's reported epoch: the headline metric on the selection split, if there is one."""
    if data_cfg.selection == NO_SELECTION:
        return task_cfg.headline_metric
    return f"{SELECT}/{task_cfg.headline_metric.partition('/')[2]}"


def split_selection(splits: dict[str, datasets.Dataset], protocol: str, data_cfg: DictConfig, regression: bool
                    ) -> dict[str, datasets.Dataset]:
    """`splits` with a `select` split carved out as `protocol` says (seeded by `data.selection_seed`).

    dev_half takes half of every label (every score bin for regression) of the one dev set, so both halves
    keep dev's class balance; train_holdout takes `data.selection_rows` training rows at random, before any
    training subset is drawn from the rest.
    """
    if protocol == NO_SELECTION:
        return splits
    rng = np.random.default_rng(data_cfg.selection_seed)
    if protocol == TRAIN_HOLDOUT:
        train = splits[TRAIN]
        if data_cfg.selection_rows >= len(train):
            raise UserError(f"data.selection_rows={data_cfg.selection_rows} leaves no training rows of {len(train)}")
        held = np.zeros(len(train), dtype=bool)
        held[rng.choice(len(train), size=data_cfg.selection_rows, replace=False)] = True
        return {TRAIN: train.select(np.flatnonzero(~held)), SELECT: train.select(np.flatnonzero(held)),
                **{name: ds for name, ds in splits.items() if name != TRAIN}}
    (name, dev), = ((name, ds) for name, ds in splits.items() if name != TRAIN)
    labels = np.asarray(dev["label"])
    strata = np.digitize(labels, SCORE_BINS) if regression else labels
    chosen = np.zeros(len(dev), dtype=bool)
    for stratum in np.unique(strata):
        rows = rng.permutation(np.flatnonzero(strata == stratum))
        chosen[rows[: len(rows) // 2]] = True
    return {TRAIN: splits[TRAIN], SELECT: dev.select(np.flatnonzero(chosen)), name: dev.select(np.flatnonzero(~chosen))}


def task_files(task_cfg: DictConfig, data_cfg: DictConfig) -> dict[str, Path]:
    """Map each split of the task to its TSV file under `data_cfg.glue_dir`, checking that all exist.

    Raises:
        UserError: Naming every missing path, the files the task needs, and how to fix it.
    """
    folder = Path(data_cfg.glue_dir).expanduser() / task_cfg.glue_dir_name
    files = {TRAIN: folder / "train.tsv"}
    files.update({name: folder / split.file for name, split in task_cfg.eval_splits.items()})
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        what = f"folder {folder}" if not folder.is_dir() else ", ".join(missing)
        raise Unavailable(
            f"GLUE data for task {task_cfg.name!r} not found: no {what}. The task needs "
            f"{', '.join(p.name for p in files.values())} in <glue_dir>/{task_cfg.glue_dir_name}/. "
            f"Fix: point GLUE_DIR (or data.glue_dir=...) at a folder in the original GLUE layout, "
            f"or unset it to load {_hub_name(task_cfg, data_cfg)} from the hub (needs network access)."
        )
    return files


def data_identity(task_cfg: DictConfig, data_cfg: DictConfig) -> dict[str, str]:
    """What identifies a task's raw data on any machine: each local file's SHA-256, or the hub dataset.

    Part of every run's identity (`lora_repro.records.record.hashed_config`) and of the tokenized cache's key,
    so that runs on different data are never taken for one another, a cache is never reused for edited files
    (whatever their size and modification time), and runs on the same files match across machines and folders.

    Raises:
        UserError: A local file is missing (the message says how to point at the data).
    """
    if _uses_hub(data_cfg):
        return {"hub": f"{data_cfg.hub_dataset}/{task_cfg.hub_config}"}
    return {split: _sha256(str(path.resolve()), *_stat(path)) for split, path in task_files(task_cfg, data_cfg).items()}


def _stat(path: Path) -> tuple[int, int, int, int]:
    # The status-change time moves on every write and every `touch`, and no tool can set it back.
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino


@functools.cache
def _sha256(path: str, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> str:
    """A file's SHA-256, computed once per process for each version of the file (path and `_stat`)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _uses_hub(data_cfg: DictConfig) -> bool:
    # An empty GLUE_DIR (`GLUE_DIR= lora-repro train`) means unset, as for the shell, not "the cwd".
    return not data_cfg.glue_dir


def _features(task_cfg: DictConfig, n_texts: int) -> datasets.Features:
    """The one schema that both sources produce."""
    label = datasets.Value("float32" if task_cfg.label_names is None else "int64")
    texts = {name: datasets.Value("string") for name in TEXT_COLUMNS[:n_texts]}
    return datasets.Features({"idx": datasets.Value("int64"), **texts, "label": label})


def _label_parser(task_cfg: DictConfig) -> Callable[[str], int | float]:
    """Return a function from a label as written in the TSV to a class id (or a float score).

    The function raises a `ValueError` that says what was expected instead.
    """
    values = task_cfg.tsv.label_values
    if values is None:
        low, high = task_cfg.tsv.get("score_range") or (-math.inf, math.inf)

        def parse_score(text: str) -> float:
            try:
                score = float(text)
            except ValueError:
                score = math.nan
            if not math.isfinite(score):
                raise ValueError(f"label {text!r} is not a finite number (a regression score)")
            if not low <= score <= high:
                raise ValueError(f"score {text} is outside the task's range {low:g}-{high:g} (tsv.score_range)")
            return score
        return parse_score
    ids = {str(value): i for i, value in enumerate(values)}

    def parse_class(text: str) -> int:
        if text not in ids:
            raise ValueError(f"label {text!r} is not one of {list(ids)} (tsv.label_values)")
        return ids[text]
    return parse_class


def _column_index(column: int | str, header: list[str] | None, width: int, path: Path) -> int:
    if isinstance(column, int):
        if not 0 <= column < width:
            raise UserError(f"{path}: column {column} is configured, but rows have {width} columns")
        return column
    if header is None:
        raise UserError(f"{path}: column {column!r} is named, but the task says the file has no header "
                        f"(tsv.header: false); give its integer index instead")
    if column not in header:
        raise UserError(f"{path}, line 1: the header has no column {column!r}; it has {header}")
    return header.index(column)


def _read_tsv(path: Path, task_cfg: DictConfig) -> datasets.Dataset:
    """Read one GLUE TSV file, keeping only the text and label columns the task names."""
    spec, parse_label = task_cfg.tsv, _label_parser(task_cfg)
    texts: list[list[str]] = [[] for _ in spec.text_columns]
    labels: list[int | float] = []
    header, indices = None, None
    # QUOTE_NONE: GLUE rows contain bare quote characters that are text, not CSV quoting.
    # utf-8-sig strips the BOM that starts MRPC's header, so "Quality" is found by name.
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        rows = _rows(reader, path)
        if spec.header:
            header = next(rows, None)
        for row in rows:
            if not row:
                continue  # a blank line is no row, as for csv.DictReader (the hub's GLUE loader)
            if indices is None:
                width = len(header) if header is not None else len(row)
                columns = [*spec.text_columns, spec.label_column]
                indices = [_column_index(column, header, width, path) for column in columns]
            if len(row) != width:
                raise UserError(f"{path}, line {reader.line_num}: expected {width} tab-separated columns "
                                f"(as in {'the header' if header else 'the first row'}), found {len(row)}")
            try:
                labels.append(parse_label(row[indices[-1]]))
            except ValueError as exc:
                raise UserError(f"{path}, line {reader.line_num}: {exc}") from None
            for column, i in zip(texts, indices, strict=False):
                column.append(row[i])
    if not labels:
        expected = "a header line, then one line" if spec.header else "one line"
        raise UserError(f"{path}: the file has no data rows; expected {expected} per example")
    table = {"idx": list(range(len(labels))), **dict(zip(TEXT_COLUMNS, texts, strict=False)), "label": labels}
    return datasets.Dataset.from_dict(table, features=_features(task_cfg, len(texts)))


def _rows(reader: Any, path: Path) -> Iterator[list[str]]:
    """The csv reader's rows; a file that is not UTF-8 text in GLUE's form is a `UserError` naming the line."""
    try:
        yield from reader
    except UnicodeDecodeError as err:  # the file is decoded in blocks: the line is where that block starts
        raise UserError(f"{path}, after line {reader.line_num}: not UTF-8 text ({err.reason}); GLUE's TSV "
                        "files are UTF-8: re-save it as UTF-8 or use the original file") from None
    except csv.Error as err:  # a NUL byte (a binary file), a field beyond csv's size limit
        raise UserError(f"{path}, line {reader.line_num + 1}: {err}; is it a GLUE TSV file?") from None


def _hub_name(task_cfg: DictConfig, data_cfg: DictConfig) -> str:
    return f"{data_cfg.hub_dataset}/{task_cfg.hub_config}"


def _load_hub(task_cfg: DictConfig, data_cfg: DictConfig) -> dict[str, datasets.Dataset]:
    name = _hub_name(task_cfg, data_cfg)
    ensure_reachable_or_offline()  # without network: the cache, or the error at once, not after retries
    try:
        hub = datasets.load_dataset(data_cfg.hub_dataset, task_cfg.hub_config)
    except Exception as exc:  # offline mode, DNS, HTTP, timeouts: each means "no hub" to the user
        cause = (str(exc).splitlines() or [""])[0][:200]
        raise UserError(
            f"could not reach the Hugging Face hub for {name} ({type(exc).__name__}: {cause}). "
            f"Fix: set GLUE_DIR (or data.glue_dir=...) to a local folder in the original GLUE layout, "
            f"or give network access."
        ) from exc
    hub_splits = {TRAIN: "train", **{key: split.hub_split for key, split in task_cfg.eval_splits.items()}}
    missing = sorted(set(hub_splits.values()) - set(hub))
    if missing:
        raise UserError(f"{name} has no split {missing}; it has {sorted(hub)}; fix eval_splits in "
                        f"conf/task/{task_cfg.name}.yaml")
    hub_labels = getattr(hub["train"].features["label"], "names", None)
    if task_cfg.label_names is not None and hub_labels != list(task_cfg.label_names):
        # TSV labels map to ids through label_names' order, so both sources must agree on it.
        raise UserError(f"{name}: the hub's label names {hub_labels} differ from label_names "
                        f"{list(task_cfg.label_names)}; fix conf/task/{task_cfg.name}.yaml")
    return {key: _from_hub(hub[split], task_cfg) for key, split in hub_splits.items()}


def _from_hub(ds: datasets.Dataset, task_cfg: DictConfig) -> datasets.Dataset:
    fields = list(task_cfg.text_fields)
    ds = ds.select_columns([*fields, "label"]).rename_columns(dict(zip(fields, TEXT_COLUMNS, strict=False)))
    ds = ds.add_column("idx", list(range(len(ds))))
    return ds.cast(_features(task_cfg, len(fields)))


def _subset(ds: datasets.Dataset, size: int | None, seed: int) -> datasets.Dataset:
    """Keep `size` rows drawn with `seed`, in their original order (idx keeps the original row index)."""
    if size is None or size >= len(ds):
        return ds
    keep = np.sort(np.random.default_rng(seed).choice(len(ds), size=size, replace=False))
    return ds.select(keep)
