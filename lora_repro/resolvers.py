"""OmegaConf resolvers used by the configs: derived values are computed, never hand-typed."""

from __future__ import annotations

import os
from collections.abc import Sequence

from omegaconf import DictConfig, OmegaConf

from lora_repro.errors import UserError
from lora_repro.paper import paper_hparam
from lora_repro.paper.names import LORA


def rank_for_budget(budget_params: int | None, budget_rank: int, layers: int, hidden: int,
                    targets: Sequence[str]) -> int:
    """LoRA rank that spends a trainable-parameter budget over `targets` (Table 5 of the paper).

    Every attention weight of these models is hidden x hidden, so rank r on n weight types costs
    layers * n * r * 2 * hidden. The budget is given in parameters, or (when `budget_params` is null)
    as "what rank `budget_rank` on one weight type costs", the paper's 18M = r 8 on one type.

    Returns:
        The rank whose cost is nearest the budget (at least 1): the paper's "18M" on GPT-3 175B is rank 8
        on one type (18.9M), 4 on two, 2 on four, which rounding down would make 7, 3 and 1.

    Raises:
        UserError: no weight types, or a budget too small for rank 1.
    """
    if not targets:
        raise UserError("method.targets is empty; list weight types from q, k, v, o")
    budget = budget_params if budget_params is not None else layers * budget_rank * 2 * hidden
    rank = round(budget / (layers * len(targets) * 2 * hidden))
    if rank < 1:
        raise UserError(f"a budget of {budget} parameters is nearer rank 0 than rank 1 on {len(targets)} weight types "
                        f"({layers * len(targets) * 2 * hidden} parameters); raise the budget")
    return int(rank)


def recipe_hparam(model: str, task: str, key: str, *, _root_: DictConfig) -> object:
    """`paper_hparam` on the side of the config's `recipe` (`reproduced` where the config sets none).

    The recipe decides which side of a documented paper-vs-scripts disagreement a run takes
    (lora_repro/paper/paper_vs_scripts.csv).
    """
    return paper_hparam(model, task, key, OmegaConf.select(_root_, "recipe", default="reproduced"))


def lora_only(method: str, paper_value: object, method_default: object) -> object:
    """`paper_value` for LoRA runs, `method_default` for every other method.

    The paper ran only LoRA with the official scripts; its FT, BitFit and adapter rows quote prior
    work, so the scripts' learning rate and MNLI start say nothing about those methods.
    """
    from lora_repro.methods.registry import name_of  # here: resolving a config must not import torch and PEFT first

    return paper_value if method == name_of(LORA) else method_default


def multiply(value: float, factor: float) -> float:
    """`value * factor`, e.g. a search's learning rate as a centre rate times a declared factor."""
    return float(value) * float(factor)


def process_id() -> int:
    """This process's id: with the second, it keeps apart two sweeps started in the same second."""
    return os.getpid()


RESOLVERS = {"rank_for_budget": rank_for_budget, "paper_hparam": recipe_hparam,
             "lora_only": lora_only, "mul": multiply}
# Cached, like Hydra's `now`: the value resolved in the launching process goes with the config to every job.
CACHED_RESOLVERS = {"pid": process_id}


def register() -> None:
    """Register the resolvers (idempotent: Hydra apps and tests may both call it)."""
    for name, function in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function)
    for name, function in CACHED_RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function, use_cache=True)
