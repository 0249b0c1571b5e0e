"""`lora-repro analyze`: the paper's Section 7 (Figures 3-4, Table 7) on finished LoRA runs.

    lora-repro analyze                       # = --runs results/mini/ranks/runs --out results/analysis
    lora-repro analyze --runs DIR ... [--targets q,v] [--ranks 8,64] [--seed-rank 64] [--out DIR]

Writes analysis.md/.tex/.csv, amplification.md/.tex/.csv, subspace_ranks.png and subspace_seeds.png into
--out, and prints the Markdown. Bad arguments or too few runs: one line `error: ...`, exit status 2.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from lora_repro.analysis.factors import Backbones, lora_runs
from lora_repro.analysis.tables import build_analysis
from lora_repro.errors import UserError
from lora_repro.methods.targets import targets_key
from lora_repro.report.cli import Parser
from lora_repro.report.render import to_markdown, write_report

__all__ = ["main"]

# The mini's rank sweeps (conf/experiment/mini_table5.yaml, mini_table6.yaml) and where the analysis goes.
DEFAULT_RUNS = Path("results") / "mini" / "ranks" / "runs"
DEFAULT_OUT = Path("results") / "analysis"


def rank_list(text: str) -> tuple[int, ...]:
    """`8,64` -> (8, 64): two or more ranks >= 1."""
    parts = text.split(",")
    if not all(p.strip().isdigit() and int(p) >= 1 for p in parts):
        raise argparse.ArgumentTypeError(f"must be ranks >= 1 separated by commas, got {text!r}")
    return tuple(int(p) for p in parts)


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, analyse the runs, write the files and print the Markdown."""
    parser = Parser(prog="lora-repro analyze", description=__doc__.splitlines()[0],
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, nargs="+", action="extend", metavar="DIR",
                        help=f"folders with LoRA run records (default: {DEFAULT_RUNS})")
    parser.add_argument("--targets", default="q,v", help="the weight set analysed (default: q,v, the paper's)")
    parser.add_argument("--ranks", type=rank_list, default=(8, 64),
                        help="the two ranks compared as in Figure 3 (default: 8,64)")
    parser.add_argument("--seed-rank", type=int, default=64, help="rank of Figure 4's seed pairs (default: 64)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if len(args.ranks) != 2 or args.ranks[0] >= args.ranks[1]:
        raise UserError(f"--ranks takes two ranks, the smaller first (e.g. 8,64), got {args.ranks}")
    targets = targets_key(args.targets.split(","))
    runs, without = lora_runs(args.runs or [DEFAULT_RUNS], targets)
    report = build_analysis(runs, Backbones(), ranks=args.ranks, seed_rank=args.seed_rank, targets=targets,
                            skipped=len(without))
    command = shlex.join(["lora-repro", "analyze", *(sys.argv[1:] if argv is None else argv)])
    write_report(report, args.out, command)
    print(to_markdown(report, command) + "\n" + to_markdown(report.companions[0], command))
