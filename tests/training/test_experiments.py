"""Every experiment config composes and trains its first run, shrunk to a tiny model of the same
architecture and tiny data: a broken `table2_*`, `table5`, `table6` or mini config fails here, not on a cluster."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf, open_dict

from lora_repro.config import group_choices
from lora_repro.records.record import read_record
from lora_repro.training.plan import compose_jobs, expand_sweep
from lora_repro.training.run import run
from tests.conftest import run_dir_for, tiny_model_cfg

EXPERIMENTS = [name for name in group_choices("experiment") if not name.startswith("_")]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_the_first_run_of_every_experiment_trains(experiment, tmp_path, glue_dir, monkeypatch):
    monkeypatch.setenv("LORA_REPRO_ROOT", str(tmp_path))
    jobs = expand_sweep([f"experiment={experiment}", f"data.glue_dir={glue_dir}"])
    assert jobs, f"experiment={experiment} launches no run"
    _, cfg = compose_jobs(jobs[:1])[0]
    OmegaConf.resolve(cfg)  # the recipe's values are looked up by the real model's name, before it is swapped
    with open_dict(cfg):
        cfg.model = tiny_model_cfg(cfg.model.architecture)
        cfg.train.update(epochs=1, max_seq_length=32, batch_size=4, init_from=None, precision="auto")
        cfg.paths.runs_dir = str(tmp_path / "runs")
        cfg.data.selection_rows = 8  # SST-2's held-out selection rows, out of the tiny files' 48
        if "bottleneck" in cfg.method:  # the tiny model's hidden size is 32
            cfg.method.bottleneck = min(cfg.method.bottleneck, 8)
    value = run(cfg).value
    record = read_record(run_dir_for(cfg))
    assert record.status == "completed" and record.train_info.best.value == value
