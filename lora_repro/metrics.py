"""The official GLUE metrics, computed with scikit-learn and scipy (the hub's `evaluate` needs a network).

Every metric takes `(predictions, labels)` and returns a python float as a raw fraction or correlation
(0.875, not 87.5). Tasks name their metrics in `conf/task/*.yaml` (`metrics:`), using the keys of `METRICS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from lora_repro.errors import choose

__all__ = ["BATCHED_METRICS", "METRICS", "BatchedMetric", "compute_metrics", "predictions_from_logits",
           "resample_counts"]

Metric = Callable[[np.ndarray, np.ndarray], float]


def _correlation(fn: Callable) -> Metric:
    def metric(predictions: np.ndarray, labels: np.ndarray) -> float:
        # A constant input has no variance, so the correlation is 0/0 (scipy returns NaN and warns).
        # 0.0 is what it means for a model: its predictions carry no information about the labels,
        # and it keeps NaN out of records, tables and the sweeper's objective.
        if np.ptp(predictions) == 0 or np.ptp(labels) == 0:
            return 0.0
        return float(fn(predictions, labels)[0])
    return metric


def _matthews(predictions: np.ndarray, labels: np.ndarray) -> float:
    # scikit-learn already returns 0.0 when the denominator is 0 (e.g. constant predictions), for the
    # same reason as the correlations above; `float` turns its numpy scalar into a python float.
    return float(matthews_corrcoef(labels, predictions))


METRICS: dict[str, Metric] = {
    "accuracy": lambda predictions, labels: float(accuracy_score(labels, predictions)),
    # Binary F1 of the positive class 1 (MRPC "equivalent", QQP "duplicate"), as GLUE reports it;
    # 0.0 rather than a warning when there are no positive predictions or labels.
    "f1": lambda predictions, labels: float(f1_score(labels, predictions, pos_label=1, zero_division=0.0)),
    "matthews_correlation": _matthews,
    "pearson": _correlation(stats.pearsonr),
    "spearman": _correlation(stats.spearmanr),
}


def predictions_from_logits(logits: np.ndarray, is_regression: bool) -> np.ndarray:
    """Turn model outputs of shape (n, num_labels) into predictions of shape (n,).

    Args:
        logits: The model's outputs; (n, 1) or (n,) for regression.
        is_regression: True for a single regression output (STS-B).

    Returns:
        The predicted scores for regression, else the predicted class ids (argmax).
    """
    logits = np.asarray(logits)
    if is_regression:
        return logits.reshape(len(logits))  # not squeeze(): a batch of one must stay 1-D
    return logits.argmax(axis=-1)


def compute_metrics(names: Sequence[str], predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Compute the named metrics.

    Args:
        names: Keys of `METRICS`, e.g. a task's `metrics` list.
        predictions: Predicted class ids or scores, shape (n,).
        labels: True class ids or scores, shape (n,).

    Returns:
        `{name: value}` in the order of `names`.

    Raises:
        UserError: An unknown metric name (the message lists the valid ones).
        ValueError: Predictions and labels of different shapes, or none at all.
    """
    for name in names:
        choose("metric", name, METRICS)
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if predictions.shape != labels.shape or predictions.size == 0:
        raise ValueError(f"need one prediction per label, got shapes {predictions.shape} and {labels.shape}")
    return {name: METRICS[name](predictions, labels) for name in names}



# The same metrics over many resamples at once, for the bootstrap (`lora_repro.report.claims`). A resample is a
# row of `counts` (shape (B, n)): how many times it drew each of the n examples. Every metric here is a formula
# on count-weighted sums over examples (`BatchedMetric.sums`), so B resamples of K prediction vectors (shape
# (K, n)) are a few matrix products, never B copies of the data, and the sums of two parts of a dev set add up to
# the whole's (the cross-fitted view). The result has shape (B, K). tests/test_metrics.py holds each equal to its
# scikit-learn/scipy counterpart above on the resampled rows.


def resample_counts(rng: np.random.Generator, n: int, resamples: int) -> np.ndarray:
    """`resamples` bootstrap resamples of n examples, as counts: shape (resamples, n), each row summing to n."""
    drawn = rng.integers(0, n, size=(resamples, n)) + n * np.arange(resamples)[:, None]
    # float32: counts and their sums over 0/1 values are whole numbers far below 2^24, so they stay exact.
    return np.bincount(drawn.ravel(), minlength=resamples * n).reshape(resamples, n).astype(np.float32)


def _weighted(counts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Count-weighted sums, (B, n) x (K, n) -> (B, K): 0/1 values in the counts' float32, others in float64."""
    if values.dtype == bool:
        return (counts @ values.astype(counts.dtype).T).astype(np.float64)
    return counts.astype(np.float64) @ np.asarray(values, dtype=np.float64).T


def _examples(counts: np.ndarray, k: int) -> np.ndarray:
    return np.broadcast_to(counts.sum(axis=1, keepdims=True, dtype=np.float64), (len(counts), k))


@dataclass(frozen=True)
class BatchedMetric:
    """A metric as count-weighted sums over examples (shape (B, K, S)) and its formula on them (-> (B, K))."""

    sums: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    formula: Callable[[np.ndarray], np.ndarray]

    def __call__(self, counts: np.ndarray, predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """The metric of each of the K prediction vectors on each of the B resamples."""
        return self.formula(self.sums(counts, predictions, labels))


def _accuracy_sums(counts: np.ndarray, predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.stack([_weighted(counts, predictions == labels), _examples(counts, len(predictions))], axis=-1)


def _binary_sums(counts: np.ndarray, predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    p, y = predictions == 1, labels == 1
    tp, fp, fn = (_weighted(counts, mask) for mask in (p & y, p & ~y, ~p & y))
    return np.stack([tp, fp, fn, _examples(counts, len(predictions)) - tp - fp - fn], axis=-1)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def _f1(sums: np.ndarray) -> np.ndarray:
    tp, fp, fn = sums[..., 0], sums[..., 1], sums[..., 2]
    return _ratio(2 * tp, 2 * tp + fp + fn)


def _matthews(sums: np.ndarray) -> np.ndarray:
    tp, fp, fn, tn = (sums[..., i] for i in range(4))
    return _ratio(tp * tn - fp * fn, np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)))


def _pearson_sums(counts: np.ndarray, predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    x, y = np.asarray(predictions, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    counts = counts.astype(np.float64)
    k = len(x)
    column = (counts @ y)[:, None], (counts @ (y * y))[:, None]
    return np.stack([_examples(counts, k), _weighted(counts, x), np.broadcast_to(column[0], (len(counts), k)),
                     _weighted(counts, x * x), np.broadcast_to(column[1], (len(counts), k)),
                     _weighted(counts, x * y)], axis=-1)


def _pearson(sums: np.ndarray) -> np.ndarray:
    n, sx, sy, sxx, syy, sxy = (sums[..., i] for i in range(6))
    var_x, var_y = sxx - sx ** 2 / n, syy - sy ** 2 / n
    # Predictions or labels that do not vary (up to rounding of the raw sums): 0, as the official metric says.
    varies = (var_x > 1e-9 * sxx) & (var_y > 1e-9 * syy)
    denominator = np.sqrt(np.where(varies, var_x * var_y, 1.0))
    return np.where(varies, (sxy - sx * sy / n) / denominator, 0.0)


BATCHED_METRICS: dict[str, BatchedMetric] = {
    "accuracy": BatchedMetric(_accuracy_sums, lambda sums: sums[..., 0] / sums[..., 1]),
    "f1": BatchedMetric(_binary_sums, _f1),  # binary tasks (MRPC, QQP), positive class 1
    "matthews_correlation": BatchedMetric(_binary_sums, _matthews),  # binary (CoLA)
    "pearson": BatchedMetric(_pearson_sums, _pearson),
}
