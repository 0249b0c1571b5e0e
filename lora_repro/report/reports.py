"""The reports the CLI offers, each assembled from the table modules.

`table2`, `table5`, `table6` and `mini`, plus the parameter check (`table2 --params-only`, or
`table2` when there are no records yet).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from lora_repro.errors import UserError
from lora_repro.report.figures import params_figure, rank_figure
from lora_repro.report.layout import Report, Section, not_results_note, require_completed, select
from lora_repro.report.params import PAPER_MODELS, params_check
from lora_repro.report.sweeps import table5_sections, table6_sections
from lora_repro.report.table2 import AVG, paper_block, table2_sections
from lora_repro.results.record import COMPLETED

__all__ = ["DEFAULT_SEEDS", "REPORTS", "build_report", "params_report"]

# Seeds a cell should have: the paper's 5 for Table 2, the sweeps' 3 (conf/experiment/table5, 6, mini).
DEFAULT_SEEDS = {"table2": 5, "table5": 3, "table6": 3, "mini": 3}
MINI_MODEL = "minilm"
PARAMS_TITLE = "Table 2's \"# Trainable Parameters\", computed on the meta device, next to the paper's"


def params_report(models: Sequence[str] | None = None, note: str = "") -> Report:
    """The parameter column of every Table 2 row of the paper's models (of `models`), with the paper's."""
    unknown = sorted(set(models or ()) - set(PAPER_MODELS.values()))
    if unknown:
        raise UserError(f"the paper's Table 2 has no rows for model {', '.join(unknown)}; choose from "
                        f"{', '.join(PAPER_MODELS.values())}")
    check = params_check(list(models) if models else None)
    notes = ["Counted on the meta device (no download) with the method applied and the MNLI head: the method's "
             "own parameters (head excluded, as the paper counts), the whole model for FT. `ours (2^20)` is the "
             "same count in units of 2^20.", note]
    return Report("table2_params", PARAMS_TITLE, [Section("Parameter counts", check, [n for n in notes if n])], check)


def table2_report(records: pd.DataFrame, tasks: Sequence[str] | None, seeds: int) -> Report:
    """Table 2 with the paper beside it, the parameter check of its paper models, and the params figure."""
    models = sorted(set(records["model"]))
    paper_models = [m for m in models if m in PAPER_MODELS.values()]
    sections, tidy, _ = table2_sections(records, tasks, seeds, paper_models)
    if paper_models:
        sections += params_report(paper_models).sections
    figures = {"table2_avg_vs_params": params_figure(tidy[tidy["task"] == AVG])}
    return Report("table2", "Table 2: GLUE dev results by method", sections, tidy, figures)


def sweep_report(number: int, records: pd.DataFrame, seeds: int) -> Report:
    """Table 5 (weight sets at a budget) or Table 6 (weight sets x ranks) of the LoRA records."""
    lora = records[records["method"] == "lora"]
    require_completed(lora, f"table{number} (LoRA runs)")
    sections, cells = (table5_sections if number == 5 else table6_sections)(lora, seeds)
    figures = {"table6_rank": rank_figure(cells)} if number == 6 else {}
    title = {5: "Table 5: LoRA on which weights, at one parameter budget",
             6: "Table 6: LoRA rank r x weight set"}[number]
    return Report(f"table{number}", title, sections, cells.assign(table=f"table{number}"), figures)


def mini_report(records: pd.DataFrame, rank_records: pd.DataFrame, tasks: Sequence[str] | None,
                seeds: int) -> Report:
    """The Table 2 layout for MiniLM, the paper's RoBERTa-base rows as a reference, and its rank sweep."""
    sections, tidy, _ = table2_sections(records, tasks, seeds, paper_models=[])
    shown = [t for t in dict.fromkeys(tidy["task"]) if t in set(records["task"])]
    reference = Section("Reference only: the paper's RoBERTa-base rows (a different, larger model; the paper "
                        "has no MiniLM row, so there is no difference to compute)", paper_block("roberta-base", shown),
                        ["* = prior work quoted by the paper. Avg. = the paper's printed average when all 8 "
                         "tasks are shown, else its mean over the tasks shown."])
    rank_lora = rank_records[rank_records["method"] == "lora"]
    require_completed(rank_lora, "mini (rank sweep, --rank-runs)")
    rank_sections, cells = table6_sections(rank_lora, seeds, notes=False)
    figures = {"mini_avg_vs_params": params_figure(tidy[tidy["task"] == AVG]), "mini_rank": rank_figure(cells)}
    tidy = pd.concat([tidy.assign(table="table2"), cells.assign(table="table6")], ignore_index=True)
    return Report("mini", "The paper's comparison on MiniLM (CPU scale)",
                  [*sections, reference, *rank_sections], tidy, figures)


def build_report(name: str, records: pd.DataFrame, models: Sequence[str] | None = None,
                 tasks: Sequence[str] | None = None, seeds: int | None = None,
                 rank_records: pd.DataFrame | None = None) -> Report:
    """Build report `name` from store rows.

    Args:
        name: One of `REPORTS`.
        records: Rows of `lora_repro.results.store.load_records`.
        models: Models to show; None = all (`mini`: minilm).
        tasks: Tasks to show; None = every task the records hold.
        seeds: Seeds a cell should have; None = `DEFAULT_SEEDS[name]`.
        rank_records: `mini` only: the rank sweep's rows (kept in their own experiment folder).

    Returns:
        The report (Table 2 with no completed records: the parameter check alone).

    Raises:
        UserError: No completed record to report on.
    """
    seeds = seeds or DEFAULT_SEEDS[name]
    chosen = select(records, models or ([MINI_MODEL] if name == "mini" else None), tasks)
    paper_only = set(models or ()) <= set(PAPER_MODELS.values())
    if name == "table2" and paper_only and (chosen["status"] != COMPLETED).all():
        note = " ".join(filter(None, ["No completed run records: showing the parameter counts only.",
                                      not_results_note(chosen)]))
        return params_report(models, note)
    require_completed(chosen, name)
    if name in ("table5", "table6"):
        return sweep_report(int(name[-1]), chosen, seeds)
    if name == "mini":
        return mini_report(chosen, select(rank_records, [MINI_MODEL], None), tasks, seeds)
    return table2_report(chosen, tasks, seeds)


REPORTS = tuple(DEFAULT_SEEDS)
