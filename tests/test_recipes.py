"""The official recipes as the paper's scripts have them (microsoft/LoRA examples/NLU/*.sh)."""

from __future__ import annotations

import re

import pytest
from omegaconf import OmegaConf

from lora_repro.config import compose_config
from lora_repro.resolvers import rank_for_budget
from lora_repro.training.trainer import training_arguments
from tests.conftest import lora_repro_here


@pytest.mark.parametrize(("targets", "rank"), [(["q"], 8), (["q", "v"], 4), (["q", "k", "v", "o"], 2)])
def test_the_papers_18m_budget_on_gpt3_gives_its_ranks(targets, rank):
    # GPT-3 175B: 96 layers, hidden 12288; r=8 on one type costs 18.9M, which the paper calls 18M.
    assert rank_for_budget(18_000_000, 8, 96, 12288, targets) == rank


def job(*overrides: str):
    cfg = compose_config(list(overrides))
    OmegaConf.resolve(cfg)
    return cfg


def test_deberta_runs_get_the_scripts_warmup_steps_and_classifier_dropout(tmp_path):
    cfg = job("experiment=table2_deberta_xxl", "task=mnli")
    assert (cfg.train.warmup_steps, cfg.model.config_overrides.cls_dropout) == (1000, 0.15)
    assert cfg.train.precision == "fp16"  # the scripts' --fp16; the RoBERTa scripts train in fp32
    assert job("experiment=table2_roberta_base", "task=rte").train.precision == "fp32"
    cfg.train.precision = "fp32"  # fp16 needs a GPU, which the tests do not have
    args = training_arguments(cfg, tmp_path)
    assert args.warmup_steps == 1000
    mrpc = job("experiment=table2_deberta_xxl", "task=mrpc")  # the one DeBERTa script with a warm-up ratio
    mrpc.train.precision = "fp32"
    assert mrpc.train.warmup_steps is None and training_arguments(mrpc, tmp_path).warmup_steps == 0.1
    roberta = job("experiment=table2_roberta_base", "task=rte")
    assert training_arguments(roberta, tmp_path).warmup_steps == 0.06 and not roberta.model.config_overrides


def test_dagger_adapter_rows_follow_the_official_adapter_scripts():
    adapter = job("experiment=table2_roberta_large_houlsby", "task=mnli", "method=houlsby_m8")
    assert (adapter.train.learning_rate, adapter.train.warmup_ratio, adapter.train.weight_decay) == (3e-4, 0.1, 0.0)
    assert (adapter.train.epochs, adapter.train.batch_size) == (5, 256)
    lora = job("experiment=table2_roberta_large_houlsby", "task=mnli", "method=lora_paper")
    assert (lora.train.learning_rate, lora.train.batch_size, lora.train.init_from) == (3e-4, 32, None)


def test_where_the_paper_and_its_scripts_disagree_the_recipe_picks_a_side_through_the_cli(monkeypatch, capsys):
    def planned(*overrides: str) -> str:
        """What `lora-repro plan` prints for one RoBERTa-large CoLA LoRA run."""
        assert lora_repro_here(monkeypatch, "plan", "experiment=table2_roberta_large", "task=cola",
                               "method=lora_paper", "seed=0", *overrides) == 0
        return capsys.readouterr().out

    # microsoft/LoRA#149: roberta_large_cola.sh's 3e-4 left CoLA at MCC 0; the appendix's 2e-4 learned.
    assert re.search(r"cola roberta_large\s+lora r=8 alpha=16 .* 0\.0002 ", planned())
    assert re.search(r" 0\.0003 ", planned("recipe=scripts"))
    assert re.search(r"r=8 alpha=8 .* 0\.0002 ", planned("recipe=paper"))
    deberta = job("experiment=table2_deberta_xxl", "task=cola", "method=lora_paper", "recipe=paper")
    assert (deberta.method.r, deberta.method.alpha, deberta.train.learning_rate) == (8, 8, 1.3e-4)
    assert (job("experiment=table2_deberta_xxl", "task=cola", "method=lora_paper").method.r) == 16
