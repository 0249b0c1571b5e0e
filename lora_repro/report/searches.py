"""A declared learning-rate search: each method's rates side by side, the winner, and the next grid step."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from lora_repro.config import compose_config
from lora_repro.methods.registry import label_order, method_label
from lora_repro.records.schema import COMPLETED
from lora_repro.report.cells import MISSING
from lora_repro.report.claims import (
    headline,
)
from lora_repro.report.layout import (
    Report,
    Section,
    not_results_note,
    order_tasks,
    position,
    require_completed,
    task_name,
)

__all__ = ["RATE_SEARCHES", "RateSearch", "lr_search_next", "lr_search_report", "lr_search_winners"]

def lr_search_winners(records: pd.DataFrame, value: str = "selection_value") -> pd.DataFrame:
    """Per method and learning rate, the selection-split metric on each task and their mean; the best marked.

    Only the selection split chooses: a run's value here is its selection-split metric at the epoch that split
    picked (`selection_value`), never a report-split number. `value="report_best"` is the other fold of the
    cross-fitted view: the report half choosing (its metric at the epoch it picked itself).

    Returns:
        One row per method x rate: method (the config name), label, learning_rate, one column per task
        (0-1 scale), mean, winner (True for each method's rate with the highest mean) and edge (the winner sits
        at the low or high end of the rates searched so far: `low`, `high` or empty).
    """
    done = require_completed(records, "lr_search")
    table = done.pivot_table(index=["method", "label", "train.learning_rate"], columns="task",
                             values=value, aggfunc="median").reset_index().rename(
        columns={"train.learning_rate": "learning_rate"})
    tasks = order_tasks(done["task"])
    table["mean"] = table[tasks].mean(axis=1, skipna=False)
    best = table.groupby("method")["mean"].transform("max")
    table["winner"] = table["mean"].eq(best) & table["mean"].notna()
    low = table.groupby("method")["learning_rate"].transform("min")
    high = table.groupby("method")["learning_rate"].transform("max")
    table["edge"] = [("low" if rate == lo else "high" if rate == hi else "") if won and lo < hi else ""
                     for rate, lo, hi, won in zip(table["learning_rate"], low, high, table["winner"], strict=True)]
    order = [position(label, label_order()) for label in table["label"]]
    return table.assign(order=order).sort_values(["order", "learning_rate"]).drop(columns="order")[
        ["method", "label", "learning_rate", *tasks, "mean", "winner", "edge"]].reset_index(drop=True)


@dataclass(frozen=True)
class RateSearch:
    """A declared learning-rate search: the experiment that runs it, and how its report names things."""

    report: str  # the report's name: `lora-repro report <report>`
    experiment: str  # conf/experiment/<experiment>.yaml
    make_target: str
    title: str
    in_use: str  # the column saying which rate conf/experiment/_mini_protocol.yaml gives (mini.learning_rate)
    user: str  # who trains with those rates


RATE_SEARCHES = {
    "lr_search": RateSearch("lr_search", "mini_lr", "make mini-lr",
                            "The mini's learning-rate search on the selection split (experiment=mini_lr)",
                            "In the mini", "the mini"),
    "successors_lr": RateSearch("successors_lr", "successors_lr", "make mini-successors-lr",
                                "The successors' learning-rate search on the selection split "
                                "(experiment=successors_lr)", "In the successors' table", "the successors' table"),
}


def lr_search_next(records: pd.DataFrame, search: RateSearch = RATE_SEARCHES["lr_search"]) -> list[str]:
    """The overrides that extend the search one step outward for each method whose winner is on an edge.

    The grid is powers of two around each method's centre (`lr_search.factor`), so one step out halves the
    lowest factor or doubles the highest. Returns e.g. `["method=lora lr_search.factor=0.25"]`, or nothing when
    every winner is interior (the search is done). Methods are named as the search's experiment sweeps them.
    """
    config = compose_config([f"experiment={search.experiment}"], hydra=True)
    choices = str(config.hydra.sweeper.params.method).split(",")
    by_label = {method_label(compose_config([f"method={c}"]).method): c for c in choices}
    table = lr_search_winners(records)
    lines = []
    for row in table[table["edge"] != ""].itertuples():
        factor = row.learning_rate / float(config.lr_search.center[row.method])
        step = 0.5 if row.edge == "low" else 2.0
        lines.append(f"method={by_label[row.label]} lr_search.factor={factor * step:g}")
    return lines


def lr_search_report(records: pd.DataFrame, search: RateSearch = RATE_SEARCHES["lr_search"]) -> Report:
    """A learning-rate search: each method's rates side by side, the winner marked, and whether it is in use."""
    table = lr_search_winners(records)
    tasks = [c for c in table.columns if c not in ("method", "label", "learning_rate", "mean", "winner", "edge")]
    shown = pd.DataFrame({"Method": table["label"], "Learning rate": table["learning_rate"].map("{:g}".format)})
    for task in tasks:
        shown[task_name(task)] = table[task].map(lambda v: MISSING if pd.isna(v) else f"{100 * v:.1f}")
    shown["Mean"] = table["mean"].map(lambda v: MISSING if pd.isna(v) else f"{100 * v:.1f}")
    shown["Best"] = table["winner"].map({True: "✓", False: ""})
    configured = compose_config(["experiment=mini"]).mini.learning_rate
    in_use = [configured.get(method) == rate for method, rate in zip(table["method"], table["learning_rate"],
                                                                      strict=True)]
    shown[search.in_use] = ["✓" if used else "" for used in in_use]
    differs = sorted({r.label for r, used in zip(table.itertuples(), in_use, strict=True) if r.winner and not used})
    edges = sorted({r.label for r in table.itertuples() if r.edge})
    from lora_repro.training.plan import expand_sweep  # the search as its experiment file declares it

    planned = len(expand_sweep([f"experiment={search.experiment}"]))
    completed = int((records["status"] == COMPLETED).sum())
    metrics = ", ".join(f"{task_name(t)} {m}" for t, m in headline(records[records["status"] == COMPLETED]).items())
    done = records[records["status"] == COMPLETED]
    selected = (done["selection"] != "none").all()
    notes = [f"Selection-split metric ({metrics}) of one run (seed 0) at the epoch the selection split picked, "
             "x100. The report split never enters the search." if selected else
             f"Dev metric ({metrics}) of one run (seed 0) at its best dev epoch, x100: these runs have no selection "
             "split, so dev both chose and reports (the protocol before the selection split).",
             f"Best = the rate with the highest mean over the tasks, per method. {search.in_use} = the rate "
             "conf/experiment/_mini_protocol.yaml gives the method (mini.learning_rate). A best rate on the edge "
             f"of its grid extends the grid one step outward (`{search.make_target}` does it until every best is "
             "inside).",
             f"The search is not finished: {completed} of its {planned} planned runs are completed, so the best "
             "rates above are provisional." if completed < planned else
             f"Still on an edge, to be extended: {', '.join(edges)}." if edges else
             f"{search.user[0].upper()}{search.user[1:]} does not use the best rate for: {', '.join(differs)}."
             if differs else f"Every best rate is inside its grid, and {search.user} uses the best rate of every "
             "method.",
             not_results_note(records)]
    return Report(search.report, search.title, [Section("Learning rate x method", shown, [n for n in notes if n])],
                  table.assign(winner=table["winner"].astype(bool)))
