"""Tables 5 and 6 (which weights LoRA adapts, and at what rank) from LoRA run records.

Table 5: the weight sets {q}, {k}, {v}, {o}, {q,k}, {q,v}, {q,k,v,o} at one budget of trainable
parameters (rank x number of weight types is constant); the budget shown per model is the one that
the most weight sets were run at, since Table 6's records fall on other budgets too. Table 6: weight
sets x ranks. The paper's own Tables 5 and 6 are on GPT-3 175B (WikiSQL, MultiNLI): they are shown
as a separate reference block, never compared cell by cell.
"""

from __future__ import annotations

import pandas as pd

from lora_repro.methods.targets import targets_key
from lora_repro.paper import paper_table
from lora_repro.paper.names import LORA
from lora_repro.report.cells import MISSING, cell_text, format_params, summarize_cells
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

__all__ = ["PAPER_WEIGHT_SETS", "lora_records", "paper_reference", "table5_sections", "table6_sections"]

PAPER_WEIGHT_SETS = ("q", "k", "v", "o", "q,k", "q,v", "q,k,v,o")
PAPER_RANKS = (1, 2, 4, 8, 64)
TABLE5_KEYS = ["model", "budget", "weights", "r", "task"]
TABLE6_KEYS = ["model", "task", "weights", "r"]
REFERENCE = "Paper (Hu et al., 2021, Table {n}): GPT-3 175B on WikiSQL and MultiNLI, a different model " \
            "and different tasks: for reference only, not comparable cell by cell"


def weights_label(weights: str) -> str:
    """`q,v` -> `Wq,Wv` (the paper's spelling)."""
    return ",".join(f"W{w}" for w in weights.split(","))


def weight_order(weights: str) -> tuple[int, str]:
    """Sort key: the paper's weight sets first, in its order."""
    return position(weights, PAPER_WEIGHT_SETS), weights


def lora_records(records: pd.DataFrame) -> pd.DataFrame:
    """The LoRA records, with their weight set (`weights`, e.g. `q,v`), rank `r` and `budget`."""
    lora = records[records["label"] == LORA].copy()
    lora["weights"] = lora["method.targets"].map(lambda t: targets_key(str(t).split(",")))
    lora["r"] = lora["method.r"].astype(int)
    lora["budget"] = lora["params_method"]
    return lora


def table6_sections(records: pd.DataFrame, expected: int, notes: bool = True
                    ) -> tuple[list[Section], pd.DataFrame]:
    """Table 6 layout per model x task: weight sets (run at 2+ ranks) x ranks.

    Args:
        records: Store rows (LoRA rows are used).
        expected: Seeds a cell should have.
        notes: Add the notes on cells and runs (off when another table of the report has them).

    Returns:
        The sections (ours, then the paper's reference block) and the tidy cells.
    """
    lora = lora_records(records)
    cells = summarize_cells(lora, TABLE6_KEYS)
    ranks_per_set = cells.groupby(["model", "task", "weights"])["r"].transform("nunique")
    if (ranks_per_set > 1).any():  # weight sets at one rank only are Table 5's, not a rank sweep
        cells = cells[ranks_per_set > 1]
    cells = cells.assign(cell=[cell_text(c, expected) for _, c in cells.iterrows()], expected_seeds=expected)
    sections = []
    for (model, task), group in cells.groupby(["model", "task"], sort=True):
        table = group.pivot(index="weights", columns="r", values="cell")
        table = table.loc[sorted(table.index, key=weight_order)].fillna(MISSING)
        table.columns = [f"r={r}" for r in table.columns]
        table.insert(0, "Weight type", [weights_label(w) for w in table.index])
        title = f"{model} on {task_name(task)}: validation score by rank r"
        sections.append(Section(title, table.reset_index(drop=True), mixed_notes(group, TABLE6_KEYS)))
    return sections + (common_notes(lora, expected) if notes else []) + [paper_reference(6)], cells


def table5_budgets(cells: pd.DataFrame) -> pd.DataFrame:
    """Per model, the cells of the budget that the most weight sets were run at (ties: the larger).

    Models whose LoRA runs all use one weight set (e.g. Table 2's) are left out, unless no model has more.
    """
    sets = cells.groupby(["model", "budget"])["weights"].nunique().rename("n").reset_index()
    best = sets.sort_values(["model", "n", "budget"]).groupby("model").tail(1)
    if (best["n"] > 1).any():
        best = best[best["n"] > 1]
    return cells.merge(best[["model", "budget"]], on=["model", "budget"])


def table5_sections(records: pd.DataFrame, expected: int) -> tuple[list[Section], pd.DataFrame]:
    """Table 5 layout per model: weight sets (with their rank) at one parameter budget, a row per task.

    Returns:
        The sections (ours, then the paper's reference block) and the tidy cells.
    """
    lora = lora_records(records)
    cells = table5_budgets(summarize_cells(lora, TABLE5_KEYS))
    cells = cells.assign(cell=[cell_text(c, expected) for _, c in cells.iterrows()], expected_seeds=expected)
    sections = []
    for model, group in cells.groupby("model", sort=True):
        pairs = set(zip(group["weights"], group["r"], strict=True))
        columns = sorted(pairs, key=lambda c: weight_order(c[0]))
        rows = [["Rank r", *(str(r) for _, r in columns)]]
        for task in order_tasks(group["task"]):
            by_set = group[group["task"] == task].set_index(["weights", "r"])["cell"]
            rows.append([task_name(task), *(by_set.get(c, MISSING) for c in columns)])
        table = pd.DataFrame(rows, columns=["Weight type", *(weights_label(w) for w, _ in columns)])
        budget = int(group["budget"].iloc[0])
        sections.append(Section(f"{model}: # of trainable parameters = {format_params(budget)} ({budget:,})",
                                table, mixed_notes(group, TABLE5_KEYS)))
    return sections + common_notes(lora, expected) + [paper_reference(5)], cells


def common_notes(lora: pd.DataFrame, expected: int) -> list[Section]:
    """How to read the cells, which metric they hold and which runs they leave out."""
    notes = [legend(expected, lora), metric_note(lora), not_results_note(lora)]
    return [Section("Notes", None, [n for n in notes if n])]


def paper_reference(number: int) -> Section:
    """The paper's Table 5 or 6 as printed, labelled as the different model it is."""
    table = paper_table(f"table{number}")
    if number == 5:  # printed wide: a column per weight set and its rank, a row per dataset
        table = table.assign(column=table["weight_types"] + " (r=" + table["rank"] + ")")
        table = table.pivot(index=["dataset", "std_note"], columns="column", values="score")
        table = table[list(dict.fromkeys(paper_table("table5")["weight_types"] + " (r=" +
                                         paper_table("table5")["rank"] + ")"))].reset_index()
        note = "Budget: 18M trainable parameters = rank 8 on one weight type of GPT-3 175B."
    else:
        table = table.rename(columns={f"r{r}": f"r={r}" for r in PAPER_RANKS})
        note = "Validation accuracy by rank r."
    table = table.rename(columns={"dataset": "Dataset", "weight_types": "Weight type", "std_note": "±"})
    return Section(REFERENCE.format(n=number), table, [note])
