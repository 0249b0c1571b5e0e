"""The reports `lora-repro report` offers, each declared once: its name, builder, runs, output folder and seeds.

The CLI's choices and defaults, the Makefile's report commands and the committed-results test read `REPORTS`.
A report's runs are the `paths.runs_dir` of the experiments that train them (`conf/experiment/`), so each folder
is named once, in its experiment. The builders live in one module per report: `paper_tables` (Tables 2, 5, 6),
`mini`, `successors`, `searches` (the learning-rate searches) and `precision`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pandas as pd

from lora_repro.config import compose_config
from lora_repro.paper.names import PAPER_MODELS
from lora_repro.records.schema import COMPLETED
from lora_repro.records.store import default_runs_dir
from lora_repro.report.common import MINI_MODEL, check_one_precision, params_report
from lora_repro.report.layout import Report, not_results_note, require_completed, select
from lora_repro.report.mini import mini_report
from lora_repro.report.paper_tables import sweep_report, table2_report
from lora_repro.report.precision import precision_report
from lora_repro.report.searches import RATE_SEARCHES, lr_search_report
from lora_repro.report.successors import successors_report

__all__ = ["CROSSFIT", "RANK", "REPORTS", "SEARCH", "Inputs", "ReportSpec", "build_report", "runs_dir"]

RANK, SEARCH, CROSSFIT = "rank", "search", "crossfit"  # the record sets a report may read beside its own


@dataclass(frozen=True)
class Inputs:
    """What a builder gets: its records (of the models and tasks shown), and the other record sets it declares."""

    records: pd.DataFrame
    tasks: Sequence[str] | None
    seeds: int
    other: Mapping[str, pd.DataFrame | None]  # RANK, SEARCH, CROSSFIT -> records, or None where there are none


@dataclass(frozen=True)
class ReportSpec:
    """One report: how it is built and from which runs, where it is written, and how many seeds a cell wants."""

    name: str  # `lora-repro report <name>`
    build: Callable[[Inputs], Report]
    seeds: int
    experiments: tuple[str, ...] = ()  # conf/experiment/<e>.yaml trains its runs; none: paths.runs_dir's default
    # Other record sets it reads, by the experiments that train them; read only when --runs is not given (a
    # user's own runs are never judged against the committed searches).
    other: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    models: tuple[str, ...] = ()  # the models it shows unless --model says otherwise (none: all)
    out: str = ""  # its output folder; empty: results/<name>

    def runs(self) -> list[Path]:
        """Its run folders: its experiments' `paths.runs_dir`, or the default runs folder."""
        return [runs_dir(e) for e in self.experiments] or [default_runs_dir()]

    def out_dir(self) -> Path:
        """Where its files are written unless --out says otherwise."""
        return Path(self.out or f"results/{self.name}")


@cache
def runs_dir(experiment: str) -> Path:
    """`paths.runs_dir` of `conf/experiment/<experiment>.yaml`, where its sweep writes its records."""
    return Path(compose_config([f"experiment={experiment}"]).paths.runs_dir)


def _table2(inputs: Inputs) -> Report:
    return table2_report(inputs.records, inputs.tasks, inputs.seeds)


def _sweep(number: int) -> Callable[[Inputs], Report]:
    return lambda inputs: sweep_report(number, inputs.records, inputs.seeds)


def _mini(inputs: Inputs) -> Report:
    ranks = inputs.other.get(RANK)
    ranks = select(ranks, [MINI_MODEL], None) if ranks is not None else inputs.records.iloc[:0]
    return mini_report(inputs.records, ranks, inputs.tasks, inputs.seeds, inputs.other.get(SEARCH),
                       inputs.other.get(CROSSFIT))


def _successors(inputs: Inputs) -> Report:
    return successors_report(inputs.records, inputs.tasks, inputs.seeds, inputs.other.get(SEARCH))


def _search(name: str) -> Callable[[Inputs], Report]:
    return lambda inputs: lr_search_report(inputs.records, RATE_SEARCHES[name])


def _precision(inputs: Inputs) -> Report:
    return precision_report(inputs.records, inputs.seeds)


MINI = (MINI_MODEL,)
REPORTS: dict[str, ReportSpec] = {spec.name: spec for spec in (
    # The paper's tables: the paper's 5 seeds for Table 2, its sweeps' for Tables 5 and 6.
    ReportSpec("table2", _table2, 5),
    ReportSpec("table2_roberta_base", _table2, 5, ("table2_roberta_base",), models=("roberta_base",)),
    ReportSpec("table2_roberta_large", _table2, 5, ("table2_roberta_large", "table2_roberta_large_houlsby"),
               models=("roberta_large",)),
    ReportSpec("table2_deberta_xxl", _table2, 5, ("table2_deberta_xxl",), models=("deberta_v2_xxlarge",)),
    ReportSpec("table5", _sweep(5), 5, ("table5",)),
    ReportSpec("table6", _sweep(6), 5, ("table6",)),
    # The CPU-scale mini and what hangs off it, committed under results/.
    ReportSpec("mini", _mini, 5, ("mini",), {RANK: ("mini_table5", "mini_table6"), SEARCH: ("mini_lr",),
                                           CROSSFIT: ("mini_crossfit",)}, MINI, "results/mini"),
    ReportSpec("lr_search", _search("lr_search"), 1, ("mini_lr",), models=MINI, out="results/mini/lr_search"),
    ReportSpec("precision", _precision, 3, ("mini_precision",), models=MINI, out="results/mini/precision"),
    # The successors' table reuses the mini's rows (the same runs, not rerun) and checks their searched rates.
    ReportSpec("successors", _successors, 5, ("mini", "mini_successors"), {SEARCH: ("successors_lr",)}, MINI,
               "results/successors"),
    ReportSpec("successors_lr", _search("successors_lr"), 1, ("successors_lr",), models=MINI,
               out="results/successors/lr_search"),
)}


def build_report(name: str, records: pd.DataFrame, models: Sequence[str] | None = None,
                 tasks: Sequence[str] | None = None, seeds: int | None = None,
                 other: Mapping[str, pd.DataFrame | None] | None = None) -> Report:
    """Build report `name` from store rows.

    Args:
        name: One of `REPORTS`.
        records: Rows of `lora_repro.records.store.load_records`.
        models: Models to show; None = the report's own (`mini`: minilm), else all.
        tasks: Tasks to show; None = every task the records hold.
        seeds: Seeds a cell should have; None = the report's declared number.
        other: The other record sets it declares (RANK, SEARCH, CROSSFIT), by name.

    Returns:
        The report (Table 2 with no completed records: the parameter check alone).

    Raises:
        UserError: No completed record to report on.
    """
    spec, other = REPORTS[name], dict(other or {})
    chosen = select(records, models or (list(spec.models) or None), tasks)
    if spec.build is _table2 and set(models or spec.models) <= set(PAPER_MODELS.values()) \
            and (chosen["status"] != COMPLETED).all():
        note = " ".join(filter(None, ["No completed run records: showing the parameter counts only.",
                                      not_results_note(chosen)]))
        return params_report(list(models or spec.models) or None, note)
    require_completed(chosen, name)
    if spec.build is not _precision:
        check_one_precision(name, [chosen, *other.values()])
    return spec.build(Inputs(chosen, tasks, seeds or spec.seeds, other))
