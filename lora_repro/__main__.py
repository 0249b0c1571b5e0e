"""`python -m lora_repro ...`: the same as the `lora-repro` command."""

from lora_repro.cli import main

main()
