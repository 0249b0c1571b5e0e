"""The committed `results/analysis` is what `make analyze` makes of the committed rank runs' LoRA factors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from lora_repro.analysis.cli import main

ROOT = Path(__file__).resolve().parents[2]
RUNS, OUT = Path("results/mini/ranks/runs"), Path("results/analysis")


def test_the_committed_analysis_is_rebuilt_from_the_committed_factors(tmp_path, monkeypatch, capsys):
    if not list((ROOT / RUNS).rglob("lora_factors.safetensors")):
        assert not (ROOT / OUT / "analysis.md").exists(), f"{OUT}/analysis.md has no committed factors behind it"
        pytest.skip("the mini's rank runs are not committed yet")
    # A fresh copy of what a clone has: records, dev predictions and factors, no trained weights.
    shutil.copytree(ROOT / RUNS, tmp_path / RUNS, ignore=shutil.ignore_patterns("trained_weights*", "logs"))
    monkeypatch.chdir(tmp_path)
    main([])
    written = sorted(path.name for path in (tmp_path / OUT).iterdir())
    assert set(written) <= {path.name for path in (ROOT / OUT).iterdir()}, "a file make analyze writes is not committed"
    for name in written:
        committed, rebuilt = ROOT / OUT / name, tmp_path / OUT / name
        if name.endswith((".md", ".tex")):  # rounded numbers: the same to the byte
            assert committed.read_text(encoding="utf-8") == rebuilt.read_text(encoding="utf-8"), (
                f"{committed} differs from what `make analyze` makes of the committed runs; rerun it and commit")
        elif name.endswith(".csv"):  # full precision: the same up to the last bits another BLAS may change
            pd.testing.assert_frame_equal(pd.read_csv(committed, comment="#"), pd.read_csv(rebuilt, comment="#"),
                                          rtol=1e-9)
