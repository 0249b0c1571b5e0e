"""The committed mini results are what the committed records say: rebuilt here, they match byte for byte."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from lora_repro.report.cli import run
from lora_repro.report.glance import GLANCE, GLANCE_FROM, MARKER
from lora_repro.report.reports import REPORTS as DECLARED
from lora_repro.report.reports import runs_dir

ROOT = Path(__file__).resolve().parents[2]
MINI = ROOT / "results" / "mini"
# The declared reports whose runs and outputs are committed under results/, as `lora-repro report <name>` reads them:
# its own runs first, then the other record sets it declares (the mini's rank runs, search and cross-fit runs).
REPORTS = {name: (spec.out_dir().as_posix(), list(dict.fromkeys([d.as_posix() for d in spec.runs()] + [
    runs_dir(e).as_posix() for experiments in spec.other.values() for e in experiments])))
    for name, spec in DECLARED.items() if spec.runs()[0].parts[0] == "results"}


def test_the_make_targets_call_declared_reports_and_the_committed_ones_are_all_tested():
    called = set(re.findall(r"lora-repro report (\w+)", (ROOT / "Makefile").read_text()))
    assert called <= {*DECLARED, GLANCE}, f"the Makefile calls undeclared reports: {called - {*DECLARED, GLANCE}}"
    assert set(REPORTS) == {"mini", "lr_search", "precision", "successors", "successors_lr"}


@pytest.mark.parametrize("name", list(REPORTS))
def test_the_committed_report_is_rebuilt_exactly_from_the_committed_records(name, tmp_path, monkeypatch):
    out, run_folders = REPORTS[name]
    present = [folder for folder in run_folders if list((ROOT / folder).rglob("record.json"))]
    if run_folders[0] not in present:  # a sweep that has not committed a finished run yet has no report to check
        assert not (ROOT / out / f"{name}.md").exists(), f"{out}/{name}.md has no committed records behind it"
        pytest.skip(f"no committed records in {run_folders[0]} yet")
    for folder in present:  # a fresh copy: the same relative paths, nothing but what is committed
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("*.safetensors", "logs"))
    monkeypatch.chdir(tmp_path)
    written = run([name])
    for file in written:
        if file.suffix in (".md", ".tex", ".csv"):
            committed = ROOT / out / file.name
            assert committed.read_text(encoding="utf-8") == file.read_text(encoding="utf-8"), (
                f"{committed} differs from what `lora-repro report {name}` makes of the committed records; "
                f"rerun it and commit the result")
        else:
            assert (ROOT / out / file.name).is_file()


def test_the_readmes_answer_at_a_glance_is_what_report_glance_writes(tmp_path, monkeypatch):
    for name in GLANCE_FROM:  # only the claims, where the reports wrote them
        claims = DECLARED[name].out_dir() / "claims.csv"
        (tmp_path / claims).parent.mkdir(parents=True)
        shutil.copy(ROOT / claims, tmp_path / claims)
    committed = (ROOT / "README.md").read_text(encoding="utf-8")
    before, _, after = committed.split(MARKER)
    edited = MARKER.join([before, "\n| i | edited | +9.9 | [+9.0, +9.9] | holds |\n", after])
    (tmp_path / "README.md").write_text(edited, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert run([GLANCE]) == [Path("README.md")]
    assert (tmp_path / "README.md").read_text(encoding="utf-8") == committed, (
        "README.md's answer at a glance is not what `lora-repro report glance` makes of the committed claims; "
        "run it and commit the README")


def test_the_mini_trains_with_the_rates_its_search_chose():
    if not (MINI / "lr_search" / "lr_search.md").exists():
        pytest.skip("no run of the learning-rate search is committed yet (`make mini-lr`)")
    report = (MINI / "lr_search" / "lr_search.md").read_text()
    if "these runs have no selection split" in report:
        pytest.skip("the committed search predates the selection split; `make mini-lr` reruns it on the protocol")
    if "The search is not finished" in report:
        pytest.skip("the learning-rate search is not finished; its best rates are provisional")
    if "Still on an edge" in report:
        pytest.skip("the search is still extending its grid where a best rate sits on its edge (make mini-lr resumes)")
    assert "the mini uses the best rate of every method." in report


def test_every_table_of_the_mini_says_which_split_chose_its_epochs():
    # The mini's runs all have a selection split, so no legend may describe the old best-on-dev cells: the rank
    # tables once did, while their numbers were already the selection split's choice.
    legends = [line for line in (MINI / "mini.md").read_text().splitlines() if line.startswith("Cells:")]
    assert legends, "results/mini/mini.md has no cell legends"
    assert not [line for line in legends if "best-epoch dev metric" in line]
    assert any("the epoch its own selection split chose" in line for line in legends)
