"""What the machine can do fast: the one place `train.precision=auto` is turned into a dtype.

`auto` becomes bf16 where bf16 matmuls run natively (a CUDA GPU with bf16 units; a CPU with AVX512-BF16 or
AMX), else fp32: emulated bf16 (a V100/T4, or a CPU without those instructions) is slower than fp32. The
resolved name, never the word `auto`, goes into a run's config, record and identity, so that runs on
different hardware are never taken for one another.
"""

from __future__ import annotations

import functools
from pathlib import Path

from lora_repro.errors import Unavailable, UserError

__all__ = ["PRECISIONS", "cpu_has_native_bf16", "resolve_precision"]

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
# CPU flags (/proc/cpuinfo) of instructions that compute bf16 dot products in hardware.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.cache
def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True when the CPU has AVX512-BF16 or AMX-BF16 (Linux; False where that cannot be read)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    flags = {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}
    return bool(flags & NATIVE_BF16_FLAGS)


def resolve_precision(requested: str) -> str:
    """`fp32`, `fp16` or `bf16`: what a run with `train.precision=requested` computes in on this machine.

    Raises:
        UserError: An unknown name, or fp16 without a CUDA GPU (autocast to fp16 needs a GPU's loss scaler).
    """
    if requested not in PRECISIONS:
        raise UserError(f"unknown train.precision {requested!r}; choose one of: {', '.join(PRECISIONS)}")
    import torch

    on_cuda = torch.cuda.is_available()
    if requested == "fp16" and not on_cuda:
        raise Unavailable("train.precision=fp16 needs a CUDA GPU; use train.precision=bf16 or fp32 on the CPU")
    if requested != "auto":
        return requested
    if on_cuda:
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"
