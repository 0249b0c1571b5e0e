"""`lora-repro report NAME`: tables, claims and figures from run records (`lora-repro report --help` lists NAME).

    lora-repro report mini        # the committed mini: its runs, rank runs, search, cross-fit runs -> results/mini
    lora-repro report table2 [--runs DIR ...] [--model NAME ...] [--task NAME ...] [--out DIR] [--seeds N]
    lora-repro report table2 --params-only [--model NAME ...]   # the parameter column, no records needed
    lora-repro report lr_search --next-grid   # the overrides that extend the search's grid, one line each
    lora-repro report glance      # the README's answer at a glance, from the mini's and successors' claims.csv

Each report is declared once (`report/reports.py`): the experiments whose runs it reads (their `paths.runs_dir`),
the other record sets it reads beside them, its output folder and its seeds; --runs, --rank-runs and --out
replace them. Writes <report>.md, .tex, .csv and PNG figures into the output folder and prints the Markdown. Bad
arguments or no records: one line `error: ...`, exit status 2.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import NoReturn

import pandas as pd

from lora_repro.config import group_choices
from lora_repro.errors import UserError, choose
from lora_repro.records.store import load_records
from lora_repro.report.common import params_report
from lora_repro.report.glance import GLANCE, GLANCE_FROM, write_glance
from lora_repro.report.render import to_markdown, write_report
from lora_repro.report.reports import RANK, REPORTS, build_report, runs_dir
from lora_repro.report.searches import RATE_SEARCHES, lr_search_next

__all__ = ["main", "parse_args"]

class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one `error: ...` line and exit status 2 (the CLI's convention)."""

    def error(self, message: str) -> NoReturn:
        raise UserError(message)


def positive(text: str) -> int:
    """An integer >= 1 (for --seeds)."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return int(text)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse and check the arguments (model and task names against conf/model and conf/task)."""
    parser = Parser(prog="lora-repro report", description=__doc__.splitlines()[0],
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", choices=[*REPORTS, GLANCE], help=f"which report; {GLANCE}: the README's table of "
                        f"the claims' verdicts, from {' and '.join(GLANCE_FROM)}'s claims.csv (takes --out only)")
    parser.add_argument("--runs", type=Path, nargs="+", action="extend", metavar="DIR",
                        help="folders with run records (default: the report's experiments' paths.runs_dir)")
    parser.add_argument("--rank-runs", type=Path, nargs="+", action="extend", metavar="DIR",
                        help="mini: folders with the rank sweeps' records (default without --runs: theirs)")
    parser.add_argument("--model", action="append", help="only this model (repeatable), e.g. roberta_base")
    parser.add_argument("--task", action="append", help="only this task (repeatable), e.g. rte")
    parser.add_argument("--out", type=Path, help="output folder (default: results/<table>; glance: the README's, .)")
    parser.add_argument("--seeds", type=positive, help="seeds a cell should have (default: "
                        + ", ".join(f"{spec.name} {spec.seeds}" for spec in REPORTS.values()) + ")")
    parser.add_argument("--next-grid", action="store_true",
                        help="lr_search, successors_lr: print the overrides that extend the grid where a best rate "
                        "sits on its edge (one line each; nothing when the search is done), write nothing")
    parser.add_argument("--params-only", action="store_true",
                        help="table2: only the # Trainable Parameters column, computed (no records needed)")
    args = parser.parse_args(argv)
    for model in args.model or ():
        choose("model", model, group_choices("model"))
    for task in args.task or ():
        choose("task", task, group_choices("task"))
    if args.params_only and args.table != "table2":
        raise UserError("--params-only goes with table2 only")
    if args.next_grid and args.table not in RATE_SEARCHES:
        raise UserError(f"--next-grid goes with {' or '.join(RATE_SEARCHES)} only")
    if args.table == GLANCE:
        given = [option for option in ("runs", "rank_runs", "model", "task", "seeds") if getattr(args, option)]
        if given:
            raise UserError(f"glance reads the committed claims, not records: it takes --out only, not "
                            f"--{given[0].replace('_', '-')}")
        args.out = args.out or Path(".")
    args.out = args.out or REPORTS[args.table].out_dir()
    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out {args.out} is a file; give the folder the report should be written to")
    return args


def run(argv: list[str]) -> list[Path]:
    """Build the report `argv` asks for, write its files and print its Markdown."""
    args = parse_args(argv)
    if args.table == GLANCE:
        readme, table = write_glance(args.out)
        print(table)
        return [readme]
    spec, command = REPORTS[args.table], shlex.join(["lora-repro", "report", *argv])
    if args.next_grid:
        for line in lr_search_next(load_records(args.runs or spec.runs()), RATE_SEARCHES[args.table]):
            print(line)
        return []
    if args.params_only:
        report = params_report(args.model)
    else:
        # With no --runs, a missing default folder just means no runs yet (table2 then shows parameters).
        runs = args.runs or [d for d in spec.runs() if d.is_dir()]
        records = load_records(runs)
        # table2 without --runs shows the paper's rows and the computed parameter counts; nothing else can.
        if records.empty and (args.runs or args.table != "table2"):
            where = ", ".join(map(str, runs or spec.runs()))
            raise UserError(f"no run records under {where}; train the runs first (`make help` lists the "
                            "sweeps) or pass --runs with a folder `lora-repro train` wrote to")
        other = {} if args.runs else {name: _existing([runs_dir(e) for e in experiments])
                                      for name, experiments in spec.other.items()}
        if args.rank_runs:
            other[RANK] = load_records(args.rank_runs)
        report = build_report(args.table, records, args.model, args.task, args.seeds, other)
    written = write_report(report, args.out, command)
    print(to_markdown(report, command))
    return written


def _existing(folders: list[Path]) -> pd.DataFrame | None:
    """The records under those of `folders` that exist, or None (no such runs here)."""
    present = list(dict.fromkeys(d for d in folders if d.is_dir()))
    return load_records(present) if present else None


def main() -> None:
    """Entry point of `lora-repro report` (reads `sys.argv[1:]`, as the dispatcher sets it)."""
    written = run(sys.argv[1:])
    if written:
        print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
