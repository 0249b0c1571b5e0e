"""lora-repro: reproduce the GLUE comparison of LoRA, full fine-tuning, BitFit and adapters."""

import warnings

from lora_repro import resolvers

__version__ = "0.1.0"

# The configs use these resolvers (${paper_hparam:...}, ${rank_for_budget:...}); registering them on
# import means every way of composing a config (CLI, tests, notebooks, Compose API) can resolve it.
resolvers.register()

# PEFT reads transformers' deprecated `is_gradient_checkpointing` alias on every wrap: a note to PEFT's
# maintainers printed into every run's error output, where one line is promised. Not ours to fix.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
