"""Inference latency in the shape of the paper's Table 1: batch sizes x sequence lengths x model variants.

Variants: the base model; LoRA unmerged (PEFT's forward, the extra B·A path on every adapted layer); LoRA
merged into the weights (`merge_and_unload`: the plain architecture again); Houlsby and Pfeiffer adapters.
LoRA's B and the adapters' up-projections start at zero, which would make merging trivially exact and the
adapters the identity, so they are given small random values first, as training would.

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

__all__ = ["BASE", "LORA", "MERGED", "VARIANTS", "VARIANT_METHODS", "build_variants", "measure_latency"]

BASE, LORA, MERGED = "base", "lora", "lora_merged"
# Variant -> the method config it applies (None: the model as loaded).
# Merged next to the base model: in most rounds the two then run back to back, the tightest pairing.
VARIANT_METHODS: dict[str, str | None] = {BASE: None, MERGED: "lora", LORA: "lora", "houlsby": "houlsby",
                                          "pfeiffer": "pfeiffer"}
VARIANTS = tuple(VARIANT_METHODS)
# Names of the weights that start at zero, and the spread given to them (LoRA B, adapter up-projections).
ZERO_INIT_MARKERS, TRAINED_STD = ("lora_B", "adapter_up"), 0.02


def build_variants(cfgs: Mapping[str, DictConfig], random_init: bool, device: str, seed: int
                   ) -> dict[str, nn.Module]:
    """Every variant in eval mode on `device`; `cfgs` holds the run configs of "lora", "houlsby", "pfeiffer"."""
    generator = torch.Generator().manual_seed(seed)
    models: dict[str, nn.Module] = {BASE: build_backbone(cfgs[VARIANT_METHODS[LORA]], random_init, device)}
    for variant, method in VARIANT_METHODS.items():
        if method is not None and variant != MERGED:
            models[variant] = _trained_looking(build_method_model(cfgs[method], random_init, device), generator)
    models[MERGED] = copy.deepcopy(models[LORA]).merge_and_unload()
    return {variant: models[variant].eval() for variant in VARIANTS}


def measure_latency(models: Mapping[str, nn.Module], model_cfg: DictConfig, shapes: Sequence[tuple[int, int]],
                    budget: Budget, device: str, seed: int) -> pd.DataFrame:
    """Time every variant at every (batch, length); `budget.seconds` is for all shapes together.

    Returns:
        One row per shape x variant: batch, seq_len, variant, median_ms, ratio_to_base (median of the
        per-round ratios), ratio_noise (its ~95% half-width), spread, rounds, and max_abs_diff (merged vs
        unmerged logits, on the merged rows).
    """
    rows = []
    deadline = time.perf_counter() + budget.seconds
    ordered = sorted(shapes, key=lambda shape: shape[0] * shape[1])
    for index, (batch, length) in enumerate(ordered):
        share = max(0.0, deadline - time.perf_counter()) / (len(ordered) - index)
        inputs = random_inputs(model_cfg, batch, length, device, seed, labels=False)
        with torch.inference_mode():
            logits = {variant: model(**inputs).logits for variant, model in models.items()}  # the warm-up
            diff = (logits[MERGED] - logits[LORA]).abs().max().item()
            calls = {variant: timed(partial(model, **inputs), partial(synchronize, device))
                     for variant, model in models.items()}
            samples = interleave(calls, Budget(share, budget.min_rounds, budget.max_rounds), warmup=0)
        for variant, runs in samples.items():
            rows.append({"batch": batch, "seq_len": length, "variant": variant,
                         "median_ms": 1000 * median(runs), "ratio_to_base": paired_ratio(runs, samples[BASE]),
                         "ratio_noise": ratio_noise(runs, samples[BASE]),
                         "spread": spread(runs), "rounds": len(runs),
                         "max_abs_diff": diff if variant == MERGED else float("nan")})
    return pd.DataFrame(rows)


def _trained_looking(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Give the zero-initialised update weights small random values, as after some training."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if any(marker in name for marker in ZERO_INIT_MARKERS):
                values = torch.randn(param.shape, generator=generator) * TRAINED_STD
                param.copy_(values.to(param.device, param.dtype))
    return model
