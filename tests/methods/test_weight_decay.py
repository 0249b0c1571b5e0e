"""Weight decay spares the parameters whose neutral value is not 0, when the method's config says so."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

# method -> what its parameters whose neutral value is not 0 are called (PiSSA's B likewise).
OFF_ZERO = {"ia3": ".ia3_l.", "dora": ".lora_magnitude_vector.", "pissa": ".lora_A."}


def trained(here, root: Path, glue_dir: Path, method: str, exempt: bool) -> dict[str, torch.Tensor]:
    # Decay by half at the first step (lr 1e-3 x weight decay 500), against Adam's steps of at most 1e-3 each.
    result = here(["train", "model=tiny_bert", "task=rte", f"method={method}",
                   f"method.exempt_from_decay={str(exempt).lower()}", "train.learning_rate=1e-3",
                   "train.weight_decay=500", "train.warmup_ratio=0", "train.epochs=1", "train.batch_size=8",
                   "train.max_seq_length=32", "train.precision=fp32"], root, glue_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    weights = load_file(str(next(root.rglob("trained_weights.safetensors"))))
    return {name: t for name, t in weights.items() if OFF_ZERO[method] in name}


@pytest.mark.parametrize("method", sorted(OFF_ZERO))
def test_the_off_zero_parameters_train_without_weight_decay_from_the_command_line(tmp_path, glue_dir, method, here):
    exempt, decayed = (trained(here, tmp_path / str(flag), glue_dir, method, flag) for flag in (True, False))
    assert exempt and exempt.keys() == decayed.keys()
    size = {name: float(t.norm()) for name, t in exempt.items()}
    shrunk = {name: float(t.norm()) for name, t in decayed.items()}
    assert all(math.isfinite(v) for v in [*size.values(), *shrunk.values()])
    # 6 steps (48 rows / 8) at a linearly falling rate: decayed, each ends at about 0.11 of its size (times
    # 0.5, 0.58, ... 0.92), give or take Adam's 6e-3 per entry; exempt, it keeps its size.
    assert all(shrunk[name] < 0.25 * size[name] for name in size), (size, shrunk)
