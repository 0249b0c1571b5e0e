"""What the machine can do fast: the one place `train.precision=auto` is turned into a dtype.

`auto` becomes bf16 where bf16 matmuls run natively (a CUDA GPU with bf16 units; a CPU with AVX512-BF16 or
AMX), else fp32: emulated bf16 (a V100/T4, or a CPU without those instructions) is slower than fp32. The
resolved name, never the word `auto`, goes into a run's config, record and identity, so that runs on
different hardware are never taken for one another.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from lora_repro.errors import Unavailable, UserError

__all__ = ["PRECISIONS", "RESOLVED_PRECISIONS", "cpu_has_native_bf16", "resolve_precision"]

RESOLVED_PRECISIONS = ("fp32", "fp16", "bf16")  # what a run computes in; `auto` resolves to one of them
PRECISIONS = ("auto", *RESOLVED_PRECISIONS)
# CPU flags (/proc/cpuinfo) of instructions that compute bf16 dot products in hardware.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# oneDNN instruction-set caps (ONEDNN_MAX_CPU_ISA) under which PyTorch's CPU matmuls emulate bf16 even on a CPU
# that has the instructions: measured 12x the fp32 time for a MiniLM-sized layer under AVX2 on an AVX512-BF16 CPU.
EMULATING_ONEDNN_CAPS = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
                                   "AVX512_CORE_VNNI"})


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True when the CPU has AVX512-BF16 or AMX-BF16 and oneDNN may use them (Linux; False where unreadable)."""
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in EMULATING_ONEDNN_CAPS:
        return False
    return bool(cpu_flags(cpuinfo) & NATIVE_BF16_FLAGS)


@functools.cache
def cpu_flags(cpuinfo: Path) -> frozenset[str]:
    """The CPU's flags from /proc/cpuinfo (empty where that cannot be read)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    return frozenset(flag for line in text.splitlines() if line.startswith("flags")
                     for flag in line.split(":", 1)[1].split())


def resolve_precision(requested: str, on_cuda: bool | None = None) -> str:
    """`fp32`, `fp16` or `bf16`: what a run with `train.precision=requested` computes in.

    On this machine, or (`on_cuda=True`) on GPU nodes a plan is made for, where `auto` is taken as bf16 (an
    A100/H100-class GPU; a V100 resolves it to fp32 when the run starts).

    Raises:
        UserError: An unknown name, or fp16 without a CUDA GPU (autocast to fp16 needs a GPU's loss scaler).
    """
    if requested not in PRECISIONS:
        raise UserError(f"unknown train.precision {requested!r}; choose one of: {', '.join(PRECISIONS)}")
    if on_cuda is None:
        import torch

        on_cuda = torch.cuda.is_available()
    if requested == "fp16" and not on_cuda:
        raise Unavailable("train.precision=fp16 needs a CUDA GPU; use train.precision=bf16 or fp32 on the CPU")
    if requested != "auto":
        return requested
    if on_cuda:
        import torch

        if not torch.cuda.is_available():  # planned for GPU nodes from a machine without one
            return "bf16"
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"
