"""Fine-tuning with the Hugging Face `Trainer`: AdamW, linear warm-up/decay, evaluation every epoch.

The Trainer brings accelerate, multi-GPU, mixed precision and the wandb/TensorBoard integrations;
this module only translates the `train:` config into `TrainingArguments` and collects, per epoch,
the official metrics of every dev set and the predictions behind them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file, save_file
from torch.utils.data import SequentialSampler
from transformers import DataCollatorWithPadding, EvalPrediction, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

from lora_repro.data.glue import GlueData
from lora_repro.data.tasks import selection_metric
from lora_repro.distributed import is_main_process, mean_over_processes, world_size
from lora_repro.errors import UserError
from lora_repro.hardware import RESOLVED_PRECISIONS
from lora_repro.methods import decay_exempt, load_trainable_state_dict, trainable_state_dict, training_callbacks
from lora_repro.methods.registry import trains_whole_model
from lora_repro.metrics import compute_metrics, predictions_from_logits
from lora_repro.records.io import atomic_write, checkpoint_folder
from lora_repro.training.checkpoints import (
    BEST_TRAINABLE_FILE,
    EPOCH_LOG_FILE,
    EPOCH_LOG_LOGITS,
    ORDER_RNG_FILE,
    TRAINABLE_FILE,
    all_checkpoints,
    last_complete_checkpoint,
)
from lora_repro.training.preemption import SaveOnSignal
from lora_repro.training.sweep_summary import duration

logger = logging.getLogger(__name__)


def device_name() -> str:
    """The device the Trainer will use: CUDA when present, else the CPU."""
    return f"cuda:{torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cpu"


def precision_flags(precision: str) -> dict[str, bool]:
    """`TrainingArguments` flags for the run's precision, resolved once by `records.identity.run_config`.

    bf16 and fp16 are autocast: the weights and optimizer stay fp32, matmuls run in the low precision (on the
    CPU too, through accelerate's `torch.autocast("cpu")`).
    """
    if precision not in RESOLVED_PRECISIONS:  # a programming error: the run config is the resolved one
        raise ValueError(f"train.precision {precision!r} is not resolved; build the config with run_config")
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


@dataclass(frozen=True)
class BatchPlan:
    """How the global batch is made: processes x per-device batch x gradient-accumulation steps."""

    processes: int
    per_device: int
    accumulation: int

    @property
    def global_batch(self) -> int:
        return self.processes * self.per_device * self.accumulation

    @property
    def split(self) -> bool:
        """Whether an optimizer step's batch is spread over several micro-batches (processes or accumulation)."""
        return self.processes > 1 or self.accumulation > 1


def batch_plan(global_batch: int, per_device: int | None) -> BatchPlan:
    """Split `train.batch_size` (the global batch) over the processes, accumulating gradients if needed.

    Args:
        global_batch: The batch one optimizer step sees, e.g. the paper's per-GPU batch x its 8 GPUs.
        per_device: The batch one device holds (`train.per_device_batch_size`); None = global / processes.

    Raises:
        UserError: When the global batch is not processes x per-device batch x a whole number of steps.
    """
    processes = world_size()
    per_device = per_device or (global_batch // processes if global_batch % processes == 0 else 0)
    if global_batch < 1 or per_device < 1 or global_batch % (processes * per_device):
        raise UserError(f"train.batch_size={global_batch} (the global batch) must be a positive multiple of "
                        f"{processes} process(es) x train.per_device_batch_size={per_device or 'auto'}; "
                        "choose a per-device batch that divides it")
    return BatchPlan(processes, per_device, global_batch // (processes * per_device))


def training_arguments(cfg: DictConfig, output_dir: Path) -> TrainingArguments:
    """The `train:` config as `TrainingArguments` (no checkpoints: the run record keeps the result)."""
    train = cfg.train
    batch = batch_plan(train.batch_size, train.per_device_batch_size)
    return TrainingArguments(
        output_dir=str(output_dir),
        learning_rate=train.learning_rate,
        per_device_train_batch_size=batch.per_device,
        gradient_accumulation_steps=batch.accumulation,
        per_device_eval_batch_size=train.eval_batch_size,
        num_train_epochs=train.epochs,
        # transformers >= 5 reads a float below 1 as a ratio of the total steps, an int as steps.
        warmup_steps=int(train.warmup_steps) if train.warmup_steps else float(train.warmup_ratio or 0.0),
        weight_decay=train.weight_decay,
        max_grad_norm=train.max_grad_norm,
        lr_scheduler_type="linear",
        eval_strategy="epoch",
        # A checkpoint after every epoch (model, optimizer, scheduler, RNG states, the epoch log): a killed or
        # preempted run resumes from the newest complete one; `fit` deletes them once the run is done. Two are
        # kept: the Trainer drops the older one before this project's files are in the newer one, so a kill
        # during that save must still find the older one whole.
        save_strategy="epoch",
        save_total_limit=2,
        logging_strategy="epoch",
        # Batches of similar length waste little on padding: short tasks (CoLA, SST-2) cost what their tokens cost.
        train_sampling_strategy="group_by_length" if train.group_by_length else "random",
        report_to=cfg.logger.report_to,
        run_name=run_name(cfg),
        seed=cfg.seed,
        # A split step counts its examples over every micro-batch and process (`example_mean_loss`), so each
        # example weighs the same as in one process's unsplit batch; an unsplit step keeps the model's own mean.
        average_tokens_across_devices=batch.split,
        dataloader_pin_memory=torch.cuda.is_available(),
        use_cpu=not torch.cuda.is_available(),  # lets accelerate run a torchrun launch as CPU DDP (gloo)
        disable_tqdm=not sys.stderr.isatty(),
        **precision_flags(train.precision),
    )


class GlueTrainer(Trainer):
    """The Trainer, with the loss of a classification head and dev sets evaluated in file order.

    * The models' forward takes `**kwargs`, so the Trainer assumes their loss is normalised by the token
      count of the whole accumulated batch and skips dividing it by the accumulation steps. A
      sequence-classification loss is a mean over the micro-batch: without the division, gradient
      accumulation over k steps would multiply the gradient by k. (A split step uses `example_mean_loss`.)
    * With `train_sampling_strategy="group_by_length"`, transformers 5 also length-groups the *evaluation*
      sampler; the metrics stay right (labels travel with the batches) but the saved predictions would no
      longer line up with the dev rows. Length grouping only pays during training.
    * In a distributed run, every process draws one order and the last batches are filled with a masked row
      (`SharedOrderSampler`), so each example trains once per epoch, as in one process.
    * Weight decay skips, besides the Trainer's biases and layer norms, the method's parameters whose neutral
      value is not 0 when its config says so (`methods.decay_exempt`).
    """

    def __init__(self, *args, train_dataset=None, decay_exempt: Callable[[str], bool] = lambda name: False,
                 **kwargs):
        self.decay_exempt = decay_exempt  # before the Trainer's __init__, which may build the optimizer
        super().__init__(*args, train_dataset=train_dataset, **kwargs)
        self.order_sampler: ReplayableOrder | None = None
        self.order_replay: torch.Tensor | None = None  # set by `fit` when resuming mid-epoch
        self.model_accepts_loss_kwargs = False
        self.train_rows = len(train_dataset) if train_dataset is not None else 0
        if self.args.world_size > 1 and train_dataset is not None:
            self.train_dataset = with_masked_row(train_dataset)

    def get_decay_parameter_names(self, model: torch.nn.Module) -> list[str]:  # noqa: D102 (Trainer hook)
        return [name for name in super().get_decay_parameter_names(model) if not self.decay_exempt(name)]

    def _get_eval_sampler(self, eval_dataset):  # noqa: D102 (Trainer hook)
        # Under DDP, accelerate shards this sampler's batches and gathers them back in order.
        return None if eval_dataset is None else SequentialSampler(eval_dataset)

    def _get_train_sampler(self, train_dataset=None):  # noqa: D102 (Trainer hook)
        sampler = super()._get_train_sampler(train_dataset)
        if self.args.world_size == 1:
            if isinstance(sampler, LengthGroupedSampler):
                self.order_sampler = sampler = ReplayableOrder(sampler, self.order_replay)
            return sampler
        grouped = isinstance(sampler, LengthGroupedSampler)
        return SharedOrderSampler(self.train_rows, self.args.per_device_train_batch_size * self.args.world_size,
                                  self.args.seed, lengths=sampler.lengths[:self.train_rows] if grouped else None,
                                  group_size=sampler.batch_size if grouped else None)


class ReplayableOrder(torch.utils.data.Sampler):
    """transformers' length-grouped order of one process, and the global RNG state each epoch's order came from.

    The order is drawn from the global RNG when the epoch's iterator is made. A run resumed mid-epoch makes that
    iterator before the Trainer restores the checkpoint's RNG state, so it would draw another order (accelerate
    makes the plain random order seedable; this one it leaves alone). A mid-epoch checkpoint keeps the state the
    epoch's order was drawn from (`ORDER_RNG_FILE`), and the resumed run draws the same order from it. The draws
    themselves are transformers', so a run that is never interrupted trains exactly as before.
    """

    def __init__(self, sampler: LengthGroupedSampler, replay: torch.Tensor | None) -> None:
        self.sampler, self.replay = sampler, replay
        self.drawn_from: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        if self.replay is not None:  # the resumed epoch: its order again, then the Trainer restores the RNG
            torch.set_rng_state(self.replay)
            self.replay = None
        self.drawn_from = torch.get_rng_state()
        return iter(self.sampler)


MASKED_LABEL = -100  # the label the Trainer's example count and `example_mean_loss` leave out


def with_masked_row(dataset):
    """`dataset` and one more row, a copy of its first with the masked label: the filler of a distributed epoch."""
    from datasets import concatenate_datasets

    filler = dataset.select([0]).map(lambda row: {"labels": MASKED_LABEL}, features=dataset.features)
    return concatenate_datasets([dataset, filler])


class SharedOrderSampler(torch.utils.data.Sampler):
    """The order of a distributed epoch: drawn from (seed, epoch) alone, then filled to whole rounds of batches.

    * transformers' length-grouped sampler draws from the global RNG, which each process advances differently
      once training has started (dropout, for one): from epoch 2 the processes' orders would differ, and
      accelerate's shards of them would repeat some examples and skip others.
    * accelerate completes an epoch's last round of batches with examples from its start, which then count
      twice. Here the round is completed with the masked row (index `rows`, see `with_masked_row`) instead, so
      each example trains exactly once per epoch, each weighing as in one process (`example_mean_loss`).
    * The random order is accelerate's seedable one (a permutation seeded with seed + epoch), so a distributed
      run sees the batches of the single-process run with the same global batch. Single-process runs keep the
      Trainer's samplers, so their records (and the identities that name them) still reproduce.
    """

    def __init__(self, rows: int, round_size: int, seed: int, lengths: list[int] | None = None,
                 group_size: int | None = None):
        self.rows, self.round_size, self.seed, self.epoch = rows, round_size, seed, 0
        self.lengths, self.group_size = lengths, group_size

    def set_epoch(self, epoch: int) -> None:
        """Called by the Trainer (through accelerate) before each epoch; a resumed run gets its epoch's order."""
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.rows // self.round_size) * self.round_size

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        if self.lengths is None:
            order = torch.randperm(self.rows, generator=generator).tolist()
        else:
            order = get_length_grouped_indices(self.lengths, self.group_size, generator=generator)
        return iter(order + [self.rows] * (len(self) - self.rows))


@dataclass
class EpochLog(TrainerCallback):
    """Collects each evaluation's metrics as `<split>/<metric>` and the logits behind them, per epoch.

    The Trainer evaluates the dev sets one after another, calling `compute_metrics` and then
    `on_evaluate` for each, so the logits stashed by the first belong to the split the second names.
    `logits[epoch][split]` holds one row per dev example, in the dev file's order (checked on every evaluation).
    With `keep_best_weights`, `best_weights` holds what trains as it was at the best epoch so far by
    `chosen_by` (ties: the earlier epoch), the start a later run takes with `train.init_from`.
    """

    data: GlueData
    metric_names: list[str]
    chosen_by: str  # the metric that picks the best epoch: the selection split's, when there is one
    keep_best_weights: bool = False
    epochs: list[dict[str, Any]] = field(default_factory=list)
    logits: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    best_weights: dict[str, torch.Tensor] | None = None
    earlier_seconds: float = 0.0  # training time of the attempts before a resume, up to their last checkpoint
    trainer: Trainer | None = None  # set by `make_trainer`: a mid-epoch checkpoint keeps its unlogged loss
    _unlogged: dict[str, float] | None = None  # the unlogged loss a mid-epoch checkpoint saved, until training resumes
    _pending: np.ndarray | None = None
    _train_loss: float | None = None
    _attempt_started: float = field(default_factory=time.perf_counter)

    def compute(self, prediction: EvalPrediction) -> dict[str, float]:
        logits, labels = np.asarray(prediction.predictions), np.asarray(prediction.label_ids)
        if not any(np.array_equal(labels.reshape(-1), np.asarray(ds["labels"]).astype(labels.dtype))
                   for ds in self.data.evals.values()):
            raise RuntimeError("dev predictions came back in another order than the dev rows; "
                               "they cannot be saved against the rows they belong to")
        self._pending = logits
        predicted = predictions_from_logits(logits, self.data.is_regression)
        return compute_metrics(self.metric_names, predicted, labels)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # noqa: D102 (Trainer hook)
        split = next(s for s in self.data.evals if f"eval_{s}_loss" in metrics)
        epoch = round(state.epoch or 0)
        if not self.epochs or self.epochs[-1]["epoch"] != epoch:
            self.epochs.append({"epoch": epoch, "train_loss": self._train_loss, "metrics": {}})
        prefix = f"eval_{split}_"
        for key, value in metrics.items():
            if key.startswith(prefix) and key.removeprefix(prefix) in self.metric_names + ["loss"]:
                self.epochs[-1]["metrics"][f"{split}/{key.removeprefix(prefix)}"] = float(value)
        self.logits.setdefault(epoch, {})[split] = self._pending
        value = self.epochs[-1]["metrics"].get(self.chosen_by)
        if self.keep_best_weights and value is not None and all(
                e["metrics"][self.chosen_by] < value for e in self.epochs[:-1]):
            self.best_weights = {n: t.detach().cpu().clone() for n, t in trainable_state_dict(kwargs["model"]).items()}

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: D102 (Trainer hook)
        # Resumed mid-epoch (`SaveOnSignal`): the epoch's loss so far goes back where the Trainer sums it, so the
        # epoch's logged mean covers all its steps. The Trainer keeps it in `_tr_loss` since the step it last logged.
        if self._unlogged is not None and self.trainer is not None:
            self.trainer._tr_loss += self._unlogged["loss"]
            self.trainer._globalstep_last_logged = int(self._unlogged["since_step"])

    def on_save(self, args, state, control, **kwargs):  # noqa: D102 (Trainer hook)
        # The checkpoint folder exists now; the epochs so far go with it, so a resumed run keeps them.
        unlogged = None if self.trainer is None else {
            "loss": mean_over_processes(self.trainer._tr_loss.detach(), args.device),
            "since_step": self.trainer._globalstep_last_logged}
        if state.is_world_process_zero:
            folder = checkpoint_folder(args, state)
            arrays = {f"{epoch}/{split}": logits for epoch, splits in self.logits.items()
                      for split, logits in splits.items()}
            np.savez(folder / EPOCH_LOG_LOGITS, **arrays)
            # PEFT's checkpoint holds the adapter only; the head trains too, so save everything that trains.
            weights = {n: t.detach().contiguous().cpu() for n, t in trainable_state_dict(kwargs["model"]).items()}
            save_file(weights, str(folder / TRAINABLE_FILE))
            if self.best_weights is not None:
                save_file(self.best_weights, str(folder / BEST_TRAINABLE_FILE))
            order = getattr(self.trainer, "order_sampler", None)
            if order is not None and order.drawn_from is not None and not float(state.epoch).is_integer():
                save_file({"rng": order.drawn_from}, str(folder / ORDER_RNG_FILE))  # saved mid-epoch
            # Last and atomic: a checkpoint is complete exactly when this file is there (`last_complete_checkpoint`).
            log = json.dumps({"epochs": self.epochs, "train_loss": self._train_loss, "seconds": self.seconds(),
                              "unlogged": unlogged})
            atomic_write(folder / EPOCH_LOG_FILE, lambda tmp: tmp.write_text(log))

    def seconds(self) -> float:
        """Training time so far, over every attempt (each up to its last checkpoint, the current one to now)."""
        return self.earlier_seconds + time.perf_counter() - self._attempt_started

    def restore(self, checkpoint: Path, model: torch.nn.Module) -> None:
        """Take up the epochs and trained weights saved with `checkpoint` (a run resumed after it was killed)."""
        load_trainable_state_dict(model, load_file(str(checkpoint / TRAINABLE_FILE)))
        if (checkpoint / BEST_TRAINABLE_FILE).is_file():
            self.best_weights = load_file(str(checkpoint / BEST_TRAINABLE_FILE))
        saved = json.loads((checkpoint / EPOCH_LOG_FILE).read_text())
        self.epochs, self._train_loss = saved["epochs"], saved["train_loss"]
        self.earlier_seconds = saved.get("seconds", 0.0)
        self._unlogged = saved.get("unlogged")
        with np.load(checkpoint / EPOCH_LOG_LOGITS) as arrays:
            for key in arrays.files:
                epoch, split = key.split("/")
                self.logits.setdefault(int(epoch), {})[split] = arrays[key]

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: D102 (Trainer hook)
        # With logging_strategy="epoch" the epoch's mean train loss is logged just before its evaluation.
        if logs and "loss" in logs:
            self._train_loss = float(logs["loss"])


PROGRESS_SECONDS = 30  # conf/train/default.yaml's, for records written before the setting existed


class ProgressLog(TrainerCallback):
    """One progress line every `every_s` seconds when stderr is not a terminal.

    Under `make ... > log`, nohup or a SLURM job's output file the Trainer's progress bar is off, and a run said
    nothing between tokenizing and its last line: a slow run could not be told from a hung one. The line gives
    step/total, epoch, the mean loss since the last line, examples/s and the ETA at this attempt's pace.
    """

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self.trainer: Trainer | None = None  # set by `make_trainer`: the running loss lives there
        self.started = self.last = 0.0
        self.first_step = self.last_step = 0
        self.last_loss = 0.0

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: D102 (Trainer hook)
        self.started = self.last = time.perf_counter()
        self.first_step = self.last_step = state.global_step

    def on_step_end(self, args, state, control, **kwargs):  # noqa: D102 (Trainer hook)
        now = time.perf_counter()
        if now - self.last < self.every_s or not state.is_world_process_zero or state.global_step == self.first_step:
            return
        steps_per_s = (state.global_step - self.first_step) / (now - self.started)
        examples_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        eta = (state.max_steps - state.global_step) / steps_per_s
        running = float(self.trainer._tr_loss) if self.trainer is not None else float("nan")
        since = self.last_loss if running >= self.last_loss else 0.0  # the Trainer resets it when it logs an epoch
        loss = (running - since) / max(state.global_step - self.last_step, 1)
        epochs = math.ceil(args.num_train_epochs)
        logger.info("step %d/%d (epoch %d/%d): loss %.4f, %.1f examples/s, ETA %s", state.global_step,
                    state.max_steps, min(int(state.epoch or 0) + 1, epochs), epochs, loss,
                    steps_per_s * examples_per_step, duration(eta))
        self.last, self.last_step, self.last_loss = now, state.global_step, running


def peak_memory_bytes() -> int:
    """Peak memory of this run: CUDA max allocated on a GPU, else the process's peak RSS."""
    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated())
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def run_name(cfg: DictConfig) -> str:
    """The name a run has in W&B and TensorBoard: `<task>-<method>-s<seed>`."""
    return f"{cfg.task.name}-{cfg.method.name}-s{cfg.seed}"


def configure_logger(cfg: DictConfig, run_dir: Path) -> None:
    """Start the W&B run (offline unless asked otherwise) in the run folder, named, with the whole config.

    The Trainer's integration then logs into this run instead of starting an anonymous one.
    """
    logger_cfg = cfg.logger
    if logger_cfg.report_to == "wandb" and is_main_process():
        import wandb

        os.environ.update(WANDB_MODE=str(logger_cfg.mode), WANDB_PROJECT=str(logger_cfg.project),
                          WANDB_DIR=str(run_dir))
        run_dir.mkdir(parents=True, exist_ok=True)
        wandb.init(project=str(logger_cfg.project), name=run_name(cfg), dir=str(run_dir), mode=str(logger_cfg.mode),
                   config=OmegaConf.to_container(cfg, resolve=True), reinit="finish_previous")


def make_trainer(model: torch.nn.Module, data: GlueData, cfg: DictConfig, tokenizer, output_dir: Path
                 ) -> tuple[Trainer, EpochLog]:
    """A Trainer for `model` on `data`, and the log that collects its evaluations."""
    log = EpochLog(data=data, metric_names=list(cfg.task.metrics), chosen_by=selection_metric(cfg.task, cfg.data),
                   keep_best_weights=not trains_whole_model(cfg.method) or cfg.train.save_full_model)
    configure_logger(cfg, output_dir)
    args = training_arguments(cfg, output_dir)
    trainer = GlueTrainer(
        model=model,
        args=args,
        train_dataset=data.train,
        eval_dataset=data.evals,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=log.compute,
        # The method's callbacks first: what they save with a checkpoint is there before `log` marks it complete.
        callbacks=[*training_callbacks(cfg.method), log, SaveOnSignal()],
        compute_loss_func=example_mean_loss if args.average_tokens_across_devices else None,
        decay_exempt=decay_exempt(cfg.method),
    )
    log.trainer = trainer
    if args.disable_tqdm:  # no terminal to draw a bar on: progress lines instead
        progress = ProgressLog(cfg.train.get("progress_seconds", PROGRESS_SECONDS))
        progress.trainer = trainer
        trainer.add_callback(progress)
    return trainer, log


def example_mean_loss(outputs, labels: torch.Tensor, num_items_in_batch: torch.Tensor) -> torch.Tensor:
    """This micro-batch's share of the optimizer step's mean loss: its summed example losses / the step's examples.

    The Trainer counts `num_items_in_batch` over every micro-batch of the step and, with
    `average_tokens_across_devices`, over every process, and then neither divides by the accumulation steps nor
    lets DDP's gradient average shrink the sum. So a step whose last micro-batches are short (a training set that
    does not divide by the global batch) weighs each example as one process's unsplit batch does, not each
    micro-batch's mean alike. The losses are the models' own: MSE for a regression head, else cross-entropy;
    the masked filler row of a distributed epoch counts for nothing.
    """
    logits, real = outputs["logits"], labels.ne(MASKED_LABEL)
    if labels.is_floating_point() and logits.shape[-1] == 1:  # STS-B
        losses = torch.nn.functional.mse_loss(logits.squeeze(-1), labels.to(logits.dtype), reduction="none")
    else:
        losses = torch.nn.functional.cross_entropy(logits, labels.long(), reduction="none",
                                                   ignore_index=MASKED_LABEL)
    return (losses * real).sum() / num_items_in_batch


def fit(model: torch.nn.Module, data: GlueData, cfg: DictConfig, tokenizer, output_dir: Path
        ) -> tuple[EpochLog, dict[str, float]]:
    """Train `model` on `data.train`, evaluating every dev set after each epoch.

    Returns:
        The per-epoch log (metrics and final predictions) and the Trainer's train metrics
        (runtime, samples per second, loss).
    """
    trainer, log = make_trainer(model, data, cfg, tokenizer, output_dir)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    checkpoint = last_complete_checkpoint(output_dir)
    if checkpoint is not None:
        logger.info("resuming from %s", checkpoint)
        log.restore(Path(checkpoint), model)
        if (Path(checkpoint) / ORDER_RNG_FILE).is_file():  # resumed mid-epoch: that epoch's order again
            trainer.order_replay = load_file(str(Path(checkpoint) / ORDER_RNG_FILE))["rng"]
    output = trainer.train(resume_from_checkpoint=checkpoint)
    preemption = next(c for c in trainer.callback_handler.callbacks if isinstance(c, SaveOnSignal))
    if preemption.stopped:  # saved mid-epoch: requeue (SLURM) or stop; a rerun resumes from that checkpoint
        trainer.accelerator.wait_for_everyone()
        preemption.hand_over()
    trainer.accelerator.wait_for_everyone()
    if cfg.logger.report_to == "wandb" and is_main_process():
        import wandb

        wandb.finish()  # flush the run's files now, not at interpreter exit
    if trainer.is_world_process_zero():
        for folder in all_checkpoints(output_dir):
            shutil.rmtree(folder)  # the run is done: its record and artifacts hold what matters
    return log, dict(output.metrics)
