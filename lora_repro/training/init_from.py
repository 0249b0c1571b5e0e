"""Start a run from another task's finished run, as the paper does for MRPC, RTE and STS-B.

The LoRA paper starts those tasks from the LoRA-adapted MNLI model. Here `train.init_from=mnli`
loads the method's trained weights (not the head, whose shape is task-specific) from the completed
MNLI run with the same model, method config and seed.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors import SafetensorError
from safetensors.torch import load_file

from lora_repro.errors import UserError
from lora_repro.methods import load_trainable_state_dict
from lora_repro.records.identity import method_identity, run_folder_name
from lora_repro.records.record import WEIGHTS_FILE, completed_record


def start_key(cfg: DictConfig, task: str | None = None) -> tuple:
    """What ties a run to the run it starts from: task (`task`, else its own), model, method config and seed.

    A run with `train.init_from=T` starts from the run whose own key is this run's key for task T.
    """
    method = json.dumps(method_identity(OmegaConf.to_container(cfg.method, resolve=True)), sort_keys=True)
    return (task or cfg.task.name, cfg.model.name, method, int(cfg.seed))


def find_source_run(cfg: DictConfig) -> Path:
    """The completed run of task `cfg.train.init_from` with this run's model, method and seed."""
    task = cfg.train.init_from
    if task == cfg.task.name:  # else a finished run of this very setting would become its own start
        raise UserError(f"train.init_from={task} starts the run from its own task; "
                        "set it on the tasks that start from it only")
    method = method_identity(OmegaConf.to_container(cfg.method, resolve=True))
    folder = Path(cfg.paths.runs_dir) / task / cfg.model.name / cfg.method.name
    for run_dir in sorted(folder.glob(run_folder_name(cfg.seed, "*"))):
        record = completed_record(run_dir)
        if record and record.artifacts.weights and method_identity(record.run_info.config["method"]) == method:
            return run_dir
    raise UserError(
        f"train.init_from={task}: no completed {task} run with model={cfg.model.name}, this method config "
        f"and seed={cfg.seed} under {folder}; run that task first (the paper's sweeps list mnli first), "
        "or set train.init_from=null"
    )


def load_init_weights(model: torch.nn.Module, cfg: DictConfig) -> Path:
    """Copy the source run's method weights at its best epoch (head excluded) into `model`; returns the source run.

    `model` is what `apply_method` returned (for LoRA, PEFT's wrapper): the saved names are the inner
    model's, as `trainable_state_dict` writes them, and every method weight must be there.
    """
    source = find_source_run(cfg)
    # The source run's best epoch, as the paper's MNLI start is its best MNLI checkpoint.
    weights = source / (completed_record(source).artifacts.best_weights or WEIGHTS_FILE)
    try:
        load_trainable_state_dict(model, load_file(str(weights)), skip_head=True)
    except UserError as err:
        raise UserError(f"train.init_from={cfg.train.init_from}: the weights of {source} do not fit this run "
                        f"({err})") from None
    except (OSError, SafetensorError) as err:
        raise UserError(f"train.init_from={cfg.train.init_from}: cannot read {weights} ({err}); "
                        "delete that run folder and rerun it") from None
    return source
