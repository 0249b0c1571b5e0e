"""Reload a finished run from its record and evaluate it again: `lora-repro eval RUN_DIR`.

The record holds the resolved config and the trained weights, which is all it takes to rebuild
the model; the metrics printed should equal the record's final-epoch metrics (`--best`: the best epoch's).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from safetensors import SafetensorError
from safetensors.torch import load_file
from transformers import PrinterCallback

from lora_repro.config import on_this_machine
from lora_repro.data.tasks import data_identity
from lora_repro.errors import UserError
from lora_repro.methods import load_trainable_state_dict
from lora_repro.records.identity import run_config
from lora_repro.records.record import WEIGHTS_FILE, completed_record, read_record
from lora_repro.records.schema import CompletedRecord
from lora_repro.training.trainer import make_trainer


def load_run(run_dir: Path, best: bool = False, trust_remote_code: bool = False
             ) -> tuple[DictConfig, object, object, torch.nn.Module]:
    """The config, tokenizer, data and model of a completed run, with its trained weights loaded.

    A record is data someone sent: it never turns on `trust_remote_code` (code shipped with a model source). Only
    the user's own `trust_remote_code=True` does, for a record that asks for it.

    Args:
        run_dir: The run's folder.
        best: Load the weights of the best epoch instead of the final one.
        trust_remote_code: The user's own word that the record's model source may run its code.
    """
    from lora_repro.training.run import build  # the same build steps as training, minus the training

    record = read_record(run_dir)
    if not isinstance(record, CompletedRecord) or not record.artifacts.weights:
        raise UserError(f"{run_dir} has no trained weights to reload (status {record.status}; full_ft "
                        "runs keep weights only with train.save_full_model=true)")
    cfg = run_config(on_this_machine(OmegaConf.create(record.run_info.config)))  # a no-op but for older records
    if data_identity(cfg.task, cfg.data) != record.run_info.hashed_config["data"]["files"]:
        raise UserError(f"the {cfg.task.name} data at {cfg.data.glue_dir or 'the hub'} is not the data {run_dir} "
                        "was trained and evaluated on; point GLUE_DIR at that data")
    if cfg.model.trust_remote_code and not trust_remote_code:
        raise UserError(f"the record of {run_dir} asks for model.trust_remote_code=true (model "
                        f"{cfg.model.pretrained}); `lora-repro eval` never runs code a record names: pass "
                        "--trust-remote-code if you trust that model source")
    with open_dict(cfg):
        cfg.train.init_from = None  # the run's own weights replace whatever it started from
        cfg.model.trust_remote_code = trust_remote_code and bool(cfg.model.trust_remote_code)
    tokenizer, data, model = build(cfg)
    name = (record.artifacts.best_weights or WEIGHTS_FILE) if best else WEIGHTS_FILE
    try:
        state = load_file(str(run_dir / name))
    except (OSError, SafetensorError) as err:
        raise UserError(f"cannot read the weights {run_dir / name} ({err}); delete that run folder and rerun it"
                        ) from None
    load_trainable_state_dict(model, state)
    return cfg, tokenizer, data, model


def evaluate(run_dir: Path, best: bool = False, trust_remote_code: bool = False) -> dict[str, float]:
    """Metrics of a reloaded run on every dev set, keyed `<split>/<metric>` as in the record."""
    cfg, tokenizer, data, model = load_run(Path(run_dir), best, trust_remote_code)
    with tempfile.TemporaryDirectory() as scratch:
        trainer, log = make_trainer(model, data, cfg, tokenizer, Path(scratch))
        trainer.remove_callback(PrinterCallback)  # stdout is for the JSON `main` prints, nothing else
        trainer.evaluate()
    return log.epochs[-1]["metrics"]


def main() -> None:
    """`lora-repro eval RUN_DIR`: print the reloaded run's metrics next to the recorded ones."""
    parser = argparse.ArgumentParser(prog="lora-repro eval", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--best", action="store_true", help="the best epoch's weights (default: the final epoch's)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="let the record's model source run its own code (never taken from the record)")
    args = parser.parse_args()
    metrics = evaluate(args.run_dir, args.best, args.trust_remote_code)
    info = completed_record(args.run_dir).train_info
    recorded = (info.best if args.best else info.final).metrics
    print(json.dumps({name: {"reloaded": value, "recorded": recorded.get(name)}
                      for name, value in metrics.items()}, indent=2))
