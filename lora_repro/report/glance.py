"""`lora-repro report glance`: the README's answer at a glance, from the claims the reports wrote.

One line per claim: its line on the average over tasks (or its only line), with the difference, its interval at
the Holm level it is read at, and the verdict, printed as the claims tables print them. It reads the `claims.csv`
that `lora-repro report mini` and `lora-repro report successors` write, and rewrites the table between the two
`<!-- glance -->` markers of the README in --out (the current folder by default); nothing else there changes.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lora_repro.errors import UserError
from lora_repro.records.io import atomic_write
from lora_repro.report.common import interval_text, verdict_text
from lora_repro.report.reports import REPORTS

__all__ = ["GLANCE", "GLANCE_FROM", "MARKER", "glance_table", "write_glance"]

GLANCE = "glance"
GLANCE_FROM = ("mini", "successors")  # the reports whose claims it shows, in this order
MARKER = "<!-- glance -->"
HEADER = ("| Claim | Statement | A − B (points) | Interval | Verdict |", "|---|---|---|---|---|")


def glance_table(claims: pd.DataFrame) -> str:
    """The Markdown table: for each claim, its line on the average over tasks, else its only line."""
    shown = claims[claims["on"].str.startswith("Avg. of") | ~claims.duplicated("claim", keep=False)]
    rows = [f"| {c.claim} | {c.statement} | {c.difference:+.1f} | {interval_text(c.ci_low, c.ci_high)} | "
            f"{verdict_text(c.verdict, c.stability)} |" for c in shown.itertuples()]
    return "\n".join([*HEADER, *rows])


def write_glance(out: Path) -> tuple[Path, str]:
    """Rewrite the glance table of `out`/README.md from the committed claims; returns the README's path and the table.

    Raises:
        UserError: A report's claims.csv is missing, or the README has no pair of markers.
    """
    files = [REPORTS[name].out_dir() / "claims.csv" for name in GLANCE_FROM]
    for file, name in zip(files, GLANCE_FROM, strict=True):
        if not file.is_file():
            raise UserError(f"no {file}: run `lora-repro report {name}` first (from the repository's root)")
    claims = pd.concat([pd.read_csv(file, comment="#") for file in files], ignore_index=True)
    readme = out / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    parts = text.split(MARKER)
    if len(parts) != 3:
        raise UserError(f"{readme} needs one table between two `{MARKER}` lines; add them where the table goes")
    table = glance_table(claims)
    updated = MARKER.join([parts[0], f"\n{table}\n", parts[2]])
    atomic_write(readme, lambda tmp: tmp.write_text(updated, encoding="utf-8"))
    return readme, table
