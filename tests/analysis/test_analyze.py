"""`lora-repro analyze` on real (tiny) LoRA runs: the files, and ΔW and W equal to the reloaded run's."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from lora_repro.analysis.subspace import amplification
from lora_repro.records.record import FACTORS_FILE, read_record
from lora_repro.training.evaluate import load_run
from lora_repro.training.run import run
from tests.conftest import lora_repro_here, run_dir_for, write_tiny_glue
from tests.training.test_run import tiny_run_cfg

RUNS = [("2", "0"), ("4", "0"), ("4", "1")]  # (rank, seed): a rank pair at seed 0, a seed pair at rank 4


@pytest.fixture(scope="module")
def lora_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("analyze")
    glue = write_tiny_glue(root / "glue_data")
    cfgs = [tiny_run_cfg(root, glue, overrides=["method=lora", f"method.r={r}", f"seed={seed}",
                                                "train.learning_rate=1e-2"]) for r, seed in RUNS]
    for cfg in cfgs:
        run(cfg)
    return root / "experiments", cfgs


def analyze(monkeypatch, *args: str) -> int:
    return lora_repro_here(monkeypatch, "analyze", *args)


def test_lora_runs_keep_their_factors_in_fp16(lora_runs):
    _, cfgs = lora_runs
    folder = run_dir_for(cfgs[1])
    assert read_record(folder).artifacts.lora_factors == FACTORS_FILE
    factors = load_file(str(folder / FACTORS_FILE))
    assert factors and all(t.dtype == torch.float16 for t in factors.values())
    assert all(".lora_A." in k or ".lora_B." in k for k in factors)
    assert len(factors) == 2 * 2 * 2  # 2 layers x {q, v} x {A, B}


def test_analyze_writes_the_tables_and_figures(monkeypatch, capsys, lora_runs, tmp_path):
    runs_dir, _ = lora_runs
    out = tmp_path / "analysis"
    assert analyze(monkeypatch, "--runs", str(runs_dir), "--ranks", "2,4", "--seed-rank", "4", "--out", str(out)) == 0
    names = {p.name for p in out.iterdir()}
    assert {"analysis.md", "analysis.csv", "analysis.tex", "amplification.md", "amplification.csv",
            "subspace_ranks.png", "subspace_seeds.png"} <= names
    subspace = pd.read_csv(out / "analysis.csv", comment="#")
    assert set(subspace["kind"]) == {"r=2 vs r=4", "two seeds at r=4"}
    assert len(subspace) == 2 * 2 * 2  # two pairs x 2 layers x {q, v}
    assert subspace["phi_1_1"].between(0, 1).all() and subspace["phi_8_8"].isna().all()
    printed = capsys.readouterr().out
    assert "Figure 3 analog" in printed and "GPT-3 175B (paper)" in printed


def test_amplification_uses_the_runs_own_update_and_frozen_weight(monkeypatch, lora_runs, tmp_path):
    runs_dir, cfgs = lora_runs
    assert analyze(monkeypatch, "--runs", str(runs_dir), "--ranks", "2,4", "--seed-rank", "4",
                   "--out", str(tmp_path)) == 0
    table = pd.read_csv(tmp_path / "amplification.csv", comment="#")
    row = table[(table["r"] == 4) & (table["seed"] == 0) & (table["layer"] == 1) & (table["weight"] == "v")].iloc[0]
    # The reference: the run reloaded the way `lora-repro eval` does, its LoRA layer read directly.
    _, _, _, model = load_run(run_dir_for(cfgs[1]))
    layer = model.get_base_model().bert.encoder.layer[1].attention.self.value
    delta = (layer.scaling["default"] * layer.lora_B["default"].weight @ layer.lora_A["default"].weight).detach()
    expected = amplification(delta.double().numpy(), layer.base_layer.weight.detach().double().numpy(), r=4)
    assert row["weight_norm"] == pytest.approx(expected.weight_norm, rel=1e-6)
    assert row["delta_norm"] == pytest.approx(expected.delta_norm, rel=1e-2)  # factors are stored in fp16
    assert row["factor"] == pytest.approx(expected.factor, rel=2e-2)


def test_only_the_analysed_weights_runs_are_read(monkeypatch, capsys, lora_runs, tmp_path):
    # A run on other weights that kept no factors, as results/ commits only the analysed weights' factors.
    runs_dir, _ = lora_runs
    other = tiny_run_cfg(tmp_path, write_tiny_glue(tmp_path / "glue_data"),
                         overrides=["method=lora", "method.r=4", "method.targets=[q,k]"])
    run(other)
    for weights in run_dir_for(other).glob("*.safetensors"):
        weights.unlink()
    both = ["--runs", str(runs_dir), "--runs", str(tmp_path / "experiments"), "--ranks", "2,4", "--seed-rank", "4"]
    assert analyze(monkeypatch, *both, "--out", str(tmp_path / "qv")) == 0
    assert "kept no factors" not in (tmp_path / "qv" / "analysis.md").read_text(encoding="utf-8")
    capsys.readouterr()
    assert analyze(monkeypatch, *both, "--targets", "k,q", "--out", str(tmp_path / "qk")) == 2
    err = capsys.readouterr().err
    assert "on {q,k}" in err and "1 run(s) without factors (rerun them with train.force=true)" in err
    assert err.count("\n") == 1 and not (tmp_path / "qk").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--ranks", "8"], "--ranks takes two ranks"),
    (["--ranks", "8,x"], "must be ranks >= 1"),
    (["--ranks", "64,8"], "the smaller first"),
    (["--ranks", "2,64"], "need LoRA runs on {q,v} with r=2 and r=64"),
    (["--targets", "q,k"], "found (r, seed) none"),
])
def test_bad_arguments_are_one_line_and_status_2(monkeypatch, capsys, lora_runs, tmp_path, args, message):
    runs_dir, _ = lora_runs
    assert analyze(monkeypatch, "--runs", str(runs_dir), "--out", str(tmp_path / "out"), *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_an_empty_folder_is_status_2(monkeypatch, capsys, tmp_path):
    assert analyze(monkeypatch, "--runs", str(tmp_path), "--out", str(tmp_path / "out")) == 2
    assert "need LoRA runs" in capsys.readouterr().err
