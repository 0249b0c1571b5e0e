"""The papers' claims, tested on our own runs: a difference, an interval, a verdict, its stability, seeds to settle.

Each claim compares two groups of cells, A and B, as "A − B ≥ margin" in points (x100). The margin follows
from the paper's wording, one rule for all (`MARGINS`): "matches or exceeds" is tested against −1 point,
"beats" against 0. A cell is the mean over seeds of the report-split metric at the epoch the selection split
chose, the statistic every headline table prints; a claim over several tasks compares the mean of the task
cells, as the paper's Avg. column does.

The variance of A − B has two parts, estimated apart:
* the seeds': each cell's sample variance over its seeds / n, as the cells enter the mean over tasks;
* the examples': a bootstrap of the selection and report examples (one draw of example counts per split,
  task and resample, shared by every method, so the comparison is paired), the epoch re-chosen on the
  resampled selection split in every resample, each run's seed kept. It also holds 1/n of the run-by-example
  noise (which examples one run gets right), which the seeds' part holds already: that share, estimated from
  one seed's resampled spread against the mean's, is taken out once (Owen 2007), and where that would leave
  less than 0 the examples' part is 0 (`example_clipped`: the seeds' part then carries all of it).
The interval is difference ± t quantile x standard error, with Welch–Satterthwaite degrees of freedom: each
cell's seeds' part has n − 1 (4 with 5 seeds), the examples' part (hundreds of examples) counts as exact. With
5 seeds a normal quantile would be too narrow where the seeds dominate; `tests/report/test_calibration.py`
checks the coverage at 95% and at the Holm levels on runs simulated with the committed runs' parameters.

Every line of one claims table is one family: Holm's step-down procedure controls the chance of any false
verdict at 5%. Lines are taken in order of their p-value (against "A − B = margin"); line k of m (from 0) is
judged on its (1 − 0.05/(m − k)) interval, until the first that straddles its margin, whose level every
later line keeps. Verdict: `holds` when that interval lies at or above the margin, `does not hold` when it lies
below, `inconclusive` otherwise; an inconclusive line also says how many seeds would settle a difference of the
observed size at the observed spreads. The bootstrap is run with RNG seeds 0-19 (`RNG_SEEDS`): seed 0's
intervals are printed, and each line's stability is the share of the 20 whose whole Holm procedure gives the
printed verdict; below 95% the verdict is marked fragile. A report rebuilt from the same records prints the same.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from scipy import stats

from lora_repro.errors import UserError
from lora_repro.methods.targets import targets_key
from lora_repro.metrics import BATCHED_METRICS, BatchedMetric, compute_metrics, predictions_from_logits, resample_counts
from lora_repro.paper.claims import BEATS, MARGINS, MATCHES, RANK_CLAIMS, TABLE2_CLAIMS, Claim
from lora_repro.records.schema import COMPLETED
from lora_repro.records.store import load_epoch_logits, load_predictions
from lora_repro.report.layout import order_tasks, task_name
from lora_repro.settings import DEV_HALF

__all__ = ["BEATS", "CELL_KEY", "MARGINS", "MATCHES", "RANK_CLAIMS", "TABLE2_CLAIMS", "Claim",
           "bootstrap_cells", "claim_lines", "claims_table", "holm", "lora_setting_key", "method_key",
           "trivial_baseline"]

RESAMPLES = 2000  # example resamples per RNG seed: the examples' variance to within about ±3% (1 SD)
RNG_SEEDS = 20  # the bootstrap is repeated with RNG seeds 0-19: seed 0 is printed, all 20 give the stability
MAX_SEEDS = 10_000  # seeds to settle: more than this prints as ∞
FRAGILE = 0.95  # a verdict that fewer than 95% of the RNG seeds give is marked fragile
ALPHA = 0.05  # family-wise error rate of one claims table (Holm)
HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
# The column that names a cell's row: the method label for Table 2's claims (`method_key`), LoRA's
# weight set and rank for Tables 5 and 6 (`lora_setting_key`).
CELL_KEY = "cell_key"


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


def selected_values(runs: Sequence[RunPredictions], select_counts: np.ndarray, report_counts: np.ndarray,
                    metric: BatchedMetric) -> np.ndarray:
    """Each run's report metric at the epoch its selection metric picks, on every resample: shape (B, runs).

    Args:
        runs: One cell's runs (one per seed).
        select_counts: Resamples of the selection split as counts (`resample_counts`), shape (B, n_select).
        report_counts: The same for the report split (the very same array when the report split also selects).
        metric: A batched metric (`BATCHED_METRICS`).
    """
    # Every run's every epoch in one batched call per split: the runs of a cell share their rows.
    epochs = [len(run.select) for run in runs]
    chosen = np.split(metric(select_counts, np.concatenate([r.select for r in runs]), runs[0].select_labels),
                      np.cumsum(epochs)[:-1], axis=1)
    reported = chosen if runs[0].shared else np.split(
        metric(report_counts, np.concatenate([r.report for r in runs]), runs[0].report_labels),
        np.cumsum(epochs)[:-1], axis=1)
    rows = np.arange(len(select_counts))
    # The earliest of tied epochs, as in training.
    return np.stack([got[rows, np.argmax(picked, axis=1)] for picked, got in zip(chosen, reported, strict=True)],
                    axis=1)


def crossfit_values(runs: Sequence[RunPredictions], select_counts: np.ndarray, report_counts: np.ndarray,
                    metric: BatchedMetric, others: Sequence[RunPredictions] | None = None) -> np.ndarray:
    """Each run's metric on the whole dev set, each half read as the other half chose: shape (B, runs).

    For the dev-half tasks: the report half at the epoch the selection half picks (the headline's number), and the
    selection half at the epoch the report half picks, of `others` (the same seed trained at the rate the report
    half chose; the run itself where both halves choose the same rate), pooled into one metric over both halves
    (their sums add). No number is ever chosen on itself.
    """
    rows = np.arange(len(select_counts))
    columns = []
    for run, other in zip(runs, others or runs, strict=True):
        on_select = metric.sums(select_counts, run.select, run.select_labels)  # (B, epochs, sums)
        on_report = metric.sums(report_counts, run.report, run.report_labels)
        for_report = np.argmax(metric.formula(on_select), axis=1)  # the earliest of tied epochs, as in training
        if other is not run:
            on_select = metric.sums(select_counts, other.select, other.select_labels)
            on_report_other = metric.sums(report_counts, other.report, other.report_labels)
            for_select = np.argmax(metric.formula(on_report_other), axis=1)
        else:
            for_select = np.argmax(metric.formula(on_report), axis=1)
        columns.append(metric.formula(on_report[rows, for_report] + on_select[rows, for_select]))
    return np.stack(columns, axis=1)


SPREAD_COLUMNS = ("n_seeds", "seed_var", "example_draws", "interaction")


def cell_spread(runs: Sequence[RunPredictions], resamples: Sequence[tuple[np.ndarray, np.ndarray]],
                metric: BatchedMetric, values_of: Callable = selected_values) -> dict[str, object]:
    """One cell's two parts of noise: its seeds' (from the runs as they are) and its examples' (resampled).

    Args:
        runs: The cell's runs.
        resamples: Per bootstrap RNG seed, the (selection, report) resample counts of the task.
        metric: The task's batched metric.
        values_of: How a run's value is read: `selected_values` (the report split at the selected epoch) or
            `crossfit_values` (the whole dev set, cross-fitted).

    Returns:
        value, the mean over the runs as they are; n_seeds; seed_var, the variance of the cell's mean over seeds
        (sample variance / n, points² / 10⁴); example_draws (RNG seeds x B), the mean over the cell's runs on
        each example resample, the epochs re-chosen; interaction (per RNG seed), the part of the examples'
        variance that the seeds' already holds.
    """
    every_row = [np.ones((1, len(runs[0].select_labels))), np.ones((1, len(runs[0].report_labels)))]
    observed = values_of(runs, *every_row, metric)[0]  # (seeds,): each run as it is
    seeds = len(runs)
    draws, interaction = [], []
    for select_counts, report_counts in resamples:
        values = values_of(runs, select_counts, report_counts, metric)  # (B, seeds)
        means = values.mean(axis=1)
        # Which examples one run gets right is noise in its seed's value, and again in the resampled examples'
        # (1/n of it): its share, one seed's resampled spread against that of the mean, is taken out once.
        twice = (np.mean(np.var(values, axis=0)) - np.var(means)) / (seeds - 1) if seeds > 1 else 0.0
        draws.append(means)
        interaction.append(max(float(twice), 0.0))
    return {"value": float(np.mean(observed)), "n_seeds": seeds,
            "seed_var": float(np.var(observed, ddof=1)) / seeds if seeds > 1 else 0.0,
            "example_draws": np.stack(draws), "interaction": np.array(interaction)}


def bootstrap_cells(records: pd.DataFrame, resamples: int = RESAMPLES, rng_seeds: int = RNG_SEEDS,
                    crossfit: bool = False, other_fold: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every (cell key, task) cell's value and its two parts of noise (`cell_spread`).

    Args:
        records: Completed store rows with predictions, and a `cell_key` column.
        resamples: Number of bootstrap resamples of the examples per RNG seed.
        rng_seeds: Number of RNG seeds the resampling is repeated with (0, 1, ...): seed 0 gives the printed
            interval, all of them the verdict's stability.
        crossfit: Read the dev-half tasks on the whole dev set (`crossfit_values`); other tasks as they are.
        other_fold: With `crossfit`, the runs at the rate the report half chose where it differs from the
            selection half's (a `cell_key` column; matched by cell, task and seed): their selection half is read.

    Returns:
        One row per cell: cell_key, task, value (mean over seeds, 0-1 scale) and `SPREAD_COLUMNS`.
    """
    counterparts = {} if other_fold is None else {
        (row[CELL_KEY], row["task"], int(row["seed"])): row for _, row in other_fold.iterrows()}
    rngs = [np.random.default_rng(seed) for seed in range(rng_seeds)]
    metrics = headline(records)
    rows = []
    for task in order_tasks(records["task"]):
        runs = records[records["task"] == task]
        predictions = {index: run_predictions(row) for index, row in runs.iterrows()}
        select_labels, report_labels, shared = same_labels(list(predictions.values()), list(runs["path"]))
        task_resamples = []
        for rng in rngs:
            report_counts = resample_counts(rng, len(report_labels), resamples)
            select_counts = report_counts if shared else resample_counts(rng, len(select_labels), resamples)
            task_resamples.append((select_counts, report_counts))
        metric = BATCHED_METRICS[metrics[task]]
        values_of = crossfit_values if crossfit and (runs["selection"] == DEV_HALF).all() else selected_values
        for key, cell in runs.groupby(CELL_KEY, sort=True):
            ordered = cell.sort_values("seed")
            cell_runs = [predictions[i] for i in ordered.index]
            read = values_of
            if values_of is crossfit_values:
                found = [counterparts.get((key, task, int(seed))) for seed in ordered["seed"]]
                others = [run if row is None else run_predictions(row) for run, row in zip(cell_runs, found,
                                                                                           strict=True)]
                other_paths = [path if row is None else row["path"] for path, row in zip(ordered["path"], found,
                                                                                         strict=True)]
                same_labels([*cell_runs, *others], [*ordered["path"], *other_paths])  # a mismatch names its run
                read = partial(crossfit_values, others=others)
            spread = cell_spread(cell_runs, task_resamples, metric, read)
            if values_of is selected_values:  # the records' own numbers, as the tables print them
                spread["value"] = float(np.mean(cell["best"].astype(float)))
            rows.append({CELL_KEY: key, "task": task, **spread})
    return pd.DataFrame(rows, columns=[CELL_KEY, "task", "value", *SPREAD_COLUMNS])


def verdict(low: float, high: float, margin: float) -> str:
    """`holds` / `does not hold` / `inconclusive` for an interval against the claim's margin."""
    if low >= margin:
        return HOLDS
    return FAILS if high < margin else INCONCLUSIVE


def compare(cells: pd.DataFrame, claim: Claim, tasks: Sequence[str]) -> dict[str, object] | None:
    """One untested line of a claims table: A − B over `tasks` and its spread (None when a cell is missing).

    The variance of A − B is the seeds' part (each cell's sample variance / n, weighted as the cell enters the
    mean over tasks) plus the examples' part (the bootstrap's, less the run-by-example noise the seeds' part
    holds already, at 0 where that leaves less than 0). Its degrees of freedom are Welch–Satterthwaite's: each
    cell's seeds' part has n − 1 of them, the examples' part (hundreds of examples) counts as exact.
    """
    chosen = cells[cells["task"].isin(tasks)].set_index([CELL_KEY, "task"])
    needed = [(key, task) for key in (claim.a, claim.b) for task in tasks]
    if any(k not in chosen.index for k in needed):
        return None
    weight = 100 / len(tasks)  # each cell enters the mean over tasks with weight 1/len(tasks), in points

    def mean(key: str, column: str) -> np.ndarray | float:
        return np.mean([chosen.loc[(key, t), column] for t in tasks], axis=0)

    a, b = 100 * mean(claim.a, "value"), 100 * mean(claim.b, "value")
    seed_parts = np.array([weight ** 2 * chosen.loc[k, "seed_var"] for k in needed])
    seed_df = np.array([max(int(chosen.loc[k, "n_seeds"]) - 1, 1) for k in needed])
    example_part = 100 * (mean(claim.a, "example_draws") - mean(claim.b, "example_draws"))  # (RNG seeds, B)
    twice_counted = sum(weight ** 2 * chosen.loc[k, "interaction"] for k in needed)
    raw_example_var = np.var(example_part, axis=1) - twice_counted
    example_var = np.clip(raw_example_var, 0.0, None)
    spread = seed_parts.sum() + example_var
    welch = float(np.sum(seed_parts ** 2 / seed_df))
    df = np.divide(spread ** 2, welch, out=np.full_like(spread, np.inf), where=welch > 0)
    scope = "Avg. of " + ", ".join(task_name(t) for t in tasks) if len(tasks) > 1 else task_name(tasks[0])
    return {"claim": claim.name, "statement": claim.text, "on": scope, "A": claim.a, "B": claim.b,
            "A_value": a, "B_value": b, "difference": a - b, "margin": claim.margin, "source": claim.source,
            "n_seeds": int(min(chosen.loc[k, "n_seeds"] for k in needed)), "seed_var": float(seed_parts.sum()),
            "example_var": example_var, "df": df, "example_clipped": bool(raw_example_var[0] < 0)}


def p_value(difference: float, margin: float, spread: float, df: float) -> float:
    """Two-sided p-value of "A − B = margin" under a t distribution with `df` degrees of freedom."""
    if spread <= 0:
        return 1.0 if difference == margin else 0.0
    return float(2 * stats.t.sf(abs(difference - margin) / math.sqrt(spread), df))


def interval(difference: float, spread: float, df: float, level: float) -> tuple[float, float]:
    """The two-sided interval of coverage 1 − `level`: difference ± t(df) quantile x standard error."""
    half = float(stats.t.ppf(1 - level / 2, df)) * math.sqrt(spread)
    return difference - half, difference + half


def seeds_to_settle(line: dict[str, object], level: float) -> float:
    """Seeds per cell that would put a difference of this size and spread clear of the margin at `level`.

    The seeds' part shrinks as 1/seeds and its degrees of freedom grow with them; the examples' part does not
    shrink. Infinite when the examples alone are too noisy, or the difference is the margin itself.
    """
    gap = abs(float(line["difference"]) - float(line["margin"]))
    n0, seed_var, example_var = int(line["n_seeds"]), float(line["seed_var"]), float(line["example_var"])
    if gap == 0 or stats.norm.ppf(1 - level / 2) * math.sqrt(example_var) >= gap:
        return math.inf
    df0 = float(line["df"]) if math.isfinite(float(line["df"])) else 1e9
    seeds = np.arange(2, MAX_SEEDS + 1)
    spread = seed_var * n0 / seeds + example_var
    df = df0 * (seeds - 1) / max(n0 - 1, 1)
    clear = stats.t.ppf(1 - level / 2, df) * np.sqrt(spread) < gap
    return float(seeds[np.argmax(clear)]) if clear.any() else math.inf


def step_down(lines: pd.DataFrame, spreads: np.ndarray, dfs: np.ndarray, alpha: float) -> list[dict[str, object]]:
    """Holm's step-down over `lines` at one RNG seed's spreads: per line its level, interval and verdict."""
    p = [p_value(d, m, v, f) for d, m, v, f in zip(lines["difference"], lines["margin"], spreads, dfs, strict=True)]
    order = np.argsort(p, kind="stable")
    m, stopped = len(lines), None
    judged: dict[int, dict[str, object]] = {}
    for k, i in enumerate(order):
        level = alpha / (m - (k if stopped is None else stopped))
        low, high = interval(float(lines["difference"].iloc[i]), float(spreads[i]), float(dfs[i]), level)
        said = verdict(low, high, float(lines["margin"].iloc[i])) if stopped is None else INCONCLUSIVE
        if said == INCONCLUSIVE and stopped is None:
            stopped = k
        judged[int(i)] = {"p_value": p[i], "level": 1 - level, "ci_low": low, "ci_high": high, "verdict": said}
    return [judged[i] for i in range(m)]


def holm(lines: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """Judge a family of untested lines (`compare`'s) with Holm's step-down procedure at `alpha`.

    The family is judged once per bootstrap RNG seed; the first seed's judgement is printed, and each line's
    stability is the share of seeds that give its verdict.

    Returns:
        `lines` with seed_share (the seeds' part of the variance), df, p_value, level (the interval's coverage,
        e.g. 0.997), ci_low, ci_high, verdict, stability and seeds_to_settle (inconclusive lines only;
        inf = no number of seeds).
    """
    if lines.empty:
        return lines
    lines = lines.reset_index(drop=True)
    example_vars, dfs = np.stack(lines["example_var"].to_list()), np.stack(lines["df"].to_list())  # (lines, seeds)
    spreads = lines["seed_var"].to_numpy()[:, None] + example_vars
    by_seed = [step_down(lines, spreads[:, s], dfs[:, s], alpha) for s in range(spreads.shape[1])]
    judged = pd.DataFrame(by_seed[0])
    judged["stability"] = [np.mean([seed[i]["verdict"] == by_seed[0][i]["verdict"] for seed in by_seed])
                           for i in range(len(lines))]
    first = lines.assign(example_var=example_vars[:, 0], df=dfs[:, 0])
    first["seed_share"] = first["seed_var"] / (first["seed_var"] + first["example_var"]).where(lambda v: v > 0, 1.0)
    judged["seeds_to_settle"] = [seeds_to_settle(first.iloc[i].to_dict(), 1 - judged.loc[i, "level"])
                                 if judged.loc[i, "verdict"] == INCONCLUSIVE else math.nan for i in range(len(lines))]
    return pd.concat([first, judged], axis=1).drop(columns=["seed_var", "example_var"])


def claim_lines(records: pd.DataFrame, claims: Sequence[Claim], key: Callable[[pd.DataFrame], pd.Series],
                resamples: int = RESAMPLES, rng_seeds: int = RNG_SEEDS, crossfit: bool = False,
                other_fold: pd.DataFrame | None = None) -> pd.DataFrame:
    """The untested lines of `claims` on `records`: one per claim (over all tasks), then one per claim and task.

    A claim whose cells are missing is left out. `holm` judges them (several claim sets may be one family).
    `crossfit` and `other_fold` as in `bootstrap_cells`.
    """
    done = records[(records["status"] == COMPLETED) & records["predictions"].notna()]
    if done.empty:
        return pd.DataFrame()
    keyed = done.assign(**{CELL_KEY: key(done)})
    if other_fold is not None:
        other_fold = other_fold.assign(**{CELL_KEY: key(other_fold)})
    cells = bootstrap_cells(keyed, resamples, rng_seeds, crossfit, other_fold)
    counts = parameter_counts(keyed)
    tasks = order_tasks(cells["task"])
    lines = []
    for claim in claims:
        scopes = [tasks] + ([[t] for t in tasks] if claim.per_task and len(tasks) > 1 else [])
        found = [line | {"scale": scale_note(keyed, claim, scope)} for scope in scopes
                 if (line := compare(cells, claim, scope)) is not None]
        lines += [line | {f"{side}_params_{kind}": counts[cell][i] for side, cell in (("A", claim.a), ("B", claim.b))
                          for i, kind in enumerate(("own", "trainable"))} for line in found]
    return pd.DataFrame(lines)


def scale_note(records: pd.DataFrame, claim: Claim, tasks: Sequence[str]) -> str:
    """How long A trained here on `tasks`, beside the setting the paper's claim comes from ("" without one)."""
    if not claim.scale:
        return ""
    runs = records[(records[CELL_KEY] == claim.a) & records["task"].isin(tasks)]
    epochs = runs.groupby("task")["train.epochs"].agg(lambda e: "/".join(f"{v:g}" for v in sorted(set(e))))
    parts = [f"{epochs[t]} on {task_name(t)}" for t in order_tasks(epochs.index)]
    model = "/".join(sorted(set(runs["model"])))
    return f"here: {model}, {parts[0].replace(' on ', ' epochs on ', 1)}{''.join(', ' + p for p in parts[1:])}; " \
           f"{claim.scale}"


def parameter_counts(records: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """Per cell key, (the method's own parameters, all that trains with the head): the most common over its runs.

    Claims state both: the LoRA paper and its successors' papers count the method's own (head excluded), while
    the head trains under every method and can outweigh a small method many times over. A method that cuts its
    budget while training (AdaLoRA) is counted as it ends, as its paper counts it (`params_method_final`).
    """
    own = records["params_method_final"].fillna(records["params_method"])
    return {key: (int(own[group.index].mode().iloc[0]), int(group["params_trainable"].mode().iloc[0]))
            for key, group in records.groupby(CELL_KEY)}


def claims_table(records: pd.DataFrame, claims: Sequence[Claim], key: Callable[[pd.DataFrame], pd.Series],
                 resamples: int = RESAMPLES, rng_seeds: int = RNG_SEEDS, crossfit: bool = False) -> pd.DataFrame:
    """The tidy claims table of one family: `claim_lines`, judged by `holm`.

    Returns:
        Columns claim, statement, on, A, B, A_value, B_value, difference (points), margin, source, n_seeds,
        df, example_clipped, seed_share, p_value, level, ci_low, ci_high, verdict, stability, seeds_to_settle,
        and {A,B}_params_{own,trainable}.
    """
    return holm(claim_lines(records, claims, key, resamples, rng_seeds, crossfit))
