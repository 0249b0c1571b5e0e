"""The selection split alone makes the choices (epoch, learning rate) and shares no row with the report split."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd

from lora_repro.report.searches import lr_search_winners
from lora_repro.training.run import summarize
from tests.conftest import write_tiny_glue


def test_the_reported_epoch_never_reads_the_report_split():
    rng = np.random.default_rng(0)
    for _ in range(50):
        select, report = rng.random(5), rng.random(5)
        log = SimpleNamespace(epochs=[{"epoch": e + 1, "train_loss": 0.5,
                                       "metrics": {"select/accuracy": s, "dev/accuracy": r}}
                                      for e, (s, r) in enumerate(zip(select, report, strict=True))])
        summary = summarize(log, "dev/accuracy", "select/accuracy")
        assert summary["best"].epoch == int(np.argmax(select)) + 1
        assert summary["best"].value == report[np.argmax(select)]  # reported on the report split
        assert summary["report_best"].epoch == int(np.argmax(report)) + 1  # the paper's view, shown beside
        for epoch in log.epochs:  # any other report numbers: the same choice
            epoch["metrics"]["dev/accuracy"] = rng.random()
        assert summarize(log, "dev/accuracy", "select/accuracy")["best"].epoch == summary["best"].epoch


def test_the_learning_rate_search_never_reads_the_report_split():
    rng = np.random.default_rng(1)
    rows = [{"status": "completed", "method": method, "label": label, "train.learning_rate": rate, "task": task,
             "selection_value": rng.random(), "best": rng.random()}
            for method, label in (("lora", "LoRA"), ("bitfit", "BitFit")) for rate in (1e-3, 2e-3, 4e-3)
            for task in ("mrpc", "cola")]
    records = pd.DataFrame(rows)
    winners = lr_search_winners(records)
    scrambled = lr_search_winners(records.assign(best=rng.random(len(records))))
    pd.testing.assert_frame_equal(winners, scrambled)
    changed = lr_search_winners(records.assign(selection_value=rng.random(len(records))))
    assert not changed[["mrpc", "cola"]].equals(winners[["mrpc", "cola"]])


def test_lora_repro_train_with_a_selection_split_records_disjoint_splits_and_picks_on_select(tmp_path):
    glue_dir = write_tiny_glue(tmp_path / "glue", n_train=40, n_dev=40)
    command = [sys.executable, "-m", "lora_repro", "train", "model=tiny_bert", "task=mrpc", "data.selection=auto",
               "train.batch_size=8", "train.max_seq_length=32", "train.epochs=3", f"paths.root={tmp_path}",
               f"hydra.run.dir={tmp_path}/hydra"]
    done = subprocess.run(command, env={**os.environ, "GLUE_DIR": str(glue_dir)}, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (record_file,) = tmp_path.glob("experiments/runs/mrpc/tiny_bert/lora/*/record.json")
    record = json.loads(record_file.read_text())
    info = record["train_info"]
    assert record["run_info"]["config"]["data"]["selection"] == "dev_half"  # auto, resolved: MRPC is small
    assert info["selection"] == {"protocol": "dev_half", "rows": {"select": 20, "dev": 20}}
    assert info["selection_metric"] == "select/accuracy" and info["headline_metric"] == "dev/accuracy"
    chosen = max(info["epochs"], key=lambda e: e["metrics"]["select/accuracy"])["epoch"]
    assert info["best"]["epoch"] == chosen
    with np.load(record_file.parent / record["artifacts"]["epoch_logits"]) as logits:
        assert not set(logits["select/idx"]) & set(logits["dev/idx"])
        assert sorted([*logits["select/idx"], *logits["dev/idx"]]) == list(range(40))
        assert {f"{split}/epoch{e}" for split in ("select", "dev") for e in (1, 2, 3)} <= set(logits.files)
