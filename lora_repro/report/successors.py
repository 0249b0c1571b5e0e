"""LoRA's successors beside the mini's rows, with their papers' claims against LoRA."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from lora_repro.methods.registry import label_order, successor_claims
from lora_repro.paper.names import PAPER_LABELS
from lora_repro.records.schema import COMPLETED
from lora_repro.report.claims import (
    claims_table,
    method_key,
)
from lora_repro.report.common import (
    claims_report,
    with_baseline,
)
from lora_repro.report.figures import task_figure
from lora_repro.report.layout import (
    Report,
    Section,
    order_tasks,
    require_completed,
)
from lora_repro.report.searches import lr_search_winners
from lora_repro.report.table2 import AVG

__all__ = ["searched_rates_note", "successors_report"]

def searched_rates_note(records: pd.DataFrame, search_records: pd.DataFrame | None) -> str:
    """Whether each successor in the table trained at the rate its learning-rate search chose."""
    if search_records is None or (search_records["status"] != COMPLETED).all():
        return ("Learning rates: no search of the successors' rates is committed yet (`make mini-successors-lr`); "
                "they take LoRA's winner (DoRA, rsLoRA, PiSSA, AdaLoRA) or their papers' rates (VeRA, (IA)³).")
    winners = lr_search_winners(search_records)
    best = dict(zip(winners.loc[winners["winner"], "label"], winners.loc[winners["winner"], "learning_rate"],
                    strict=True))
    edges = set(winners.loc[winners["edge"] != "", "label"])
    done = records[records["status"] == COMPLETED]
    parts = []
    for label in [x for x in label_order() if x not in PAPER_LABELS and x in set(done["label"])]:
        used = sorted(set(done.loc[done["label"] == label, "train.learning_rate"].astype(float)))
        rates = ", ".join(f"{r:g}" for r in used)
        verdict = ("no search" if label not in best else "still on its grid's edge" if label in edges else
                   "its search's best" if used == [best[label]] else f"not its search's best, {best[label]:g}")
        parts.append(f"{label} {rates} ({verdict})")
    return "Learning rates, against the successors' search on the selection split: " + "; ".join(parts) + "."


def successors_report(records: pd.DataFrame, tasks: Sequence[str] | None, seeds: int,
                      search_records: pd.DataFrame | None = None) -> Report:
    """LoRA's successors beside the mini's rows, on the tasks the successors ran, with the baseline and claims.

    `search_records`: the successors' learning-rate search, checked against the rates the table's runs used.
    """
    successors = records[~records["label"].isin(PAPER_LABELS)]  # every method the paper did not run, claim or not
    require_completed(successors, f"successors ({', '.join(x for x in label_order() if x not in PAPER_LABELS)} runs)")
    tasks = list(tasks or order_tasks(successors.loc[successors["status"] == COMPLETED, "task"]))
    records = records[records["task"].isin(tasks)]
    sections, tidy, baseline = with_baseline(records, tasks, seeds)
    claims = claims_report(claims_table(records, successor_claims(), method_key), successor_claims(),
                           "Every successor runs LoRA's rank and weights where it shares LoRA's options (DoRA, "
                           "rsLoRA, PiSSA: r=8, α=16 on Wq,Wv; AdaLoRA: a budget of rank 8 on Wq,Wv); VeRA and "
                           "(IA)³ with their papers' settings. What each paper claims, and which parameter count it "
                           "uses: " + "; ".join(f"{c.name}: {c.source}" for c in successor_claims()) + ".",
                           "LoRA's successors on MiniLM: measured differences, intervals at the Holm levels, verdicts")
    figures = {"successors_tasks": task_figure(tidy[(tidy["task"] != AVG) & (tidy["label"] != "Trivial")],
                                               baseline)}
    sections[0] = Section(sections[0].title, sections[0].table,
                          [*sections[0].notes, searched_rates_note(records, search_records)])
    return Report("successors", "LoRA's successors beside LoRA, FT and adapters on MiniLM (CPU scale)",
                  [*sections, *claims.sections], tidy, figures, [claims])
