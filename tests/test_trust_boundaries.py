"""Run folders are shared like a paper's supplement: opening one never runs code, escapes the root, or passes off
edited numbers. Every case through the command a user types: one line, exit status 2, nothing written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import lora_repro_here

TINY_RTE = ["model=tiny_bert", "task=rte", "train.max_seq_length=32", "train.batch_size=8", "train.epochs=1"]


def lora_repro(args: list[str], root: Path, glue_dir: Path, **env: str) -> subprocess.CompletedProcess:
    """`lora-repro ARGS` with `root` as LORA_REPRO_ROOT and a TMPDIR of its own (which must stay empty)."""
    tmp = root.parent / f"{root.name}-tmp"
    tmp.mkdir(exist_ok=True)
    env = {**os.environ, "GLUE_DIR": str(glue_dir), "LORA_REPRO_ROOT": str(root), "HF_HUB_OFFLINE": "1",
           "TMPDIR": str(tmp), "HF_HOME": str(root.parent / f"{root.name}-hf"), **env}
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    return subprocess.run([sys.executable, "-m", "lora_repro", *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=root if root.is_dir() else None)


def files_under(*folders: Path) -> list[Path]:
    return sorted(p for folder in folders if folder.exists() for p in folder.rglob("*"))


def one_line_exit_2(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and message in lines[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr


def refused_writing_nothing(tmp_path: Path, glue_dir: Path, args: list[str], message: str, **env: str) -> None:
    """`lora-repro ARGS` on an empty root: one line, exit 2, and nothing under the root or its TMPDIR."""
    root = tmp_path / "root"
    root.mkdir()
    one_line_exit_2(lora_repro(args, root, glue_dir, **env), message)
    assert files_under(root, tmp_path / "root-tmp") == []


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny completed run (its root and run folder), trained once and copied by each test that edits it."""
    from tests.conftest import write_tiny_glue

    base = tmp_path_factory.mktemp("trained")
    glue_dir = write_tiny_glue(base / "glue", n_train=32, n_dev=16)
    root = base / "root"
    root.mkdir()
    result = lora_repro(["train", *TINY_RTE], root, glue_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    (record,) = root.rglob("record.json")
    return glue_dir, record.parent


@pytest.fixture
def copy_of(trained, tmp_path) -> tuple[Path, Path, Path]:
    glue_dir, run_dir = trained
    root = tmp_path / "root"
    shutil.copytree(run_dir.parents[5], root)  # <root>/experiments/runs/<task>/<model>/<method>/<run>
    return glue_dir, root, root / run_dir.relative_to(run_dir.parents[5])


@pytest.mark.parametrize("override", ["task.name=../../../../../escaped_task", "model.name=../../../../escaped_model",
                                      "method.name=/tmp/escaped_method", "method.name=a/b"])
def test_a_name_that_is_a_path_is_refused_before_anything_is_written(tmp_path, glue_dir, override):
    root = tmp_path / "root"
    root.mkdir()
    result = lora_repro(["train", *TINY_RTE, override], root, glue_dir)
    one_line_exit_2(result, "is not a plain name")
    assert files_under(root, tmp_path / "root-tmp", tmp_path / "root-hf") == []
    assert not list(tmp_path.rglob("escaped_*")) and not Path("/tmp/escaped_method").exists()


def test_config_overrides_cannot_turn_on_remote_code(tmp_path, glue_dir):
    refused_writing_nothing(tmp_path, glue_dir, ["train", *TINY_RTE, "+model.config_overrides.trust_remote_code=true"],
                            "model.trust_remote_code is the one switch")


def test_a_package_source_is_found_not_imported(tmp_path, glue_dir):
    # `package:NAME` imported any installed module before checking that it ships a model folder.
    site = tmp_path / "site"
    (site / "sneaky").mkdir(parents=True)
    marker = tmp_path / "imported"
    (site / "sneaky" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    root = tmp_path / "root"
    root.mkdir()
    result = lora_repro(["train", *TINY_RTE, "model.pretrained=package:sneaky", "model.tokenizer=package:sneaky"],
                        root, glue_dir, PYTHONPATH=str(site))
    one_line_exit_2(result, "the package has no model folder")
    assert not marker.exists()
    assert files_under(root, tmp_path / "root-tmp") == []


def test_corrupt_weights_in_a_local_model_folder_are_one_line(tmp_path, glue_dir):
    from transformers import BertConfig

    folder = tmp_path / "model"
    BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37).save_pretrained(
        folder)
    (folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    root = tmp_path / "root"
    root.mkdir()
    result = lora_repro(["train", "model=minilm", f"model.pretrained={folder}", "task=rte", "train.epochs=1"],
                        root, glue_dir)
    one_line_exit_2(result, "cannot be read")
    assert list((root / "experiments").rglob("record.json")) == []


def edit(record_file: Path, change) -> None:
    record = json.loads(record_file.read_text())
    change(record)
    record_file.write_text(json.dumps(record))


def test_an_edited_record_is_named_by_train_and_report_never_taken_as_done(copy_of):
    glue_dir, root, run_dir = copy_of

    def forge(record):
        record["config_hash"] = "0123456789ab"
        record["train_info"]["best"]["value"] = 0.99

    edit(run_dir / "record.json", forge)
    before = (run_dir / "record.json").read_bytes()
    result = lora_repro(["train", *TINY_RTE], root, glue_dir)
    one_line_exit_2(result, "does not match its own config")
    assert (run_dir / "record.json").read_bytes() == before  # not skipped as done, not silently replaced
    report = lora_repro(["report", "table2", "--runs", str(root / "experiments" / "runs"), "--out",
                         str(root / "out")], root, glue_dir)
    one_line_exit_2(report, f"{run_dir / 'record.json'} does not match its own config")
    assert not (root / "out").exists()


def test_a_record_of_a_newer_schema_is_never_overwritten(copy_of):
    glue_dir, root, run_dir = copy_of
    edit(run_dir / "record.json", lambda record: record.update(schema=2))
    before = (run_dir / "record.json").read_bytes()
    for extra in ([], ["train.force=true"]):
        result = lora_repro(["train", *TINY_RTE, *extra], root, glue_dir)
        one_line_exit_2(result, "written by a newer lora-repro (schema 2")
        assert (run_dir / "record.json").read_bytes() == before


def test_eval_of_a_record_that_names_remote_code_runs_nothing(copy_of, tmp_path):
    # The record points at a model folder with its own modelling code, hash recomputed as a careful forger would.
    from transformers import BertConfig

    from lora_repro.records.identity import hashed_of, identity_digest, run_folder_name

    glue_dir, root, run_dir = copy_of
    marker = tmp_path / "code-ran"
    folder = tmp_path / "remote"
    BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64).save_pretrained(
        folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "custom.Config", "AutoModelForSequenceClassification": "custom.Model"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "custom.py").write_text(f"open({str(marker)!r}, 'w').close()\n")

    def point_at_remote_code(record):
        model = record["run_info"]["config"]["model"]
        model.update(pretrained=str(folder), trust_remote_code=True)
        files = record["run_info"]["hashed_config"]["data"]["files"]
        record["run_info"]["hashed_config"] = hashed_of(record["run_info"]["config"], files)
        record["config_hash"] = identity_digest(record["run_info"]["hashed_config"])

    edit(run_dir / "record.json", point_at_remote_code)
    record = json.loads((run_dir / "record.json").read_text())
    forged = run_dir.with_name(run_folder_name(record["run_info"]["config"]["seed"], record["config_hash"]))
    run_dir.rename(forged)
    listed = files_under(root)
    result = lora_repro(["eval", str(forged)], root, glue_dir)
    one_line_exit_2(result, "never runs code a record names")
    assert not marker.exists()
    assert files_under(root) == listed


@pytest.mark.parametrize("damage", ["folder", "nested", "loop", "unreadable"])
def test_report_names_a_record_file_it_cannot_read(copy_of, damage, monkeypatch, capsys):
    glue_dir, root, run_dir = copy_of
    record = run_dir / "record.json"
    record.unlink()
    if damage == "folder":
        record.mkdir()
    elif damage == "nested":
        record.write_text("[" * 100_000 + "]" * 100_000)
    elif damage == "loop":
        record.symlink_to(record)
    else:
        record.write_bytes(b"\xff\xfe not json")
    # In this process (a report needs no interpreter of its own to be refused): 4 start-ups cost 40 s.
    status = lora_repro_here(monkeypatch, "report", "table2", "--runs", str(root / "experiments" / "runs"), "--out",
                             str(root / "out"))
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: ") and err.count("\n") == 1 and str(record) in err, err
    assert not (root / "out").exists()


def test_no_command_leaves_a_torchinductor_folder_in_tmpdir(tmp_path, glue_dir):
    root = tmp_path / "root"
    root.mkdir()
    result = lora_repro(["train", *TINY_RTE, "train.epochs=0"], root, glue_dir)
    assert result.returncode == 2
    assert files_under(tmp_path / "root-tmp") == [] and files_under(root) == []


def test_a_config_file_with_a_python_tag_is_one_line(tmp_path, glue_dir):
    # Hydra's YAML loader takes no Python tags (nothing ran), but it ended in the YAML library's 83-line traceback.
    configs = tmp_path / "configs"
    (configs / "local").mkdir(parents=True)
    (configs / "local" / "mine.yaml").write_text("seed: !!python/object/apply:os.getcwd []\n")
    refused_writing_nothing(tmp_path, glue_dir, ["train", "--config-dir", str(configs), "local=mine", *TINY_RTE],
                            "cannot be read as plain YAML")


def test_an_unknown_callback_is_one_line(tmp_path, glue_dir):
    refused_writing_nothing(tmp_path, glue_dir, ["train", *TINY_RTE, "+hydra.callbacks.mine._target_=no.such.Callback"],
                            "no such callback class")
