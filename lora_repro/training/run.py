"""One fine-tuning run, end to end: `lora-repro train task=... method=... model=... [overrides]`.

`run(cfg)` reads top to bottom: skip the run if its record is already `completed` (unless
`train.force`), validate and build everything that can fail on bad input (settings, data, model, method)
before anything is written, take the run folder's lock, then train and write the record. Returns the
headline dev metric (best epoch) for sweepers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig
from safetensors.torch import save_file
from transformers import set_seed

from lora_repro.data.glue import GlueData, build_datasets
from lora_repro.data.tasks import SELECT, num_labels, selection_metric
from lora_repro.distributed import check_one_process_per_gpu, from_main, is_main_process
from lora_repro.errors import UserError, choose
from lora_repro.methods import (
    apply_method,
    check_method_config,
    count_parameters,
    final_budget,
    trainable_state_dict,
)
from lora_repro.methods.lora import FACTOR_KEY
from lora_repro.methods.registry import method_of, trains_whole_model
from lora_repro.metrics import predictions_from_logits
from lora_repro.models import load_model, load_tokenizer
from lora_repro.paper.names import SETUPS
from lora_repro.records.identity import RunId, run_config
from lora_repro.records.io import atomic_write, check_writable, claim
from lora_repro.records.record import (
    BEST_WEIGHTS_FILE,
    EPOCH_LOGITS_FILE,
    FACTORS_FILE,
    WEIGHTS_FILE,
    RunRecord,
    completed_value,
)
from lora_repro.records.schema import Artifacts, EpochValue, Failure, ParamCounts, SelectionInfo, TrainInfo
from lora_repro.settings import check_run_settings
from lora_repro.training.init_from import load_init_weights
from lora_repro.training.preemption import Preempted
from lora_repro.training.trainer import (
    EpochLog,
    batch_plan,
    device_name,
    fit,
    peak_memory_bytes,
)

log = logging.getLogger(__name__)


def check_settings(cfg: DictConfig) -> None:
    """Fail fast on settings that need no data or model to judge (before anything is loaded or written)."""
    check_run_settings(cfg)  # every train:/data: field and the seed, by their declared types and ranges
    split, _, metric = str(cfg.task.headline_metric).partition("/")
    if split not in cfg.task.eval_splits or metric not in cfg.task.metrics:
        raise UserError(f"task.headline_metric {cfg.task.headline_metric!r} must be <split>/<metric> with a split of "
                        f"{list(cfg.task.eval_splits)} and a metric of {list(cfg.task.metrics)}")
    check_method_config(cfg.method)
    choose("setup", cfg.setup, SETUPS)
    if "trust_remote_code" in (cfg.model.get("config_overrides") or {}):
        raise UserError("model.config_overrides.trust_remote_code is refused: model.trust_remote_code is the one "
                        "switch that lets a model source run its own code")
    if batch_plan(cfg.train.batch_size, cfg.train.per_device_batch_size).split and method_of(cfg.method).single_process:
        # e.g. AdaLoRA: PEFT adds its orthogonality penalty to the model's own loss, which a split step replaces.
        raise UserError(f"method={cfg.method.name} needs one process and no gradient accumulation: set "
                        "train.per_device_batch_size to train.batch_size and launch one process")


def build(cfg: DictConfig) -> tuple[Any, GlueData, torch.nn.Module]:
    """Tokenizer, tokenized data and the model with the method applied (all input validated here).

    Args:
        cfg: A run config (`records.identity.run_config`): resolved, precision and selection made concrete.
    """
    check_settings(cfg)
    check_one_process_per_gpu()
    set_seed(cfg.seed)
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    # The model and its method before the data: a bad weight set, rank or start run is refused before
    # anything is tokenized (and cached).
    tokenizer = load_tokenizer(cfg.model)
    model = apply_method(load_model(cfg.model, num_labels(cfg.task)), cfg.method, cfg.model)
    if cfg.train.init_from:
        load_init_weights(model, cfg)
    data = build_datasets(cfg.task, cfg.data, tokenizer, cfg.train.max_seq_length,
                          model_max_length=cfg.model.shape.max_position_embeddings)
    return tokenizer, data, model


def check_finite(epochs: list[dict[str, Any]]) -> None:
    """Raise unless every epoch's train loss and metrics are finite (a diverged run is `failed`, never `completed`)."""
    for epoch in epochs:
        values = {"train_loss": epoch["train_loss"], **epoch["metrics"]}
        bad = {name: value for name, value in values.items() if value is not None and not math.isfinite(value)}
        if bad:
            raise RuntimeError(f"the run diverged: at epoch {epoch['epoch']} " +
                               ", ".join(f"{name} = {value}" for name, value in bad.items()))


def summarize(epoch_log: EpochLog, headline: str, chosen_by: str) -> dict[str, Any]:
    """The reported, final and paper-convention epochs, each with its headline value and every metric.

    `best` is the epoch `chosen_by` (the selection split's metric) picks, `report_best` the one the report split
    itself likes best (the paper's convention, shown as a labelled view). Ties go to the earlier epoch.
    """
    epochs = epoch_log.epochs
    check_finite(epochs)

    def at(epoch: dict[str, Any]) -> EpochValue:
        return EpochValue(epoch=epoch["epoch"], value=epoch["metrics"][headline], metrics=epoch["metrics"])

    return {
        "headline_metric": headline,
        "selection_metric": chosen_by,
        "final": at(epochs[-1]),
        "best": at(max(epochs, key=lambda e: e["metrics"][chosen_by])),
        "report_best": at(max(epochs, key=lambda e: e["metrics"][headline])),
    }


def write_predictions(run_dir: Path, data: GlueData, epoch_log: EpochLog, epoch: int, suffix: str = ""
                      ) -> dict[str, str]:
    """One CSV per reported dev set: idx, gold label, prediction and the raw logits of `epoch`, in file order."""
    files = {}
    for split, dataset in data.evals.items():
        if split == SELECT:  # its rows are in the epoch logits; the CSVs are for the reported splits
            continue
        logits = epoch_log.logits[epoch][split].reshape(len(dataset), -1)
        table = pd.DataFrame({"idx": dataset["idx"], "label": dataset["labels"],
                              "prediction": predictions_from_logits(logits, data.is_regression)})
        for k in range(logits.shape[1]):
            table[f"logit_{k}"] = logits[:, k]
        name = f"predictions_{split}{suffix}.csv"
        atomic_write(run_dir / name, lambda tmp, table=table: table.to_csv(tmp, index=False))
        files[split] = name
    return files


def save_weights(run_dir: Path, model: torch.nn.Module, cfg: DictConfig,
                 best: dict[str, torch.Tensor] | None = None) -> dict[str, str]:
    """Save what the method trained (safetensors), at the final and, if it differs, the best epoch.

    The whole model is saved only if asked for full_ft (train.save_full_model=true). LoRA-style methods also
    keep their A and B alone in fp16 (`FACTORS_FILE`), committed with the record where `lora-repro analyze` reads
    them (the mini's rank runs; .gitignore).
    """
    if trains_whole_model(cfg.method) and not cfg.train.save_full_model:
        return {"weights": ""}  # 100% of the model: kept only on request
    state = {name: t.detach().contiguous().cpu() for name, t in trainable_state_dict(model).items()}
    atomic_write(run_dir / WEIGHTS_FILE, lambda tmp: save_file(state, str(tmp)))
    files = {"weights": WEIGHTS_FILE, "best_weights": WEIGHTS_FILE}
    factors = {name: t.half() for name, t in state.items() if FACTOR_KEY.match(name)}
    if factors:
        atomic_write(run_dir / FACTORS_FILE, lambda tmp: save_file(factors, str(tmp)))
        files["lora_factors"] = FACTORS_FILE
    if best is not None and any(not torch.equal(best[name], state[name]) for name in state):
        atomic_write(run_dir / BEST_WEIGHTS_FILE, lambda tmp: save_file(best, str(tmp)))
        files["best_weights"] = BEST_WEIGHTS_FILE
    return files


def mean_or_none(values: list[float | None]) -> float | None:
    """The mean of the values that are there (None when none is)."""
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def write_epoch_logits(run_dir: Path, data: GlueData, epoch_log: EpochLog) -> str:
    """Save every epoch's logits on every eval split, with the rows' labels and idx.

    The claims' bootstrap re-selects the epoch from them. Keys `<split>/labels`, `<split>/idx`,
    `<split>/epoch<k>`; float32, compressed.
    """
    arrays = {}
    for split, dataset in data.evals.items():
        arrays[f"{split}/labels"] = np.asarray(dataset["labels"])
        arrays[f"{split}/idx"] = np.asarray(dataset["idx"])
        for epoch, logits in epoch_log.logits.items():
            arrays[f"{split}/epoch{epoch}"] = logits[split].reshape(len(dataset), -1).astype(np.float32)

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as file:  # a file object: given a path without .npz, numpy would append one
            np.savez_compressed(file, **arrays)

    atomic_write(run_dir / EPOCH_LOGITS_FILE, save)
    return EPOCH_LOGITS_FILE


def train_and_record(cfg: DictConfig, run_id: RunId, record: RunRecord | None, tokenizer, data: GlueData,
                     model) -> float:
    """Train, then write predictions, weights and the completed record (`record` None: not the main process)."""
    logs = run_id.run_dir / "logs"  # the Trainer's output folder: TensorBoard/wandb files, if any
    epoch_log, _ = fit(model, data, cfg, tokenizer, logs)
    seconds = epoch_log.seconds()  # every attempt of a resumed run, not only the last
    with contextlib.suppress(OSError):
        logs.rmdir()  # nothing was logged there
    counts = count_parameters(model, cfg.method)
    final_ranks, method_final = final_budget(model, cfg.method)
    plan = batch_plan(cfg.train.batch_size, cfg.train.per_device_batch_size)
    train_info = TrainInfo(
        **summarize(epoch_log, cfg.task.headline_metric, selection_metric(cfg.task, cfg.data)),
        selection=SelectionInfo(protocol=cfg.data.selection, rows={s: len(ds) for s, ds in data.evals.items()}),
        epochs=epoch_log.epochs,
        params=ParamCounts(method=counts.method, trainable=counts.trainable, total=counts.total,
                           method_final=method_final, final_ranks=final_ranks),
        train_examples=len(data.train),
        eval_examples={split: len(ds) for split, ds in data.evals.items()},
        train_seconds=seconds,
        train_examples_per_second=len(data.train) * len(epoch_log.epochs) / seconds,
        # The mean of the epochs' mean losses (equal epochs): the same with or without a resume in between.
        train_loss=mean_or_none([e["train_loss"] for e in epoch_log.epochs]),
        peak_memory_bytes=peak_memory_bytes(),
        batch=dataclasses.asdict(plan) | {"global": plan.global_batch},
    )
    if record is None:  # another process of a distributed launch: the main one writes
        return train_info.best.value
    final, best = train_info.final.epoch, train_info.best.epoch
    # The final epoch's predictions match the saved weights (`lora-repro eval`); the best epoch's are the
    # ones behind the reported value, which the claims' bootstrap resamples.
    artifacts = Artifacts(predictions=write_predictions(record.run_dir, data, epoch_log, final),
                          best_predictions=write_predictions(record.run_dir, data, epoch_log, best,
                                                             "" if best == final else "_best"),
                          epoch_logits=write_epoch_logits(record.run_dir, data, epoch_log),
                          **save_weights(record.run_dir, model, cfg, epoch_log.best_weights))
    record.finish(train_info, artifacts)
    log.info("completed %s: %s = %.4f (best epoch %d)", record.run_dir, cfg.task.headline_metric,
             train_info.best.value, train_info.best.epoch)
    return train_info.best.value


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What `run` did: the headline dev value (NaN if another process has the run), and whether it trained here."""

    value: float
    trained: bool


def run(cfg: DictConfig, run_id: RunId | None = None) -> Outcome:
    """Run (or skip, if already completed) the fine-tuning described by `cfg`.

    Args:
        cfg: The composed config, or its `run_config` when `run_id` is given.
        run_id: The run's identity, if the caller computed it already (`lora-repro train` does).
    """
    if run_id is None:
        cfg = run_config(cfg)
        run_id = RunId.of(cfg)
    reuse = cfg.paths.reuse_runs_dirs
    done = from_main(None if cfg.train.force else completed_value(run_id, reuse))
    if done is not None:
        log.info("skipping %s: already completed with this config (train.force=true reruns it)", run_id.run_dir)
        return Outcome(done, trained=False)
    check_writable(Path(cfg.paths.runs_dir), "paths.runs_dir")
    tokenizer, data, model = build(cfg)
    with claim(run_id.run_dir) as mine:
        if not from_main(mine):  # another process (a second copy of the sweep) is training this very run
            log.info("skipping %s: another process is running it", run_id.run_dir)
            return Outcome(math.nan, trained=False)
        done = from_main(None if cfg.train.force else completed_value(run_id, reuse))  # it may have finished
        if done is not None:  # by another process, while this one was building the model
            log.info("skipping %s: another process completed it", run_id.run_dir)
            return Outcome(done, trained=False)
        record = RunRecord.start(cfg, run_id, device_name()) if is_main_process() else None
        try:
            return Outcome(train_and_record(cfg, run_id, record, tokenizer, data, model), trained=True)
        except Preempted:  # saved in a checkpoint: `running`, as a killed run, and the rerun resumes it
            raise
        except BaseException as err:  # includes KeyboardInterrupt: the record must not stay `running`
            if record is not None:
                record.finish(Failure(error=f"{type(err).__name__}: {err}"))
            raise
