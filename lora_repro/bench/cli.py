"""`lora-repro bench`: training and inference cost per method, written to results/bench/ (`make bench`).

    lora-repro bench                                       # MiniLM, CPU, defaults sized for 10 min on 2 cores
    lora-repro bench --model roberta_base --random-init    # the paper's shapes, random weights, no download
    lora-repro bench --device cuda --threads 8 --train-seconds 300
    lora-repro bench --methods full_ft lora --lengths 128 --batches 1 32

Writes <model>.md, <model>_training.csv, <model>_latency.csv, <model>.png and <model>_raw.json into --out
and prints the Markdown. Bad arguments: one line `error: ...`, exit status 2.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from transformers.utils import logging as transformers_logging

from lora_repro.bench.harness import compose_run_config
from lora_repro.bench.render import to_markdown, write_bench
from lora_repro.bench.runner import BenchSpec, needed_configs, run_bench
from lora_repro.bench.timing import Budget
from lora_repro.errors import UserError
from lora_repro.report.cli import Parser, positive
from lora_repro.training.run import check_settings

__all__ = ["main", "parse_args", "run"]

DEFAULT = BenchSpec()


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and every option's default in its help."""
DEFAULT_OUT = Path("results") / "bench"


def parse_args(argv: list[str]) -> tuple[BenchSpec, Path, list[str]]:
    """The spec, the output folder and the Hydra overrides (--set) that `argv` asks for."""
    parser = Parser(prog="lora-repro bench", description=__doc__, formatter_class=HelpFormatter)
    add = parser.add_argument
    add("--model", default=DEFAULT.model, help="conf/model name")
    add("--methods", nargs="+", default=list(DEFAULT.methods), help="conf/method names to train-time")
    add("--batch-size", type=positive, default=DEFAULT.batch_size, help="training batch")
    add("--seq-len", type=positive, default=DEFAULT.seq_len, help="training sequence length")
    add("--batches", type=positive, nargs="+", default=list(DEFAULT.latency_batches), help="latency batch sizes")
    add("--lengths", type=positive, nargs="+", default=list(DEFAULT.latency_lengths), help="latency lengths")
    add("--device", default=DEFAULT.device, help="cpu, cuda or cuda:N")
    add("--threads", type=positive, default=DEFAULT.threads, help="torch threads (1 holds on a shared machine)")
    add("--random-init", action="store_true", help="build the model from model.shape (no download)")
    add("--train-seconds", type=float, default=DEFAULT.train_budget.seconds, help="step-timing budget")
    add("--train-rounds", type=positive, nargs=2, metavar=("MIN", "MAX"),
        default=[DEFAULT.train_budget.min_rounds, DEFAULT.train_budget.max_rounds], help="step-timing rounds")
    add("--latency-seconds", type=float, default=DEFAULT.latency_budget.seconds, help="budget for all shapes")
    add("--latency-rounds", type=positive, nargs=2, metavar=("MIN", "MAX"),
        default=[DEFAULT.latency_budget.min_rounds, DEFAULT.latency_budget.max_rounds], help="rounds per shape")
    add("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    add("--profile-top", type=int, default=DEFAULT.profile_top, help="operators per trainee; 0 = no profile")
    add("--set", action="append", default=[], metavar="KEY=VALUE",
        help="a Hydra override for every run config, e.g. --set method.r=16 (repeatable)")
    add("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)
    check_device(args.device)
    spec = replace(DEFAULT, model=args.model, methods=tuple(dict.fromkeys(args.methods)),
                   batch_size=args.batch_size, seq_len=args.seq_len, latency_batches=tuple(args.batches),
                   latency_lengths=tuple(args.lengths), device=args.device, threads=args.threads,
                   random_init=args.random_init, memory=not args.no_memory, profile_top=args.profile_top,
                   train_budget=Budget(args.train_seconds, *args.train_rounds),
                   latency_budget=Budget(args.latency_seconds, *args.latency_rounds))
    return spec, args.out, args.set


def check_device(device: str) -> None:
    """Raise a `UserError` unless `device` is `cpu`, or `cuda`/`cuda:N` naming a GPU this machine has."""
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda") or (index and (kind == "cpu" or not index.isdigit())):
        raise UserError(f"--device {device!r}: use cpu, cuda or cuda:N")
    if kind == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: no CUDA device is available; use --device cpu")
    if index and int(index) >= torch.cuda.device_count():
        raise UserError(f"--device {device}: this machine has {torch.cuda.device_count()} GPU(s), "
                        f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")


def method_configs(model: str, methods: list[str], overrides: list[str]) -> dict[str, DictConfig]:
    """Each method's run config with the --set overrides that apply to it.

    An override of a method option (`method.r=16`) goes to the methods that have that option; one that no
    method has is a typo.
    """
    cfgs = {method: compose_run_config(model, method) for method in methods}
    for override in overrides:
        key = override.lstrip("+~").partition("=")[0]
        if "=" not in override or not key:
            raise UserError(f"--set {override!r}: give KEY=VALUE, e.g. --set method.r=16")
        if key.startswith("method.") and not any(OmegaConf.select(c, key) is not None for c in cfgs.values()):
            raise UserError(f"--set {override}: none of the methods {', '.join(methods)} has the option {key}")
    for method, cfg in cfgs.items():
        applies = [o for o in overrides if not o.startswith("method.")
                   or OmegaConf.select(cfg, o.partition("=")[0]) is not None]
        cfgs[method] = compose_run_config(model, method, applies)
        check_settings(cfgs[method])
    return cfgs


def run(argv: list[str]) -> list[Path]:
    """Run the benchmark `argv` asks for, write its files and print its Markdown."""
    spec, out, overrides = parse_args(argv)
    transformers_logging.set_verbosity_error()  # the model is loaded a dozen times: one load report is noise
    warnings.simplefilter("ignore", FutureWarning)  # transformers' deprecation notes, not ours to fix
    cfgs = method_configs(spec.model, needed_configs(spec), overrides)
    result = run_bench(spec, cfgs, shlex.join(["lora-repro", "bench", *argv]))
    written = write_bench(result, out)
    print(to_markdown(result))
    return written


def main() -> None:
    """Entry point of `lora-repro bench` (reads `sys.argv[1:]`, as the dispatcher sets it)."""
    written = run(sys.argv[1:])
    print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
