"""`lora-repro report`: files written, what they state, and bad input as one line with exit status 2."""

from __future__ import annotations

import shutil
from pathlib import Path

import matplotlib.image
import pytest
from PIL import Image

from lora_repro.records.record import RECORD_FILE
from tests.conftest import lora_repro_here
from tests.report.test_tables import write_runs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return write_runs(tmp_path_factory.mktemp("runs"))


def report(monkeypatch, *args: str) -> int:
    """Run `lora-repro report ARGS` through the real dispatcher; returns the exit status."""
    return lora_repro_here(monkeypatch, "report", *args)


def test_table2_writes_every_output_and_prints_the_markdown(monkeypatch, capsys, runs, tmp_path):
    out = tmp_path / "out"
    assert report(monkeypatch, "table2", "--runs", str(runs), "--model", "roberta_base", "--out", str(out)) == 0
    command = f"lora-repro report table2 --runs {runs} --model roberta_base --out {out}"
    md = (out / "table2.md").read_text()
    assert f"Produced by: `{command}`" in md and "87.5±.4" in md
    assert (out / "table2.tex").read_text().startswith(f"% Produced by: {command}")
    csv = (out / "table2.csv").read_text()
    assert csv.startswith(f"# Produced by: {command}\n") and "median,std,n_seeds" in csv.replace('"', "")
    png = out / "table2_avg_vs_params.png"
    assert png.read_bytes().startswith(PNG_MAGIC) and matplotlib.image.imread(png).ndim == 3
    assert Image.open(png).text["Description"] == f"Produced by: {command}"
    assert capsys.readouterr().out.strip() == md.strip()
    assert not list(out.glob(".*.tmp"))  # atomic writes leave nothing behind


def test_table6_and_mini_write_their_figures(monkeypatch, runs, tmp_path):
    assert report(monkeypatch, "table6", "--runs", str(runs), "--out", str(tmp_path)) == 0
    assert report(monkeypatch, "mini", "--runs", str(runs / "main"), "--rank-runs", str(runs / "rank"),
                  "--out", str(tmp_path)) == 0
    for name in ("table6_rank", "mini_rank", "mini_tasks"):
        assert (tmp_path / f"{name}.png").read_bytes().startswith(PNG_MAGIC)
    assert {"table6.md", "table6.csv", "mini.md", "mini.tex", "mini.csv", "claims.md", "claims.csv"} <= {
        p.name for p in tmp_path.iterdir()}


def test_params_only_lists_every_paper_row(monkeypatch, capsys, tmp_path):
    assert report(monkeypatch, "table2", "--params-only", "--out", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert out.count("| roberta_large |") == 7 and "in 2^20 units" in out and "does not publish" in out
    assert (tmp_path / "table2_params.md").exists()


@pytest.mark.parametrize("args", [["table7"], ["table2", "--seeds", "0"], ["table2", "--model", "gpt5"],
                                  ["table2", "--task", "squad"], ["table5", "--params-only"],
                                  ["table2", "--runs", "/no/such/folder"], ["glance", "--task", "rte"]])
def test_bad_arguments_are_one_line_and_status_2(monkeypatch, capsys, args, tmp_path):
    assert report(monkeypatch, *args, "--out", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


@pytest.mark.parametrize("table", ["table2", "table6", "mini"])
def test_an_empty_runs_folder_is_status_2_and_writes_nothing(monkeypatch, capsys, tmp_path, table):
    (tmp_path / "runs").mkdir()
    assert report(monkeypatch, table, "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")) == 2
    assert f"no run records under {tmp_path / 'runs'}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_out_naming_an_existing_file_is_status_2(monkeypatch, capsys, runs, tmp_path):
    (tmp_path / "out").write_text("notes")
    assert report(monkeypatch, "table2", "--runs", str(runs), "--out", str(tmp_path / "out")) == 2
    assert "--out" in capsys.readouterr().err and (tmp_path / "out").read_text() == "notes"


def test_a_broken_record_names_the_file_and_exits_2(monkeypatch, capsys, runs, tmp_path):
    copy = shutil.copytree(runs, tmp_path / "runs")
    broken = next(copy.rglob(RECORD_FILE))
    broken.write_text('{"schema": 1, "status": "comp')
    assert report(monkeypatch, "table2", "--runs", str(copy), "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: broken run record") and str(broken) in err and "rerun" in err
    assert not (tmp_path / "out").exists()  # nothing half written


def test_a_table_never_mixes_precisions(monkeypatch, capsys, tmp_path):
    # fp32 runs trained beside the committed bf16 mini (a CPU without native bf16) are other runs of the same cells.
    from tests.records.test_store import write_run

    runs = tmp_path / "runs"
    for seed in range(2):
        write_run(runs, "mrpc", "minilm", "lora", seed, 0.8, overrides=("train.precision=bf16",))
        write_run(runs, "mrpc", "minilm", "lora", seed + 2, 0.7, overrides=("train.precision=fp32",))
    out = tmp_path / "out"
    assert report(monkeypatch, "table2", "--runs", str(runs), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "more than one precision (2 bf16, 2 fp32 runs)" in err
    assert not out.exists()


def test_glance_without_markers_or_claims_is_status_2_and_writes_nothing(monkeypatch, capsys, tmp_path):
    (tmp_path / "README.md").write_text("# a README without the glance markers\n")
    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # the repository: the committed claims are there
    assert report(monkeypatch, "glance", "--out", str(tmp_path)) == 2
    assert "<!-- glance -->" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)  # elsewhere: no claims to read
    assert report(monkeypatch, "glance") == 2
    assert "run `lora-repro report mini` first" in capsys.readouterr().err
    assert (tmp_path / "README.md").read_text() == "# a README without the glance markers\n"
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]
