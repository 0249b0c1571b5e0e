"""Table 2 (GLUE: methods x tasks) from run records, with the paper's numbers and the difference.

Rows are model x setup x method row (FT, BitFit, AdptD, AdptP, AdptH, LoRA, as the paper orders
them); for the paper's models every paper row is listed, so runs that are missing show as `—`. A row
has a paper counterpart when model, setup (houlsby = the paper's † rows), label and parameter count
agree (FT: the paper prints prior work's nominal model size, so label alone). `mini` is the same
layout for MiniLM, which the paper never ran: its RoBERTa-base rows are shown as a reference only.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from lora_repro.methods.registry import label_order
from lora_repro.paper import paper_table
from lora_repro.paper.names import FT, HOULSBY_SETUP, PAPER_MODELS, SETUPS, TASK_ORDER
from lora_repro.records.schema import COMPLETED
from lora_repro.report.cells import (
    HEADLINE,
    MISSING,
    cell_text,
    format_delta,
    format_params,
    parse_paper_cell,
    summarize_cells,
)
from lora_repro.report.layout import (
    Section,
    legend,
    metric_note,
    mixed_notes,
    not_results_note,
    order_tasks,
    position,
    task_name,
)
from lora_repro.report.params import (
    DAGGER,
    count_paper_row,
    paper_rows,
    params_match,
    shown_count,
)

__all__ = ["AVG", "MM_TASK", "ROW_KEYS", "paper_block", "table2_sections", "table2_tidy"]

ROW_KEYS = ["model", "setup", "row_key"]
SETUP_ORDER = SETUPS
MM_TASK, MM_COLUMN = "mnli-mm", "metric.mismatched/accuracy"
AVG = "avg"


def paper_counterpart(model: str, setup: str, label: str, count: float) -> float:
    """The index of the paper row this row reproduces (NaN if none), by the rule of the module doc."""
    for row in paper_rows():
        if (row.model, row.setup, row.label) == (model, setup, label) and (
                label == FT or (pd.notna(count) and params_match(row.params_m, int(count)) != "no")):
            return float(row.index)
    return float("nan")


def record_rows(done: pd.DataFrame) -> pd.DataFrame:
    """The rows the completed records fill, each with the parameter count its runs recorded."""
    shown = done["params_total"].where(done["label"] == FT, done["params_method"])
    # FT's total differs by task (head size); the most common count stands for the row.
    return done.assign(params=shown).groupby(ROW_KEYS, as_index=False).agg(
        label=("label", "first"), params=("params", lambda p: p.mode().iloc[0] if p.notna().any() else None))


def expected_rows(models: Sequence[str]) -> pd.DataFrame:
    """Every paper row of `models`, with the parameter count computed on the meta device."""
    rows = [{"model": r.model, "setup": r.setup, "row_key": r.row_key, "label": r.label,
             "params": shown_count(r.label, count_paper_row(r.model, r.method_config))}
            for r in paper_rows() if r.model in models]
    return pd.DataFrame(rows, columns=ROW_KEYS + ["label", "params"])


def table_rows(done: pd.DataFrame, paper_models: Sequence[str]) -> pd.DataFrame:
    """Rows of the table in the paper's order, with their paper counterpart and display name."""
    rows = pd.concat([record_rows(done), expected_rows(paper_models)], ignore_index=True)
    rows = rows.drop_duplicates(ROW_KEYS, keep="first")  # a record's own count wins over the computed one
    rows["paper_index"] = [paper_counterpart(r.model, r.setup, r.label, r.params) for r in rows.itertuples()]
    rows["method"] = rows["row_key"] + rows["setup"].map(lambda s: DAGGER if s == HOULSBY_SETUP else "")
    order = [(position(r.model, list(PAPER_MODELS.values())), r.model, position(r.setup, SETUP_ORDER),
              position(r.label, label_order()), r.paper_index if pd.notna(r.paper_index) else 1e9, r.params)
             for r in rows.itertuples()]
    return rows.iloc[sorted(range(len(rows)), key=order.__getitem__)].reset_index(drop=True)


def paper_values(index: float, task: str) -> tuple[float, float]:
    """The paper's value and std (points) of row `index` on `task` (NaN when it has none)."""
    if pd.isna(index) or task not in TASK_ORDER:
        return float("nan"), float("nan")
    return parse_paper_cell(paper_table("table2").loc[int(index), task])


def paper_avg(index: float, tasks: Sequence[str]) -> float:
    """The paper's Avg as printed when all 8 tasks are shown, else its mean over the shown ones."""
    if pd.isna(index):
        return float("nan")
    if set(TASK_ORDER) <= set(tasks):
        return float(paper_table("table2").loc[int(index), "avg"])
    return pd.Series([paper_values(index, t)[0] for t in tasks], dtype=float).mean(skipna=False)


def avg_rows(tidy: pd.DataFrame, rows: pd.DataFrame, tasks: Sequence[str]) -> pd.DataFrame:
    """Per row, the mean of its task cells (only when every task has one) and the paper's Avg."""
    main = tidy[tidy["task"].isin(tasks)]
    mean = main.groupby(ROW_KEYS, sort=False)["center"].agg(lambda m: m.mean(skipna=False))
    avg = rows[ROW_KEYS + ["label", "method", "params", "paper_index"]].assign(task=AVG)
    avg["center"] = [mean.get(tuple(k), float("nan")) for k in avg[ROW_KEYS].itertuples(index=False)]
    avg["statistic"] = main["statistic"].dropna().iloc[0] if main["statistic"].notna().any() else None
    avg["paper"] = [paper_avg(i, tasks) for i in avg["paper_index"]]
    avg["cell"] = avg["center"].map(lambda m: MISSING if pd.isna(m) else f"{100 * m:.1f}")
    return avg


def table2_tidy(records: pd.DataFrame, rows: pd.DataFrame, tasks: Sequence[str], expected: int,
                value: str = "best", statistic: str = HEADLINE) -> pd.DataFrame:
    """The long table behind Table 2: one line per row x task (and Avg) with ours, paper and delta.

    Numeric columns (center, mean, median, std, paper, paper_std, delta) are on the records' 0-1 scale; `cell`,
    `paper_cell` and `delta_cell` are the text as printed (x100).
    """
    cells = summarize_cells(records, ROW_KEYS + ["task"], value=value, statistic=statistic)
    mm = summarize_cells(records[records["task"] == "mnli"], ROW_KEYS + ["task"], value=MM_COLUMN,
                         statistic=statistic)
    cells = pd.concat([cells, mm.assign(task=MM_TASK)], ignore_index=True) if not mm.empty else cells
    columns = list(tasks) + ([MM_TASK] if not mm.empty else [])
    grid = rows.merge(pd.DataFrame({"task": columns}), how="cross").merge(cells, on=ROW_KEYS + ["task"],
                                                                          how="left")
    grid["cell"] = [cell_text(c, expected) for _, c in grid.iterrows()]
    grid[["paper", "paper_std"]] = [paper_values(i, t)
                                    for i, t in zip(grid["paper_index"], grid["task"], strict=True)]
    tidy = pd.concat([grid, avg_rows(grid, rows, tasks)], ignore_index=True)
    tidy["expected_seeds"] = expected
    tidy["paper_cell"] = [paper_text(i, t, p)
                          for i, t, p in zip(tidy["paper_index"], tidy["task"], tidy["paper"], strict=True)]
    tidy["delta_cell"] = [format_delta(100 * m, p)
                          for m, p in zip(tidy["center"], tidy["paper"], strict=True)]
    # Numbers on the records' scale (0-1), like center and std; the *_cell columns are the printed text.
    tidy[["paper", "paper_std"]] = tidy[["paper", "paper_std"]] / 100
    tidy["delta"] = tidy["center"] - tidy["paper"]
    counts = ["params", "paper_index", "n_seeds", "families"]  # NaN-able counts: integers in the CSV
    return tidy.astype(dict.fromkeys(counts, "Int64"))


def paper_text(index: float, task: str, value: float) -> str:
    """The paper's cell as printed (its Avg recomputed when fewer than 8 tasks are shown)."""
    if pd.isna(value):
        return MISSING
    return paper_table("table2").loc[int(index), task] if task in TASK_ORDER else f"{value:.1f}"


def wide(tidy: pd.DataFrame, value: str, rows: pd.DataFrame, front: dict[str, list]) -> pd.DataFrame:
    """One display table: the `front` columns, then `rows` x (tasks, Avg) of the text column `value`."""
    columns = sorted(dict.fromkeys(tidy["task"]), key=lambda t: t == MM_TASK)  # MNLI-mm: an extra, last
    table = tidy.pivot_table(index=ROW_KEYS, columns="task", values=value, aggfunc="first", sort=False)
    table = table.reindex(pd.MultiIndex.from_frame(rows[ROW_KEYS]))[columns].fillna(MISSING)
    table.columns = [task_name(c) if c != AVG else "Avg." for c in columns]
    return pd.concat([pd.DataFrame(front), table.reset_index(drop=True)], axis=1)


def paper_label(index: float) -> str:
    """A paper row's method as printed, with `*` (prior work) and `†` (Houlsby-like setup)."""
    row = paper_table("table2").loc[int(index)]
    return row["method"] + "".join(mark for mark in ("*", DAGGER) if row["source_note"].startswith(mark))


def comparison_sections(tidy: pd.DataFrame, rows: pd.DataFrame) -> list[Section]:
    """The paper's cells for the rows that have a counterpart, and ours minus the paper's."""
    matched = rows[rows["paper_index"].notna()].reset_index(drop=True)
    if matched.empty:
        return []
    table = paper_table("table2")
    paper_front = {"Model": list(matched["model"]), "Method": list(matched["method"]),
                   "Paper row": [paper_label(i) for i in matched["paper_index"]],
                   "# Trainable Parameters": [f"{table.loc[int(i), 'trainable_params_m']}M"
                                              for i in matched["paper_index"]]}
    delta_front = {"Model": list(matched["model"]), "Method": list(matched["method"])}
    marks = "* = prior work quoted by the paper; † = its Houlsby-like setup (setup=houlsby)."
    return [
        Section("Paper (Hu et al., 2021, Table 2): the rows that match ours",
                wide(tidy, "paper_cell", matched, paper_front), [marks]),
        Section("Difference: ours minus the paper (points, from our unrounded cell; the paper's cells are medians "
                "of 5 seeds)",
                wide(tidy, "delta_cell", matched, delta_front)),
    ]


def table2_sections(records: pd.DataFrame, tasks: Sequence[str] | None, expected: int,
                    paper_models: Sequence[str], value: str = "best", statistic: str = HEADLINE
                    ) -> tuple[list[Section], pd.DataFrame, pd.DataFrame]:
    """Our Table 2 and, where rows match, the paper's cells and the differences.

    Args:
        records: Store rows of the models and tasks to show (any status).
        tasks: Task columns; None = the tasks the records hold, in the paper's order.
        expected: Seeds a cell should have (fewer are shown as `(k/N seeds)`).
        paper_models: Models whose paper rows are listed even without records (so gaps show).
        value: The run value a cell summarizes: `best` (the selected epoch) or `report_best` (the paper's
            convention: the epoch the report split picks itself).
        statistic: Over a cell's seeds: `HEADLINE` (the mean) or `PAPER_CONVENTION` (the median).

    Returns:
        The sections, the tidy table (one line per row x task, incl. Avg) and the rows.
    """
    tasks = order_tasks(tasks or records["task"])
    rows = table_rows(records[records["status"] == COMPLETED], paper_models)
    tidy = table2_tidy(records, rows, tasks, expected, value, statistic)
    ours_front = {"Model": list(rows["model"]), "Method": list(rows["method"]),
                  "# Trainable Parameters": [format_params(p) for p in rows["params"]]}
    notes = [legend(expected, records, value, statistic), metric_note(records),
             "Avg. = mean of the row's task cells, only when every task column has one. # Trainable "
             "Parameters: the method's own (head excluded, as the paper counts), the whole model for FT. "
             "† = Houlsby-like setup (setup=houlsby).",
             *mixed_notes(tidy[tidy["task"] != AVG].dropna(subset=["families"]), ROW_KEYS + ["task"]),
             not_results_note(records)]
    ours = Section("Ours", wide(tidy, "cell", rows, ours_front), [n for n in notes if n])
    return [ours, *comparison_sections(tidy, rows)], tidy, rows


def paper_block(paper_model: str, tasks: Sequence[str]) -> pd.DataFrame:
    """The paper's Table 2 rows of one of its models, as printed, on `tasks` (reference only)."""
    table = paper_table("table2")
    rows = table[table["model"] == paper_model]
    block = pd.DataFrame({"Method": [paper_label(i) for i in rows.index],
                          "# Trainable Parameters": [f"{p}M" for p in rows["trainable_params_m"]]})
    for task in tasks:
        block[task_name(task)] = list(rows[task]) if task in TASK_ORDER else MISSING
    block["Avg."] = [f"{paper_avg(i, tasks):.1f}" for i in rows.index]
    return block
