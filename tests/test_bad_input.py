"""Bad input: one clear error naming the bad value, exit status 2, and no run record left behind."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lora_repro.errors import UserError
from lora_repro.models import build_model
from lora_repro.training.run import run
from tests.conftest import compose_config, tiny_model_cfg

BAD_SETTINGS = [
    (["method.r=0"], "r must be > 0, got 0"),
    (["method.r=33"], "r must be <= 32"),
    (["method.targets=[]"], "non-empty"),
    (["method.targets=[q,query]"], "'query'"),
    (["method=adapter", "method.variant=serial"], "'serial'"),
    (["method=adapter", "method.bottleneck=0"], "bottleneck"),
    (["train.max_seq_length=4"], "max_seq_length=4"),
    (["train.max_seq_length=4096"], "max_seq_length=4096"),
    (["train.precision=fp16"], "needs a CUDA GPU"),
    (["data.max_train_samples=0"], "max_train_samples"),
    (["train.epochs=0"], "train.epochs must be a whole number >= 1, got 0"),
    (["train.epochs=-1"], "train.epochs must be a whole number >= 1"),
    (["train.epochs=1.5"], "train.epochs must be a whole number"),
    (["train.learning_rate=-1"], "train.learning_rate must be a finite number > 0"),
    (["train.learning_rate=abc"], "train.learning_rate must be a finite number > 0, got 'abc'"),
    (["train.learning_rate=inf"], "train.learning_rate must be a finite number > 0, got inf"),
    (["train.learning_rate=nan"], "train.learning_rate must be a finite number > 0, got nan"),
    (["train.weight_decay=nan"], "train.weight_decay must be a finite number >= 0, got nan"),
    (["train.max_grad_norm=nan"], "train.max_grad_norm must be a finite number >= 0, got nan"),
    (["train.warmup_ratio=nan"], "train.warmup_ratio must be a finite number >= 0 and <= 1, or null, got nan"),
    (["method.alpha=nan"], "lora alpha must be a finite number > 0, got nan"),
    (["method.alpha=inf"], "lora alpha must be a finite number > 0, got inf"),
    (["train.eval_batch_size=0"], "train.eval_batch_size must be a whole number >= 1"),
    (["train.warmup_ratio=-1"], "train.warmup_ratio must be a finite number >= 0"),
    (["train.warmup_ratio=2"], "and <= 1"),
    (["train.num_threads=-1"], "train.num_threads must be a whole number >= 1"),
    (["train.weight_decay=x"], "train.weight_decay must be a finite number"),
    (["seed=abc"], "seed must be a whole number >= 0 and <= 4294967295, got 'abc'"),
    (["task.headline_metric=dev/acuracy"], "task.headline_metric 'dev/acuracy' must be <split>/<metric>"),
    (["task.headline_metric=accuracy"], "with a split of ['dev']"),
]


# A run of seconds: the tiny BERT on the tiny RTE files.
TINY_RTE = ["model=tiny_bert", "task=rte", "train.max_seq_length=32", "train.batch_size=8"]


def runs_written(root: Path) -> list[Path]:
    return list((root / "experiments" / "runs").rglob("record.json"))


@pytest.mark.parametrize("overrides,message", BAD_SETTINGS, ids=lambda x: str(x))
def test_bad_setting_is_one_clear_error_and_writes_nothing(tmp_path, glue_dir, overrides, message):
    cfg = compose_config([f"data.glue_dir={glue_dir}", f"paths.root={tmp_path}", "model=tiny_bert", "task=rte",
                          *overrides])
    with pytest.raises(UserError, match=message.replace("[", r"\[")):
        run(cfg)
    assert runs_written(tmp_path) == []


def test_missing_task_files_say_where_and_how_to_fix(tmp_path, glue_dir):
    (glue_dir / "RTE" / "dev.tsv").unlink()
    cfg = compose_config([f"data.glue_dir={glue_dir}", f"paths.root={tmp_path}", "model=tiny_bert", "task=rte"])
    with pytest.raises(UserError, match="RTE") as err:
        run(cfg)
    assert "GLUE_DIR" in str(err.value) and runs_written(tmp_path) == []


def test_corrupt_tsv_names_file_and_line(tmp_path, glue_dir):
    with open(glue_dir / "RTE" / "train.tsv", "a") as f:
        f.write("99\tonly two columns\n")
    cfg = compose_config([f"data.glue_dir={glue_dir}", f"paths.root={tmp_path}", "model=tiny_bert", "task=rte"])
    with pytest.raises(UserError, match=r"train\.tsv.*line"):
        run(cfg)
    assert runs_written(tmp_path) == []


def cli(args: list[str], root: Path, glue_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "GLUE_DIR": str(glue_dir), "LORA_REPRO_ROOT": str(root), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "lora_repro.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.mark.parametrize("args,message", [
    (["train", "task=colaa"], "unknown task 'colaa'; choose one of: cola, mnli"),
    (["train", "method=lorra"], "unknown method 'lorra'"),
    (["train", "model=gpt2"], "unknown model 'gpt2'"),
    (["train", "-m", "task=rte,nope"], "unknown task 'nope'"),
    (["train", "method.rank=4"], "unknown setting method.rank; method has name, r, alpha, dropout, targets"),
    (["train", "train.learnin_rate=1e-3"], "did you mean train.learning_rate? (a key of your own: +train.learnin_rate"),
    (["train", "method.learning_rate=1e-3"], "method.learning_rate is now train.learning_rate"),
    (["train", "model=tiny_bert", "task=rte", "method.r=-4"], "lora rank r must be > 0, got -4"),
    (["train", "model=tiny_bert", "task=rte", "train.epochs=0"], "train.epochs must be a whole number >= 1, got 0"),
    (["train", "model=tiny_bert", "task=rte", "train.learning_rate=inf"], "must be a finite number > 0, got inf"),
    (["train", "model=tiny_bert", "task=rte", "method.alpha=nan"], "must be a finite number > 0, got nan"),
    (["train", "model=tiny_bert", "task=rte", "train.precision=fp8"], "one of auto, fp32, fp16, bf16, got 'fp8'"),
    (["train", "model=tiny_bert", "task=rte", "data.selection=half"], "one of none, dev_half, train_holdout, auto"),
    (["frobnicate"], "unknown command 'frobnicate'"),
    (["train", "model=tiny_bert", "task=rte", "seed=5000000000"], "seed must be a whole number >= 0 and <= 4294967295"),
    (["train", "model=tiny_bert", "task=rte", "data.subset_seed=-1"], "data.subset_seed must be a whole number"),
    (["train", "model=tiny_bert", "task=rte", "data.subset_seed=abc"], "data.subset_seed must be a whole number"),
    (["train", "model=tiny_bert", "task=rte", "+train.learnin_rate=1e-3"], "did you mean train.learning_rate?"),
    (["train", "model=tiny_bert", "task=rte", "+data.max_train_sample=10"], "did you mean data.max_train_samples?"),
    (["train", "model=tiny_bert", "task=rte", "setup=foo"], "unknown setup 'foo'"),
    # Refused before anything is tokenized: the test finds no cache either.
    (["train", "model=tiny_bert", "task=rte", "method.r=1000"], "r must be <="),
    (["train", "model=tiny_bert", "task=rte", "method=ia3", "method.targets=[q,ffn2]"], "ffn2"),
    (["train", "model=tiny_bert", "task=rte", "train.init_from=mnli"], "no completed mnli run"),
    (["train", "model=tiny_bert", "task=mnli", "train.init_from=mnli"], "starts the run from its own task"),
    (["train", "model=tiny_bert", "task=rte", "paths.runs_dir=/proc/sys/lora-runs"], "not writable"),
    (["train", "model=tiny_bert", "task=rte", "paths.runs_dir=/etc/hostname/runs"], "is a file, not a folder"),
    (["plan", "model=tiny_bert", "task=rte", "train.epochs=-1"], "train.epochs must be a whole number >= 1"),
    (["plan", "model=tiny_bert", "task=rte", "train.learning_rate=abc"], "train.learning_rate must be a finite"),
    (["plan", "model=tiny_bert", "task=rte", "train.precision=fp8"], "one of auto, fp32, fp16, bf16, got 'fp8'"),
    (["train", "model=tiny_bert", "task=rte", "method=adalora", "train.per_device_batch_size=4"],
     "method=adalora needs one process and no gradient accumulation"),
    (["plan", "experiment=table2_roberta_base", "task=rte", "method=lora_paper", "seed=0", "recipe=papers"],
     "unknown recipe=papers; choose one of: reproduced, scripts, paper"),
    (["train", "experiment=table2_roberta_base", "task=rte", "method=lora_paper", "recipe=papers"],
     "unknown recipe=papers"),
])
def test_cli_exits_2_with_one_message(tmp_path, glue_dir, args, message, here):
    # In this process, through the dispatcher: 32 interpreter start-ups cost 3.5 min. The test below starts one.
    result = here(args, tmp_path, glue_dir)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert runs_written(tmp_path) == []
    assert [p for p in tmp_path.rglob("*") if p.is_file() and "glue_data" not in p.parts] == []  # no log folder


def test_bad_input_leaves_the_users_own_empty_folder_in_place(tmp_path, glue_dir):
    # Bad input removes the log folders it made, and once also removed the empty folder the user ran it in.
    root = tmp_path / "project"
    root.mkdir()
    result = cli(["train", "model=tiny_bert", "task=rte", "train.epochs=0"], root, glue_dir)
    assert result.returncode == 2, result.stderr
    assert root.is_dir() and list(root.iterdir()) == []


def broken_bytes(path: Path, data: bytes) -> None:
    with open(path, "ab") as file:
        file.write(data)


BAD_FILES = [
    ("rte", lambda g: broken_bytes(g / "RTE" / "train.tsv", "99\tcaf\xe9 au lait\tun caf\xe9\tentailment\n".encode(
        "latin-1")), "not UTF-8 text"),
    ("rte", lambda g: (g / "RTE" / "train.tsv").write_bytes(bytes(range(256)) * 100), "not UTF-8 text"),  # binary
    ("rte", lambda g: broken_bytes(g / "RTE" / "train.tsv", f"99\t{'x' * 200_000}\tb\tentailment\n".encode()),
     "field larger than field limit"),
    ("stsb", lambda g: broken_bytes(g / "STS-B" / "train.tsv", b"99\tm\tf\t2012\t0099\tnone\tnone\ta\tb\t7.5\n"
), "score 7.5 is outside the task's range 0-5"),
]


@pytest.mark.parametrize("task,damage,message", BAD_FILES, ids=["latin-1", "binary", "huge-field", "stsb-score"])
def test_a_bad_data_file_is_one_line_naming_it(tmp_path, glue_dir, task, damage, message, here):
    damage(glue_dir)
    result = here(["train", "model=tiny_bert", f"task={task}"], tmp_path, glue_dir)
    assert result.returncode == 2, result.stderr
    err = result.stderr
    assert message in err and "train.tsv" in err and err.startswith("error: ") and err.count("\n") == 1, err
    assert [p for p in tmp_path.rglob("*") if p.is_file() and "glue_data" not in p.parts] == []


def test_hub_model_without_network_is_a_clear_error(tmp_path, glue_dir):
    result = cli(["train", "model=roberta_base", "task=rte"], tmp_path, glue_dir)
    assert result.returncode == 2
    assert "FacebookAI/roberta-base" in result.stderr and "model=minilm" in result.stderr
    assert "Traceback" not in result.stderr and runs_written(tmp_path) == []


def test_help_and_cfg_job_work_as_in_hydra(tmp_path, glue_dir, here):
    shown = here(["train", "--cfg", "job", "task=mrpc", "method=lora", "method.r=4"], tmp_path, glue_dir)
    assert shown.returncode == 0 and "name: mrpc" in shown.stdout and "r: 4" in shown.stdout
    helped = here(["train", "--help"], tmp_path, glue_dir)
    assert helped.returncode == 0 and "task: cola, mnli" in helped.stdout


def test_train_force_reruns_a_completed_run_from_the_command_line(tmp_path, glue_dir, here):
    args = ["train", *TINY_RTE]
    assert here(args, tmp_path, glue_dir).returncode == 0
    (record,) = runs_written(tmp_path)
    first = json.loads(record.read_text())["run_info"]["started_at"]
    again = here(args, tmp_path, glue_dir)
    assert again.returncode == 0 and "already completed" in again.stdout + again.stderr
    time.sleep(1.1)  # started_at has one-second resolution
    forced = here([*args, "train.force=true"], tmp_path, glue_dir)
    assert forced.returncode == 0, forced.stderr[-2000:]
    assert runs_written(tmp_path) == [record]  # the same run (force is not part of its identity), trained again
    assert json.loads(record.read_text())["run_info"]["started_at"] != first


def test_a_run_whose_loss_diverges_is_failed_not_completed(tmp_path, glue_dir, here):
    args = ["train", "model=tiny_bert", "task=stsb", "train.max_seq_length=32", "train.batch_size=8",
            "train.learning_rate=1e30", "train.max_grad_norm=0"]
    result = here(args, tmp_path, glue_dir)
    (record,) = runs_written(tmp_path)
    payload = json.loads(record.read_text())
    assert result.returncode != 0 and payload["status"] == "failed"
    assert "diverged" in payload["train_info"]["error"] or "nan" in payload["train_info"]["error"].lower()


def hub_reachable() -> bool:
    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(hub_reachable(), reason="the hub is reachable here: there is nothing to fail fast on")
def test_an_unreachable_hub_fails_at_once_without_offline_mode_set(tmp_path, glue_dir):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "lora_repro.cli", "train", "model=roberta_base", "task=rte"],
                            capture_output=True, text=True, timeout=300,
                            env={**env, "GLUE_DIR": str(glue_dir), "LORA_REPRO_ROOT": str(tmp_path)})
    assert result.returncode == 2 and "FacebookAI/roberta-base" in result.stderr, result.stderr[-2000:]
    assert time.monotonic() - started < 30  # no half minute of retries before the error


def test_eval_of_a_moved_run_writes_nothing_where_it_was_trained(tmp_path, glue_dir, here):
    args = TINY_RTE
    assert here(["train", *args], tmp_path / "trained", glue_dir).returncode == 0
    moved = shutil.move(tmp_path / "trained", tmp_path / "moved")
    (run_dir,) = [f.parent for f in Path(moved).rglob("record.json")]
    result = here(["eval", str(run_dir)], tmp_path / "here", glue_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads(result.stdout)
    assert metrics["dev/accuracy"]["reloaded"] == pytest.approx(metrics["dev/accuracy"]["recorded"])
    assert not (tmp_path / "trained").exists() and (tmp_path / "here" / "experiments" / ".cache").is_dir()
    # Other data than the run's: refused, not evaluated.
    with open(glue_dir / "RTE" / "dev.tsv", "a") as dev:
        dev.write("999\tone more\tsentence pair\tentailment\n")
    result = here(["eval", str(run_dir)], tmp_path / "here", glue_dir)
    assert result.returncode == 2 and "is not the data" in result.stderr


def test_a_temporary_file_left_by_a_killed_write_goes_with_the_next_run(tmp_path, glue_dir, here):
    args = ["train", *TINY_RTE]
    assert here(args, tmp_path, glue_dir).returncode == 0
    (record,) = runs_written(tmp_path)
    leftover = record.parent / ".record.json.0123456789abcdef.tmp"  # as a SIGKILL inside `atomic_write` leaves it
    leftover.write_text("")
    assert here([*args, "train.force=true"], tmp_path, glue_dir).returncode == 0
    assert not leftover.exists()


@pytest.mark.slow
def test_two_copies_of_a_sweep_started_together_keep_their_own_summaries(tmp_path, glue_dir):
    args = ["train", "-m", "model=tiny_bert", "task=rte", "train.max_seq_length=32", "train.batch_size=8",
            "seed=0,1"]
    env = {**os.environ, "GLUE_DIR": str(glue_dir), "LORA_REPRO_ROOT": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    copies = [subprocess.Popen([sys.executable, "-m", "lora_repro.cli", *args], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outputs = [copy.communicate(timeout=600) for copy in copies]
    assert [copy.returncode for copy in copies] == [0, 0], [err[-2000:] for _, err in outputs]
    trained = [int(re.search(r"sweep done: (\d+) trained", out).group(1)) for out, _ in outputs]
    assert sum(trained) == 2 and len(runs_written(tmp_path)) == 2  # each run trained once, and counted once
    assert len(list((tmp_path / "experiments" / "logs" / "multirun").glob("*/*"))) == 2  # a folder per copy


def test_a_data_file_edited_without_changing_size_or_mtime_trains_on_the_edit(tmp_path, glue_dir, here):
    args = ["train", "model=tiny_bert", "task=stsb", "train.max_seq_length=32", "train.batch_size=8"]
    assert here(args, tmp_path, glue_dir).returncode == 0
    dev = glue_dir / "STS-B" / "dev.tsv"
    stat, text = dev.stat(), dev.read_text()
    edited = text.replace("\t0.000\n", "\t0.123\n", 1)
    assert edited != text and len(edited) == len(text)
    dev.write_text(edited)
    os.utime(dev, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as `touch -r`, or a copy that keeps times, leaves it
    assert here(args, tmp_path, glue_dir).returncode == 0
    # New data, new identity: a second run, whose predictions file has the edited label.
    files = (tmp_path / "experiments" / "runs").rglob("predictions_*.csv")
    labels = {round(float(line.split(",")[1]), 3) for file in files for line in file.read_text().splitlines()[1:]}
    assert len(runs_written(tmp_path)) == 2 and 0.123 in labels


def test_a_pickle_only_backbone_is_refused_before_anything_is_written(tmp_path, glue_dir):
    folder = tmp_path / "glue_data" / "pickled"  # under glue_data: the test's no-file check skips it
    model = build_model(tiny_model_cfg("bert"), 2, device="cpu")
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    result = cli(["train", "model=tiny_bert", "task=rte", f"model.pretrained={folder}"], tmp_path, glue_dir)
    assert result.returncode == 2 and "no safetensors weights" in result.stderr, result.stderr[-2000:]
    assert [p for p in tmp_path.rglob("*") if p.is_file() and "glue_data" not in p.parts] == []
