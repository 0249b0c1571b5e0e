"""The mini report: Table 2's comparison on MiniLM with a trivial baseline and the claims.

Beside them: the paper's convention as a labelled view, the whole dev set by cross-fitting, and the rank analogs
of Tables 5 and 6.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from lora_repro.methods.registry import label_order
from lora_repro.paper.names import LORA
from lora_repro.records.schema import COMPLETED
from lora_repro.report.cells import MISSING, PAPER_CONVENTION
from lora_repro.report.claims import (
    RANK_CLAIMS,
    TABLE2_CLAIMS,
    claim_lines,
    holm,
    lora_setting_key,
    method_key,
)
from lora_repro.report.common import (
    claims_report,
    with_baseline,
)
from lora_repro.report.figures import rank_figure, task_figure
from lora_repro.report.layout import (
    Report,
    Section,
    order_tasks,
    position,
    task_name,
)
from lora_repro.report.searches import lr_search_winners
from lora_repro.report.sweeps import table5_sections, table6_sections
from lora_repro.report.table2 import AVG, paper_block, table2_sections
from lora_repro.settings import DEV_HALF

__all__ = ["convention_sections", "crossfit_section", "mini_report"]

def convention_sections(records: pd.DataFrame, tasks: Sequence[str] | None, seeds: int, headline: pd.DataFrame
                        ) -> list[Section]:
    """The paper's convention beside the headline, and how much it flatters each method.

    The convention is the median over seeds of each run at the epoch the report split itself liked best; the
    flattery is that view's cell minus the headline's (`headline`: the headline table's tidy cells), so each
    number is the difference of two printed ones. No sections for runs without a selection split.
    """
    done = records[records["status"] == COMPLETED]
    if done.empty or (done["selection"] == "none").all():
        return []
    view, convention, _ = table2_sections(records, tasks, seeds, paper_models=[], value="report_best",
                                          statistic=PAPER_CONVENTION)
    view[0].title = ("The paper's convention, for comparison only: the median over seeds of each run at the epoch "
                     "the report split itself liked best")
    keys = ["row_key", "task"]
    both = convention[keys + ["label", "center"]].merge(headline[keys + ["center"]], on=keys,
                                                         suffixes=("_convention", "_headline"))
    both["gain"] = both["center_convention"] - both["center_headline"]
    table = both.pivot_table(index="label", columns="task", values="gain", aggfunc="first")
    table = table.reindex(sorted(table.index, key=lambda label: position(label, label_order())))
    table = table[[t for t in [*order_tasks(tasks or done["task"]), AVG] if t in table.columns]]
    flattery = pd.DataFrame({"Method": table.index})
    for column in table.columns:
        name = "Avg." if column == AVG else task_name(column)
        flattery[name] = [MISSING if pd.isna(v) else f"{100 * v:+.1f}" for v in table[column]]
    return [*view[:1], Section(
        "How much the paper's convention flatters each method (points)", flattery,
        ["The paper's convention above minus the headline table (each cell the difference of the two printed "
         "cells, from their unrounded values): two changes at once, the median of the seeds for their mean and "
         "each run's best epoch on the reported split for the epoch its selection split chose. Choosing the epoch "
         "on the numbers that are then reported can only raise a run; the median can move a cell either way."])]


def fold_rates(search_records: pd.DataFrame | None) -> dict[str, tuple[float, float]]:
    """Per method label, the learning rate each fold chooses: (the selection half's, the report half's).

    From the search's runs, which store both halves; empty without a completed search.
    """
    if search_records is None or (search_records["status"] != COMPLETED).all():
        return {}
    searched = search_records[search_records["status"] == COMPLETED]
    folds = [lr_search_winners(searched, value) for value in ("selection_value", "report_best")]
    rates = [dict(zip(f.loc[f["winner"], "label"], f.loc[f["winner"], "learning_rate"], strict=True)) for f in folds]
    return {label: (rate, rates[1].get(label, rate)) for label, rate in rates[0].items()}


def other_fold_runs(records: pd.DataFrame, rates: dict[str, tuple[float, float]], crossfit_records: pd.DataFrame | None,
                    halves: Sequence[str]) -> tuple[pd.DataFrame | None, list[str]]:
    """The runs the report half's choice of rate asks for, and a note per method on whether they are all here.

    For each method whose folds choose different rates: its dev-half runs at the report half's rate, one per seed
    of its headline runs (from `crossfit_records`, experiment=mini_crossfit).
    """
    differ = {label: pair for label, pair in rates.items() if pair[0] != pair[1]}
    if not differ:
        return None, []
    done = records[(records["status"] == COMPLETED) & records["task"].isin(halves)]
    trained = (crossfit_records[crossfit_records["status"] == COMPLETED] if crossfit_records is not None
               else records.iloc[:0])
    chosen, notes = [], []
    for label, (own, other) in differ.items():
        wanted = done.loc[done["label"] == label, ["task", "seed"]].drop_duplicates()
        found = trained[(trained["label"] == label) & trained["task"].isin(halves)
                        & (trained["train.learning_rate"].astype(float) == other)]
        found = found.merge(wanted, on=["task", "seed"])
        chosen.append(found)
        notes.append(f"{label} ({own:g} on the selection half, {other:g} on the report half: {len(found)} of "
                     f"{len(wanted)} runs at {other:g} trained)")
    return pd.concat(chosen, ignore_index=True), notes


def crossfit_section(records: pd.DataFrame, half: pd.DataFrame, search_records: pd.DataFrame | None,
                     crossfit_records: pd.DataFrame | None = None) -> list[Section]:
    """The claims of Table 2 on the whole dev set by cross-fitting, beside the half-split view's (`half`).

    On the dev-half tasks each seed is read on both halves, each half as the other chose: the learning rate (from
    the search, per fold) and the epoch. Where the report half chooses another rate than the selection half, the
    selection half is read from that seed's run at the report half's rate (`crossfit_records`); where such a run
    is missing, from the seed's own run, and the note says how many are missing.
    """
    done = records[records["status"] == COMPLETED]
    halves = sorted(set(done.loc[done["selection"] == DEV_HALF, "task"]))
    if not halves or half.empty:
        return []
    other_fold, rate_notes = other_fold_runs(records, fold_rates(search_records), crossfit_records, halves)
    whole = holm(claim_lines(records, TABLE2_CLAIMS, method_key, crossfit=True, other_fold=other_fold))
    both = half.merge(whole, on=["claim", "on"], suffixes=("", "_whole"))
    both = both[both["on"].map(lambda on: any(task_name(t) in on for t in halves))]

    def shown_interval(low: pd.Series, high: pd.Series) -> list[str]:
        return [f"[{lo:+.1f}, {hi:+.1f}] ({hi - lo:.1f})" for lo, hi in zip(low, high, strict=True)]

    table = pd.DataFrame({
        "Claim": both["claim"], "On": both["on"],
        "Half split: A − B": both["difference"].map("{:+.1f}".format),
        "interval (width)": shown_interval(both["ci_low"], both["ci_high"]),
        "Verdict, half split": both["verdict"],
        "Whole dev, cross-fitted: A − B": both["difference_whole"].map("{:+.1f}".format),
        "interval (width) ": shown_interval(both["ci_low_whole"], both["ci_high_whole"]),
        "Verdict, cross-fitted": both["verdict_whole"]})
    notes = [f"The dev-half tasks ({', '.join(task_name(t) for t in halves)}) report on half of dev in the "
             "headline tables. Here each seed is read on both halves, each half as the other half chose (learning "
             "rate and epoch), and the two are pooled into one metric on the whole dev set; no number is chosen on "
             "itself. The other tasks are as in the headline. Intervals as in the claims table (t, Holm over this "
             "table's lines); width in points.",
             "Learning rates per fold, from the search's runs (both halves stored): " + (
                 "the report half chooses another rate for " + "; ".join(rate_notes)
                 + " (experiment=mini_crossfit, `make mini-crossfit`)." if rate_notes else
                 "both halves choose the same rate for every method (or there is no search to ask)."),
             f"The two views give the same verdict on {int((both['verdict'] == both['verdict_whole']).sum())} of "
             f"{len(both)} lines. The headline tables and the claims table stay on the half split: a claim prints "
             "the cells its table prints, and those are each run's report half."]
    return [Section("The whole dev set, by cross-fitting: Table 2's claims beside the half-split view", table, notes)]


def mini_report(records: pd.DataFrame, rank_records: pd.DataFrame, tasks: Sequence[str] | None,
                seeds: int, search_records: pd.DataFrame | None = None,
                crossfit_records: pd.DataFrame | None = None) -> Report:
    """The Table 2 layout for MiniLM with a trivial-baseline row, the claims, and the rank analogs."""
    sections, tidy, baseline = with_baseline(records, tasks, seeds)
    convention = convention_sections(records, tasks, seeds, tidy)
    shown = [t for t in dict.fromkeys(tidy["task"]) if t in set(records["task"])]
    reference = Section("Reference only: the paper's RoBERTa-base rows (a different, larger model; the paper "
                        "has no MiniLM row, so there is no difference to compute)", paper_block("roberta-base", shown),
                        ["* = prior work quoted by the paper. Avg. = the paper's printed average when all 8 "
                         "tasks are shown, else its mean over the tasks shown."])
    claims = claims_report(
        holm(pd.concat([claim_lines(records, TABLE2_CLAIMS, method_key),
                        claim_lines(rank_records, RANK_CLAIMS, lora_setting_key)], ignore_index=True)),
        TABLE2_CLAIMS + RANK_CLAIMS, "Claims (i)-(iii): the Table 2 analog above (AdptP m=16 has 76k trainable "
        "parameters, LoRA r=8 on Wq,Wv 74k). Claims (iv)-(v): the Table 5 and 6 analogs below.")
    lines = claims.tidy  # empty, without columns, when no run kept its predictions
    table2_lines = lines[lines["claim"].isin([c.name for c in TABLE2_CLAIMS])] if "claim" in lines else lines
    figures = {"mini_tasks": task_figure(tidy[(tidy["task"] != AVG) & (tidy["label"] != "Trivial")], baseline)}
    rank_lora = rank_records[(rank_records["label"] == LORA) & (rank_records["status"] == COMPLETED)]
    rank_sections = [Section("Table 5 and 6 analogs", None, ["No completed rank runs yet: `make mini-ranks`."])]
    if not rank_lora.empty:
        table5, cells5 = table5_sections(rank_lora, seeds)
        table6, cells6 = table6_sections(rank_lora, seeds, notes=False)
        rank_sections = [*table5[:-2], *table6[:-1], table5[-2]]  # ours, then their notes (no GPT-3 blocks)
        figures["mini_rank"] = rank_figure(cells6)
        tidy = pd.concat([tidy, cells5.assign(table="table5"), cells6.assign(table="table6")], ignore_index=True)
    return Report("mini", "The paper's comparison on MiniLM (CPU scale)",
                  [*sections, *convention, *claims.sections,
                   *crossfit_section(records, table2_lines, search_records, crossfit_records), reference,
                   *rank_sections], tidy, figures, [claims])
