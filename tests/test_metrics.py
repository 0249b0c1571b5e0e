"""Each metric against a small example worked out by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from lora_repro.errors import UserError
from lora_repro.metrics import METRICS, compute_metrics, predictions_from_logits

# Shared binary example: TP = 2 (rows 0, 3), TN = 1 (row 2), FP = 1 (row 1), FN = 1 (row 4).
PRED = np.array([1, 1, 0, 1, 0])
GOLD = np.array([1, 0, 0, 1, 1])


def test_accuracy():
    # 3 of 5 right (rows 0, 2, 3).
    assert compute_metrics(["accuracy"], PRED, GOLD) == {"accuracy": pytest.approx(0.6)}


def test_f1_of_positive_class():
    # precision = TP / (TP + FP) = 2/3, recall = TP / (TP + FN) = 2/3, F1 = 2/3.
    assert METRICS["f1"](PRED, GOLD) == pytest.approx(2 / 3)
    # The positive class is 1, not the majority: swapping classes gives TP = 1 (row 2), FP = 1 (row 4),
    # FN = 1 (row 1), so F1 = 1/2 (it would stay 2/3 if the class were picked by frequency).
    assert METRICS["f1"](1 - PRED, 1 - GOLD) == pytest.approx(0.5)


def test_matthews_correlation():
    # (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (2 - 1) / sqrt(3*3*2*2) = 1/6.
    assert METRICS["matthews_correlation"](PRED, GOLD) == pytest.approx(1 / 6)


def test_pearson():
    # x = 1, 2, 3 (mean 2), y = 1, 2, 4 (mean 7/3): sum dx*dy = 4/3 + 0 + 5/3 = 3, sum dx^2 = 2,
    # sum dy^2 = (16 + 1 + 25)/9 = 14/3, so r = 3 / sqrt(2 * 14/3) = sqrt(27/28).
    r = METRICS["pearson"](np.array([1.0, 2, 3]), np.array([1.0, 2, 4]))
    assert r == pytest.approx(math.sqrt(27 / 28))


def test_spearman():
    # Ranks 1, 2, 3, 4 against 1, 3, 2, 4: d^2 sums to 2, rho = 1 - 6*2 / (4 * (16 - 1)) = 0.8.
    assert METRICS["spearman"](np.array([1.0, 2, 3, 4]), np.array([10.0, 30, 20, 40])) == pytest.approx(0.8)


@pytest.mark.parametrize("name", ["pearson", "spearman", "matthews_correlation"])
def test_constant_predictions_score_zero_without_warning(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy's ConstantInputWarning would fail the test
        assert METRICS[name](np.zeros(4), np.array([0.0, 1, 0, 1])) == 0.0
        assert METRICS[name](np.array([0.0, 1, 0, 1]), np.ones(4)) == 0.0


def test_compute_metrics_returns_python_floats_in_order():
    result = compute_metrics(["f1", "accuracy", "matthews_correlation"], PRED, GOLD)
    assert list(result) == ["f1", "accuracy", "matthews_correlation"]
    assert all(type(value) is float for value in result.values())


def test_unknown_metric_lists_the_valid_names():
    with pytest.raises(UserError, match="unknown metric 'acc'.*accuracy.*spearman"):
        compute_metrics(["accuracy", "acc"], PRED, GOLD)


def test_mismatched_shapes_are_a_bug():
    with pytest.raises(ValueError, match="shapes"):
        compute_metrics(["accuracy"], PRED, GOLD[:3])


def test_predictions_from_logits():
    logits = np.array([[0.1, 0.9], [2.0, 1.0], [-1.0, -3.0]])
    assert predictions_from_logits(logits, is_regression=False).tolist() == [1, 0, 0]
    assert predictions_from_logits(np.array([[0.5], [3.25]]), is_regression=True).tolist() == [0.5, 3.25]
    # A single example must stay a 1-element vector (squeeze() would make it a scalar).
    assert predictions_from_logits(np.array([[4.0]]), is_regression=True).shape == (1,)


@pytest.mark.parametrize("name", ["accuracy", "f1", "matthews_correlation", "pearson"])
def test_batched_metrics_equal_the_official_ones_on_every_resample(name):
    # 300 resamples of a 50-example dev set, for 4 prediction vectors, with degenerate ones (constant predictions,
    # a resample of one class only).
    from lora_repro.metrics import BATCHED_METRICS, resample_counts

    rng = np.random.default_rng(0)
    regression = name == "pearson"
    labels = rng.normal(size=50) * 2 + 3 if regression else rng.integers(0, 2, size=50)
    predictions = np.stack([labels + rng.normal(size=50) if regression else rng.integers(0, 2, size=50)
                            for _ in range(4)])
    predictions[0] = predictions[0, 0]  # constant predictions
    counts = resample_counts(rng, 50, 300)
    counts[1] = 0
    counts[1, 7] = 50  # one example drawn 50 times: constant labels
    assert (counts.sum(axis=1) == 50).all()
    rows = [np.repeat(np.arange(50), c.astype(int)) for c in counts]
    expected = [[METRICS[name](p[r], labels[r]) for p in predictions] for r in rows]
    assert BATCHED_METRICS[name](counts, predictions, labels) == pytest.approx(np.array(expected), abs=1e-9)
