"""Peak training memory per method, each measured in a fresh subprocess so one method cannot inflate another.

The child builds the trainee exactly as the timing does (`build_trainee`), records the peak before the first
step (interpreter, libraries, model, optimizer), takes a few steps (the first creates the optimizer state, the
next ones run with it) and reports the peak as a run does (`peak_memory_bytes`: CUDA max allocated on a GPU,
the process's peak RSS on the CPU). On the CPU several children run at once when the threads allow it: a
process's peak RSS does not depend on what runs beside it.

    python -m lora_repro.bench.memory '<json request>'    # the child; prints one JSON line
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, dataclass

from omegaconf import DictConfig, OmegaConf

from lora_repro.bench.harness import random_inputs, set_threads
from lora_repro.bench.training import build_trainee, train_step
from lora_repro.training.trainer import peak_memory_bytes

__all__ = ["MemoryRequest", "measure_peaks"]


@dataclass(frozen=True)
class MemoryRequest:
    """What one child measures."""

    name: str
    kind: str
    cfg: dict
    random_init: bool
    device: str
    threads: int
    batch_size: int
    seq_len: int
    steps: int
    seed: int


def measure_peaks(requests: list[MemoryRequest], parallel: int) -> dict[str, dict[str, int]]:
    """Run one child per request, `parallel` at a time.

    Returns:
        name -> {"peak": bytes, "before_training": bytes}.

    Raises:
        RuntimeError: a child failed (its stderr's tail is in the message).
    """
    results: dict[str, dict[str, int]] = {}
    pending = list(requests)
    while pending:
        wave, pending = pending[:parallel], pending[parallel:]
        children = [(req.name, subprocess.Popen([sys.executable, "-m", __name__, json.dumps(asdict(req))],
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
                    for req in wave]
        for name, child in children:
            out, err = child.communicate()
            if child.returncode != 0:
                tail = "\n".join(err.strip().splitlines()[-15:])
                raise RuntimeError(f"memory measurement of {name} failed (exit {child.returncode}):\n{tail}")
            results[name] = json.loads(out.strip().splitlines()[-1])
    return results


def measure(request: MemoryRequest) -> dict[str, int]:
    """In the child: build, step `request.steps` times, report the peaks."""
    set_threads(request.threads)
    cfg: DictConfig = OmegaConf.create(request.cfg)
    trainee = build_trainee(request.name, request.kind, cfg, request.random_init, request.device)
    batch = random_inputs(cfg.model, request.batch_size, request.seq_len, request.device, request.seed)
    before = peak_memory_bytes()
    for _ in range(request.steps):
        train_step(trainee, batch)
    return {"peak": peak_memory_bytes(), "before_training": before}


if __name__ == "__main__":
    print(json.dumps(measure(MemoryRequest(**json.loads(sys.argv[1])))))
