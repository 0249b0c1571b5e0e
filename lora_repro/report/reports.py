"""The reports the CLI offers, each assembled from the table modules.

`table2`, `table5`, `table6` and `mini`, plus the parameter check (`table2 --params-only`, or
`table2` when there are no records yet).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from lora_repro.config import compose_config
from lora_repro.errors import UserError
from lora_repro.methods.registry import label_order, method_label, successor_claims
from lora_repro.paper import RECIPE_DIFFERENCES, recipe_disagreements
from lora_repro.paper.names import LORA, PAPER_LABELS, PAPER_MODELS
from lora_repro.records.schema import COMPLETED
from lora_repro.report.cells import MISSING, PAPER_CONVENTION, format_cell, summarize_cells
from lora_repro.report.claims import (
    FRAGILE,
    RANK_CLAIMS,
    RESAMPLES,
    RNG_SEEDS,
    TABLE2_CLAIMS,
    Claim,
    claim_lines,
    claims_table,
    headline,
    holm,
    lora_setting_key,
    method_key,
    trivial_baseline,
)
from lora_repro.report.figures import params_figure, rank_figure, task_figure
from lora_repro.report.layout import (
    Report,
    Section,
    legend,
    metric_note,
    not_results_note,
    order_tasks,
    position,
    require_completed,
    select,
    task_name,
)
from lora_repro.report.params import params_check
from lora_repro.report.sweeps import table5_sections, table6_sections
from lora_repro.report.table2 import AVG, paper_block, table2_sections
from lora_repro.settings import DEV_HALF

__all__ = ["DEFAULT_SEEDS", "RATE_SEARCHES", "REPORTS", "build_report", "lr_search_next", "params_report"]

# Seeds a cell should have: the paper's 5 for Table 2, the sweeps' 3 (conf/experiment/table5, 6, mini).
DEFAULT_SEEDS = {"table2": 5, "table5": 5, "table6": 5, "mini": 5, "lr_search": 1, "successors": 5, "precision": 3,
                 "successors_lr": 1}
MINI_MODEL = "minilm"
TRIVIAL_LABEL = "Trivial baseline"
FRONT_COLUMNS = ("Model", "Method", "# Trainable Parameters")
CLAIMS_TITLE = "The paper's claims on MiniLM: measured differences, intervals at the Holm levels, verdicts"
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


def baseline_row(table: pd.DataFrame, baseline: pd.DataFrame) -> pd.DataFrame:
    """`table` (a Table 2 layout) with the trivial baseline as its last row."""
    values = dict(zip(baseline["task"].map(task_name), baseline["value"], strict=True))
    row = {column: MISSING for column in table.columns}
    row.update({"Model": "", "Method": TRIVIAL_LABEL, "# Trainable Parameters": "0"})
    row.update({c: f"{100 * values[c]:.1f}" for c in table.columns if c in values})
    if "Avg." in row and all(c in values for c in table.columns if c not in FRONT_COLUMNS + ("Avg.",)):
        row["Avg."] = f"{100 * sum(values.values()) / len(values):.1f}"
    return pd.concat([table, pd.DataFrame([row])], ignore_index=True)


def margin_note(tidy: pd.DataFrame, baseline: pd.DataFrame) -> str:
    """The smallest lead of any method over the trivial baseline: whether every column means something."""
    cells = tidy[(tidy["task"] != AVG) & tidy["center"].notna()].merge(baseline, on="task")
    if cells.empty:
        return ""
    lead = 100 * (cells["center"] - cells["value"])
    worst = cells.loc[lead.idxmin()]
    return (f"Trivial baseline: the best constant prediction on each dev set (majority class; the mean score "
            f"for STS-B, whose Pearson is then 0), from the dev labels the runs saved. Smallest lead of a "
            f"method over it: {lead.min():.1f} points ({worst['method']} on {task_name(worst['task'])}).")


def claims_report(table: pd.DataFrame, claims: Sequence[Claim], where: str, title: str = CLAIMS_TITLE) -> Report:
    """Claims, each with our difference, its interval at its Holm level and a verdict (`table`: `claims_table`'s).

    Args:
        table: the tested claims (`claims_table`), possibly of several claim sets.
        claims: every claim that was to be tested (those missing from `table` are listed as not tested).
        where: a note saying which tables the claims are read from.
        title: the report's title.
    """
    lines = max(len(table), 1)
    notes = ["Each claim reads `A − B ≥ margin` in points (x100) on the mean over seeds of each run's report-split "
             "metric at the epoch its selection split chose, the statistic of every headline table; over several "
             "tasks, on the mean of the task cells. Margin, from the paper's wording: −1 for \"matches or exceeds\", "
             "0 for \"beats\". Interval: difference ± t quantile x standard error. The variance is the seeds' part "
             "(each cell's sample variance / n) plus the examples' part (a paired bootstrap of the selection and "
             f"report examples, {RESAMPLES} resamples, the epoch re-chosen in each), less the run-by-example noise "
             "both hold; df: Welch–Satterthwaite, n − 1 per cell's seeds (lora_repro/report/claims.py). Seed share: "
             "the seeds' part of the variance; * = the examples' part came out below 0 and is taken as 0.",
             "All lines of this table are one family: Holm's step-down procedure keeps the chance of any false "
             f"verdict at 5%. Level = the line's interval coverage under it ({100 * (1 - 0.05 / lines):.1f}% "
             f"= 1 − 0.05/{lines} for the first of these {lines} lines). Verdict: holds = "
             "the whole interval at or above the margin; does not hold = entirely below; inconclusive = otherwise. "
             f"Stability: the share of {RNG_SEEDS} bootstrap RNG seeds whose whole Holm procedure gives the printed "
             f"verdict (seed 0's); below {FRAGILE:.0%} the verdict is marked fragile. "
             "Seeds to settle: seeds per cell at which a difference of the observed size and spread would clear "
             "the margin at the line's level (∞: the examples alone are too noisy). A verdict is whatever the "
             "records say: nothing is tuned to make a claim hold.",
             "Parameters come both ways: the method's own (what the LoRA paper counts) and all that trains, the "
             "classification head included, which trains under every method and can outweigh a small method's "
             "own many times.", where]
    if table.empty:
        return Report("claims", title, [Section("Claims", None, ["No completed runs with predictions."])], table)
    shown = pd.DataFrame({
        "Claim": table["claim"], "Statement": table["statement"], "On": table["on"],
        "A − B": [f"{a} − {b}" for a, b in zip(table["A"], table["B"], strict=True)],
        "A": table["A_value"].map("{:.1f}".format), "B": table["B_value"].map("{:.1f}".format),
        "Difference": table["difference"].map("{:+.1f}".format),
        "Interval": [f"[{lo:+.1f}, {hi:+.1f}]" for lo, hi in zip(table["ci_low"], table["ci_high"], strict=True)],
        "Level": table["level"].map(lambda level: f"{100 * level:.1f}%"),
        "Margin": table["margin"].map("{:+.0f}".format),
        "Seed share": [f"{share:.2f}" + ("*" if clipped else "")
                       for share, clipped in zip(table["seed_share"], table["example_clipped"], strict=True)],
        "Verdict": [v + (" (fragile)" if stable < FRAGILE else "")
                    for v, stable in zip(table["verdict"], table["stability"], strict=True)],
        "Stability": table["stability"].map("{:.0%}".format),
        "Parameters A / B: own; with the head": [
            f"{r.A_params_own:,} / {r.B_params_own:,}; {r.A_params_trainable:,} / {r.B_params_trainable:,}"
            for r in table.itertuples()],
        "Seeds to settle": table["seeds_to_settle"].map(
            lambda n: "" if pd.isna(n) else "∞" if math.isinf(n) else f"{int(n)}")})
    if table["scale"].astype(bool).any():  # the successors' claims come from other models and schedules
        shown["Scale"] = table["scale"]
    missing = [c.name for c in claims if c.name not in set(table["claim"])]
    if missing:
        notes.append(f"Not tested yet (their runs are missing): claim(s) {', '.join(missing)}.")
    return Report("claims", title, [Section("Claims", shown, notes)], table)


def with_baseline(records: pd.DataFrame, tasks: Sequence[str] | None, seeds: int
                  ) -> tuple[list[Section], pd.DataFrame, pd.DataFrame]:
    """The Table 2 layout of `records` (no paper rows) with the trivial-baseline row and the margin note.

    Returns:
        The sections, the tidy cells (with the baseline as rows of label `Trivial`) and the baseline itself.
    """
    sections, tidy, _ = table2_sections(records, tasks, seeds, paper_models=[])
    baseline = trivial_baseline(records)
    sections[0].table = baseline_row(sections[0].table, baseline)
    sections[0].notes.insert(2, margin_note(tidy, baseline))
    tidy = pd.concat([tidy.assign(table="table2"),
                      baseline.assign(table="table2", label="Trivial", method=TRIVIAL_LABEL, center=baseline["value"])
                      .drop(columns=["value", "metric"])], ignore_index=True)
    return sections, tidy, baseline


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


def crossfit_section(records: pd.DataFrame, half: pd.DataFrame, search_records: pd.DataFrame | None
                     ) -> list[Section]:
    """The claims of Table 2 on the whole dev set by cross-fitting, beside the half-split view's (`half`).

    On the dev-half tasks each run is read on both halves, each at the epoch the other half chose; its learning
    rate is the one the selection half chose. Where the other half would choose another rate, those runs would
    have to be trained: the note names them.
    """
    done = records[records["status"] == COMPLETED]
    halves = sorted(set(done.loc[done["selection"] == DEV_HALF, "task"]))
    if not halves or half.empty:
        return []
    whole = holm(claim_lines(records, TABLE2_CLAIMS, method_key, crossfit=True))
    both = half.merge(whole, on=["claim", "on"], suffixes=("", "_whole"))
    both = both[both["on"].map(lambda on: any(task_name(t) in on for t in halves))]

    def shown_interval(low: pd.Series, high: pd.Series) -> list[str]:
        return [f"[{lo:+.1f}, {hi:+.1f}] ({hi - lo:.1f})" for lo, hi in zip(low, high, strict=True)]

    table = pd.DataFrame({
        "Claim": both["claim"], "On": both["on"],
        "Half split: A − B": both["difference"].map("{:+.1f}".format),
        "interval (width)": shown_interval(both["ci_low"], both["ci_high"]),
        "Whole dev, cross-fitted: A − B": both["difference_whole"].map("{:+.1f}".format),
        "interval (width) ": shown_interval(both["ci_low_whole"], both["ci_high_whole"]),
        "Verdict, cross-fitted": both["verdict_whole"]})
    notes = [f"The dev-half tasks ({', '.join(task_name(t) for t in halves)}) report on half of dev in the "
             "headline tables. Here every run is read on both halves, each at the epoch the other half chose, and "
             "the two are pooled into one metric on the whole dev set; no number is chosen on itself. The other "
             "tasks are as in the headline. Intervals as in the claims table (t, Holm over this table's lines); "
             "width in points."]
    if search_records is not None and (search_records["status"] == COMPLETED).any():
        searched = search_records[search_records["status"] == COMPLETED]
        folds = [lr_search_winners(searched, value) for value in ("selection_value", "report_best")]
        rates = [dict(zip(f.loc[f["winner"], "label"], f.loc[f["winner"], "learning_rate"], strict=True))
                 for f in folds]
        differ = {label: (rates[0][label], rates[1].get(label)) for label in rates[0]
                  if rates[1].get(label) != rates[0][label]}
        notes.append("Learning rates per fold, from the search's runs (both halves stored): " + (
            "the report half would choose another rate for " + "; ".join(
                f"{label} ({a:g} on the selection half, {b:g} on the report half)" for label, (a, b) in differ.items())
            + ". Those methods' runs at the report half's rate are not trained yet, so for them both folds use the "
            "selection half's rate, and this view stays beside the headline rather than replacing it."
            if differ else "both halves choose the same rate for every method."))
    return [Section("The whole dev set, by cross-fitting: Table 2's claims beside the half-split view", table, notes)]


def mini_report(records: pd.DataFrame, rank_records: pd.DataFrame, tasks: Sequence[str] | None,
                seeds: int, search_records: pd.DataFrame | None = None) -> Report:
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
                   *crossfit_section(records, table2_lines, search_records), reference,
                   *rank_sections], tidy, figures, [claims])


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


def lr_search_winners(records: pd.DataFrame, value: str = "selection_value") -> pd.DataFrame:
    """Per method and learning rate, the selection-split metric on each task and their mean; the best marked.

    Only the selection split chooses: a run's value here is its selection-split metric at the epoch that split
    picked (`selection_value`), never a report-split number. `value="report_best"` is the other fold of the
    cross-fitted view: the report half choosing (its metric at the epoch it picked itself).

    Returns:
        One row per method x rate: method (the config name), label, learning_rate, one column per task
        (0-1 scale), mean, winner (True for each method's rate with the highest mean) and edge (the winner sits
        at the low or high end of the rates searched so far: `low`, `high` or empty).
    """
    done = require_completed(records, "lr_search")
    table = done.pivot_table(index=["method", "label", "train.learning_rate"], columns="task",
                             values=value, aggfunc="median").reset_index().rename(
        columns={"train.learning_rate": "learning_rate"})
    tasks = order_tasks(done["task"])
    table["mean"] = table[tasks].mean(axis=1, skipna=False)
    best = table.groupby("method")["mean"].transform("max")
    table["winner"] = table["mean"].eq(best) & table["mean"].notna()
    low = table.groupby("method")["learning_rate"].transform("min")
    high = table.groupby("method")["learning_rate"].transform("max")
    table["edge"] = [("low" if rate == lo else "high" if rate == hi else "") if won and lo < hi else ""
                     for rate, lo, hi, won in zip(table["learning_rate"], low, high, table["winner"], strict=True)]
    order = [position(label, label_order()) for label in table["label"]]
    return table.assign(order=order).sort_values(["order", "learning_rate"]).drop(columns="order")[
        ["method", "label", "learning_rate", *tasks, "mean", "winner", "edge"]].reset_index(drop=True)


@dataclass(frozen=True)
class RateSearch:
    """A declared learning-rate search: the experiment that runs it, and how its report names things."""

    report: str  # the report's name: `lora-repro report <report>`
    experiment: str  # conf/experiment/<experiment>.yaml
    make_target: str
    title: str
    in_use: str  # the column saying which rate conf/experiment/_mini_protocol.yaml gives (mini.learning_rate)
    user: str  # who trains with those rates


RATE_SEARCHES = {
    "lr_search": RateSearch("lr_search", "mini_lr", "make mini-lr",
                            "The mini's learning-rate search on the selection split (experiment=mini_lr)",
                            "In the mini", "the mini"),
    "successors_lr": RateSearch("successors_lr", "successors_lr", "make mini-successors-lr",
                                "The successors' learning-rate search on the selection split "
                                "(experiment=successors_lr)", "In the successors' table", "the successors' table"),
}


def lr_search_next(records: pd.DataFrame, search: RateSearch = RATE_SEARCHES["lr_search"]) -> list[str]:
    """The overrides that extend the search one step outward for each method whose winner is on an edge.

    The grid is powers of two around each method's centre (`lr_search.factor`), so one step out halves the
    lowest factor or doubles the highest. Returns e.g. `["method=lora lr_search.factor=0.25"]`, or nothing when
    every winner is interior (the search is done). Methods are named as the search's experiment sweeps them.
    """
    config = compose_config([f"experiment={search.experiment}"], hydra=True)
    choices = str(config.hydra.sweeper.params.method).split(",")
    by_label = {method_label(compose_config([f"method={c}"]).method): c for c in choices}
    table = lr_search_winners(records)
    lines = []
    for row in table[table["edge"] != ""].itertuples():
        factor = row.learning_rate / float(config.lr_search.center[row.method])
        step = 0.5 if row.edge == "low" else 2.0
        lines.append(f"method={by_label[row.label]} lr_search.factor={factor * step:g}")
    return lines


def lr_search_report(records: pd.DataFrame, search: RateSearch = RATE_SEARCHES["lr_search"]) -> Report:
    """A learning-rate search: each method's rates side by side, the winner marked, and whether it is in use."""
    table = lr_search_winners(records)
    tasks = [c for c in table.columns if c not in ("method", "label", "learning_rate", "mean", "winner", "edge")]
    shown = pd.DataFrame({"Method": table["label"], "Learning rate": table["learning_rate"].map("{:g}".format)})
    for task in tasks:
        shown[task_name(task)] = table[task].map(lambda v: MISSING if pd.isna(v) else f"{100 * v:.1f}")
    shown["Mean"] = table["mean"].map(lambda v: MISSING if pd.isna(v) else f"{100 * v:.1f}")
    shown["Best"] = table["winner"].map({True: "✓", False: ""})
    configured = compose_config(["experiment=mini"]).mini.learning_rate
    in_use = [configured.get(method) == rate for method, rate in zip(table["method"], table["learning_rate"],
                                                                      strict=True)]
    shown[search.in_use] = ["✓" if used else "" for used in in_use]
    differs = sorted({r.label for r, used in zip(table.itertuples(), in_use, strict=True) if r.winner and not used})
    edges = sorted({r.label for r in table.itertuples() if r.edge})
    from lora_repro.training.plan import expand_sweep  # the search as its experiment file declares it

    planned = len(expand_sweep([f"experiment={search.experiment}"]))
    completed = int((records["status"] == COMPLETED).sum())
    metrics = ", ".join(f"{task_name(t)} {m}" for t, m in headline(records[records["status"] == COMPLETED]).items())
    done = records[records["status"] == COMPLETED]
    selected = (done["selection"] != "none").all()
    notes = [f"Selection-split metric ({metrics}) of one run (seed 0) at the epoch the selection split picked, "
             "x100. The report split never enters the search." if selected else
             f"Dev metric ({metrics}) of one run (seed 0) at its best dev epoch, x100: these runs have no selection "
             "split, so dev both chose and reports (the protocol before the selection split).",
             f"Best = the rate with the highest mean over the tasks, per method. {search.in_use} = the rate "
             "conf/experiment/_mini_protocol.yaml gives the method (mini.learning_rate). A best rate on the edge "
             f"of its grid extends the grid one step outward (`{search.make_target}` does it until every best is "
             "inside).",
             f"The search is not finished: {completed} of its {planned} planned runs are completed, so the best "
             "rates above are provisional." if completed < planned else
             f"Still on an edge, to be extended: {', '.join(edges)}." if edges else
             f"{search.user[0].upper()}{search.user[1:]} does not use the best rate for: {', '.join(differs)}."
             if differs else f"Every best rate is inside its grid, and {search.user} uses the best rate of every "
             "method.",
             not_results_note(records)]
    return Report(search.report, search.title, [Section("Learning rate x method", shown, [n for n in notes if n])],
                  table.assign(winner=table["winner"].astype(bool)))


def precision_report(records: pd.DataFrame, seeds: int) -> Report:
    """bf16 against fp32 per task and method: is bf16's mean within the fp32 seeds' range, and its speed."""
    done = require_completed(records, "precision")
    cells = summarize_cells(done, ["task", "label", "train.precision"])
    cells = cells.set_index(["task", "label", "train.precision"])
    rows = []
    for task in order_tasks(done["task"]):
        for label in sorted(set(done.loc[done["task"] == task, "label"]), key=lambda x: position(x, label_order())):
            key = (task, label)
            if (*key, "fp32") not in cells.index or (*key, "bf16") not in cells.index:
                continue
            fp32, bf16 = cells.loc[(*key, "fp32")], cells.loc[(*key, "bf16")]
            runs = done[(done["task"] == task) & (done["label"] == label)]
            values = runs[runs["train.precision"] == "fp32"]["best"].astype(float)
            seconds = runs.groupby("train.precision")["train_seconds"].median()
            rows.append({"task": task, "method": label, "fp32": fp32["center"], "fp32_std": fp32["std"],
                         "fp32_min": values.min(), "fp32_max": values.max(), "bf16": bf16["center"],
                         "bf16_std": bf16["std"], "difference": bf16["center"] - fp32["center"],
                         "within": bool(values.min() <= bf16["center"] <= values.max()),
                         "n_fp32": int(fp32["n_seeds"]), "n_bf16": int(bf16["n_seeds"]),
                         "time_ratio": seconds.get("bf16", math.nan) / seconds.get("fp32", math.nan)})
    table = pd.DataFrame(rows)
    shown = pd.DataFrame({
        "Task": table["task"].map(task_name), "Method": table["method"],
        "fp32": [format_cell(m, s, n, seeds, False) for m, s, n in zip(table["fp32"], table["fp32_std"],
                                                                          table["n_fp32"], strict=True)],
        "fp32 seeds' range": [f"{100 * lo:.1f}–{100 * hi:.1f}" for lo, hi in zip(table["fp32_min"], table["fp32_max"],
                                                                                 strict=True)],
        "bf16": [format_cell(m, s, n, seeds, False) for m, s, n in zip(table["bf16"], table["bf16_std"],
                                                                          table["n_bf16"], strict=True)],
        "bf16 − fp32": table["difference"].map(lambda d: f"{100 * d:+.1f}"),
        "bf16 mean within the fp32 range": table["within"].map({True: "yes", False: "no"}),
        "train time bf16 / fp32": table["time_ratio"].map(lambda r: MISSING if pd.isna(r) else f"{r:.2f}"),
    })
    notes = [legend(seeds, records), metric_note(records),
             "bf16 = autocast: matmuls in bf16, weights and AdamW state in fp32 (train.precision=bf16, what "
             "`auto` resolves to on a CPU with AVX512-BF16 or AMX). Train time: median over seeds of each run's "
             "train_seconds, which includes the evaluations; the runs shared the machine with other work, so the "
             "ratio is indicative. `make bench` times bf16 against fp32 side by side (bf16 vs fp32).",
             not_results_note(records)]
    return Report("precision", "bf16 against fp32 on the CPU (MiniLM, the mini's protocol)",
                  [Section("bf16 x fp32", shown, [n for n in notes if n])], table)


def build_report(name: str, records: pd.DataFrame, models: Sequence[str] | None = None,
                 tasks: Sequence[str] | None = None, seeds: int | None = None,
                 rank_records: pd.DataFrame | None = None, search_records: pd.DataFrame | None = None) -> Report:
    """Build report `name` from store rows.

    Args:
        name: One of `REPORTS`.
        records: Rows of `lora_repro.records.store.load_records`.
        models: Models to show; None = all (`mini`: minilm).
        tasks: Tasks to show; None = every task the records hold.
        seeds: Seeds a cell should have; None = `DEFAULT_SEEDS[name]`.
        rank_records: `mini` only: the rank sweep's rows (kept in their own experiment folder).
        search_records: `successors` and `mini`: the rows of their learning-rate search.

    Returns:
        The report (Table 2 with no completed records: the parameter check alone).

    Raises:
        UserError: No completed record to report on.
    """
    seeds = seeds or DEFAULT_SEEDS[name]
    mini_like = ("mini", "lr_search", "successors", "precision", "successors_lr")
    chosen = select(records, models or ([MINI_MODEL] if name in mini_like else None), tasks)
    paper_only = set(models or ()) <= set(PAPER_MODELS.values())
    if name == "table2" and paper_only and (chosen["status"] != COMPLETED).all():
        note = " ".join(filter(None, ["No completed run records: showing the parameter counts only.",
                                      not_results_note(chosen)]))
        return params_report(models, note)
    require_completed(chosen, name)
    if name != "precision":
        check_one_precision(name, [chosen, rank_records, search_records])
    if name in ("table5", "table6"):
        return sweep_report(int(name[-1]), chosen, seeds)
    if name in RATE_SEARCHES:
        return lr_search_report(chosen, RATE_SEARCHES[name])
    if name == "precision":
        return precision_report(chosen, seeds)
    if name == "successors":
        return successors_report(chosen, tasks, seeds, search_records)
    if name == "mini":
        ranks = rank_records if rank_records is not None else records.iloc[:0]
        return mini_report(chosen, select(ranks, [MINI_MODEL], None), tasks, seeds, search_records)
    return table2_report(chosen, tasks, seeds)


REPORTS = tuple(DEFAULT_SEEDS)


def check_one_precision(name: str, tables: Sequence[pd.DataFrame | None]) -> None:
    """Refuse a report whose completed runs were trained in more than one precision: no table mixes them.

    Runs in another precision are other runs (another identity), so a runs folder can hold both, e.g. fp32 runs
    trained beside the committed bf16 mini on a CPU without native bf16.
    """
    rows = pd.concat([t for t in tables if t is not None and not t.empty])
    counts = rows[rows["status"] == COMPLETED]["train.precision"].value_counts().sort_index()
    if len(counts) > 1:
        found = ", ".join(f"{count} {precision}" for precision, count in counts.items())
        raise UserError(f"report {name}: its runs were trained in more than one precision ({found} runs), and a "
                        "table never mixes them; keep each precision in its own runs folder (paths.runs_dir) and "
                        "report each with --runs")
