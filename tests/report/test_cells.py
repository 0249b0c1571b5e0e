"""The one cell format and the one grouping of records into cells."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from lora_repro.report.cells import (
    format_cell,
    format_delta,
    format_params,
    parse_paper_cell,
    summarize_cells,
)


@pytest.mark.parametrize(("median", "std", "n", "expected", "mixed", "text"), [
    (0.875, 0.003, 5, 5, False, "87.5±.3"),
    (0.897, 0.011, 5, 5, False, "89.7±1.1"),
    (0.871, 0.0, 5, 5, False, "87.1±.0"),
    (0.875, 0.003, 3, 5, False, "87.5±.3 (3/5 seeds)"),
    (0.6, math.nan, 1, 3, False, "60.0 (1/3 seeds)"),
    (-0.052, 0.01, 3, 3, True, "-5.2±1.0‡"),
    (math.nan, math.nan, 0, 5, False, "—"),
])
def test_cell_format(median, std, n, expected, mixed, text):
    assert format_cell(median, std, n, expected, mixed) == text


def test_paper_cells_deltas_and_parameter_counts():
    assert parse_paper_cell("87.5±.3") == (87.5, 0.3)
    assert parse_paper_cell("63.4±1.2") == (63.4, 1.2)
    value, std = parse_paper_cell("87.6")
    assert value == 87.6 and math.isnan(std)
    assert (format_delta(87.8, 87.5), format_delta(86.0, 87.5), format_delta(math.nan, 1.0)) == ("+0.3", "-1.5", "—")
    assert [format_params(n) for n in (294_912, 124_647_939, 1_566_915_075, 36_864)] == [
        "0.3M", "124.6M", "1566.9M", "0.037M"]


def _records(rows):
    columns = ["status", "task", "seed", "family", "best", "headline_metric", "train.learning_rate"]
    table = pd.DataFrame(rows, columns=columns)
    return table.assign(config_hash=[f"{f}{s}" for f, s in zip(table["family"], table["seed"], strict=True)])


def test_only_completed_records_make_cells_and_mixed_families_are_not_averaged():
    table = _records([
        ("completed", "rte", 0, "a", 0.70, "dev/accuracy", 1e-4),
        ("completed", "rte", 1, "a", 0.72, "dev/accuracy", 1e-4),
        ("completed", "rte", 2, "b", 0.99, "dev/accuracy", 1e-3),   # another config: must not be averaged in
        ("failed", "rte", 3, "a", None, None, 1e-4),
        ("running", "sst2", 0, "c", None, None, 1e-4),
    ])
    cells = summarize_cells(table, ["task"]).set_index("task")
    assert list(cells.index) == ["rte"]  # sst2 has no completed run: no cell
    rte = cells.loc["rte"]
    assert (rte["median"], rte["n_seeds"], rte["seeds"], rte["families"], rte["family"]) == (0.71, 2, "0,1", 2, "a")
    assert rte["differs"] == "train.learning_rate" and rte["metric"] == "dev/accuracy"
    assert rte["std"] == pytest.approx(pd.Series([0.70, 0.72]).std())


def test_a_run_found_twice_counts_once():
    table = _records([("completed", "rte", 0, "a", 0.70, "dev/accuracy", 1e-4)] * 2)
    assert summarize_cells(table, ["task"]).loc[0, "n_seeds"] == 1


def test_no_completed_records_give_no_cells():
    assert summarize_cells(_records([("failed", "rte", 0, "a", None, None, 1e-4)]), ["task"]).empty
