"""The one-matmul LoRA training path (`FusedLoraLinear`) computes what PEFT's own forward computes."""

from __future__ import annotations

import copy

import pytest
import torch

from lora_repro.methods import apply_method
from lora_repro.methods.lora import FusedLoraLinear, restore_peft_forward
from lora_repro.models import build_model
from tests.conftest import compose_config, tiny_model_cfg


def lora_pair(overrides: list[str]) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A tiny LoRA model with a non-zero update, and a copy that uses PEFT's own forward."""
    torch.manual_seed(0)
    model_cfg = tiny_model_cfg("roberta")
    model = apply_method(build_model(model_cfg, 2, device="cpu"), compose_config(overrides).method, model_cfg)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.1)
    return model, restore_peft_forward(copy.deepcopy(model))


def test_fused_training_step_matches_peft():
    fused, peft = lora_pair(["method=lora", "method.targets=[q,k,v,o]", "method.r=4"])
    assert any(isinstance(m, FusedLoraLinear) for m in fused.modules())
    assert not any(isinstance(m, FusedLoraLinear) for m in peft.modules())
    ids, labels = torch.randint(5, 1000, (3, 10)), torch.tensor([0, 1, 1])
    losses = [model.eval()(input_ids=ids, labels=labels).loss for model in (fused, peft)]  # eval: no dropout
    for loss in losses:
        loss.backward()
    assert torch.allclose(losses[0], losses[1], atol=1e-6)
    grads = [{n: p.grad for n, p in model.named_parameters() if p.requires_grad} for model in (fused, peft)]
    assert grads[0].keys() == grads[1].keys() and any("lora_A" in n for n in grads[0])
    for name, grad in grads[0].items():
        assert torch.allclose(grad, grads[1][name], atol=1e-6), name


@pytest.mark.parametrize("overrides", [["method=lora", "method.dropout=0.1"], ["method=lora"]])
def test_peft_path_where_fusing_would_not_be_exact_and_in_inference(overrides):
    fused, _ = lora_pair(overrides)
    layer = next(m for m in fused.modules() if isinstance(m, FusedLoraLinear))
    x = torch.randn(2, 4, layer.in_features)
    with torch.inference_mode():
        assert not layer._fusable(x, (), {})
    assert layer._fusable(x, (), {}) == ("method.dropout=0.1" not in overrides)


def test_merge_and_unload_still_works_on_fused_layers():
    fused, peft = lora_pair(["method=lora"])
    ids = torch.randint(5, 1000, (2, 7))
    with torch.no_grad():
        expected = peft.eval()(input_ids=ids).logits
        merged = copy.deepcopy(fused).merge_and_unload().eval()
        assert torch.allclose(merged(input_ids=ids).logits, expected, atol=1e-5)
