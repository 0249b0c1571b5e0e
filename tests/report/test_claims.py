"""Claims and the trivial baseline on synthetic runs whose answers are known in closed form."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lora_repro.metrics import BATCHED_METRICS, compute_metrics
from lora_repro.records.store import load_records
from lora_repro.report.claims import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    RANK_CLAIMS,
    TABLE2_CLAIMS,
    RunPredictions,
    claims_table,
    crossfit_values,
    holm,
    lora_setting_key,
    method_key,
    seeds_to_settle,
    selected_values,
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


def test_the_epoch_is_chosen_on_the_selection_split_and_read_on_the_report_split():
    labels = np.array([0, 1] * 10)
    select = np.stack([1 - labels, labels, 1 - labels])  # the selection split likes epoch 2 (index 1) only
    report = np.stack([labels, 1 - labels, labels])  # the report split likes every epoch but that one
    run = RunPredictions(select, report, labels, labels)
    rows = np.ones((1, 20))  # every example once
    value = selected_values([run], rows, rows, BATCHED_METRICS["accuracy"])
    assert value.tolist() == [[0.0]]  # epoch 2's report value: the report split's own preference is never read
    assert selected_values([RunPredictions(report, report, labels, labels)], rows, rows,
                           BATCHED_METRICS["accuracy"]).tolist() == [[1.0]]  # no selection split: dev chooses


def line_with(difference: float, sd: float, margin: float = 0.0, rng_seeds: int = 1) -> dict:
    """A line whose variance is half the seeds' (5 per cell, df 8 as two such cells give) and half the examples'."""
    return {"claim": "x", "difference": difference, "margin": margin, "n_seeds": 5, "seed_var": sd ** 2 / 2,
            "example_var": np.full(rng_seeds, sd ** 2 / 2), "df": np.full(rng_seeds, 8.0)}


def test_holm_judges_the_strongest_line_first_and_stops_at_the_first_that_straddles():
    table = holm(pd.DataFrame([line_with(2.5, 1.0), line_with(8.0, 1.0), line_with(0.1, 1.0)]))
    # Alone at 95% the borderline line would hold (t(8) quantile 2.31 < 2.5); second of three under Holm it is
    # read at 97.5% (2.75), where it straddles 0.
    assert stats.t.ppf(0.975, 8) < 2.5 < stats.t.ppf(1 - 0.05 / 4, 8)
    assert list(table["verdict"]) == [INCONCLUSIVE, HOLDS, INCONCLUSIVE]
    assert list(table["level"]) == pytest.approx([1 - 0.05 / 2, 1 - 0.05 / 3, 1 - 0.05 / 2])
    assert table.loc[0, "ci_low"] == pytest.approx(2.5 - stats.t.ppf(1 - 0.05 / 4, 8))
    assert table.loc[0, "p_value"] == pytest.approx(2 * stats.t.sf(2.5, 8))
    assert np.isfinite(table.loc[0, "seeds_to_settle"]) and table.loc[0, "seeds_to_settle"] > 5
    assert np.isnan(table.loc[1, "seeds_to_settle"])  # settled already
    assert (table["stability"] == 1.0).all()  # one RNG seed: every verdict is its own


def test_a_verdict_that_other_rng_seeds_change_is_fragile():
    line = line_with(2.6, 1.0, rng_seeds=20)
    # 3 of 20 RNG seeds estimate more example noise. At 95% (t(8): 2.31), sd sqrt(0.5 + 0.3) = 0.89 puts the
    # low end at +0.54 (holds); sd sqrt(0.5 + 0.9) = 1.18 puts it below 0 (inconclusive).
    line["example_var"] = np.where(np.arange(20) >= 17, 0.9, 0.3)
    table = holm(pd.DataFrame([line]))
    assert table.loc[0, "verdict"] == HOLDS and table.loc[0, "stability"] == pytest.approx(17 / 20)
    # Printed from seed 0: when seed 0 is one of the 3, the printed verdict is the rare one, and says so.
    line["example_var"] = np.where(np.arange(20) < 3, 0.9, 0.3)
    table = holm(pd.DataFrame([line]))
    assert table.loc[0, "verdict"] == INCONCLUSIVE and table.loc[0, "stability"] == pytest.approx(3 / 20)


def test_seeds_to_settle_grows_as_the_seeds_spread_grows_and_is_infinite_when_examples_alone_are_too_noisy():
    base = {"difference": 1.0, "margin": 0.0, "n_seeds": 5, "df": 8.0}
    few = seeds_to_settle({**base, "seed_var": 0.1, "example_var": 0.01}, 0.05)
    many = seeds_to_settle({**base, "seed_var": 0.4, "example_var": 0.01}, 0.05)
    assert 2 <= few < many < 100
    # Each is the first seed count whose t interval clears the margin (df grows with the seeds, 8 at 5).
    for seeds, seed_var in ((few, 0.1), (many, 0.4)):
        def clears(n: float, seed_var: float = seed_var) -> bool:
            return stats.t.ppf(0.975, 8 * (n - 1) / 4) * np.sqrt(seed_var * 5 / n + 0.01) < 1.0
        assert clears(seeds) and (seeds == 2 or not clears(seeds - 1))
    assert seeds_to_settle({**base, "seed_var": 0.1, "example_var": 0.3}, 0.05) == float("inf")


def test_cross_fitting_reads_each_half_at_the_epoch_the_other_half_chose():
    labels = np.array([0, 1] * 10)
    # The selection half likes epoch 1 (index 0), the report half epoch 2 (index 1).
    select = np.stack([labels, 1 - labels, np.where(np.arange(20) < 10, labels, 1 - labels)])
    report = np.stack([np.where(np.arange(20) < 5, labels, 1 - labels), labels, 1 - labels])
    run = RunPredictions(select, report, labels, labels)
    rows = np.ones((1, 20))
    # Report half at epoch 1 (5 of 20 right), selection half at epoch 2 (0 of 20 right): 5 of 40 on the whole dev.
    assert crossfit_values([run], rows, rows, BATCHED_METRICS["accuracy"]).tolist() == [[5 / 40]]
    # Its value never reads a half at its own best epoch (which would be 20 of 20 on each).
    assert selected_values([run], rows, rows, BATCHED_METRICS["accuracy"]).tolist() == [[5 / 20]]
