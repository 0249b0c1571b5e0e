"""`lora-repro report {table2,table5,table6,mini,lr_search,successors,successors_lr,precision}`: tables from records.

    lora-repro report table2 [--runs DIR ...] [--model NAME ...] [--task NAME ...] [--out DIR] [--seeds N]
    lora-repro report table2 --params-only [--model NAME ...]   # the parameter column, no records needed
    lora-repro report mini        # = --runs results/mini/runs --rank-runs results/mini/ranks/runs --out results/mini
    lora-repro report lr_search   # = --runs results/mini/lr_search/runs --out results/mini/lr_search
    lora-repro report successors  # = --runs results/mini/runs results/successors/runs --out results/successors
    lora-repro report precision   # = --runs results/mini/precision/runs --out results/mini/precision
    lora-repro report successors_lr   # = --runs results/successors/lr_search/runs --out results/successors/lr_search
    lora-repro report lr_search --next-grid   # the overrides that extend the search's grid, one line each

Writes <table>.md, <table>.tex, <table>.csv (tidy: median, std, n_seeds, paper, delta) and PNG figures
into --out, and prints the Markdown. Bad arguments or no records: one line `error: ...`, exit status 2.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import NoReturn

from lora_repro.config import group_choices
from lora_repro.errors import UserError, choose
from lora_repro.records.store import default_runs_dir, load_records
from lora_repro.report.render import to_markdown, write_report
from lora_repro.report.reports import (
    DEFAULT_SEEDS,
    RATE_SEARCHES,
    REPORTS,
    build_report,
    lr_search_next,
    params_report,
)

__all__ = ["main", "parse_args"]

# Where the mini experiments keep their committed records (paths.runs_dir of conf/experiment/mini*.yaml).
MINI_DIR, SUCCESSORS_DIR = Path("results") / "mini", Path("results") / "successors"
MINI_RUNS = {"mini": [MINI_DIR / "runs"], "lr_search": [MINI_DIR / "lr_search" / "runs"],
             "precision": [MINI_DIR / "precision" / "runs"],
             "successors": [MINI_DIR / "runs", SUCCESSORS_DIR / "runs"],  # the mini's rows are reused, not rerun
             "successors_lr": [SUCCESSORS_DIR / "lr_search" / "runs"]}
MINI_OUT = {"mini": MINI_DIR, "lr_search": MINI_DIR / "lr_search", "precision": MINI_DIR / "precision",
            "successors": SUCCESSORS_DIR, "successors_lr": SUCCESSORS_DIR / "lr_search"}


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
    parser.add_argument("table", choices=REPORTS, help="which report")
    parser.add_argument("--runs", type=Path, nargs="+", action="extend", metavar="DIR",
                        help=f"folders with run records (default: {default_runs_dir()})")
    parser.add_argument("--rank-runs", type=Path, nargs="+", action="extend", metavar="DIR",
                        help=f"mini: folders with the rank sweeps' records (default: {MINI_DIR / 'ranks/runs'})")
    parser.add_argument("--model", action="append", help="only this model (repeatable), e.g. roberta_base")
    parser.add_argument("--task", action="append", help="only this task (repeatable), e.g. rte")
    parser.add_argument("--out", type=Path, help="output folder (default: results/<table>)")
    parser.add_argument("--seeds", type=positive, help="seeds a cell should have (default: "
                        + ", ".join(f"{k} {v}" for k, v in DEFAULT_SEEDS.items()) + ")")
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
    args.out = args.out or MINI_OUT.get(args.table, Path("results") / args.table)
    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out {args.out} is a file; give the folder the report should be written to")
    return args


def run(argv: list[str]) -> list[Path]:
    """Build the report `argv` asks for, write its files and print its Markdown."""
    args = parse_args(argv)
    command = shlex.join(["lora-repro", "report", *argv])
    if args.next_grid:
        for line in lr_search_next(load_records(args.runs or MINI_RUNS[args.table]), RATE_SEARCHES[args.table]):
            print(line)
        return []
    if args.params_only:
        report = params_report(args.model)
    else:
        # With no --runs, a missing default folder just means no runs yet (table2 then shows parameters).
        runs = args.runs or [d for d in MINI_RUNS.get(args.table, [default_runs_dir()]) if d.is_dir()]
        rank_runs = args.rank_runs or [d for d in [MINI_DIR / "ranks" / "runs"] if d.is_dir()]
        rank_records = load_records(rank_runs) if args.table == "mini" and rank_runs else None
        records = load_records(runs)
        # table2 without --runs shows the paper's rows and the computed parameter counts; nothing else can.
        if records.empty and (args.runs or args.table != "table2"):
            where = ", ".join(map(str, runs or MINI_RUNS.get(args.table, [default_runs_dir()])))
            raise UserError(f"no run records under {where}; train the runs first (`make help` lists the "
                            "sweeps) or pass --runs with a folder `lora-repro train` wrote to")
        # The search behind the table's rates: the committed one (the mini's only for its committed runs).
        search = {"successors": "successors_lr", "mini": None if args.runs else "lr_search"}.get(args.table)
        search_runs = [d for d in MINI_RUNS[search] if d.is_dir()] if search else []
        search_records = load_records(search_runs) if search_runs else None
        report = build_report(args.table, records, args.model, args.task, args.seeds, rank_records, search_records)
    written = write_report(report, args.out, command)
    print(to_markdown(report, command))
    return written


def main() -> None:
    """Entry point of `lora-repro report` (reads `sys.argv[1:]`, as the dispatcher sets it)."""
    written = run(sys.argv[1:])
    if written:
        print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
