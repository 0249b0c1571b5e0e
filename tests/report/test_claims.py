"""Claims and the trivial baseline on synthetic runs whose answers are known in closed form."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lora_repro.metrics import compute_metrics
from lora_repro.records.store import load_records
from lora_repro.report.claims import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    RANK_CLAIMS,
    TABLE2_CLAIMS,
    claims_table,
    lora_setting_key,
    method_key,
    trivial_baseline,
    verdict,
)
from lora_repro.report.reports import build_report
from tests.records.test_store import write_run

N = 200
LABELS = np.array([1] * 140 + [0] * 60)  # majority class 1: 70% accuracy for a constant prediction


def wrong_on(k: int) -> pd.DataFrame:
    """Predictions on the fixed dev labels, wrong on every k-th example (k=0: all right)."""
    predictions = LABELS.copy()
    if k:
        predictions[::k] = 1 - predictions[::k]
    return pd.DataFrame({"label": LABELS, "prediction": predictions})


def accuracy(frame: pd.DataFrame) -> float:
    return compute_metrics(["accuracy"], frame["prediction"].to_numpy(), LABELS)["accuracy"]


@pytest.fixture(scope="module")
def mini_runs(tmp_path_factory):
    """MRPC runs, 3 seeds each: LoRA and BitFit perfect, FT wrong on every 5th (80%), AdptP perfect too."""
    root = tmp_path_factory.mktemp("mini")
    for seed in range(3):
        for method, k in (("lora", 0), ("bitfit", 0), ("full_ft", 5), ("pfeiffer_m16", 0)):
            write_run(root, "mrpc", "minilm", method, seed, accuracy(wrong_on(k)), predictions=wrong_on(k))
    return root


def test_trivial_baseline_is_the_majority_share_and_zero_for_correlations(tmp_path):
    write_run(tmp_path, "mrpc", "minilm", "lora", 0, 1.0, predictions=wrong_on(0))
    cola = pd.DataFrame({"label": LABELS, "prediction": LABELS})
    write_run(tmp_path, "cola", "minilm", "lora", 0, 1.0, predictions=cola)
    scores = np.linspace(0, 5, N)
    write_run(tmp_path, "stsb", "minilm", "lora", 0, 1.0, predictions=pd.DataFrame({"label": scores,
                                                                                     "prediction": scores}))
    baseline = trivial_baseline(load_records([tmp_path])).set_index("task")["value"]
    assert baseline.to_dict() == {"mrpc": pytest.approx(0.7), "cola": 0.0, "stsb": 0.0}


def test_claims_verdicts_from_known_differences(mini_runs):
    table = claims_table(load_records([mini_runs]), TABLE2_CLAIMS, method_key, resamples=500).set_index("claim")
    # LoRA 100% vs FT 80%: +20 points, and every resample keeps LoRA ahead.
    assert table.loc["i", "difference"] == pytest.approx(20.0)
    assert table.loc["i", "ci_low"] > 10 and table.loc["i", "verdict"] == HOLDS
    # Identical predictions: the difference is exactly 0 in every resample, so "LoRA >= BitFit" holds.
    assert (table.loc["ii", "ci_low"], table.loc["ii", "ci_high"]) == (0.0, 0.0)
    assert table.loc["ii", "verdict"] == HOLDS
    assert table.loc["iii", "verdict"] == HOLDS and table.loc["i", "on"] == "MRPC"


def test_a_claim_that_fails_is_reported_as_failing(tmp_path):
    for seed in range(3):  # LoRA wrong on every 4th example (75%), BitFit perfect
        write_run(tmp_path, "mrpc", "minilm", "lora", seed, accuracy(wrong_on(4)), predictions=wrong_on(4))
        write_run(tmp_path, "mrpc", "minilm", "bitfit", seed, 1.0, predictions=wrong_on(0))
    table = claims_table(load_records([tmp_path]), TABLE2_CLAIMS, method_key, resamples=500).set_index("claim")
    assert table.loc["ii", "difference"] == pytest.approx(-25.0)
    assert table.loc["ii", "ci_high"] < 0 and table.loc["ii", "verdict"] == FAILS
    assert "i" not in table.index  # no FT runs: the claim is not tested, not guessed


@pytest.mark.parametrize(("low", "high", "margin", "expected"), [
    (0.5, 2.0, 0.0, HOLDS), (-0.5, 2.0, 0.0, INCONCLUSIVE), (-3.0, -0.1, 0.0, FAILS),
    (-0.9, 0.5, -1.0, HOLDS), (-1.5, 0.5, -1.0, INCONCLUSIVE), (-4.0, -1.2, -1.0, FAILS)])
def test_verdict_reads_the_interval_against_the_margin(low, high, margin, expected):
    assert verdict(low, high, margin) == expected


def test_rank_claims_address_lora_settings(tmp_path):
    for seed in range(3):
        for targets, r, k in (("[q,v]", 4, 0), ("[q]", 8, 10), ("[q,v]", 1, 0), ("[q,v]", 64, 0)):
            write_run(tmp_path, "sst2", "minilm", "lora", seed, accuracy(wrong_on(k)), predictions=wrong_on(k),
                      overrides=(f"method.targets={targets}", f"method.r={r}"))
    table = claims_table(load_records([tmp_path]), RANK_CLAIMS, lora_setting_key, resamples=300).set_index("claim")
    assert table.loc["iv", "difference"] == pytest.approx(10.0) and table.loc["iv", "verdict"] == HOLDS
    assert table.loc["v", "difference"] == 0.0 and table.loc["v", "verdict"] == HOLDS
    assert set(table["on"]) == {"SST-2"}


def test_mini_report_has_the_baseline_row_and_writes_claims(mini_runs):
    report = build_report("mini", load_records([mini_runs]))
    ours = report.sections[0].table.set_index("Method")
    assert ours.loc["Trivial baseline", "MRPC"] == "70.0"
    assert any("Smallest lead of a method over it: 10.0 points (FT on MRPC)" in n for n in report.sections[0].notes)
    claims = report.companions[0]
    assert claims.name == "claims" and set(claims.tidy["claim"]) == {"i", "ii", "iii"}
    assert "Not tested yet (their runs are missing): claim(s) iv, v." in claims.sections[0].notes
