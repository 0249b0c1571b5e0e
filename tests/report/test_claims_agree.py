"""The committed claims, tables and README say the same thing: no printed pair of numbers contradicts a claim."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest

from lora_repro.report.layout import task_name
from lora_repro.report.table2 import AVG

ROOT = Path(__file__).resolve().parents[2]
REPORTS = {"mini": ROOT / "results" / "mini", "successors": ROOT / "results" / "successors"}


def committed(folder: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(folder / name, comment="#")


def headline_cells(folder: Path, report: str) -> dict[tuple[str, str], float]:
    """(method label, task key or avg) -> the headline table's unrounded cell, in points."""
    tidy = committed(folder, f"{report}.csv")
    tidy = tidy[(tidy["table"] == "table2") & tidy["center"].notna()]
    return {(label, task): 100 * center for label, task, center in zip(tidy["label"], tidy["task"], tidy["center"],
                                                                      strict=True)}


def scope_key(on: str, tasks: list[str]) -> str:
    """`Avg. of SST-2, CoLA` -> avg; `CoLA` -> cola."""
    if on.startswith("Avg. of"):
        return AVG
    return next(task for task in tasks if task_name(task) == on)


@pytest.mark.parametrize("report", list(REPORTS))
def test_every_claim_agrees_in_sign_with_the_headline_table_it_reads(report):
    folder = REPORTS[report]
    if not (folder / "claims.csv").exists():
        pytest.skip(f"no committed {report} claims")
    cells = headline_cells(folder, report)
    tasks = sorted({task for _, task in cells if task != AVG})
    claims = committed(folder, "claims.csv")
    checked = 0
    for line in claims.itertuples():
        key = scope_key(line.on, tasks)
        if (line.A, key) not in cells or (line.B, key) not in cells:
            continue  # a claim on LoRA settings (Tables 5 and 6), not on the method rows
        a, b = cells[(line.A, key)], cells[(line.B, key)]
        assert all(math.isfinite(v) for v in (a, b, line.difference))
        # The claim's A and B are the table's cells, and their difference is the claim's.
        assert (round(a, 1), round(b, 1)) == (round(line.A_value, 1), round(line.B_value, 1)), line
        assert a - b == pytest.approx(line.difference, abs=1e-9), line
        checked += 1
    assert checked >= len(claims) // 2


def glance_rows(readme: str) -> list[list[str]]:
    """The rows of the README's answer-at-a-glance table (between its markers)."""
    block = readme.split("<!-- glance -->")[1]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in block.splitlines()
            if line.startswith("|")]
    return rows[2:]  # past the header and its rule


def test_the_readmes_answer_at_a_glance_is_the_committed_claims():
    rows = glance_rows((ROOT / "README.md").read_text(encoding="utf-8"))
    lines = pd.concat([committed(folder, "claims.csv") for folder in REPORTS.values()], ignore_index=True)
    averages = lines[lines["on"].str.startswith("Avg. of") | ~lines.duplicated("claim", keep=False)]
    assert len(rows) == len(averages)
    for row, line in zip(rows, averages.itertuples(), strict=True):
        claim, statement, difference, interval, verdict = row
        assert claim == line.claim and statement == line.statement
        assert difference == f"{line.difference:+.1f}"
        assert interval == f"[{line.ci_low:+.1f}, {line.ci_high:+.1f}]"
        assert re.sub(r" \(fragile\)$", "", verdict) == line.verdict
        assert verdict.endswith("(fragile)") == (line.stability < 0.95)
