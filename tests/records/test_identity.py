"""Run identity: exactly what changes a run's result, in canonical form; older records migrated to it."""

from __future__ import annotations

import json
import shutil

from lora_repro.records.identity import RunId, run_config
from lora_repro.records.migrate import migrate_run
from lora_repro.records.record import RECORD_FILE
from lora_repro.records.schema import COMPLETED
from lora_repro.training.run import run
from tests.conftest import run_dir_for
from tests.training.test_run import tiny_run_cfg


def config_hash(cfg) -> str:
    return RunId.of(run_config(cfg)).hash


def identity(tmp_path, glue_dir, *overrides: str) -> str:
    return config_hash(tiny_run_cfg(tmp_path, glue_dir, overrides=list(overrides)))


def test_the_same_experiment_written_two_ways_is_one_run(tmp_path, glue_dir):
    base = identity(tmp_path, glue_dir, "method.alpha=16", "method.targets=[q,v]")
    assert identity(tmp_path, glue_dir, "method.alpha=16.0", "method.targets=[v,q]") == base
    # How the computation is laid out, and where files go, are not part of what it computes.
    assert identity(tmp_path, glue_dir, "train.num_threads=2", "train.eval_batch_size=7",
                    "train.per_device_batch_size=4", "logger=tensorboard") == base
    assert identity(tmp_path / "elsewhere", glue_dir) == base
    # What it computes is.
    assert identity(tmp_path, glue_dir, "method.alpha=32") != base
    assert identity(tmp_path, glue_dir, "method.targets=[q,k]") != base


def test_the_identity_holds_the_rate_that_trains_and_the_precision_it_computes_in(tmp_path, glue_dir):
    cfg = run_config(tiny_run_cfg(tmp_path, glue_dir, overrides=["train.learning_rate=3e-4"]))
    assert "learning_rate" not in cfg.method and cfg.train.learning_rate == 3e-4  # one rate, the one used
    assert cfg.train.precision in ("fp32", "bf16")  # never the word auto
    explicit = identity(tmp_path, glue_dir, f"train.precision={cfg.train.precision}")
    assert identity(tmp_path, glue_dir) == explicit  # auto is whatever it resolves to on this machine
    other = "fp32" if cfg.train.precision == "bf16" else "bf16"
    assert identity(tmp_path, glue_dir, f"train.precision={other}") != explicit
    assert identity(tmp_path, glue_dir, "data.selection=dev_half") != explicit


def test_other_data_is_another_run(tmp_path, glue_dir):
    before = identity(tmp_path, glue_dir)
    copy = shutil.copytree(glue_dir, tmp_path / "copy")
    assert identity(tmp_path, copy) == before  # the same files in another folder: the same run
    dev = copy / "RTE" / "dev.tsv"
    dev.write_text(dev.read_text().replace("entailment\n", "not_entailment\n", 1))
    assert identity(tmp_path, copy) != before


def test_migrate_gives_an_old_record_its_new_identity(tmp_path, glue_dir):
    cfg = tiny_run_cfg(tmp_path, glue_dir, overrides=["train.precision=fp32"])  # what auto was on a CPU
    run(cfg)
    current = run_dir_for(cfg)
    old = current.with_name(f"s{cfg.seed}-0123456789ab")  # as a version-1 identity named it
    current.rename(old)
    record = json.loads((old / RECORD_FILE).read_text())
    record["config_hash"] = "0123456789ab"
    # As version 2 wrote it: the word auto, the method's unused default rate, no selection split.
    record["run_info"]["config"]["train"]["precision"] = "auto"
    record["run_info"]["config"]["method"]["learning_rate"] = 1e-9
    del record["run_info"]["config"]["data"]["selection"]
    (old / RECORD_FILE).write_text(json.dumps(record))
    assert migrate_run(old) == current
    assert json.loads((current / RECORD_FILE).read_text())["config_hash"] == config_hash(cfg)
    assert json.loads((current / RECORD_FILE).read_text())["status"] == COMPLETED
    written = (current / RECORD_FILE).stat().st_mtime_ns
    run(cfg)
    assert (current / RECORD_FILE).stat().st_mtime_ns == written and not old.exists()  # skipped, not rerun
