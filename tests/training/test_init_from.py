"""`train.init_from`: a run that starts from another task's finished run, as the paper's MRPC, RTE, STS-B do."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from lora_repro.errors import UserError
from lora_repro.methods import trainable_state_dict
from lora_repro.records.identity import run_config
from lora_repro.records.record import WEIGHTS_FILE
from lora_repro.training.run import build, run
from tests.conftest import run_dir_for
from tests.training.test_run import tiny_run_cfg


@pytest.mark.parametrize("method", [["method=lora"], ["method=pfeiffer", "method.bottleneck=8"], ["method=bitfit"]],
                         ids=["lora", "pfeiffer", "bitfit"])
def test_a_run_starts_from_the_method_weights_of_the_mnli_run(tmp_path, glue_dir, method):
    source_cfg = tiny_run_cfg(tmp_path, glue_dir, overrides=["task=mnli", "train.learning_rate=1e-2", *method])
    run(source_cfg)
    saved = load_file(str(run_dir_for(source_cfg) / WEIGHTS_FILE))

    cfg = tiny_run_cfg(tmp_path, glue_dir, overrides=["task=rte", "train.init_from=mnli", *method])
    _, _, model = build(run_config(cfg))
    started = trainable_state_dict(model)
    heads = tuple(cfg.model.head_modules)
    method_weights = [n for n in started if not n.startswith(heads)]
    assert method_weights and set(method_weights) <= set(saved)
    for name in method_weights:  # every method weight is the MNLI run's, exactly
        assert torch.equal(started[name], saved[name]), name
    # The head is new: RTE's classifier has 2 outputs (MNLI's had 3), and the pooler is the backbone's again.
    assert started["classifier.weight"].shape[0] == 2 and saved["classifier.weight"].shape[0] == 3
    assert not torch.equal(started["bert.pooler.dense.weight"], saved["bert.pooler.dense.weight"])
    assert run(cfg).value >= 0  # and it trains to a completed record


def test_init_from_without_a_source_run_says_what_to_run_first(tmp_path, glue_dir):
    cfg = tiny_run_cfg(tmp_path, glue_dir, overrides=["task=rte", "train.init_from=mnli"])
    with pytest.raises(UserError, match="run that task first"):
        build(run_config(cfg))


def test_init_from_weights_missing_a_method_tensor_is_refused(tmp_path, glue_dir):
    run(tiny_run_cfg(tmp_path, glue_dir, overrides=["task=mnli", "method=lora"]))
    cfg = tiny_run_cfg(tmp_path, glue_dir, overrides=["task=rte", "train.init_from=mnli", "method=lora"])
    source = run_dir_for(tiny_run_cfg(tmp_path, glue_dir, overrides=["task=mnli", "method=lora"]))
    state = load_file(str(source / WEIGHTS_FILE))
    save_file({k: v for k, v in state.items() if "lora_B" not in k}, str(source / WEIGHTS_FILE))
    with pytest.raises(UserError, match="do not fit this run"):
        build(run_config(cfg))
