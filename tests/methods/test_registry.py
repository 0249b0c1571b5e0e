"""The registry is the one place a method is declared: names stay in `methods/`, and every method reaches every report.

A method is declared once, in its module (`methods.registry.register`); every list of methods elsewhere derives
from the registry. These tests hold the code to that: no module outside `lora_repro/methods/` spells a method's
name, and records of every registered method, LoHa included, show up in each report that compares methods.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from lora_repro.bench.runner import DEFAULT_METHODS
from lora_repro.config import compose_config
from lora_repro.methods import METHODS, method_names
from lora_repro.methods.registry import label_colours, label_order, method_label
from lora_repro.records.store import load_records
from lora_repro.report.reports import build_report
from tests.conftest import CONF_DIR
from tests.records.test_store import write_run

PACKAGE = Path(__file__).resolve().parents[2] / "lora_repro"
# Words that are also a method's name but mean something else where they appear, with the reason.
OTHER_MEANINGS = {("paper/names.py", "houlsby"): "a run's setup: the paper's Houlsby-like dagger rows"}
# The reports that compare methods; Tables 5 and 6 and the analysis are LoRA's own rank and weight sweeps.
METHOD_REPORTS = ("table2", "mini", "successors", "lr_search", "successors_lr", "precision")


def method_words() -> set[str]:
    """Every name a method goes by in configs: registered names, adapter variants, `conf/method` presets."""
    variants = {row.variant for method in METHODS.values() for row in method.rows if row.variant}
    return set(METHODS) | variants | {p.stem for p in (CONF_DIR / "method").glob("*.yaml")}


def test_method_names_are_spelled_only_in_methods_conf_and_tests():
    words, found = method_words(), []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        if where.startswith("methods/"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in words and (where, node.value) not in OTHER_MEANINGS:
                found.append(f"{where}:{node.lineno} {node.value!r}")
    assert not found, "method names outside lora_repro/methods/ (derive them from the registry): " + ", ".join(found)


def test_every_method_has_a_config_a_label_a_colour_and_a_place():
    presets = {p.stem for p in (CONF_DIR / "method").glob("*.yaml")}
    for name in method_names():
        assert name in presets, f"{name} has no conf/method/{name}.yaml"
        label = method_label(OmegaConf.load(CONF_DIR / "method" / f"{name}.yaml").method)
        assert label in label_order() and label in label_colours(), name
    for preset in presets:  # each method file brings its default rate: the one train.learning_rate of its runs
        rate = compose_config([f"method={preset}", "model=roberta_base", "task=rte"]).train.learning_rate  # lora_paper
        assert isinstance(rate, float) and math.isfinite(rate) and rate > 0, preset
    assert len(set(label_order())) == len(label_order())  # one row label per row
    assert set(DEFAULT_METHODS) == {p for m in METHODS.values() for p in m.bench}  # the bench times what is declared


def write_every_method(root: Path, tasks: tuple[str, ...], precision: str) -> None:
    """Synthetic records (the real record writer) of every registered method's default config, 3 seeds a task,
    with their predictions."""
    labels = pd.Series([1, 0] * 50)
    for name in method_names():
        for task in tasks:
            for seed in range(3):
                share = 0.6 + seed / 20
                wrong = labels.index >= int(share * len(labels))
                predictions = pd.DataFrame({"label": labels, "prediction": labels.where(~wrong, 1 - labels)})
                write_run(root, task, "minilm", name, seed, share, predictions=predictions,
                          overrides=(f"train.precision={precision}",))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Every method in bf16 on SST-2 and MRPC (as the mini trains), and in fp32 on SST-2 (the precision check)."""
    root = tmp_path_factory.mktemp("runs")
    write_every_method(root / "bf16", ("sst2", "mrpc"), "bf16")
    write_every_method(root / "fp32", ("sst2",), "fp32")
    return root


@pytest.mark.parametrize("report", METHOD_REPORTS)
def test_every_method_appears_in_every_report_that_compares_methods(runs, report):
    records = load_records([runs / "bf16", *([runs / "fp32"] if report == "precision" else [])])
    built = build_report(report, records, seeds=3)
    shown = " ".join(str(cell) for section in built.sections if section.table is not None
                     for cell in section.table.astype(str).to_numpy().ravel())
    missing = [label for label in dict.fromkeys(records["label"]) if label not in shown]
    assert not missing, f"{report} leaves out {missing}"
