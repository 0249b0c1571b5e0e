"""The result store: records written by the real writer, read back as one table.

`write_run` fabricates a run record for a task x model x method x seed with the real config
composition and `RunRecord` (schema 1), so every report test reads exactly what training writes.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import DictConfig, open_dict

from lora_repro.errors import UserError
from lora_repro.methods import apply_method, count_parameters
from lora_repro.methods.registry import method_label, method_row_key
from lora_repro.methods.targets import targets_key
from lora_repro.models import build_model
from lora_repro.records.identity import RunId
from lora_repro.records.record import RECORD_FILE, RunRecord, read_record
from lora_repro.records.schema import COMPLETED, FAILED, RUNNING, Artifacts, Failure, TrainInfo
from lora_repro.records.store import load_records
from tests.conftest import compose_config


@cache
def _config(task: str, model: str, method: str, overrides: tuple[str, ...]) -> DictConfig:
    # The hub as the data source: these records are written without data, whatever GLUE_DIR says.
    return compose_config([f"task={task}", f"model={model}", f"method={method}", "data.glue_dir=null", *overrides])


@cache
def _params(task: str, model: str, method: str, overrides: tuple[str, ...]) -> dict[str, int]:
    cfg = _config(task, model, method, overrides)
    num_labels = len(cfg.task.label_names) if cfg.task.label_names else 1
    counts = count_parameters(apply_method(build_model(cfg.model, num_labels, "meta"), cfg.method, cfg.model),
                              cfg.method)
    return {"method": counts.method, "trainable": counts.trainable, "total": counts.total}


def _train_info(cfg: DictConfig, value: float, params: dict[str, int]) -> dict:
    headline = cfg.task.headline_metric
    metrics = {headline: value, headline.split("/")[0] + "/loss": 0.5}
    if cfg.task.name == "mnli":
        metrics["mismatched/accuracy"] = value - 0.004
    epochs = [{"epoch": 1, "train_loss": 0.7, "metrics": {**metrics, headline: value - 0.01}},
              {"epoch": 2, "train_loss": 0.4, "metrics": metrics}]
    return {"headline_metric": headline,
            "final": {"epoch": 2, "value": value, "metrics": metrics},
            "best": {"epoch": 2, "value": value, "metrics": metrics},
            "epochs": epochs, "params": params, "train_examples": 100, "eval_examples": {"dev": 50},
            "train_seconds": 1.0, "train_examples_per_second": 100.0, "train_loss": 0.4,
            "peak_memory_bytes": 1}


def write_run(runs_dir: Path, task: str = "sst2", model: str = "minilm", method: str = "lora", seed: int = 0,
              value: float = 0.9, status: str = COMPLETED, overrides: tuple[str, ...] = (),
              predictions: pd.DataFrame | None = None) -> Path:
    """Write one run record as `lora-repro train` would; returns its folder.

    `predictions` (columns label, prediction) become the run's best-epoch dev predictions.
    """
    cfg = _config(task, model, method, tuple(overrides)).copy()
    with open_dict(cfg):
        cfg.seed = seed
        cfg.paths.runs_dir = str(runs_dir)
    record = RunRecord.start(cfg, RunId.of(cfg), "cpu")
    if status == FAILED:
        record.finish(Failure(error="RuntimeError: boom"))
    elif status == COMPLETED:
        files = {}
        if predictions is not None:
            predictions.assign(idx=range(len(predictions))).to_csv(record.run_dir / "predictions_dev.csv", index=False)
            files = {"dev": "predictions_dev.csv"}
        record.finish(TrainInfo.model_validate(_train_info(cfg, value, _params(task, model, method, tuple(overrides)))),
                      Artifacts(predictions=files, best_predictions=files, weights=""))
    return record.run_dir


def test_one_row_per_record_with_identity_hparams_params_and_metrics(tmp_path):
    write_run(tmp_path, "mnli", "roberta_base", "lora_paper", seed=1, value=0.875)
    write_run(tmp_path, "rte", "minilm", "houlsby_m8", seed=0, value=0.6)
    table = load_records([tmp_path]).set_index("task")
    mnli = table.loc["mnli"]
    assert (mnli["status"], mnli["model"], mnli["method"], mnli["seed"], mnli["setup"]) == (
        COMPLETED, "roberta_base", "lora", 1, "official")
    assert (mnli["label"], mnli["row_key"]) == ("LoRA", "LoRA r=8 α=16 {q,v}")
    assert mnli["params_method"] == 294_912 and mnli["headline_metric"] == "matched/accuracy"
    assert mnli["best"] == mnli["final"] == 0.875 and mnli["best_epoch"] == 2
    assert mnli["metric.mismatched/accuracy"] == pytest.approx(0.871)
    assert mnli["train.learning_rate"] == 5e-4 and mnli["train.init_from"] is None
    assert mnli["path"].endswith(RECORD_FILE)
    assert (table.loc["rte", "label"], table.loc["rte", "row_key"]) == ("AdptH", "AdptH m=8")


def test_seeds_share_a_family_and_other_hyperparameters_do_not(tmp_path):
    write_run(tmp_path, seed=0)
    write_run(tmp_path, seed=1)
    write_run(tmp_path, seed=2, overrides=("train.learning_rate=1e-3",))
    table = load_records([tmp_path]).sort_values("seed")
    assert table["config_hash"].nunique() == 3
    assert list(table["family"] == table["family"].iloc[0]) == [True, True, False]


def test_running_and_failed_records_stay_with_their_status_and_no_metrics(tmp_path):
    write_run(tmp_path, seed=0, status=RUNNING)
    write_run(tmp_path, seed=1, status=FAILED)
    table = load_records([tmp_path]).set_index("seed")
    assert list(table["status"]) == [RUNNING, FAILED]
    assert table["best"].isna().all()


def test_houlsby_setup_and_paper_labels():
    lora = {"name": "lora", "r": 4, "alpha": 8, "targets": ["v", "q", "o"]}
    drop = {"name": "adapter", "variant": "adapterdrop", "bottleneck": 32, "drop_lowest": None}
    adalora = {"name": "adalora", "init_r": 12, "target_r": 8, "alpha": 32, "targets": ["v", "q"]}
    assert method_row_key(lora) == "LoRA r=4 α=8 {q,v,o}" and targets_key(["o", "k"]) == "k,o"
    assert method_row_key(adalora) == "AdaLoRA r=12→8 α=32 {q,v}"
    assert (method_label(drop), method_row_key(drop)) == ("AdptD", "AdptD m=32 drop=half")
    assert [method_label({"name": n}) for n in ("full_ft", "bitfit")] == ["FT", "BitFit"]


def test_houlsby_runs_carry_their_setup(tmp_path):
    write_run(tmp_path, "rte", "roberta_large", "houlsby_m64", overrides=("setup=houlsby",))
    assert load_records([tmp_path])["setup"].tolist() == ["houlsby"]


@pytest.mark.parametrize(("text", "advice"), [
    ("{not json", "rerun"),
    (json.dumps({"schema": 99, "status": "completed"}), "upgrade lora-repro"),  # never overwritten either
    (json.dumps({"schema": 1, "status": "completed", "run_info": {}}), "rerun")])
def test_a_broken_record_is_a_user_error_naming_the_file(tmp_path, text, advice):
    write_run(tmp_path, seed=0)
    broken = tmp_path / "sst2" / "minilm" / "lora" / "s9-broken" / RECORD_FILE
    broken.parent.mkdir(parents=True)
    broken.write_text(text)
    with pytest.raises(UserError, match="s9-broken") as err:
        load_records([tmp_path])
    assert advice in str(err.value)


def test_a_missing_folder_is_a_user_error_and_an_empty_one_an_empty_table(tmp_path):
    with pytest.raises(UserError, match="nowhere"):
        load_records([tmp_path / "nowhere"])
    assert load_records([tmp_path]).empty


def test_overlapping_folders_count_each_record_once(tmp_path):
    write_run(tmp_path, seed=0)
    write_run(tmp_path, "rte", seed=0)
    assert len(load_records([tmp_path, tmp_path / "sst2"])) == 2


SCHEMA_BREAKS = [
    (lambda r: r.pop("config_hash"), "config_hash"),
    (lambda r: r.update(schema=0), "schema"),
    (lambda r: r.update(status="done"), "status"),
    (lambda r: r["train_info"].pop("best"), "best"),
    (lambda r: r["train_info"].update(headline_metric="accuracy"), "headline_metric"),
    (lambda r: r["train_info"]["best"].update(value="high"), "value"),
    (lambda r: r["artifacts"].pop("predictions"), "predictions"),
]


@pytest.mark.parametrize(("damage", "field"), SCHEMA_BREAKS, ids=[f for _, f in SCHEMA_BREAKS])
def test_a_record_is_checked_against_the_schema_when_read(tmp_path, damage, field):
    run_dir = write_run(tmp_path)
    record = json.loads((run_dir / RECORD_FILE).read_text())
    damage(record)
    (run_dir / RECORD_FILE).write_text(json.dumps(record))
    with pytest.raises(UserError, match=f"{run_dir / RECORD_FILE} is not a valid lora-repro run record .*{field}"):
        read_record(run_dir)


def test_a_record_that_breaks_the_schema_is_never_written(tmp_path):
    cfg = _config("sst2", "minilm", "lora", ()).copy()
    with open_dict(cfg):
        cfg.paths.runs_dir = str(tmp_path)
    record = RunRecord.start(cfg, RunId.of(cfg), "cpu")
    with pytest.raises(UserError, match="train_info"):
        record.finish(TrainInfo.model_construct(headline_metric="dev/accuracy"), Artifacts(predictions={}, weights=""))
    assert read_record(record.run_dir).status == RUNNING  # the valid `running` record stays
    assert [p.name for p in record.run_dir.iterdir()] == [RECORD_FILE]  # no temp file left behind
