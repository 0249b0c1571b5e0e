"""Claims and the trivial baseline on synthetic runs whose answers are known in closed form."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lora_repro.metrics import BATCHED_METRICS, compute_metrics
from lora_repro.records.store import load_records
from lora_repro.report.claims import (
    CELL_KEY,
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    RANK_CLAIMS,
    TABLE2_CLAIMS,
    Claim,
    RunPredictions,
    cell_spread,
    claims_table,
    compare,
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


def simulated_runs(rng: np.random.Generator, accuracy_a: float, accuracy_b: float, seeds: int = 5,
                   rows: int = 150, seed_sd: float = 0.01) -> tuple[list[RunPredictions], list[RunPredictions]]:
    """Two methods' runs on shared selection and report rows, with a known true accuracy difference.

    Every run has a seed offset and three epochs, the middle one best; an example's difficulty is shared
    by all runs (so the comparison is paired), and each run gets its own luck on each example.
    """
    labels = {split: rng.integers(0, 2, rows) for split in ("select", "report")}
    difficulty = {split: rng.normal(size=rows) for split in labels}

    def predictions(split: str, accuracy: float) -> np.ndarray:
        threshold = stats.norm.ppf(accuracy)
        correct = (difficulty[split] + rng.normal(size=rows)) / np.sqrt(2) < threshold  # P(correct) = accuracy
        return np.where(correct, labels[split], 1 - labels[split])

    def method(accuracy: float) -> list[RunPredictions]:
        runs = []
        for _ in range(seeds):
            levels = accuracy + rng.normal(0, seed_sd) + np.array([-0.04, 0.0, -0.01])
            runs.append(RunPredictions(*(np.stack([predictions(split, a) for a in levels]) for split in labels),
                                       labels["select"], labels["report"]))
        return runs

    return method(accuracy_a), method(accuracy_b)


def test_the_95_interval_covers_a_known_difference_in_90_to_99_percent_of_repetitions():
    rng = np.random.default_rng(0)
    claim = Claim("sim", "A ≥ B", "A", "B", 0.0, "simulation")
    accuracy = BATCHED_METRICS["accuracy"]
    covered, repetitions = 0, 200
    for _ in range(repetitions):
        runs_a, runs_b = simulated_runs(rng, 0.80, 0.77)
        select_rows = rng.integers(0, 150, size=(400, 150))
        report_rows = rng.integers(0, 150, size=(400, 150))
        cells = pd.DataFrame([{CELL_KEY: key, "task": "mrpc", "value": 0.0,
                               **cell_spread(runs, select_rows, report_rows, accuracy, rng)}
                              for key, runs in (("A", runs_a), ("B", runs_b))])
        low, high = np.percentile(compare(cells, claim, ["mrpc"])["draws"], [2.5, 97.5])
        covered += low <= 3.0 <= high  # the truth: 80% - 77% at the best epoch, in points
    assert 0.90 <= covered / repetitions <= 0.99


def test_the_epoch_is_chosen_on_the_selection_split_and_read_on_the_report_split():
    labels = np.array([0, 1] * 10)
    select = np.stack([1 - labels, labels, 1 - labels])  # the selection split likes epoch 2 (index 1) only
    report = np.stack([labels, 1 - labels, labels])  # the report split likes every epoch but that one
    run = RunPredictions(select, report, labels, labels)
    rows = np.arange(20)[None, :]
    value = selected_values([run], rows, rows, BATCHED_METRICS["accuracy"])
    assert value.tolist() == [[0.0]]  # epoch 2's report value: the report split's own preference is never read
    assert selected_values([RunPredictions(report, report, labels, labels)], rows, rows,
                           BATCHED_METRICS["accuracy"]).tolist() == [[1.0]]  # no selection split: dev chooses


def line_with(draws: np.ndarray, margin: float = 0.0) -> dict:
    return {"claim": "x", "difference": float(np.mean(draws)), "margin": margin, "n_seeds": 5, "draws": draws,
            "seed_var": float(np.var(draws)) / 2, "example_var": float(np.var(draws)) / 2}


def test_holm_judges_the_strongest_line_first_and_stops_at_the_first_that_straddles():
    rng = np.random.default_rng(1)
    strong, borderline, null = (rng.normal(mu, 1.0, 20_000) for mu in (5.0, 2.2, 0.1))
    table = holm(pd.DataFrame([line_with(borderline), line_with(strong), line_with(null)]))
    # Alone at 95%, the borderline line (p ≈ 0.03) would hold; second of three under Holm it needs 97.5%.
    assert np.percentile(borderline, 2.5) > 0
    assert list(table["verdict"]) == [INCONCLUSIVE, HOLDS, INCONCLUSIVE]
    assert list(table["level"]) == pytest.approx([1 - 0.05 / 2, 1 - 0.05 / 3, 1 - 0.05 / 2])
    assert table.loc[0, "ci_low"] < 0 < table.loc[0, "ci_high"]
    assert np.isfinite(table.loc[0, "seeds_to_settle"]) and table.loc[0, "seeds_to_settle"] > 5
    assert np.isnan(table.loc[1, "seeds_to_settle"])  # settled already


def test_seeds_to_settle_grows_as_the_seeds_spread_grows_and_is_infinite_when_examples_alone_are_too_noisy():
    base = {"difference": 1.0, "margin": 0.0, "n_seeds": 5}
    few = seeds_to_settle({**base, "seed_var": 0.1, "example_var": 0.01}, 0.05)
    many = seeds_to_settle({**base, "seed_var": 0.4, "example_var": 0.01}, 0.05)
    # z = 1.96: room = (1 / 1.96)^2 - 0.01 = 0.2503; seeds = ceil(var x 5 / room).
    assert (few, many) == (2.0, 8.0)
    assert seeds_to_settle({**base, "seed_var": 0.1, "example_var": 0.3}, 0.05) == float("inf")
