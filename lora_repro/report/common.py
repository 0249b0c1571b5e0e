"""What several reports share: the trivial baseline, the claims section, the parameter check, one precision each."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from lora_repro.errors import UserError
from lora_repro.paper.names import PAPER_MODELS
from lora_repro.records.schema import COMPLETED
from lora_repro.report.cells import MISSING
from lora_repro.report.claims import (
    FRAGILE,
    RESAMPLES,
    RNG_SEEDS,
    Claim,
    trivial_baseline,
)
from lora_repro.report.layout import (
    Report,
    Section,
    task_name,
)
from lora_repro.report.params import params_check
from lora_repro.report.table2 import AVG, table2_sections

__all__ = ["CLAIMS_TITLE", "FRONT_COLUMNS", "MINI_MODEL", "PARAMS_TITLE", "TRIVIAL_LABEL", "baseline_row",
           "check_one_precision", "claims_report", "interval_text", "margin_note", "params_report", "verdict_text",
           "with_baseline"]

MINI_MODEL = "minilm"


TRIVIAL_LABEL = "Trivial baseline"


FRONT_COLUMNS = ("Model", "Method", "# Trainable Parameters")


CLAIMS_TITLE = "The paper's claims on MiniLM: measured differences, intervals at the Holm levels, verdicts"


PARAMS_TITLE = "Table 2's \"# Trainable Parameters\", computed on the meta device, next to the paper's"


def interval_text(low: float, high: float) -> str:
    """A claim's interval as every table prints it, in points: `[-3.8, +1.4]`."""
    return f"[{low:+.1f}, {high:+.1f}]"


def verdict_text(verdict: str, stability: float) -> str:
    """A claim's verdict as every table prints it: marked fragile when fewer than `FRAGILE` of the RNG seeds give it."""
    return verdict + (" (fragile)" if stability < FRAGILE else "")


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
        "Interval": [interval_text(lo, hi) for lo, hi in zip(table["ci_low"], table["ci_high"], strict=True)],
        "Level": table["level"].map(lambda level: f"{100 * level:.1f}%"),
        "Margin": table["margin"].map("{:+.0f}".format),
        "Seed share": [f"{share:.2f}" + ("*" if clipped else "")
                       for share, clipped in zip(table["seed_share"], table["example_clipped"], strict=True)],
        "Verdict": [verdict_text(v, stable) for v, stable in zip(table["verdict"], table["stability"], strict=True)],
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
