"""The paper's claims, tested on our own runs: a difference, a bootstrap interval, a verdict, and seeds to settle.

Each claim compares two groups of cells, A and B, as "A − B ≥ margin" in points (x100): e.g. "LoRA's
GLUE average is at most 1 point below full fine-tuning" is A = LoRA, B = FT, margin = −1. A cell is the
mean over seeds of the report-split metric at the epoch the selection split chose (the tables print the
median, as the paper does; a bootstrap of the median of 5 seeds is too coarse to calibrate: in simulation
its 95% intervals covered the truth 99-100% of the time); a claim over several tasks compares the mean of
the task cells, as the paper's Avg. column does.

The interval resamples every source of noise the table hides, and repeats the selection inside each
resample: the selection split's and the report split's examples (one draw of example indices per split,
task and resample, shared by every method, so the comparison is paired), the epoch (re-chosen on the
resampled selection split, per run), and the seeds (drawn with replacement within each cell). Runs under the
paper's convention (no selection split) re-choose the epoch on the resampled dev set itself; records from
before per-epoch logits were kept contribute their reported epoch only. Resampling seeds and examples
together counts the run-by-example noise twice (Owen 2007, "the pigeonhole bootstrap"), so the draws are
rescaled to the spread of the two parts taken apart, less what both hold, with the seeds' part unbiased
(n/(n−1)); `tests/report/test_claims.py` checks the coverage of the 95% interval on simulated runs.

Every line of one claims table is one family: Holm's step-down procedure controls the chance of any false
verdict at 5%. Lines are taken in order of their bootstrap p-value (against "A − B = margin"); line k of m
(from 0) is judged on its (1 − 0.05/(m − k)) interval, until the first that straddles its margin, whose
level every later line keeps. Verdict: `holds` when that interval lies at or above the margin,
`does not hold` when it lies below, `inconclusive` otherwise; an inconclusive line also says how many seeds
would settle a difference of the observed size at the observed seed and example spread. The resampling is
seeded, so a report rebuilt from the same records prints the same intervals.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from lora_repro.errors import UserError
from lora_repro.metrics import BATCHED_METRICS, compute_metrics, predictions_from_logits
from lora_repro.paper.names import ADPT_P, BITFIT, FT, LORA, METHOD_LABELS
from lora_repro.records.schema import COMPLETED
from lora_repro.records.store import load_epoch_logits, load_predictions, targets_key
from lora_repro.report.layout import order_tasks, task_name

__all__ = ["CELL_KEY", "RANK_CLAIMS", "SUCCESSOR_CLAIMS", "TABLE2_CLAIMS", "Claim", "bootstrap_cells",
           "claim_lines", "claims_table", "holm", "lora_setting_key", "method_key", "trivial_baseline"]

RESAMPLES = 4000
SEED = 0
ALPHA = 0.05  # family-wise error rate of one claims table (Holm)
HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
# The column that names a cell's row: the method label for Table 2's claims (`method_key`), LoRA's
# weight set and rank for Tables 5 and 6 (`lora_setting_key`).
CELL_KEY = "cell_key"


@dataclass(frozen=True)
class Claim:
    """One claim of the paper, as `mean over tasks of A − mean over tasks of B ≥ margin` (points)."""

    name: str
    text: str
    a: str  # a cell key: a method label (`LoRA`) or a LoRA setting (`q,v r=4`)
    b: str
    margin: float
    source: str  # where the paper makes it
    per_task: bool = True  # also one line per task


TABLE2_CLAIMS = (
    Claim("i", "LoRA's average is within 1 point of full fine-tuning (or above it)", LORA, FT, -1.0,
          "Table 2: LoRA matches or exceeds FT on RoBERTa and DeBERTa"),
    Claim("ii", "LoRA ≥ BitFit", LORA, BITFIT, 0.0, "Table 2"),
    Claim("iii", "LoRA ≥ adapters with equal or fewer trainable parameters", LORA, ADPT_P, 0.0,
          "Table 2: LoRA 0.8M vs AdptP/AdptH 0.8M on RoBERTa-large"),
)
RANK_CLAIMS = (
    Claim("iv", "At a fixed budget, Wq,Wv at r=4 beats Wq alone at r=8", "q,v r=4", "q r=8", 0.0,
          "Table 5: adapting two weight types at a lower rank beats one at a higher rank", per_task=False),
    Claim("v", "r=1 on Wq,Wv is within 1 point of r=64 (or above it)", "q,v r=1", "q,v r=64", -1.0,
          "Table 6: a very low rank suffices", per_task=False),
)

# What the successors' own papers claim against LoRA, at the same rank and targets where they share LoRA's.
SUCCESSOR_CLAIMS = (
    Claim("DoRA", "DoRA ≥ LoRA at the same rank", METHOD_LABELS["dora"], LORA, 0.0,
          "Liu et al. (2024): DoRA outperforms LoRA across models and tasks, at the same rank (its count: LoRA's "
          "plus a magnitude per output feature)"),
    Claim("rsLoRA", "rsLoRA ≥ LoRA at the same rank", METHOD_LABELS["rslora"], LORA, 0.0,
          "Kalajdzievski (2023): alpha/sqrt(r) learns better than alpha/r (its gain grows with r), at the same "
          "rank (its count: LoRA's)"),
    Claim("PiSSA", "PiSSA ≥ LoRA at the same rank", METHOD_LABELS["pissa"], LORA, 0.0,
          "Meng et al. (2024): PiSSA converges faster and ends higher than LoRA, at the same rank (its count: "
          "LoRA's)"),
    Claim("VeRA", "VeRA is within 1 point of LoRA (or above it) with fewer parameters", METHOD_LABELS["vera"],
          LORA, -1.0,
          "Kopiczko et al. (2024): VeRA matches LoRA on GLUE with 10x fewer trainable parameters, counting the "
          "method's own (head excluded)"),
    Claim("(IA)³", "(IA)³ is within 1 point of LoRA (or above it)", METHOD_LABELS["ia3"], LORA, -1.0,
          "Liu et al. (2022): (IA)³ matches or beats LoRA with fewer parameters, counting the method's own"),
    Claim("AdaLoRA", "AdaLoRA ≥ LoRA at a similar parameter budget", METHOD_LABELS["adalora"], LORA, 0.0,
          "Zhang et al. (2023): AdaLoRA beats LoRA on GLUE at the same budget, counted as the final average rank "
          "(here target rank 8 against LoRA's r=8; it trains its initial rank 12 until the budget is cut)"),
)


def method_key(records: pd.DataFrame) -> pd.Series:
    """Cells by method label (`LoRA`, `FT`, ...): Table 2's claims."""
    return records["label"]


def lora_setting_key(records: pd.DataFrame) -> pd.Series:
    """Cells by LoRA weight set and rank (`q,v r=4`): the claims of Tables 5 and 6."""
    weights = records["method.targets"].astype(str).map(lambda t: targets_key(t.split(",")))
    return weights + " r=" + records["method.r"].astype(int).astype(str)


def headline(records: pd.DataFrame) -> dict[str, str]:
    """Each task's headline metric name (`dev/accuracy` -> `accuracy`)."""
    names = records.groupby("task")["headline_metric"].agg(lambda m: sorted(set(m)))
    mixed = {t: m for t, m in names.items() if len(m) > 1}
    if mixed:
        raise UserError(f"runs of one task report different headline metrics: {mixed}")
    return {task: m[0].partition("/")[2] for task, m in names.items()}


def trivial_baseline(records: pd.DataFrame) -> pd.DataFrame:
    """The best constant prediction on each task's dev set, scored with the task's own metrics.

    Majority class for classification (accuracy = its share; MCC 0), the mean score for regression
    (Pearson 0): what a model that learned nothing about the inputs gets. Computed from the report split's
    labels the runs saved (checked to be the same rows in every run), so no data folder is needed.

    Returns:
        One row per task: task, metric (the headline metric's name) and value (0-1 scale).
    """
    done = records[(records["status"] == COMPLETED) & records["predictions"].notna()]
    rows = []
    for task, metric in headline(done).items():
        runs = done[done["task"] == task]
        _, labels, _ = same_labels([run_predictions(row) for _, row in runs.iterrows()], list(runs["path"]))
        regression = labels.dtype.kind == "f" and not np.all(labels == labels.round())
        constant = np.full_like(labels, labels.mean() if regression else np.bincount(labels).argmax())
        rows.append({"task": task, "metric": metric, "value": compute_metrics([metric], constant, labels)[metric]})
    return pd.DataFrame(rows, columns=["task", "metric", "value"])


@dataclass(frozen=True)
class RunPredictions:
    """One run's predictions at every epoch, on the split that selects and on the split that reports.

    `select` is `report` itself (the same array) for a run without a selection split.
    """

    select: np.ndarray  # (epochs, selection examples)
    report: np.ndarray  # (epochs, report examples)
    select_labels: np.ndarray
    report_labels: np.ndarray

    @property
    def shared(self) -> bool:
        """True when the report split also selects (the paper's convention)."""
        return self.select is self.report


def run_predictions(row: pd.Series) -> RunPredictions:
    """The predictions behind one store row: every epoch's (`epoch_logits`), else its reported epoch's alone."""
    report_split = str(row["headline_metric"]).partition("/")[0]
    if isinstance(row.get("epoch_logits"), str):
        logits = load_epoch_logits(row["epoch_logits"])
        select_split = str(row["selection_metric"]).partition("/")[0]

        def stacked(split: str) -> np.ndarray:
            epochs = sorted(int(k.rpartition("epoch")[2]) for k in logits if k.startswith(f"{split}/epoch"))
            return np.stack([prediction_array(logits[f"{split}/epoch{e}"]) for e in epochs])

        report = stacked(report_split)
        select = report if select_split == report_split else stacked(select_split)
        return RunPredictions(select, report, logits[f"{select_split}/labels"], logits[f"{report_split}/labels"])
    frame = load_predictions(row["predictions"])
    report = frame["prediction"].to_numpy()[None, :]
    return RunPredictions(report, report, frame["label"].to_numpy(), frame["label"].to_numpy())


def prediction_array(logits: np.ndarray) -> np.ndarray:
    """Class ids from classification logits, the score itself from a regression head's one output."""
    return predictions_from_logits(logits, logits.shape[1] == 1)


def same_labels(runs: Sequence[RunPredictions], files: Sequence[str]) -> tuple[np.ndarray, np.ndarray, bool]:
    """The selection and report labels of one task, checked to be the same rows in every run."""
    first = runs[0]
    for run, file in zip(runs, files, strict=True):
        if (run.shared != first.shared or not np.array_equal(run.select_labels, first.select_labels)
                or not np.array_equal(run.report_labels, first.report_labels)):
            raise UserError(f"{file} holds other selection or report rows than the task's other runs; the runs do "
                            "not share their splits and cannot be compared example by example")
    return first.select_labels, first.report_labels, first.shared


def selected_values(runs: Sequence[RunPredictions], select_rows: np.ndarray, report_rows: np.ndarray,
                    metric: Callable) -> np.ndarray:
    """Each run's report metric at the epoch its selection metric picks, on every resample: shape (B, runs).

    Args:
        runs: One cell's runs (one per seed).
        select_rows: Resampled example indices of the selection split, shape (B, n_select).
        report_rows: The same for the report split (the very same array when the report split also selects).
        metric: A batched metric (`BATCHED_METRICS`).
    """
    columns = []
    for run in runs:
        chosen = np.stack([metric(epoch[select_rows], run.select_labels[select_rows]) for epoch in run.select])
        reported = chosen if run.shared else np.stack(
            [metric(epoch[report_rows], run.report_labels[report_rows]) for epoch in run.report])
        best = np.argmax(chosen, axis=0)  # the earliest of tied epochs, as in training
        columns.append(reported[best, np.arange(reported.shape[1])])
    return np.stack(columns, axis=1)


SPREAD_COLUMNS = ("n_seeds", "draws", "example_draws", "seed_draws", "interaction")


def cell_spread(runs: Sequence[RunPredictions], select_rows: np.ndarray, report_rows: np.ndarray,
                metric: Callable, rng: np.random.Generator) -> dict[str, object]:
    """One cell's bootstrap draws, whole and in parts (see `bootstrap_cells`)."""
    values = selected_values(runs, select_rows, report_rows, metric)  # (B, seeds): examples resampled
    every_row = [np.arange(len(runs[0].select_labels))[None, :], np.arange(len(runs[0].report_labels))[None, :]]
    observed = selected_values(runs, *every_row, metric)[0]  # (seeds,): each run as it is
    seeds = len(runs)
    picked = rng.integers(0, seeds, size=values.shape)
    example_draws = np.mean(values, axis=1)
    # Resampling seeds and examples both counts the run-by-example noise (which examples one run gets right)
    # twice, once through each: its share, estimated from one seed's spread against all seeds', is taken out.
    interaction = (np.mean(np.var(values, axis=0)) - np.var(example_draws)) / (seeds - 1) if seeds > 1 else 0.0
    return {"n_seeds": seeds, "draws": np.mean(np.take_along_axis(values, picked, axis=1), axis=1),
            "example_draws": example_draws, "seed_draws": np.mean(observed[picked], axis=1),
            "interaction": max(float(interaction), 0.0)}


def bootstrap_cells(records: pd.DataFrame, resamples: int = RESAMPLES, seed: int = SEED) -> pd.DataFrame:
    """Every (cell key, task) cell's value and its bootstrap draws.

    Args:
        records: Completed store rows with predictions, and a `cell_key` column.
        resamples: Number of bootstrap resamples.
        seed: Seed of the resampling.

    Returns:
        One row per cell: cell_key, task, value (median over seeds, 0-1 scale), n_seeds, draws (the same
        statistic on `resamples` resamples of examples, epochs and seeds), example_draws (seeds kept, examples
        and epochs resampled), seed_draws (examples kept, seeds resampled) and interaction (the variance of the
        run-by-example noise in the cell's value, which draws count twice).
    """
    rng = np.random.default_rng(seed)
    metrics = headline(records)
    rows = []
    for task in order_tasks(records["task"]):
        runs = records[records["task"] == task]
        predictions = {index: run_predictions(row) for index, row in runs.iterrows()}
        select_labels, report_labels, shared = same_labels(list(predictions.values()), list(runs["path"]))
        report_rows = rng.integers(0, len(report_labels), size=(resamples, len(report_labels)))
        select_rows = report_rows if shared else rng.integers(0, len(select_labels),
                                                             size=(resamples, len(select_labels)))
        metric: Callable = BATCHED_METRICS[metrics[task]]
        for key, cell in runs.groupby(CELL_KEY, sort=True):
            cell_runs = [predictions[i] for i in cell.sort_values("seed").index]
            rows.append({CELL_KEY: key, "task": task, "value": float(np.mean(cell["best"].astype(float))),
                         **cell_spread(cell_runs, select_rows, report_rows, metric, rng)})
    return pd.DataFrame(rows, columns=[CELL_KEY, "task", "value", *SPREAD_COLUMNS])


def verdict(low: float, high: float, margin: float) -> str:
    """`holds` / `does not hold` / `inconclusive` for an interval against the claim's margin."""
    if low >= margin:
        return HOLDS
    return FAILS if high < margin else INCONCLUSIVE


def compare(cells: pd.DataFrame, claim: Claim, tasks: Sequence[str]) -> dict[str, object] | None:
    """One untested line of a claims table: A − B over `tasks` and its draws (None when a cell is missing)."""
    chosen = cells[cells["task"].isin(tasks)].set_index([CELL_KEY, "task"])
    needed = [(key, task) for key in (claim.a, claim.b) for task in tasks]
    if any(k not in chosen.index for k in needed):
        return None

    def mean(key: str, column: str) -> np.ndarray | float:
        return np.mean([chosen.loc[(key, t), column] for t in tasks], axis=0)

    def difference(column: str) -> np.ndarray:
        return 100 * (mean(claim.a, column) - mean(claim.b, column))

    a, b = 100 * mean(claim.a, "value"), 100 * mean(claim.b, "value")
    draws, seed_part, example_part = difference("draws"), difference("seed_draws"), difference("example_draws")
    # The spread of A − B: seeds' part + examples' part − the run-by-example noise both parts hold (each cell
    # enters the means over tasks with weight 1/len(tasks)). The draws keep their shape at that spread.
    twice_counted = sum((100 / len(tasks)) ** 2 * chosen.loc[k, "interaction"] for k in needed)
    example_var = max(float(np.var(example_part)) - twice_counted, 0.0)
    seeds = int(min(chosen.loc[k, "n_seeds"] for k in needed))
    # Resampled seeds spread like a variance with divisor n: n / (n - 1) makes it the unbiased one.
    seed_var = float(np.var(seed_part)) * (seeds / (seeds - 1) if seeds > 1 else 1.0)
    spread = seed_var + example_var
    scale = math.sqrt(spread / float(np.var(draws))) if np.var(draws) > 0 else 1.0
    scope = "Avg. of " + ", ".join(task_name(t) for t in tasks) if len(tasks) > 1 else task_name(tasks[0])
    return {"claim": claim.name, "statement": claim.text, "on": scope, "A": claim.a, "B": claim.b,
            "A_value": a, "B_value": b, "difference": a - b, "margin": claim.margin, "source": claim.source,
            "n_seeds": seeds, "draws": draws.mean() + (draws - draws.mean()) * scale,
            "seed_var": seed_var, "example_var": example_var}


def p_value(draws: np.ndarray, margin: float) -> float:
    """Two-sided bootstrap p-value of "A − B = margin": twice the smaller share of draws on one side."""
    below = (np.sum(draws < margin) + 1) / (len(draws) + 1)
    above = (np.sum(draws >= margin) + 1) / (len(draws) + 1)
    return min(1.0, 2 * min(below, above))


def seeds_to_settle(line: dict[str, object], level: float) -> float:
    """Seeds per cell that would put a difference of this size and spread clear of the margin at `level`.

    The spread has a part that shrinks as 1/seeds (the seeds') and one that does not (the examples'). Infinite
    when the examples alone are too noisy, or the difference is the margin itself.
    """
    gap = abs(float(line["difference"]) - float(line["margin"]))
    room = (gap / stats.norm.ppf(1 - level / 2)) ** 2 - float(line["example_var"])
    if room <= 0:
        return math.inf
    return float(max(math.ceil(float(line["seed_var"]) * int(line["n_seeds"]) / room), 2))


def holm(lines: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """Judge a family of untested lines (`compare`'s) with Holm's step-down procedure at `alpha`.

    Returns:
        `lines` without the draws, plus p_value, level (the interval's coverage, e.g. 0.997), ci_low, ci_high,
        verdict and seeds_to_settle (inconclusive lines only; inf = no number of seeds).
    """
    if lines.empty:
        return lines
    lines = lines.copy()
    lines["p_value"] = [p_value(d, m) for d, m in zip(lines["draws"], lines["margin"], strict=True)]
    order = np.argsort(lines["p_value"].to_numpy(), kind="stable")
    m, stopped = len(lines), None
    judged = {}
    for k, i in enumerate(order):
        line = lines.iloc[i]
        level = alpha / (m - (k if stopped is None else stopped))
        low, high = np.percentile(line["draws"], [100 * level / 2, 100 * (1 - level / 2)])
        said = verdict(float(low), float(high), float(line["margin"])) if stopped is None else INCONCLUSIVE
        if said == INCONCLUSIVE and stopped is None:
            stopped = k
        needed = seeds_to_settle(line.to_dict(), level) if said == INCONCLUSIVE else math.nan
        judged[i] = {"level": 1 - level, "ci_low": float(low), "ci_high": float(high), "verdict": said,
                     "seeds_to_settle": needed}
    result = pd.concat([lines.reset_index(drop=True), pd.DataFrame([judged[i] for i in range(m)])], axis=1)
    return result.drop(columns=["draws", "seed_var", "example_var"])


def claim_lines(records: pd.DataFrame, claims: Sequence[Claim], key: Callable[[pd.DataFrame], pd.Series],
                resamples: int = RESAMPLES) -> pd.DataFrame:
    """The untested lines of `claims` on `records`: one per claim (over all tasks), then one per claim and task.

    A claim whose cells are missing is left out. `holm` judges them (several claim sets may be one family).
    """
    done = records[(records["status"] == COMPLETED) & records["predictions"].notna()]
    if done.empty:
        return pd.DataFrame()
    keyed = done.assign(**{CELL_KEY: key(done)})
    cells = bootstrap_cells(keyed, resamples)
    counts = parameter_counts(keyed)
    tasks = order_tasks(cells["task"])
    lines = []
    for claim in claims:
        scopes = [tasks] + ([[t] for t in tasks] if claim.per_task and len(tasks) > 1 else [])
        found = [line for scope in scopes if (line := compare(cells, claim, scope)) is not None]
        lines += [line | {f"{side}_params_{kind}": counts[cell][i] for side, cell in (("A", claim.a), ("B", claim.b))
                          for i, kind in enumerate(("own", "trainable"))} for line in found]
    return pd.DataFrame(lines)


def parameter_counts(records: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """Per cell key, (the method's own parameters, all that trains with the head): the most common over its runs.

    Claims state both: the LoRA paper and its successors' papers count the method's own (head excluded), while
    the head trains under every method and can outweigh a small method many times over.
    """
    return {key: (int(group["params_method"].mode().iloc[0]), int(group["params_trainable"].mode().iloc[0]))
            for key, group in records.groupby(CELL_KEY)}


def claims_table(records: pd.DataFrame, claims: Sequence[Claim], key: Callable[[pd.DataFrame], pd.Series],
                 resamples: int = RESAMPLES) -> pd.DataFrame:
    """The tidy claims table of one family: `claim_lines`, judged by `holm`.

    Returns:
        Columns claim, statement, on, A, B, A_value, B_value, difference (points), margin, source, n_seeds,
        p_value, level, ci_low, ci_high, verdict, seeds_to_settle, and {A,B}_params_{own,trainable}.
    """
    return holm(claim_lines(records, claims, key, resamples))
