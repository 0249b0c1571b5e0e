"""The paper's Tables 2, 5 and 6 from run records, with the paper's numbers beside ours."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from lora_repro.paper import RECIPE_DIFFERENCES, recipe_disagreements
from lora_repro.paper.names import LORA, PAPER_MODELS
from lora_repro.report.common import (
    params_report,
)
from lora_repro.report.figures import params_figure, rank_figure
from lora_repro.report.layout import (
    Report,
    Section,
    require_completed,
)
from lora_repro.report.sweeps import table5_sections, table6_sections
from lora_repro.report.table2 import AVG, table2_sections

__all__ = ["recipe_sides", "sweep_report", "table2_report"]

def table2_report(records: pd.DataFrame, tasks: Sequence[str] | None, seeds: int) -> Report:
    """Table 2 with the paper beside it, the parameter check of its paper models, and the params figure."""
    models = sorted(set(records["model"]))
    paper_models = [m for m in models if m in PAPER_MODELS.values()]
    sections, tidy, _ = table2_sections(records, tasks, seeds, paper_models)
    if paper_models:
        sections += params_report(paper_models).sections
        differences = [f"{model}: {text}" for model in paper_models for text in RECIPE_DIFFERENCES.get(model, [])]
        differences += recipe_sides(records, paper_models)
        if differences:
            sections.append(Section("Where these runs differ from the official scripts", None, differences))
    figures = {"table2_avg_vs_params": params_figure(tidy[tidy["task"] == AVG])}
    return Report("table2", "Table 2: GLUE dev results by method", sections, tidy, figures)


# The record column that holds each field of paper_vs_scripts.csv.
RECIPE_FIELD_COLUMNS = {"learning_rate": "train.learning_rate", "lora_r": "method.r", "lora_alpha": "method.alpha"}


def recipe_sides(records: pd.DataFrame, models: Sequence[str]) -> list[str]:
    """For each documented paper-vs-scripts disagreement, the value these LoRA runs trained with."""
    lines = []
    for row in recipe_disagreements().itertuples():
        runs = records[(records["model"] == row.model) & (records["label"] == LORA)]
        runs = runs if row.task == "*" else runs[runs["task"] == row.task]
        if row.model not in models or runs.empty:
            continue
        used = sorted({float(value) for value in runs[RECIPE_FIELD_COLUMNS[row.field]]})
        side = ("the appendix's" if used == [float(row.paper)] else "the scripts'" if used == [float(row.scripts)]
                else "other values:")
        tasks = "every task" if row.task == "*" else row.task
        lines.append(f"{row.model}, {tasks}: {row.field} is {row.scripts} in the scripts and {row.paper} in the "
                     f"paper's appendix; these LoRA runs use {side} {', '.join(f'{v:g}' for v in used)} "
                     f"(`recipe=scripts|paper` picks one side; evidence: {row.source}).")
    return lines


def sweep_report(number: int, records: pd.DataFrame, seeds: int) -> Report:
    """Table 5 (weight sets at a budget) or Table 6 (weight sets x ranks) of the LoRA records."""
    lora = records[records["label"] == LORA]
    require_completed(lora, f"table{number} (LoRA runs)")
    sections, cells = (table5_sections if number == 5 else table6_sections)(lora, seeds)
    figures = {"table6_rank": rank_figure(cells)} if number == 6 else {}
    title = {5: "Table 5: LoRA on which weights, at one parameter budget",
             6: "Table 6: LoRA rank r x weight set"}[number]
    return Report(f"table{number}", title, sections, cells.assign(table=f"table{number}"), figures)
