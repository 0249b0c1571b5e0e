"""What every benchmark shares: the run config of a model x method, the model built as a run builds it, inputs.

Models and methods come from the same `conf/` a training run composes and go through the same `load_model` /
`apply_method`, so a benchmarked method is exactly the method that trains. `random_init` builds the model from
`model.shape` instead (no download: the paper's models can be timed at their real size with random weights).
"""

from __future__ import annotations

import copy
import os
import platform
from collections.abc import Sequence
from pathlib import Path

import torch
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from torch import nn

from lora_repro.config import compose_config, group_choices
from lora_repro.errors import UserError, choose
from lora_repro.methods import apply_method
from lora_repro.models import build_model, load_model
from lora_repro.records.provenance import git_commit, package_versions

__all__ = ["NUM_LABELS", "build_backbone", "build_method_model", "check_seq_len", "compose_run_config", "environment",
           "random_inputs", "set_threads", "synchronize"]

# A two-class head, as SST-2 and most GLUE tasks have; the head's size does not move any of the costs.
NUM_LABELS = 2
# Token ids below this are special tokens in BERT and RoBERTa vocabularies (padding changes position ids).
FIRST_PLAIN_TOKEN = 5


def compose_run_config(model: str, method: str, overrides: Sequence[str] = ()) -> DictConfig:
    """The resolved config `lora-repro train model=<model> method=<method> <overrides>` would run.

    Raises:
        UserError: `model` or `method` names no file in conf/model or conf/method.
    """
    choose("model", model, group_choices("model"))
    choose("method", method, group_choices("method"))
    try:
        cfg = compose_config([f"model={model}", f"method={method}", *overrides])
    except HydraException as err:  # an override Hydra cannot parse or apply
        raise UserError(f"--set {' '.join(overrides)}: {str(err).splitlines()[0]}") from None
    OmegaConf.resolve(cfg)
    return cfg


def build_backbone(cfg: DictConfig, random_init: bool, device: str) -> nn.Module:
    """The run's model with a fresh two-class head, on `device`, before any method is applied.

    Raises:
        UserError: the pretrained weights are not available offline (the message suggests --random-init).
    """
    if random_init:
        return build_model(cfg.model, NUM_LABELS, device=device)
    try:
        model = load_model(cfg.model, NUM_LABELS)
    except UserError as err:
        raise UserError(f"{err} Or time the architecture with random weights: --random-init.") from None
    # Loaded weights are a private mapping of the safetensors file; copies (a merged model, full FT's weights
    # after their first update) live in ordinary memory, which ran ~2% slower at batch 1 here. Copying every
    # model keeps that difference out of the comparisons (deepcopy also keeps any tied weights tied).
    return copy.deepcopy(model).to(device)


def build_method_model(cfg: DictConfig, random_init: bool, device: str) -> nn.Module:
    """`build_backbone`, then `apply_method` with the run's method config (what a run trains)."""
    return apply_method(build_backbone(cfg, random_init, device), cfg.method, cfg.model)


def random_inputs(model_cfg: DictConfig, batch_size: int, seq_len: int, device: str, seed: int,
                  labels: bool = True) -> dict[str, torch.Tensor]:
    """A full-length batch of random plain tokens (every sequence `seq_len` long, no padding).

    Raises:
        UserError: `seq_len` exceeds the model's position embeddings.
    """
    check_seq_len(model_cfg, seq_len)
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(FIRST_PLAIN_TOKEN, model_cfg.shape.vocab_size, (batch_size, seq_len), generator=generator)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if labels:
        batch["labels"] = torch.randint(0, NUM_LABELS, (batch_size,), generator=generator)
    return {key: value.to(device) for key, value in batch.items()}


def check_seq_len(model_cfg: DictConfig, seq_len: int) -> None:
    """Raise a `UserError` if `seq_len` tokens do not fit the model's position embeddings."""
    limit = model_cfg.shape.max_position_embeddings
    room = limit - 2 if model_cfg.architecture == "roberta" else limit  # RoBERTa's positions start at 2
    if seq_len > room:
        raise UserError(f"sequence length {seq_len} does not fit model {model_cfg.name} (at most {room})")


def set_threads(threads: int) -> None:
    """Fix torch's intra-op threads, so the numbers say what they were measured with."""
    torch.set_num_threads(threads)


def synchronize(device: str) -> None:
    """Wait for queued GPU work, so a wall-clock interval covers the work launched in it."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def environment(device: str, command: str) -> dict[str, object]:
    """Where and how the numbers were measured: device, threads, versions, commit and the command."""
    if device.startswith("cuda"):
        hardware = torch.cuda.get_device_name(device)
    else:
        hardware = f"{_cpu_model()}, {os.cpu_count()} logical cores"
    versions = package_versions()
    return {"device": device, "hardware": hardware, "threads": torch.get_num_threads(),
            "torch": torch.__version__, "transformers": versions["transformers"], "peft": versions["peft"],
            "python": platform.python_version(), "git_commit": git_commit(), "command": command}


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()
