"""lora-repro: reproduce the GLUE comparison of LoRA, full fine-tuning, BitFit and adapters."""

__version__ = "0.1.0"
