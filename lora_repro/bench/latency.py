"""Inference latency in the shape of the paper's Table 1: batch sizes x sequence lengths x model variants.

Variants: the base model; LoRA unmerged (PEFT's forward, the extra B·A path on every adapted layer); LoRA
merged into the weights (`merge_and_unload`: the plain architecture again); Houlsby and Pfeiffer adapters;
and each of LoRA's successors the bench times (DoRA, rsLoRA, PiSSA, VeRA, (IA)³), unmerged and merged.
The update weights that start at zero (LoRA's B, the adapters' up-projections, VeRA's b) or at one ((IA)³'s
vectors) would make merging trivially exact and the adapters the identity, so they are moved by small random
values first, as training would.

Each shape is timed on its own, the variants interleaved (`interleave`), under `torch.inference_mode` in eval
mode. The first call of each variant is the warm-up and also gives the outputs compared between merged and
unmerged LoRA. Shapes run from the cheapest up, and each gets the budget the earlier ones left.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from functools import partial

import pandas as pd
import torch
from omegaconf import DictConfig
from torch import nn

from lora_repro.bench.harness import build_backbone, build_method_model, random_inputs, synchronize
from lora_repro.bench.timing import Budget, interleave, median, paired_ratio, ratio_noise, spread, timed
from lora_repro.methods.registry import latency_presets, name_of, untrained_starts
from lora_repro.paper import names as paper_names

__all__ = ["BASE", "LORA", "MERGED", "SUCCESSORS", "VARIANTS", "VARIANT_METHODS", "build_variants",
           "measure_latency", "variant_methods"]

MERGED_SUFFIX = "_merged"
BASE, LORA = "base", name_of(paper_names.LORA)
MERGED = LORA + MERGED_SUFFIX
_AS_IS, _MERGING = latency_presets()
# Variant -> the method config it applies (None: the model as loaded); a `<method>_merged` variant is that
# method merged into the weights. Merged next to the base model: in most rounds the two then run back to
# back, the tightest pairing. Then the methods whose layers stay at inference (the paper's adapters).
VARIANT_METHODS: dict[str, str | None] = {BASE: None, MERGED: LORA, LORA: LORA, **{p: p for p in _AS_IS}}
VARIANTS = tuple(VARIANT_METHODS)
# LoRA's successors that merge like LoRA: timed unmerged and merged when the bench trains them.
SUCCESSORS = tuple(p for p in _MERGING if p != LORA)
TRAINED_STD = 0.02  # update weights move this far off their start (`untrained_starts`), as training would


def variant_methods(methods: Sequence[str] = ()) -> dict[str, str | None]:
    """The latency variants: `VARIANT_METHODS`, then each successor among `methods` unmerged and merged."""
    successors = [m for m in SUCCESSORS if m in methods]
    return {**VARIANT_METHODS, **{f"{m}{suffix}": m for m in successors for suffix in (MERGED_SUFFIX, "")}}


def build_variants(cfgs: Mapping[str, DictConfig], random_init: bool, device: str, seed: int,
                   variants: Mapping[str, str | None] = VARIANT_METHODS) -> dict[str, nn.Module]:
    """Every variant in eval mode on `device`; `cfgs` holds the run config of each method `variants` apply."""
    generator = torch.Generator().manual_seed(seed)
    models: dict[str, nn.Module] = {BASE: build_backbone(cfgs[variants[LORA]], random_init, device)}
    for variant, method in variants.items():
        if method is not None and not variant.endswith(MERGED_SUFFIX):
            models[variant] = _trained_looking(build_method_model(cfgs[method], random_init, device), generator)
    for variant, method in variants.items():
        if variant.endswith(MERGED_SUFFIX):
            models[variant] = copy.deepcopy(models[method]).merge_and_unload()
    return {variant: models[variant].eval() for variant in variants}


def measure_latency(models: Mapping[str, nn.Module], model_cfg: DictConfig, shapes: Sequence[tuple[int, int]],
                    budget: Budget, device: str, seed: int) -> pd.DataFrame:
    """Time every variant at every (batch, length); `budget.seconds` is for all shapes together.

    Returns:
        One row per shape x variant: batch, seq_len, variant, median_ms, ratio_to_base (median of the
        per-round ratios), ratio_noise (its ~95% half-width), spread, rounds, and max_abs_diff (merged vs
        unmerged logits of the same method, on the merged rows).
    """
    rows = []
    deadline = time.perf_counter() + budget.seconds
    ordered = sorted(shapes, key=lambda shape: shape[0] * shape[1])
    for index, (batch, length) in enumerate(ordered):
        share = max(0.0, deadline - time.perf_counter()) / (len(ordered) - index)
        inputs = random_inputs(model_cfg, batch, length, device, seed, labels=False)
        with torch.inference_mode():
            logits = {variant: model(**inputs).logits for variant, model in models.items()}  # the warm-up
            diffs = {variant: (logits[variant] - logits[variant.removesuffix(MERGED_SUFFIX)]).abs().max().item()
                     for variant in models if variant.endswith(MERGED_SUFFIX)}
            calls = {variant: timed(partial(model, **inputs), partial(synchronize, device))
                     for variant, model in models.items()}
            samples = interleave(calls, Budget(share, budget.min_rounds, budget.max_rounds), warmup=0)
        for variant, runs in samples.items():
            rows.append({"batch": batch, "seq_len": length, "variant": variant,
                         "median_ms": 1000 * median(runs), "ratio_to_base": paired_ratio(runs, samples[BASE]),
                         "ratio_noise": ratio_noise(runs, samples[BASE]),
                         "spread": spread(runs), "rounds": len(runs),
                         "max_abs_diff": diffs.get(variant, float("nan"))})
    return pd.DataFrame(rows)


def _trained_looking(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Move the update weights off their start (zero or one) by small random values, as training would."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            start = next((value for marker, value in untrained_starts().items() if marker in name), None)
            if start is not None:
                values = start + torch.randn(param.shape, generator=generator) * TRAINED_STD
                param.copy_(values.to(param.device, param.dtype))
    return model
