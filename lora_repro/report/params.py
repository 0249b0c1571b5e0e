"""Table 2's "# Trainable Parameters", computed on the meta device and checked against the paper.

Each paper row's model is built on the meta device with its method applied (no download, no
memory) and counted the paper's way.

The paper counts what the method trains, head excluded (the authors confirm it in microsoft/LoRA
issue 16), and for FT the whole model. Some printed counts cannot be reproduced by rounding in
millions; each such row carries the reason, so a mismatch is explained rather than hidden.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from lora_repro.config import compose_config
from lora_repro.methods import ParamCounts
from lora_repro.methods.registry import method_row_key, paper_presets
from lora_repro.models import meta_counts
from lora_repro.paper import paper_table
from lora_repro.paper.names import FT, HOULSBY_SETUP, OFFICIAL, PAPER_MODELS
from lora_repro.report.cells import format_params

__all__ = ["PaperRow", "count_paper_row", "params_check", "params_match", "paper_rows",
           "shown_count"]

# LoRA's rank comes from the official script of a model x task; every task of a model has the same rank.
REFERENCE_TASK = "mnli"
DAGGER = "†"


@dataclass(frozen=True)
class PaperRow:
    """One row of the paper's Table 2 and the configs that reproduce it."""

    index: int          # row number in lora_repro/paper/table2.csv
    paper_model: str    # e.g. roberta-base
    model: str          # ours, e.g. roberta_base
    label: str          # FT, BitFit, AdptD, AdptP, AdptH, LoRA
    params_m: str       # the printed count in millions, e.g. "0.3"
    setup: str          # houlsby for the paper's dagger rows, else official
    method_config: str  # conf/method/<name>.yaml
    prior_work: bool    # a `*` row: numbers quoted from prior work

    @property
    def row_key(self) -> str:
        """Our row key for this row's method config (see `method_row_key`)."""
        return method_row_key(run_config(self.model, self.method_config).method)


def paper_rows() -> list[PaperRow]:
    """Every row of the paper's Table 2, with the method config that reproduces it."""
    rows = []
    for index, row in paper_table("table2").iterrows():
        label, params = row["method"], row["trainable_params_m"]
        presets = paper_presets()  # declared by each method: (label, printed count or None) -> its preset
        config = presets.get((label, params)) or presets[(label, None)]
        rows.append(PaperRow(int(index), row["model"], PAPER_MODELS[row["model"]], label, params,
                             HOULSBY_SETUP if row["source_note"].startswith(DAGGER) else OFFICIAL, config,
                             row["source_note"].startswith("*")))
    return rows


@cache
def run_config(model: str, method: str, task: str = REFERENCE_TASK) -> DictConfig:
    """The composed config of `model` x `method` on `task`, as `lora-repro train` would build it."""
    cfg = compose_config([f"model={model}", f"method={method}", f"task={task}"])
    OmegaConf.resolve(cfg)
    return cfg


@cache
def count_paper_row(model: str, method: str) -> ParamCounts:
    """Parameter counts of `model` with `method` applied, built on the meta device (head of MNLI)."""
    return meta_counts(run_config(model, method))


def shown_count(label: str, counts: ParamCounts) -> int:
    """The count the paper prints: the whole model for FT, else the method's own parameters."""
    return counts.total if label == FT else counts.method


def params_match(printed_m: str, count: int) -> str:
    """`yes` if `count` rounds to the printed millions, `in 2^20 units` if only then, else `no`."""
    if f"{count / 1e6:.1f}" == printed_m:
        return "yes"
    return "in 2^20 units" if f"{count / 2**20:.1f}" == printed_m else "no"


def params_note(row: PaperRow, count: int, match: str) -> str:
    """Why a computed count differs from the printed one (or what the match rests on)."""
    if row.label == FT and match == "no":
        return (f"the paper quotes prior work's nominal model size ({row.params_m}M); this model with the "
                f"{REFERENCE_TASK.upper()} classification head has {count:,} parameters")
    if match == "in 2^20 units":
        return (f"{count:,} rounds to {count / 1e6:.1f}M in millions; the printed {row.params_m}M fits only "
                f"in units of 2^20 ({count / 2**20:.2f})")
    if row.label == "AdptD":
        cfg = run_config(row.model, row.method_config).method
        return (f"the LoRA paper does not publish AdapterDrop's bottleneck; conf/method/{row.method_config} "
                f"(bottleneck {cfg.bottleneck}) was chosen to give {row.params_m}M")
    if match == "no":
        return f"{count:,} rounds to {count / 1e6:.1f}M, the paper prints {row.params_m}M"
    return ""


def params_check(models: list[str] | None = None) -> pd.DataFrame:
    """The parameter column of every Table 2 row (of `models`, default all), next to the paper's.

    Returns:
        One row per paper row: model, method (with † for the Houlsby-like setup), config, paper,
        ours (millions), ours in units of 2^20, count (exact), matches (yes / in 2^20 units / no)
        and note (the reason for any mismatch).
    """
    out = []
    for row in paper_rows():
        if models is not None and row.model not in models:
            continue
        count = shown_count(row.label, count_paper_row(row.model, row.method_config))
        match = params_match(row.params_m, count)
        out.append({"model": row.model, "method": row.label + (DAGGER if row.setup == HOULSBY_SETUP else ""),
                    "config": row.method_config, "paper": f"{row.params_m}M", "ours": format_params(count),
                    "ours (2^20)": f"{count / 2**20:.1f}Mi", "count": f"{count:,}", "matches": match,
                    "note": params_note(row, count, match)})
    return pd.DataFrame(out)

