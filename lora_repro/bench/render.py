"""A benchmark result as files: Markdown tables, tidy CSVs, a PNG figure and the raw per-round samples.

Every file names the device, threads, torch version and the command that produced it; every file is written
atomically (`atomic_write`), like the other reports.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from lora_repro.bench.latency import BASE, MERGED
from lora_repro.bench.profiling import PROFILE_ROUNDS
from lora_repro.bench.runner import LORA, BenchResult
from lora_repro.records.io import atomic_write
from lora_repro.report.render import figure_png, markdown_table, produced_by

__all__ = ["Target", "targets", "to_markdown", "write_bench"]

MB = 2**20


@dataclass(frozen=True)
class Target:
    """A goal of the benchmark (not a test assertion): `value` should be at most `goal`."""

    what: str
    goal: float
    value: float
    noise: float = math.nan  # ~95% half-width of a timed ratio (see `ratio_noise`)
    percent: bool = False

    @property
    def verdict(self) -> str:
        """Met, within noise (over the goal by less than the noise), missed, or not measured."""
        if self.value is None or math.isnan(self.value):
            return "not measured"
        if self.value <= self.goal:
            return "met"
        return "within noise" if self.value - self.noise <= self.goal else "missed"

    @property
    def measured(self) -> str:
        return self.shown(self.value) + ("" if math.isnan(self.noise) else f" ± {self.noise:.3f}")

    def shown(self, number: float) -> str:
        return "—" if number is None or math.isnan(number) else (f"{100 * number:.2f}%" if self.percent
                                                                 else f"{number:.3f}")


def targets(result: BenchResult) -> list[Target]:
    """The issue's four targets, measured."""
    lora = _row(result.training, LORA)
    merged = result.latency[result.latency["variant"] == MERGED]
    worst = merged.loc[merged["ratio_to_base"].idxmax()] if len(merged) else {}
    nan = math.nan
    return [
        Target("merged LoRA latency / base latency (worst shape)", 1.01, worst.get("ratio_to_base", nan),
               worst.get("ratio_noise", nan)),
        Target("LoRA step time / full FT step time", 0.70, lora.get("step_vs_full_ft", nan),
               lora.get("step_vs_full_ft_noise", nan)),
        Target("LoRA peak training memory / full FT peak", 0.60, lora.get("peak_vs_full_ft", nan)),
        Target("LoRA checkpoint / full model checkpoint", 0.01, lora.get("checkpoint_vs_full", nan), percent=True),
    ]


def environment_line(result: BenchResult) -> str:
    """Device, threads and versions in one line."""
    env = result.env
    return (f"Device: {env['device']} ({env['hardware']}), torch threads {env['threads']}, torch {env['torch']}, "
            f"transformers {env['transformers']}, peft {env['peft']}, python {env['python']}, "
            f"commit {env['git_commit']}")


def to_markdown(result: BenchResult) -> str:
    """The whole result as Markdown: provenance, targets, training, latency, profile."""
    spec = result.spec
    parts = [f"# Cost benchmarks: {spec.model}", produced_by(f"`{result.env['command']}`"),
             environment_line(result) + f". The benchmark took {result.seconds:.0f} s.",
             "## Targets", markdown_table(targets_table(result)),
             "Goals, not assertions. ± is the ~95% interval of a median ratio (1.58 IQR / sqrt(rounds)); "
             "'within noise' means over the goal by less than that.",
             f"## Training cost per method (batch {spec.batch_size} x {spec.seq_len} tokens)",
             markdown_table(training_display(result.training)), *training_notes(result),
             "## Inference latency (ms, median after warm-up; x = median per-round ratio to the base model)",
             markdown_table(latency_display(result.latency)), *latency_notes(result)]
    if result.profile is not None:
        parts += ["## Where the step time goes (torch.profiler: self time per operator, ms per step, mean of "
                  f"{PROFILE_ROUNDS} interleaved steps each)",
                  markdown_table(result.profile.round(1).reset_index(names="operator"))]
    return "\n\n".join(parts) + "\n"


def targets_table(result: BenchResult) -> pd.DataFrame:
    return pd.DataFrame([{"target": t.what, "goal": f"<= {t.shown(t.goal)}", "measured": t.measured,
                          "verdict": t.verdict} for t in targets(result)])


def training_display(table: pd.DataFrame) -> pd.DataFrame:
    """The training table with units and rounding, for reading."""
    return pd.DataFrame({
        "method": table["method"], "trainable params": table["trainable_params"].map("{:,}".format),
        "step ms": table["step_ms"].map("{:.0f}".format),
        "fwd / bwd / opt ms": [f"{r.forward_ms:.0f} / {r.backward_ms:.0f} / {r.optimizer_ms:.0f}"
                               for r in table.itertuples()],
        "examples/s": table["examples_per_s"].map("{:.1f}".format),
        "step vs FT": table["step_vs_full_ft"].map(_times),
        "step vs bound": table["step_vs_lower_bound"].map(_times),
        "bf16 vs fp32": table["bf16_vs_fp32"].map(_times),
        "peak MB": table["peak_bytes"].map(_mb), "peak vs FT": table["peak_vs_full_ft"].map(_times),
        "weights+grads+opt MB": table["model_state_bytes"].map(_mb),
        "optimizer state MB": table["optimizer_state_bytes"].map(_mb),
        "state vs FT": table["model_state_vs_full_ft"].map(_times),
        "checkpoint MB": table["checkpoint_bytes"].map(_mb),
        "checkpoint vs full": table["checkpoint_vs_full"].map(lambda v: "—" if math.isnan(v) else f"{100 * v:.2f}%"),
    })


def training_notes(result: BenchResult) -> list[str]:
    rounds = int(result.training["rounds"].min())
    return [f"Step time: median of {rounds} interleaved rounds after one warm-up round; ratios are medians of "
            "per-round ratios. Peak memory: "
            + ("CUDA max allocated" if result.spec.device.startswith("cuda") else "process peak RSS")
            + f", each method in a fresh subprocess, after {result.spec.memory_steps} steps. lower_bound: every "
            "weight frozen, gradients only to each layer's input. lora_peft: LoRA with PEFT's own forward. "
            "full_ft's checkpoint is the whole model (train.save_full_model=true). `<method>@bf16`: the same step "
            "in bf16 autocast (weights and optimizer fp32), on CPUs that compute bf16 natively; bf16 vs fp32 = its "
            "step time over the fp32 step's, per round."]


def latency_display(table: pd.DataFrame) -> pd.DataFrame:
    """One row per shape, one column per variant: `ms (x ratio)`."""
    rows = []
    for (batch, length), group in table.groupby(["batch", "seq_len"], sort=False):
        row = {"batch": batch, "length": length}
        for r in group.itertuples():
            ratio = "" if r.variant == BASE else f" ({_times(r.ratio_to_base)})"
            row[r.variant] = f"{r.median_ms:.1f}{ratio}"
        row["rounds"] = int(group["rounds"].min())
        rows.append(row)
    return pd.DataFrame(rows)


def latency_notes(result: BenchResult) -> list[str]:
    merged = result.latency.dropna(subset=["max_abs_diff"]).groupby("variant", sort=False)["max_abs_diff"].max()
    diffs = ", ".join(f"{variant.removesuffix('_merged')} {diff:.2e}" for variant, diff in merged.items())
    return [f"Merged vs unmerged, max |logit difference| over all shapes: {diffs}."]


def figure(result: BenchResult) -> Figure:
    """Step time, memory, checkpoint size (relative to full FT) and latency (relative to the base model)."""
    fig = Figure(figsize=(12, 8), layout="constrained")
    axes = fig.subplots(2, 2)
    train = result.training.iloc[::-1]
    _bars(axes[0, 0], train["method"], {"step time": train["step_vs_full_ft"]}, 0.70, "step time / full FT")
    methods = train[train["kind"] == "method"]
    _bars(axes[0, 1], methods["method"], {"peak memory": methods["peak_vs_full_ft"],
                                          "weights+grads+optimizer": methods["model_state_vs_full_ft"]},
          0.60, "memory / full FT")
    _bars(axes[1, 0], methods["method"], {"checkpoint": methods["checkpoint_vs_full"]}, 0.01,
          "checkpoint / full model (log)")
    axes[1, 0].set_xscale("log")
    lat = result.latency[result.latency["variant"] != BASE]
    shapes = lat.groupby(["batch", "seq_len"], sort=False).size().index
    labels = [f"{b} x {n}" for b, n in shapes]
    _bars(axes[1, 1], labels, {v: lat.loc[lat["variant"] == v, "ratio_to_base"] for v in dict.fromkeys(lat["variant"])},
          1.01, "latency / base model (batch x length)")
    axes[1, 1].set_xlim(left=0.9)  # the differences are percent: from 0 the bars would all look alike
    fig.suptitle(f"{result.spec.model}: cost per method ({environment_line(result).split(', commit')[0]})",
                 fontsize=8)
    return fig


def write_bench(result: BenchResult, out: Path) -> list[Path]:
    """Write `<model>.md`, `<model>_training.csv`, `<model>_latency.csv`, `<model>.png`, `<model>_raw.json`."""
    stem, command = result.spec.model, result.env["command"]
    header = f"# {produced_by(command)}\n# {environment_line(result)}\n"
    raw = {"spec": asdict(result.spec), "env": result.env, "seconds": result.seconds, **result.raw}
    files = {f"{stem}.md": to_markdown(result),
             f"{stem}_training.csv": header + result.training.to_csv(index=False),
             f"{stem}_latency.csv": header + result.latency.to_csv(index=False),
             f"{stem}_raw.json": json.dumps(raw, indent=1, default=str) + "\n"}
    written = []
    for name, text in files.items():
        atomic_write(out / name, lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
        written.append(out / name)
    png = figure_png(figure(result), command)
    atomic_write(out / f"{stem}.png", lambda tmp: tmp.write_bytes(png))
    return [*written, out / f"{stem}.png"]


def _bars(ax, labels, series: dict[str, pd.Series], goal: float, title: str) -> None:
    """Horizontal grouped bars of ratios, with the goal as a dashed line."""
    labels = list(labels)
    height = 0.8 / len(series)
    for k, (name, values) in enumerate(series.items()):
        positions = [i + (k - (len(series) - 1) / 2) * height for i in range(len(labels))]
        bars = ax.barh(positions, list(values), height=height, label=name)
        ax.bar_label(bars, fmt="%.3g", fontsize=6, padding=2)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.axvline(goal, color="k", linestyle="--", linewidth=1, label=f"LoRA target {goal:g}")
    ax.set_title(title, fontsize=9)
    # Below the axes: inside, it would hide bars whatever corner it took.
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.07), ncol=len(series) + 1, frameon=False)


def _row(table: pd.DataFrame, method: str) -> dict[str, float]:
    rows = table[table["method"] == method]
    return rows.iloc[0].to_dict() if len(rows) else {}


def _times(value: float) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.3f}x"


def _mb(value: float) -> str:
    return "—" if value is None or math.isnan(value) else f"{value / MB:,.1f}"
