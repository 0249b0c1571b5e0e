"""What every report is made of, and the pieces all its tables share.

A report is sections (a table and its notes), a tidy table for CSV and figures. Shared here: the
paper's task order and names, record selection, and the footnotes on cells, metrics and on the runs
that are not results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
from matplotlib.figure import Figure

from lora_repro.errors import UserError
from lora_repro.paper.names import TASK_NAMES, TASK_ORDER
from lora_repro.records.schema import COMPLETED
from lora_repro.report.cells import HEADLINE, MISSING, MIXED

__all__ = ["Report", "Section", "legend", "metric_note", "mixed_notes",
           "not_results_note", "order_tasks", "position", "require_completed", "select", "task_name"]

MAX_LISTED_PATHS = 10  # footnotes list at most this many record files; the CSV and the store have all


@dataclass
class Section:
    """A titled part of a report: a table of display strings (or none) and its notes."""

    title: str
    table: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    """A rendered report: sections for Markdown/LaTeX, a tidy table for CSV, figures by file stem.

    `companions` are reports written next to it as files of their own (the mini's `claims.md`).
    """

    name: str
    title: str
    sections: list[Section]
    tidy: pd.DataFrame
    figures: dict[str, Figure] = field(default_factory=dict)
    companions: list[Report] = field(default_factory=list)


def position(value: str, order: Sequence[str]) -> int:
    """Sort key: the position of `value` in `order`; unknown values sort after the known ones."""
    return order.index(value) if value in order else len(order)


def task_name(task: str) -> str:
    """The paper's spelling of a task (`sst2` -> `SST-2`)."""
    return TASK_NAMES.get(task, task.upper())


def order_tasks(tasks: Sequence[str]) -> list[str]:
    """Tasks in the paper's column order; tasks the paper does not have follow, sorted."""
    unique = set(tasks)
    return [t for t in TASK_ORDER if t in unique] + sorted(unique - set(TASK_ORDER))


def select(records: pd.DataFrame, models: Sequence[str] | None, tasks: Sequence[str] | None) -> pd.DataFrame:
    """The records of `models` and `tasks` (None = all)."""
    keep = pd.Series(True, index=records.index)
    if models:
        keep &= records["model"].isin(models)
    if tasks:
        keep &= records["task"].isin(tasks)
    return records[keep]


def require_completed(records: pd.DataFrame, what: str) -> pd.DataFrame:
    """The completed rows of `records`, or a `UserError` saying there are none for `what`."""
    done = records[records["status"] == COMPLETED]
    if done.empty:
        raise UserError(f"no completed run records for {what} (found {len(records)} running/failed); "
                        "run the sweep first, or point --runs at the folder it wrote to")
    return done


def legend(expected: int, records: pd.DataFrame | None = None, value: str = "best", statistic: str = HEADLINE
           ) -> str:
    """How to read a cell (of `records`' `value`: the selected epoch's, or the paper's convention)."""
    selected = records is not None and "selection" in records and (
        records.loc[records["status"] == COMPLETED, "selection"] != "none").any()
    what = ("the report split's metric at the epoch its own selection split chose" if selected and value == "best"
            else "the report split's metric at the epoch the report split itself liked best (the paper's "
            "convention)" if selected else "the best-epoch dev metric")
    return (f"Cells: {statistic} over seeds ± sample std of {what}, x100 (`87.5±.3`); "
            f"`(k/{expected} seeds)` = only k of the {expected} seeds asked for (--seeds) completed; "
            f"`{MISSING}` = no completed run; `{MIXED}` = the cell's runs come from more than one config "
            f"(only the config with the most seeds is used, see the notes).")


def metric_note(records: pd.DataFrame) -> str:
    """Which metric each task's cells hold, as the records name it."""
    done = records[records["status"] == COMPLETED]
    names = done.groupby("task")["headline_metric"].agg(lambda m: " / ".join(sorted(set(m))))
    parts = [f"{task_name(t)} = {names[t]}" for t in order_tasks(names.index)]
    if "metric.mismatched/accuracy" in done and done["metric.mismatched/accuracy"].notna().any():
        parts.append("MNLI-mm = mismatched/accuracy at the epoch chosen by matched accuracy")
    return "Metric per task: " + "; ".join(parts) + "." if parts else ""


def mixed_notes(cells: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """One footnote per cell whose records came from several configs."""
    notes = []
    for _, cell in cells[cells["families"] > 1].iterrows():
        where = " · ".join(str(cell[k]) for k in keys)
        notes.append(f"{MIXED} {where}: runs from {int(cell['families'])} configs that differ in "
                     f"{cell['differs']}; the cell uses config {cell['family']} only "
                     f"(seeds {cell['seeds']}).")
    return notes


def not_results_note(records: pd.DataFrame) -> str:
    """A count of the running and failed records, which are never part of a cell."""
    rest = records[records["status"] != COMPLETED]
    if rest.empty:
        return ""
    counts = ", ".join(f"{n} {status}" for status, n in rest["status"].value_counts().sort_index().items())
    paths = list(rest["path"])
    listed = "; ".join(paths[:MAX_LISTED_PATHS]) + (" ..." if len(paths) > MAX_LISTED_PATHS else "")
    return f"Not in any cell: {counts} run record(s) ({listed})."
