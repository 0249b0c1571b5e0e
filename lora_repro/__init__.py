"""lora-repro: reproduce the GLUE comparison of LoRA, full fine-tuning, BitFit and adapters."""

from lora_repro import resolvers

__version__ = "0.1.0"

# The configs use these resolvers (${paper_hparam:...}, ${rank_for_budget:...}); registering them on
# import means every way of composing a config (CLI, tests, notebooks, Compose API) can resolve it.
resolvers.register()
