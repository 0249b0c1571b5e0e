"""Cost benchmarks: what fine-tuning and serving cost per method, measured the way a run trains (`make bench`).

Modules, in the order a benchmark uses them:

* `harness`: run configs, models built as a run builds them, random inputs, the environment.
* `timing`: interleaved round-robin timing under a time budget; paired ratios and their noise.
* `training`: one optimizer step per method, the lower bound, the PEFT-forward baseline.
* `memory`: peak memory per method, each in a fresh subprocess.
* `checkpoints`: bytes on disk through the run's own `save_weights`.
* `profiling`: self time per operator (where a step's time goes).
* `latency`: inference latency of the base model, LoRA unmerged and merged, Houlsby and Pfeiffer adapters.
* `runner`: `run_bench`, all of the above for one model.
* `report`: Markdown, CSV, PNG and raw JSON into results/bench/.
* `cli`: `lora-repro bench [options]`.
"""
