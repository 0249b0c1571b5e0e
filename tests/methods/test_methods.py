"""Every method through one battery, on every tiny architecture; bad input; the paper's parameter counts.

Adding a method (or a variant worth covering) means adding a row to CASES, BAD_OPTIONS or PAPER_COUNTS.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import pytest
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from peft import PeftModel
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file, save_file
from torch import nn

from lora_repro.errors import UserError
from lora_repro.methods import (
    METHODS,
    apply_method,
    count_parameters,
    load_trainable_state_dict,
    method_names,
    register,
    trainable_state_dict,
)
from lora_repro.models import build_model
from tests.conftest import CONF_DIR, compose_config, tiny_model_cfg

NUM_LABELS = 2


def _is_head(name: str, model_cfg: DictConfig) -> bool:
    return any(name.startswith(h + ".") for h in model_cfg.head_modules)


def non_head(keep: Callable[[str], bool]) -> Callable[[DictConfig, nn.Module], int]:
    """Expected count: the backbone's parameters whose name passes `keep` (full FT, BitFit)."""
    return lambda model_cfg, backbone: sum(p.numel() for n, p in backbone.named_parameters()
                                           if keep(n) and not _is_head(n, model_cfg))


def lora_formula(r: int, targets: int) -> Callable[[DictConfig, nn.Module], int]:
    """layers x targets x r x (d_in + d_out); every attention weight here is hidden x hidden."""
    return lambda model_cfg, _: (model_cfg.shape.num_hidden_layers * targets * r
                                 * 2 * model_cfg.shape.hidden_size)


def vector_formula(per_layer: Callable[[int, int], int]) -> Callable[[DictConfig, nn.Module], int]:
    """Layers x per_layer(hidden, ffn): the per-layer vectors of DoRA's magnitudes, VeRA and (IA)^3."""
    return lambda model_cfg, _: model_cfg.shape.num_hidden_layers * per_layer(
        model_cfg.shape.hidden_size, model_cfg.shape.intermediate_size)


def adapter_formula(sites: int, m: int, dropped: int = 0) -> Callable[[DictConfig, nn.Module], int]:
    """Adapted layers x sites x (2·d·m + m + d), the paper's formula."""
    def count(model_cfg: DictConfig, _: nn.Module) -> int:
        d, layers = model_cfg.shape.hidden_size, model_cfg.shape.num_hidden_layers
        return (layers - dropped) * sites * (2 * d * m + m + d)
    return count


@dataclass(frozen=True)
class Case:
    id: str
    overrides: tuple[str, ...]
    expected_method_count: Callable[[DictConfig, nn.Module], int]


CASES = [
    Case("full_ft", ("method=full_ft",), non_head(lambda n: True)),
    Case("bitfit", ("method=bitfit",), non_head(lambda n: n.endswith(".bias"))),
    Case("houlsby", ("method=adapter", "method.bottleneck=4"), adapter_formula(sites=2, m=4)),
    Case("pfeiffer_gelu", ("method=adapter", "method.variant=pfeiffer", "method.bottleneck=8",
                           "method.activation=gelu"), adapter_formula(sites=1, m=8)),
    # 2 tiny layers: drop_lowest null means the lower half, i.e. 1.
    Case("adapterdrop", ("method=adapter", "method.variant=adapterdrop", "method.bottleneck=4"),
         adapter_formula(sites=1, m=4, dropped=1)),
    Case("lora_qv", ("method=lora", "method.r=4"), lora_formula(r=4, targets=2)),
    Case("lora_qkvo_dropout", ("method=lora", "method.r=2", "method.targets=[q,k,v,o]", "method.dropout=0.1"),
         lora_formula(r=2, targets=4)),
    Case("dora", ("method=dora", "method.r=4"),
         lambda cfg, m: lora_formula(4, 2)(cfg, m) + vector_formula(lambda d, f: 2 * d)(cfg, m)),
    Case("rslora", ("method=rslora", "method.r=4"), lora_formula(r=4, targets=2)),
    Case("pissa", ("method=pissa", "method.r=4"), lora_formula(r=4, targets=2)),
    Case("vera", ("method=vera", "method.r=16"), vector_formula(lambda d, f: 2 * (16 + d))),
    Case("vera_ffn", ("method=vera", "method.r=8", "method.targets=[v,ffn]"),
         vector_formula(lambda d, f: 8 + d + 8 + d)),
    Case("ia3", ("method=ia3",), vector_formula(lambda d, f: 2 * d + f)),
    Case("loha", ("method=loha", "method.r=2"), lora_formula(r=4, targets=2)),  # two factor pairs of rank 2
    # init_r triplets per weight: P (r x d_in), Q (d_out x r) and Λ (r).
    Case("adalora", ("method=adalora", "method.init_r=6", "method.target_r=4"),
         lambda cfg, m: lora_formula(6, 2)(cfg, m) + cfg.shape.num_hidden_layers * 2 * 6),
]


@cache
def method_cfg(overrides: tuple[str, ...]) -> DictConfig:
    return compose_config(list(overrides)).method


def prepared(model_cfg: DictConfig, cfg: DictConfig) -> nn.Module:
    # The same seed every time: a fresh model has the same frozen backbone, as a pretrained load would.
    torch.manual_seed(0)
    return apply_method(build_model(model_cfg, NUM_LABELS, "cpu"), cfg, model_cfg)


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 1000, (4, 10), generator=g)  # clear of special and padding ids
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
            "labels": torch.randint(0, NUM_LABELS, (4,), generator=g)}


def logits(model: nn.Module) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**batch(seed=1)).logits


def inner(model: nn.Module) -> nn.Module:
    return model.get_base_model() if isinstance(model, PeftModel) else model


def train(model: nn.Module, steps: int = 3) -> None:
    # Every parameter goes to the optimizer, so only requires_grad keeps the frozen ones frozen.
    # Adam without weight decay: a parameter moves only if it got a gradient.
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(steps):
        optimizer.zero_grad()
        model(**batch(seed=step)).loss.backward()
        optimizer.step()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_method_battery(case: Case, any_tiny_model_cfg: DictConfig, tmp_path) -> None:
    model_cfg, cfg = any_tiny_model_cfg, method_cfg(case.overrides)
    torch.manual_seed(0)
    backbone_logits = logits(build_model(model_cfg, NUM_LABELS, "cpu"))
    model = prepared(model_cfg, cfg)
    # Zero-initialised adapters and LoRA B: the method starts exactly where the backbone is.
    torch.testing.assert_close(logits(model), backbone_logits)

    counts = count_parameters(model, cfg)
    assert counts.method == case.expected_method_count(model_cfg, build_model(model_cfg, NUM_LABELS, "meta"))
    params = dict(inner(model).named_parameters())
    assert counts.trainable == sum(p.numel() for p in params.values() if p.requires_grad)
    assert counts.total == sum(p.numel() for p in params.values())
    head = [n for n in params if _is_head(n, model_cfg)]
    assert head and all(params[n].requires_grad for n in head)

    before = {n: p.detach().clone() for n, p in params.items()}
    train(model)
    for name, param in params.items():
        moved = not torch.equal(param, before[name])
        assert moved == param.requires_grad, f"{name}: requires_grad={param.requires_grad}, moved={moved}"

    save_file(trainable_state_dict(model), tmp_path / "weights.safetensors")
    fresh = prepared(model_cfg, cfg)
    load_trainable_state_dict(fresh, load_file(tmp_path / "weights.safetensors"))
    torch.testing.assert_close(logits(fresh), logits(model), rtol=0, atol=0)


ADAPTER = ("method=adapter", "method.bottleneck=4")
ADAPTERDROP = (*ADAPTER, "method.variant=adapterdrop")
# Bad method options: (overrides, part of the message).
BAD_OPTIONS = [
    (("method=lora", "method.r=-4"), "lora rank r must be > 0, got -4"),
    (("method=lora", "method.r=0"), "lora rank r must be > 0, got 0"),
    (("method=lora", "method.r=2.5"), "lora rank r must be an integer, got 2.5"),
    (("method=lora", "method.r=33"), "r must be <= 32"),
    (("method=lora", "method.alpha=0"), "lora alpha must be a finite number > 0, got 0"),
    (("method=lora", "method.dropout=1.0"), "lora dropout must be a finite number in [0, 1), got 1.0"),
    (("method=lora", "method.targets=[]"), "lora targets must be a non-empty list"),
    (("method=lora", "method.targets=[q,x]"), "lora target 'x' not in {q, k, v, o, ffn}"),
    (("method=dora", "method.targets=[q,x]"), "dora target 'x' not in {q, k, v, o, ffn}"),
    (("method=pissa", "method.r=33"), "pissa rank r=33 is larger than layer"),
    (("method=vera", "method.r=0"), "vera rank r must be > 0, got 0"),
    (("method=adalora", "method.target_r=16"), "adalora target_r must be <= 12, got 16"),
    (("method=adalora", "method.tinit=0.6"), "adalora tinit + tfinal must leave steps"),
    (("method=adalora", "method.orth_reg_weight=-1"), "adalora orth_reg_weight must be a finite number >= 0"),
    (("method=vera", "method.d_initial=0"), "vera d_initial must be a finite number > 0"),
    (("method=vera", "method.targets=[q,q]"), "vera targets repeat ['q']"),
    (("method=ia3", "method.targets=[]"), "ia3 targets must be a non-empty list of weights such as [k, v, ffn]"),
    (("method=ia3", "method.targets=[k,mlp]"), "ia3 target 'mlp' not in {q, k, v, o, ffn}"),
    (("method=lora", "method.targets=[q,v,q]"), "lora targets repeat ['q']"),
    (("method=lora", "+method.rank=4"), "unknown options ['rank']"),
    (("method=bitfit", "+method.r=8"), "unknown options ['r']"),
    (("method=adapter", "method.bottleneck=0"), "adapter bottleneck must be > 0, got 0"),
    (("method=adapter", "method.bottleneck=33"), "adapter bottleneck 33 is larger than the hidden size 32"),
    (("method=adapter", "method.variant=parallel"), "choose one of: adapterdrop, houlsby, pfeiffer"),
    (("method=adapter", "method.activation=swish"), "unknown adapter activation 'swish'"),
    (("method=adapter", "method.drop_lowest=1"), "only applies to variant adapterdrop"),
    ((*ADAPTERDROP, "method.drop_lowest=2"), "must be <= 1, got 2"),  # the tiny models have 2 layers
    ((*ADAPTERDROP, "method.drop_lowest=0"), "must be > 0, got 0"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_OPTIONS, ids=[" ".join(o) for o, _ in BAD_OPTIONS])
def test_bad_options_raise_user_error(overrides: tuple[str, ...], message: str) -> None:
    model_cfg = tiny_model_cfg("bert")
    with pytest.raises(UserError, match=re.escape(message)):
        apply_method(build_model(model_cfg, NUM_LABELS, "meta"), method_cfg(overrides), model_cfg)


# A model config that does not fit the model: (method overrides, model field, new value, message).
BAD_MODEL_FIELDS = [
    (("method=lora",), "lora_targets.q", "attention.self.nope", "'attention.self.nope') matches no module"),
    (("method=lora",), "lora_targets.q", "attention.self", "not a Linear layer"),
    (ADAPTER, "adapter_sites.ffn", r"nowhere\.(\d+)$", "matches no module"),
    (("method=ia3",), "adapter_sites.ffn", r"nowhere\.(\d+)$", "fix model.adapter_sites.ffn"),
    (ADAPTER, "adapter_sites.ffn", r"layer\.\d+\.output\.dense$", "needs a group capturing the layer index"),
    (ADAPTER, "layer_norm_pattern", "NoNorm", "model.layer_norm_pattern 'NoNorm' matches no"),
    (("method=bitfit",), "head_modules", ["classifier", "nohead"], "head_modules entry 'nohead' matches no"),
]


@pytest.mark.parametrize(("overrides", "field", "value", "message"), BAD_MODEL_FIELDS,
                         ids=[f for _, f, _, _ in BAD_MODEL_FIELDS])
def test_model_config_that_does_not_fit_raises_user_error(overrides, field, value, message) -> None:
    model_cfg = tiny_model_cfg("bert")
    with open_dict(model_cfg):
        OmegaConf.update(model_cfg, field, value, merge=False)
    with pytest.raises(UserError, match=re.escape(message)):
        apply_method(build_model(model_cfg, NUM_LABELS, "meta"), method_cfg(overrides), model_cfg)


def test_unknown_method_lists_the_valid_ones() -> None:
    model_cfg = tiny_model_cfg("bert")
    with pytest.raises(UserError, match="unknown method 'prefix_tuning'; choose one of: adalora, adapter, bitfit"):
        apply_method(build_model(model_cfg, NUM_LABELS, "meta"), OmegaConf.create({"name": "prefix_tuning"}),
                     model_cfg)
    declared = {p.stem for p in (CONF_DIR / "method").glob("*.yaml")
                if OmegaConf.select(OmegaConf.load(p), "method.name") == p.stem}
    assert set(method_names()) == declared  # every method has its conf/method/<name>.yaml, and every such file a module


def test_duplicate_registration_is_rejected() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register("lora", config=object, owns=lambda name: True, rows=(), order=0)(lambda model, cfg, model_cfg: model)


def test_state_dict_that_does_not_fit_raises_user_error() -> None:
    model_cfg, cfg = tiny_model_cfg("bert"), method_cfg(("method=lora", "method.r=2"))
    state = trainable_state_dict(prepared(model_cfg, cfg))
    name = next(iter(state))
    for broken in ({k: v for k, v in state.items() if k != name}, {**state, "extra.weight": state[name]}):
        with pytest.raises(UserError, match="do not fit"):
            load_trainable_state_dict(prepared(model_cfg, cfg), broken)
    with pytest.raises(UserError, match="has shape"):
        load_trainable_state_dict(prepared(model_cfg, cfg), {**state, name: torch.zeros(1)})


def test_count_needs_apply_method() -> None:
    with pytest.raises(ValueError, match="apply_method"):
        count_parameters(build_model(tiny_model_cfg("bert"), NUM_LABELS), method_cfg(("method=bitfit",)))


# The LoRA paper's counts (reference notes in /work/shared/paper/README.md) and VeRA's, head excluded.
PAPER_COUNTS = [
    ("roberta_base", ("method=lora", "method.r=8", "method.targets=[q,v]"), 294_912),
    ("roberta_large", ("method=lora", "method.r=8", "method.targets=[q,v]"), 786_432),
    ("deberta_v2_xxlarge", ("method=lora", "method.r=16", "method.targets=[q,v]"), 4_718_592),
    ("roberta_base", ("method=bitfit",), 102_144),
    ("roberta_large", ("method=adapter", "method.variant=houlsby", "method.bottleneck=64"), 6_343_680),
    ("roberta_large", ("method=adapter", "method.variant=houlsby", "method.bottleneck=8"), 835_968),
    ("roberta_large", ("method=adapter", "method.variant=pfeiffer", "method.bottleneck=64"), 3_171_840),
    ("roberta_large", ("method=adapter", "method.variant=pfeiffer", "method.bottleneck=16"), 811_392),
    # The VeRA paper's Table 2: 0.043M (base, r 1024) and 0.061M (large, r 256) on Wq, Wv.
    ("roberta_base", ("method=vera", "method.r=1024"), 43_008),
    ("roberta_large", ("method=vera", "method.r=256"), 61_440),
]


@pytest.mark.parametrize(("model", "overrides", "expected"), PAPER_COUNTS,
                         ids=[f"{m}-{' '.join(o)}" for m, o, _ in PAPER_COUNTS])
def test_paper_parameter_counts_on_meta(model: str, overrides: tuple[str, ...], expected: int) -> None:
    cfg = compose_config([f"model={model}", *overrides])
    prepared_model = apply_method(build_model(cfg.model, NUM_LABELS, "meta"), cfg.method, cfg.model)
    assert count_parameters(prepared_model, cfg.method).method == expected
    assert all(p.is_meta for p in prepared_model.parameters())  # nothing was allocated


# Every method declared to merge, with its config's defaults (VeRA at a small rank, for speed).
MERGEABLE = [(f"method={name}", *(("method.r=16",) if name == "vera" else ())) for name in method_names()
             if METHODS[name].merges]


@pytest.mark.parametrize("overrides", MERGEABLE, ids=[o[0].split("=")[1] for o in MERGEABLE])
def test_peft_methods_merge_into_the_weights_with_the_same_outputs(overrides: tuple[str, ...]) -> None:
    # Zero inference latency, the paper's argument for LoRA, holds for a successor only if it merges exactly.
    model_cfg = tiny_model_cfg("bert")
    model = prepared(model_cfg, method_cfg(overrides))
    train(model)
    merged = copy.deepcopy(model).merge_and_unload()
    assert not any(isinstance(m, BaseTunerLayer) for m in merged.modules())  # the plain architecture again
    torch.testing.assert_close(logits(merged), logits(model), rtol=1e-5, atol=1e-5)
