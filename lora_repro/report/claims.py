"""The paper's claims, tested on our own runs: a difference, a 95% bootstrap interval and a verdict.

Each claim compares two groups of cells, A and B, as "A − B ≥ margin" in points (x100): e.g. "LoRA's
GLUE average is at most 1 point below full fine-tuning" is A = LoRA, B = FT, margin = −1. A cell is what
the tables print: the median over seeds of the best-epoch dev metric; a claim over several tasks compares
the mean of the task cells, as the paper's Avg. column does.

The interval resamples both sources of noise the table hides: the dev examples (one draw of example
indices per task and resample, shared by every method, so the comparison is paired) and the seeds (drawn
with replacement within each cell). Verdict: `holds` when the whole 95% interval is at or above the
margin, `does not hold` when it is entirely below, `inconclusive` otherwise. The resampling is seeded,
so a report rebuilt from the same records prints the same intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lora_repro.errors import UserError
from lora_repro.metrics import BATCHED_METRICS, compute_metrics
from lora_repro.records.record import COMPLETED
from lora_repro.records.store import load_predictions, targets_key
from lora_repro.report.layout import order_tasks, task_name

__all__ = ["CELL_KEY", "RANK_CLAIMS", "SUCCESSOR_CLAIMS", "TABLE2_CLAIMS", "Claim", "bootstrap_cells",
           "claims_table", "lora_setting_key", "method_key", "trivial_baseline"]

RESAMPLES = 2000
SEED = 0
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
    Claim("i", "LoRA's average is within 1 point of full fine-tuning (or above it)", "LoRA", "FT", -1.0,
          "Table 2: LoRA matches or exceeds FT on RoBERTa and DeBERTa"),
    Claim("ii", "LoRA ≥ BitFit", "LoRA", "BitFit", 0.0, "Table 2"),
    Claim("iii", "LoRA ≥ adapters with equal or fewer trainable parameters", "LoRA", "AdptP", 0.0,
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
    Claim("DoRA", "DoRA ≥ LoRA at the same rank", "DoRA", "LoRA", 0.0,
          "Liu et al. (2024): DoRA outperforms LoRA across models and tasks"),
    Claim("rsLoRA", "rsLoRA ≥ LoRA at the same rank", "rsLoRA", "LoRA", 0.0,
          "Kalajdzievski (2023): alpha/sqrt(r) learns better than alpha/r (its gain grows with r)"),
    Claim("PiSSA", "PiSSA ≥ LoRA at the same rank", "PiSSA", "LoRA", 0.0,
          "Meng et al. (2024): PiSSA converges faster and ends higher than LoRA"),
    Claim("VeRA", "VeRA is within 1 point of LoRA (or above it) with ~10x fewer parameters", "VeRA", "LoRA", -1.0,
          "Kopiczko et al. (2024): VeRA matches LoRA on GLUE with 10x fewer trainable parameters"),
    Claim("(IA)³", "(IA)³ is within 1 point of LoRA (or above it)", "(IA)³", "LoRA", -1.0,
          "Liu et al. (2022): (IA)³ matches or beats LoRA with fewer parameters"),
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


def task_predictions(runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Each run's dev predictions (read once), keyed by file."""
    return {file: load_predictions(file) for file in runs["predictions"]}


def dev_labels(predictions: dict[str, pd.DataFrame]) -> np.ndarray:
    """The dev labels of one task, checked to be the same (same rows, same order) in every run."""
    labels = None
    for file, frame in predictions.items():
        these = frame["label"].to_numpy()
        if labels is not None and not np.array_equal(labels, these):
            raise UserError(f"{file} holds other dev rows than the task's other runs; the runs do not share a "
                            "dev set and cannot be compared example by example")
        labels = these
    return labels


def trivial_baseline(records: pd.DataFrame) -> pd.DataFrame:
    """The best constant prediction on each task's dev set, scored with the task's own metrics.

    Majority class for classification (accuracy = its share; MCC 0), the mean score for regression
    (Pearson 0): what a model that learned nothing about the inputs gets. Computed from the dev labels the
    runs saved, so no data folder is needed.

    Returns:
        One row per task: task, metric (the headline metric's name) and value (0-1 scale).
    """
    done = records[(records["status"] == COMPLETED) & records["predictions"].notna()]
    rows = []
    for task, metric in headline(done).items():
        labels = dev_labels(task_predictions(done[done["task"] == task]))
        regression = labels.dtype.kind == "f" and not np.all(labels == labels.round())
        constant = np.full_like(labels, labels.mean() if regression else np.bincount(labels).argmax())
        rows.append({"task": task, "metric": metric, "value": compute_metrics([metric], constant, labels)[metric]})
    return pd.DataFrame(rows, columns=["task", "metric", "value"])


def bootstrap_cells(records: pd.DataFrame, resamples: int = RESAMPLES, seed: int = SEED) -> pd.DataFrame:
    """Every (cell key, task) cell's value and its bootstrap draws.

    Args:
        records: Completed store rows with a `predictions` file each, and a `cell_key` column.
        resamples: Number of bootstrap resamples.
        seed: Seed of the resampling.

    Returns:
        One row per cell: cell_key, task, value (median over seeds, 0-1 scale) and draws (an array of
        `resamples` values of the same statistic on resampled dev examples and seeds).
    """
    rng = np.random.default_rng(seed)
    metrics = headline(records)
    rows = []
    for task in order_tasks(records["task"]):
        runs = records[records["task"] == task]
        predictions = task_predictions(runs)
        labels = dev_labels(predictions)
        examples = rng.integers(0, len(labels), size=(resamples, len(labels)))
        metric: Callable = BATCHED_METRICS[metrics[task]]
        for key, cell in runs.groupby(CELL_KEY, sort=True):
            # One value per seed on every resample of the dev set, then the seeds themselves resampled.
            per_seed = np.stack([metric(predictions[f]["prediction"].to_numpy()[examples], labels[examples])
                                 for f in cell.sort_values("seed")["predictions"]], axis=1)
            picked = rng.integers(0, per_seed.shape[1], size=per_seed.shape)
            rows.append({CELL_KEY: key, "task": task, "value": float(np.median(cell["best"].astype(float))),
                         "draws": np.median(np.take_along_axis(per_seed, picked, axis=1), axis=1)})
    return pd.DataFrame(rows, columns=[CELL_KEY, "task", "value", "draws"])


def verdict(low: float, high: float, margin: float) -> str:
    """`holds` / `does not hold` / `inconclusive` for an interval against the claim's margin."""
    if low >= margin:
        return HOLDS
    return FAILS if high < margin else INCONCLUSIVE


def compare(cells: pd.DataFrame, claim: Claim, tasks: Sequence[str]) -> dict[str, object] | None:
    """One line of the claims table: A − B over `tasks` (None when a cell is missing)."""
    chosen = cells[cells["task"].isin(tasks)].set_index([CELL_KEY, "task"])
    needed = [(key, task) for key in (claim.a, claim.b) for task in tasks]
    if any(k not in chosen.index for k in needed):
        return None

    def mean(key: str, column: str) -> np.ndarray | float:
        return np.mean([chosen.loc[(key, t), column] for t in tasks], axis=0)

    a, b = 100 * mean(claim.a, "value"), 100 * mean(claim.b, "value")
    difference = 100 * (mean(claim.a, "draws") - mean(claim.b, "draws"))
    low, high = np.percentile(difference, [2.5, 97.5])
    scope = "Avg. of " + ", ".join(task_name(t) for t in tasks) if len(tasks) > 1 else task_name(tasks[0])
    return {"claim": claim.name, "statement": claim.text, "on": scope, "A": claim.a, "B": claim.b,
            "A_value": a, "B_value": b, "difference": a - b, "ci_low": float(low), "ci_high": float(high),
            "margin": claim.margin, "verdict": verdict(float(low), float(high), claim.margin),
            "source": claim.source}


def claims_table(records: pd.DataFrame, claims: Sequence[Claim], key: Callable[[pd.DataFrame], pd.Series],
                 resamples: int = RESAMPLES) -> pd.DataFrame:
    """The tidy claims table: one line per claim (over all tasks), then one per claim and task.

    Args:
        records: Store rows (completed rows with predictions are used).
        claims: The claims to test against these records.
        key: What names a cell's row in these claims (`method_key` or `lora_setting_key`).
        resamples: Bootstrap resamples.

    Returns:
        Columns claim, statement, on, A, B, A_value, B_value, difference (points), ci_low, ci_high,
        margin, verdict, source. A claim whose cells are missing is left out.
    """
    done = records[(records["status"] == COMPLETED) & records["predictions"].notna()]
    if done.empty:
        return pd.DataFrame()
    cells = bootstrap_cells(done.assign(**{CELL_KEY: key(done)}), resamples)
    tasks = order_tasks(cells["task"])
    lines = []
    for claim in claims:
        scopes = [tasks] + ([[t] for t in tasks] if claim.per_task and len(tasks) > 1 else [])
        lines += [line for scope in scopes if (line := compare(cells, claim, scope)) is not None]
    return pd.DataFrame(lines)
