"""Reload a finished run from its record and evaluate it again: `lora-repro eval RUN_DIR`.

The record holds the resolved config and the trained weights, which is all it takes to rebuild
the model; the metrics printed should equal the record's final-epoch metrics.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from safetensors.torch import load_file

from lora_repro.errors import UserError
from lora_repro.methods import load_trainable_state_dict
from lora_repro.results.record import COMPLETED, WEIGHTS_FILE, read_record
from lora_repro.training.trainer import make_trainer


def load_run(run_dir: Path) -> tuple[DictConfig, object, object, torch.nn.Module]:
    """The config, tokenizer, data and model of a completed run, with its trained weights loaded."""
    from lora_repro.training.run import build  # the same build steps as training, minus the training

    record = read_record(run_dir)
    if record["status"] != COMPLETED or not record["artifacts"].get("weights"):
        raise UserError(f"{run_dir} has no trained weights to reload (status {record['status']}; full_ft "
                        "runs keep weights only with train.save_full_model=true)")
    cfg = OmegaConf.create(record["run_info"]["config"])
    with open_dict(cfg):
        cfg.train.init_from = None  # the run's own weights replace whatever it started from
    tokenizer, data, model = build(cfg)
    load_trainable_state_dict(model, load_file(str(run_dir / WEIGHTS_FILE)))
    return cfg, tokenizer, data, model


def evaluate(run_dir: Path) -> dict[str, float]:
    """Metrics of a reloaded run on every dev set, keyed `<split>/<metric>` as in the record."""
    cfg, tokenizer, data, model = load_run(Path(run_dir))
    with tempfile.TemporaryDirectory() as scratch:
        trainer, log = make_trainer(model, data, cfg, tokenizer, Path(scratch))
        trainer.evaluate()
    return log.epochs[-1]["metrics"]


def main() -> None:
    """`lora-repro eval RUN_DIR`: print the reloaded run's metrics next to the recorded ones."""
    parser = argparse.ArgumentParser(prog="lora-repro eval", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args()
    metrics = evaluate(args.run_dir)
    recorded = read_record(args.run_dir)["train_info"]["final"]["metrics"]
    print(json.dumps({name: {"reloaded": value, "recorded": recorded.get(name)}
                      for name, value in metrics.items()}, indent=2))
