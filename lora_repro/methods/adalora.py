"""AdaLoRA (Zhang et al., 2023) through PEFT: LoRA as P Λ Q, with the rank budget moved to where it matters.

Each adapted weight gets W + P Λ Q with Λ = diag(λ) of `init_r` entries. During training the entries' importance
(|θ · ∇θ|, smoothed) decides which ones stay: after `tinit` of the steps the total budget falls from `init_r` to
`target_r` per weight on average, by the end of the budgeting phase `tfinal` steps before the end, and the least
important λ are held at zero. While training, the loss carries the orthogonality penalty on P and Q
(`orth_reg_weight` x the mean of ‖PPᵀ - I‖_F and ‖QᵀQ - I‖_F), which PEFT adds in `AdaLoraModel.forward`
(`PenalisedAdaLora` routes the forward there). `RankBudget` calls PEFT's `update_and_allocate` after every
optimizer step (before the gradients are cleared), and the record keeps the final rank of each weight
(`final_budget`).

Counts, both ways: the method trains init_r triplets, layers x targets x init_r x (d_in + d_out + 1) parameters,
while the AdaLoRA paper states its budget as the average final rank, `target_r`: at target_r 8 on q and v it is
the budget of LoRA at r 8 on q and v. Λ starts at zero, so training starts exactly at the backbone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig
from peft import AdaLoraConfig as PeftAdaLoraConfig
from peft import PeftModel, get_peft_model
from torch import nn
from transformers import TrainerCallback

from lora_repro.errors import UserError
from lora_repro.methods.registry import Row, check_dropout, check_int, check_number, check_targets, register
from lora_repro.methods.targets import linear_layers, targets_key
from lora_repro.paper.claims import BEATS, Claim
from lora_repro.paper.names import LORA
from lora_repro.records.io import atomic_write, checkpoint_folder

# PEFT needs the run's step count when the model is built; the real one is set when training starts.
STEPS_UNTIL_TRAINING = 1_000_000
RANK_PATTERN_FILE = "adalora_rank_pattern.json"  # in each checkpoint: which λ are kept
ADAPTER = "default"  # the name of the one adapter the model gets (PEFT keys its config and layers by it)


@dataclass(frozen=True)
class AdaLoraConfig:
    """Options of `conf/method/adalora.yaml` (documented there); validated on construction."""

    init_r: int
    target_r: int
    alpha: float
    dropout: float
    targets: list[str]
    tinit: float
    tfinal: float
    delta_t: int
    beta1: float
    beta2: float
    orth_reg_weight: float

    def __post_init__(self) -> None:
        check_int("adalora init_r", self.init_r, 1)
        check_int("adalora target_r", self.target_r, 1, self.init_r)
        check_int("adalora delta_t", self.delta_t, 1)
        for name in ("tinit", "tfinal"):
            share = getattr(self, name)
            if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share < 1:
                raise UserError(f"adalora {name} is a share of the run's steps in [0, 1), got {share!r}")
        if self.tinit + self.tfinal >= 1:
            raise UserError(f"adalora tinit + tfinal must leave steps to allocate the budget in, got "
                            f"{self.tinit} + {self.tfinal}")
        check_number("adalora alpha", self.alpha)
        for name in ("beta1", "beta2"):
            check_number(f"adalora {name}", getattr(self, name), lambda v: 0 < v < 1, "in (0, 1)")
        check_number("adalora orth_reg_weight", self.orth_reg_weight, lambda v: v >= 0, ">= 0")
        check_dropout("adalora dropout", self.dropout)
        check_targets("adalora targets", self.targets)


class RankBudget(TrainerCallback):
    """Sets AdaLoRA's schedule from the run's step count, then reallocates the rank budget after every step.

    The rank pattern (which λ are kept) lives here and in each checkpoint, and in PEFT's config only while
    `update_and_allocate` runs: PEFT cuts P, Λ and Q down to the pattern when it saves, and a resumed run, whose
    modules have the full `init_r`, could not load such a checkpoint. Full-size checkpoints also keep the P and Q
    of pruned triplets, which an uninterrupted run keeps training (a triplet can come back).
    """

    def __init__(self, cfg: AdaLoraConfig) -> None:
        self.cfg = cfg
        self.rank_pattern: dict[str, list[bool]] | None = None

    @staticmethod
    def adalora(model: nn.Module) -> PeftModel:
        return getattr(model, "module", model)  # DDP wraps the PeftModel

    def on_train_begin(self, args, state, control, model=None, **kwargs):  # noqa: D102 (Trainer hook)
        peft_cfg = self.adalora(model).peft_config[ADAPTER]
        peft_cfg.total_step = state.max_steps
        peft_cfg.tinit = round(self.cfg.tinit * state.max_steps)
        peft_cfg.tfinal = round(self.cfg.tfinal * state.max_steps)
        if state.global_step:  # resumed: the pattern of the checkpoint the Trainer took up
            self.rank_pattern = json.loads((checkpoint_folder(args, state) / RANK_PATTERN_FILE).read_text())

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):  # noqa: D102 (Trainer hook)
        # After the optimizer step and before the gradients are cleared, as PEFT's update_and_allocate needs.
        peft_cfg = self.adalora(model).peft_config[ADAPTER]
        peft_cfg.rank_pattern = self.rank_pattern
        self.adalora(model).base_model.update_and_allocate(state.global_step)
        self.rank_pattern, peft_cfg.rank_pattern = peft_cfg.rank_pattern, None

    def on_save(self, args, state, control, **kwargs):  # noqa: D102 (Trainer hook)
        # Before the epoch log marks the checkpoint complete (method callbacks come first in the Trainer's list).
        if state.is_world_process_zero:
            pattern = json.dumps(self.rank_pattern)
            atomic_write(checkpoint_folder(args, state) / RANK_PATTERN_FILE, lambda tmp: tmp.write_text(pattern))

    def on_train_end(self, args, state, control, model=None, **kwargs):  # noqa: D102 (Trainer hook)
        # Trained: PEFT's own save_pretrained may now cut the adapter to its final ranks, as it is meant to.
        self.adalora(model).peft_config[ADAPTER].rank_pattern = self.rank_pattern


class PenalisedAdaLora(PeftModel):
    """PEFT's `PeftModel` whose training forward goes through `AdaLoraModel.forward`, which adds the penalty.

    Without a task type `PeftModel.forward` calls the transformers model itself and skips it, so the penalty
    was never added (huggingface/peft#432). A task type (SEQ_CLS) would route it, but would also copy the head
    into `modules_to_save`, which this project avoids (see `methods.lora`). Evaluation keeps the plain forward,
    so the dev and selection losses are the task's loss alone.
    """

    def forward(self, *args, **kwargs):  # noqa: D102 (nn.Module)
        if not self.training:
            return super().forward(*args, **kwargs)
        with self._enable_peft_forward_hooks(*args, **kwargs):
            kwargs = {k: v for k, v in kwargs.items() if k not in self.special_peft_forward_args}
            return self.base_model(*args, **kwargs)


def owns(name: str) -> bool:
    """True for AdaLoRA's P (lora_A), Q (lora_B) and Λ (lora_E)."""
    return any(f"lora_{part}." in name for part in "ABE")


def final_budget(model: nn.Module) -> tuple[dict[str, int], int]:
    """The rank each adapted weight ended with, and the parameters those triplets hold: Σ rank x (d_in + d_out + 1).

    The pattern is the one `RankBudget.on_train_end` left in PEFT's config; none means the budget was never cut
    (a run shorter than `tinit`), so every weight keeps `init_r`.
    """
    peft_model = RankBudget.adalora(model)
    pattern = peft_model.peft_config[ADAPTER].rank_pattern or {}
    ranks, params = {}, 0
    for name, module in peft_model.get_base_model().named_modules():
        if hasattr(module, "lora_E") and ADAPTER in getattr(module, "lora_E", {}):
            kept = pattern.get(f"{name}.lora_E.{ADAPTER}")  # PEFT's key: the parameter's name in the model
            rank = sum(kept) if kept is not None else module.lora_E[ADAPTER].shape[0]
            ranks[name] = rank
            params += rank * (module.lora_A[ADAPTER].shape[1] + module.lora_B[ADAPTER].shape[0] + 1)
    return ranks, params


def row_key(label: str, method: Mapping[str, Any]) -> str:
    """The label, initial and target rank, alpha and weight set: `AdaLoRA r=12→8 α=32 {q,v}`."""
    return f"{label} r={method['init_r']}→{method['target_r']} α={method['alpha']} {{{targets_key(method['targets'])}}}"


CLAIM = Claim("AdaLoRA", "AdaLoRA beats LoRA at a similar parameter budget", "AdaLoRA", LORA, BEATS,
              "Zhang et al. (2023): AdaLoRA beats LoRA on GLUE at the same budget, counted as the final average rank "
              "(here target rank 8 against LoRA's r=8; it trains its initial rank 12 until the budget is cut)",
              scale="its paper: DeBERTaV3-base, 24 epochs on SST-2, 25 on CoLA")


# Not in the bench (no `bench` presets): its rank budget is a training schedule, and unmerged it runs as LoRA does.
@register("adalora", config=AdaLoraConfig, owns=owns, callback=RankBudget, final_budget=final_budget,
          rows=(Row("AdaLoRA", "gold"),), order=9, row_key=row_key, single_process=True, merges=True, claim=CLAIM)
def apply(model: nn.Module, cfg: AdaLoraConfig, model_cfg: DictConfig) -> nn.Module:
    """Wrap the model with PEFT AdaLoRA on the configured targets (the schedule is set by `RankBudget`).

    Returns:
        `PenalisedAdaLora` (a PEFT `PeftModel`) around `model`.

    Raises:
        UserError: a target that is unknown or matches no Linear layer.
    """
    layers = linear_layers(model, "adalora", cfg.targets, model_cfg)
    peft_cfg = PeftAdaLoraConfig(
        init_r=cfg.init_r, target_r=cfg.target_r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
        target_modules=sorted(layers), tinit=0, tfinal=0, deltaT=cfg.delta_t, beta1=cfg.beta1, beta2=cfg.beta2,
        orth_reg_weight=cfg.orth_reg_weight, total_step=STEPS_UNTIL_TRAINING)
    peft_model = get_peft_model(model, peft_cfg, adapter_name=ADAPTER)
    peft_model.__class__ = PenalisedAdaLora  # same object and state, the penalised training forward
    return peft_model
