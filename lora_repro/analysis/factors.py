"""LoRA factors of finished runs, as plain matrices keyed by layer and weight, with the frozen W beside them.

A run keeps its factors in `lora_factors.safetensors` (A and B in fp16, small enough to commit); runs that
predate it are read from their `trained_weights.safetensors` if that is still there. W comes from the run's
backbone, loaded as the run loaded it (a random-init backbone from the run's seed, as training seeded it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from safetensors import SafetensorError
from safetensors.torch import load_file
from transformers import set_seed

from lora_repro.errors import UserError
from lora_repro.methods.lora import FACTOR_KEY, PLAIN_UPDATE, update_scale
from lora_repro.methods.targets import layer_weight, targets_key
from lora_repro.records.record import WEIGHTS_FILE, completed_record
from lora_repro.records.schema import COMPLETED, CompletedRecord
from lora_repro.records.store import load_records

__all__ = ["Backbones", "LoraRun", "lora_runs"]



@dataclass(frozen=True)
class LoraRun:
    """One finished LoRA run: what identifies it and its factors per (layer, weight)."""

    path: Path
    task: str
    model: str
    seed: int
    r: int
    targets: str
    scale: float
    model_cfg: DictConfig
    modules: dict[tuple[int, str], str]             # (layer, weight) -> module name in the model
    a: dict[tuple[int, str], np.ndarray]            # r x d_in
    b: dict[tuple[int, str], np.ndarray]            # d_out x r

    def delta(self, key: tuple[int, str]) -> np.ndarray:
        """ΔW = s·B A of one adapted weight."""
        return self.scale * self.b[key] @ self.a[key]


def lora_runs(paths: Sequence[Path], targets: str) -> tuple[list[LoraRun], list[Path]]:
    """Every completed LoRA (or rsLoRA) run under `paths` on the weight set `targets` (`targets_key` order).

    Only those runs' factors are read: runs on other weights may have none (results/ commits the analysed ones).

    Returns:
        The runs, and the folders of completed LoRA runs on `targets` that kept no factors (neither file is there).
    """
    records = load_records(paths)
    rows = records[records["method"].isin(PLAIN_UPDATE) & (records["status"] == COMPLETED)]
    runs, without = [], []
    for row in rows.itertuples(index=False):
        folder = Path(row.path).parent
        record = completed_record(folder)
        if targets_key(record.run_info.config["method"]["targets"]) != targets:
            continue
        factors = _read_factors(folder, record)
        if factors is None:
            without.append(folder)
            continue
        runs.append(_lora_run(folder, record, factors))
    return runs, without


def _read_factors(folder: Path, record: CompletedRecord) -> dict[str, torch.Tensor] | None:
    artifacts = record.artifacts
    for name in (artifacts.lora_factors, artifacts.weights and WEIGHTS_FILE):
        if name and (folder / name).is_file():
            try:
                state = load_file(str(folder / name))
            except (OSError, SafetensorError) as err:
                raise UserError(f"cannot read {folder / name} ({err}); delete that run folder and rerun it") from None
            return {key: t for key, t in state.items() if FACTOR_KEY.match(key)}
    return None


def _lora_run(folder: Path, record: CompletedRecord, state: dict[str, torch.Tensor]) -> LoraRun:
    config = OmegaConf.create(record.run_info.config)
    method, model_cfg = config.method, config.model
    modules, a, b = {}, {}, {}
    for key, tensor in state.items():
        match = FACTOR_KEY.match(key)
        where = layer_weight(match["module"], model_cfg)
        if where is None:
            raise UserError(f"{folder}: LoRA factor {key} is on no weight model.lora_targets names")
        modules[where] = match["module"]
        (a if match["factor"] == "A" else b)[where] = tensor.double().numpy()
    if not a or a.keys() != b.keys():
        raise UserError(f"{folder}: its LoRA factors are incomplete; delete that run folder and rerun it")
    return LoraRun(path=folder, task=config.task.name, model=model_cfg.name, seed=int(config.seed),
                   r=int(method.r), targets=targets_key(method.targets),
                   scale=update_scale(method.name, method.alpha, int(method.r)), model_cfg=model_cfg,
                   modules=modules, a=a, b=b)


class Backbones:
    """The frozen weights W of the runs' backbones, each backbone loaded once and each W decomposed once."""

    def __init__(self) -> None:
        self._models: dict[str, torch.nn.Module] = {}
        self._svds: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def weight(self, run: LoraRun, key: tuple[int, str]) -> np.ndarray:
        """The pretrained W under the LoRA factors `key` of `run`."""
        from lora_repro.models import load_model  # loads transformers' model classes: only when needed

        ident = self._ident(run)
        if ident not in self._models:
            set_seed(run.seed)
            self._models[ident] = load_model(run.model_cfg, num_labels=2)
        module = self._models[ident].get_submodule(run.modules[key])
        return module.weight.detach().double().numpy()

    def svd(self, run: LoraRun, key: tuple[int, str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`np.linalg.svd` of `weight(run, key)` (thin): every run on the same backbone shares it."""
        cache_key = (self._ident(run), run.modules[key])
        if cache_key not in self._svds:
            self._svds[cache_key] = np.linalg.svd(self.weight(run, key), full_matrices=False)
        return self._svds[cache_key]

    @staticmethod
    def _ident(run: LoraRun) -> str:
        cfg = run.model_cfg
        # A random-init backbone is the run's own: training seeded it with the run's seed.
        return f"{cfg.name}:{cfg.pretrained}" + (f":{run.seed}" if cfg.pretrained is None else "")
