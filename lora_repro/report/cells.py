"""Table cells: the one grouping of records into cells, and the one way a cell is printed.

A cell is the mean over seeds ± their standard deviation (sample std, ddof=1) of each run's value at its
selected epoch: the one statistic of every headline table, average and claim (`HEADLINE`). The paper's
convention, the median over 5 seeds of each run's best epoch on the reported split, is a labelled view
(`PAPER_CONVENTION`). Only `completed` records count. When one cell's records come from more than
one config family (they differ in something besides the seed, e.g. the learning rate), the cell keeps
the family with the most seeds and says so: different configs are never averaged together.
"""

from __future__ import annotations

import math
import re

import pandas as pd

from lora_repro.records.schema import COMPLETED

__all__ = ["HEADLINE", "MISSING", "MIXED", "PAPER_CONVENTION", "cell_text", "format_cell", "format_delta",
           "format_params", "parse_paper_cell", "summarize_cells"]

MISSING = "—"
MIXED = "‡"  # flag on a cell whose records came from several configs (see the footnote)
HEADLINE, PAPER_CONVENTION = "mean", "median"  # the statistic over a cell's seeds: ours, and the paper's
CELL_COLUMNS = ["center", "statistic", "mean", "median", "std", "n_seeds", "seeds", "families", "family", "metric",
                "differs"]


def config_differences(group: pd.DataFrame) -> str:
    """The hyperparameter columns whose values differ inside `group` (why its families differ)."""
    columns = [c for c in group.columns if c.startswith(("train.", "method."))]
    differing = [c for c in columns if group[c].astype(str).nunique() > 1]
    return ", ".join(differing) or "task or data settings"


def summarize_group(group: pd.DataFrame, value: str, statistic: str = HEADLINE) -> dict[str, object]:
    """The cell of one group of completed records: its largest config family's seeds."""
    sizes = group.groupby("family")["seed"].nunique().sort_index().sort_values(ascending=False, kind="stable")
    family = sizes.index[0]
    # One run per config hash: copies of a run folder under two --runs folders are one run.
    chosen = group[group["family"] == family].drop_duplicates("config_hash").sort_values("seed")
    values = chosen[value].astype(float)
    return {
        "center": values.mean() if statistic == HEADLINE else values.median(), "statistic": statistic,
        "mean": values.mean(), "median": values.median(), "std": values.std(ddof=1), "n_seeds": len(values),
        "seeds": ",".join(map(str, chosen["seed"])), "families": len(sizes), "family": family,
        "metric": ",".join(sorted(set(chosen["headline_metric"]))) if value == "best" else value,
        "differs": config_differences(group) if len(sizes) > 1 else "",
    }


def summarize_cells(records: pd.DataFrame, keys: list[str], value: str = "best", statistic: str = HEADLINE
                    ) -> pd.DataFrame:
    """Group completed records into cells: the grouping every table of the report uses.

    Args:
        records: Rows of `lora_repro.records.store.load_records` (any status; only `completed`
            rows are used).
        keys: The columns that define a cell, e.g. model, setup, row_key, task.
        value: The column to summarize: `best` (the headline metric at the best epoch) or a
            `metric.<split>/<name>` column (e.g. MNLI mismatched accuracy at that epoch).
        statistic: What `center` holds: `HEADLINE` (the mean) or `PAPER_CONVENTION` (the median).

    Returns:
        One row per cell: `keys`, then center (the statistic's value), statistic, mean, median, std (NaN for
        one seed), n_seeds, seeds, families (config families found; more than 1 = mixed), family (the one
        used), metric and differs (the hyperparameters that differ between the families).
    """
    done = records[(records["status"] == COMPLETED) & records[value].notna()] if value in records else None
    if done is None or done.empty:
        return pd.DataFrame(columns=keys + CELL_COLUMNS)
    cells = [{**dict(zip(keys, key, strict=True)), **summarize_group(group, value, statistic)}
             for key, group in done.groupby(keys, sort=False, dropna=False)]
    return pd.DataFrame(cells, columns=keys + CELL_COLUMNS)


def format_std(std: float) -> str:
    """The paper's std: one decimal, no leading zero (`.3`, `1.1`)."""
    return re.sub(r"^0\.", ".", f"{std:.1f}")


def format_cell(center: float, std: float, n_seeds: int, expected: int, mixed: bool) -> str:
    """`87.5±.3`, plus `(3/5 seeds)` when seeds are missing and `‡` when configs were mixed."""
    if not n_seeds or pd.isna(center):
        return MISSING
    text = f"{100 * center:.1f}" + (f"±{format_std(100 * std)}" if n_seeds > 1 else "")
    if n_seeds < expected:
        text += f" ({n_seeds}/{expected} seeds)"
    return text + (MIXED if mixed else "")


def cell_text(cell: pd.Series | dict | None, expected: int) -> str:
    """`format_cell` of one row of `summarize_cells` (None or NaN fields = a missing cell)."""
    if cell is None or pd.isna(cell.get("n_seeds")):
        return MISSING
    return format_cell(cell["center"], cell["std"], int(cell["n_seeds"]), expected, cell["families"] > 1)


def format_delta(ours: float, paper: float) -> str:
    """Ours minus the paper in points (`+0.3`, `-1.2`), or `—` when either side is missing."""
    if pd.isna(ours) or pd.isna(paper):
        return MISSING
    return f"{ours - paper:+.1f}"


def format_params(count: float) -> str:
    """A parameter count the paper's way: millions with one decimal (`0.3M`, `125.0M`).

    Counts below 0.05M (small models such as MiniLM) get two significant digits (`0.037M`), since
    `0.0M` would say nothing.
    """
    if pd.isna(count):
        return MISSING
    return f"{count / 1e6:.1f}M" if count >= 50_000 else f"{count / 1e6:.2g}M"


def parse_paper_cell(text: str) -> tuple[float, float]:
    """`87.5±.3` -> (87.5, 0.3); `87.6` -> (87.6, NaN); an empty cell -> (NaN, NaN)."""
    value, _, std = str(text).partition("±")
    if not value.strip():
        return math.nan, math.nan
    return float(value), float(std) if std else math.nan
