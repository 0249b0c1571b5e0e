"""AdaLoRA trains through `lora-repro train`: its schedule comes from the run's steps and its budget is kept."""

from __future__ import annotations

import os
import subprocess
import sys

import torch
from safetensors.torch import load_file

from lora_repro.records.store import load_records


def test_the_rank_budget_is_spent_by_the_end_of_a_run_from_the_command_line(tmp_path, glue_dir):
    env = {**os.environ, "GLUE_DIR": str(glue_dir), "LORA_REPRO_ROOT": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "lora_repro.cli", "train", "model=tiny_bert", "task=rte",
                             "method=adalora", "method.init_r=4", "method.target_r=2", "method.delta_t=1",
                             "train.epochs=4", "train.batch_size=8", "train.max_seq_length=32",
                             "train.precision=fp32"], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    weights = load_file(str(next(tmp_path.rglob("trained_weights.safetensors"))))
    singular = torch.cat([t.flatten() for name, t in weights.items() if ".lora_E." in name])
    adapted = 2 * 2  # tiny_bert: 2 layers x [q, v]
    assert singular.numel() == 4 * adapted
    # Budgeted down from init_r 4 to target_r 2 per weight on average: half of Λ is held at exactly zero.
    assert int((singular == 0).sum()) == (4 - 2) * adapted
    # Every report reads the record through the store, which names AdaLoRA's row by its rank budget.
    assert load_records([tmp_path])["row_key"].tolist() == ["AdaLoRA r=4→2 α=32 {q,v}"]
