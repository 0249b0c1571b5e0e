"""Section 7's tables and figures from finished LoRA runs: the `Report` that `lora-repro analyze` writes.

* Figure 3 analog: φ between the A of an r_small run and the A of an r_large run (same task, weights, seed).
* Figure 4 analog: φ between the A of two seeds at one rank.
* Table 7 analog: ‖ΔW‖, ‖W‖ and W's part in ΔW's, W's own and random directions, and the amplification
  factor, per rank and weight (median over layers and seeds; every layer and seed in the CSV), with the
  paper's GPT-3 rows above ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from lora_repro.analysis.factors import Backbones, LoraRun
from lora_repro.analysis.subspace import amplification, subspace_similarity
from lora_repro.errors import UserError
from lora_repro.paper import paper_table
from lora_repro.paper.names import WEIGHT_ORDER
from lora_repro.report.layout import Report, Section, task_name

__all__ = ["SUMMARY_K", "build_analysis"]

SUMMARY_K = (1, 4, 8)  # φ(k, k) shown in the tables (where both ranks reach k)
Pair = tuple[LoraRun, LoraRun]


def rank_pairs(runs: Sequence[LoraRun], small: int, large: int) -> list[Pair]:
    """(r=small run, r=large run) of the same task, model, weights and seed."""
    by_key = {(r.task, r.model, r.targets, r.seed, r.r): r for r in runs}
    return [(run, by_key[(*key[:4], large)]) for key, run in sorted(by_key.items(), key=lambda kv: kv[0][:4])
            if key[4] == small and (*key[:4], large) in by_key]


def seed_pairs(runs: Sequence[LoraRun], r: int) -> list[Pair]:
    """Every pair of seeds of the same task, model and weights at rank r."""
    groups: dict[tuple, list[LoraRun]] = {}
    for run in sorted((x for x in runs if x.r == r), key=lambda x: x.seed):
        groups.setdefault((run.task, run.model, run.targets), []).append(run)
    return [pair for group in groups.values() for pair in combinations(group, 2)]


def similarities(pairs: Sequence[Pair], kind: str) -> tuple[pd.DataFrame, dict[tuple[str, int], np.ndarray]]:
    """φ for every pair and adapted weight: summary rows, and each (weight, layer)'s grid averaged over pairs."""
    rows, grids = [], {}
    for first, second in pairs:
        for key in sorted(first.a.keys() & second.a.keys()):
            phi = subspace_similarity(first.a[key], second.a[key])
            layer, weight = key
            grids.setdefault((weight, layer), []).append(phi)
            row = {"kind": kind, "task": first.task, "model": first.model, "targets": first.targets,
                   "r1": first.r, "r2": second.r, "seed1": first.seed, "seed2": second.seed,
                   "layer": layer, "weight": weight, "d": first.a[key].shape[1]}
            rows.append(row | {f"phi_{k}_{k}": phi[k - 1, k - 1] if k <= min(phi.shape) else np.nan
                               for k in SUMMARY_K})
    return pd.DataFrame(rows), {key: np.mean(stack, axis=0) for key, stack in grids.items()}


def amplifications(runs: Sequence[LoraRun], backbones: Backbones) -> pd.DataFrame:
    """Table 7's numbers for every run, layer and weight."""
    rows = []
    for run in runs:
        for key in sorted(run.a):
            result = amplification(run.delta(key), backbones.weight(run, key), run.r, seed=run.seed,
                                   weight_svd=backbones.svd(run, key))
            rows.append({"task": run.task, "model": run.model, "r": run.r, "seed": run.seed, "layer": key[0],
                         "weight": key[1], "delta_norm": result.delta_norm, "weight_norm": result.weight_norm,
                         "in_delta_dirs": result.in_delta_dirs, "in_weight_dirs": result.in_weight_dirs,
                         "in_random_dirs": result.in_random_dirs, "factor": result.factor})
    return pd.DataFrame(rows)


def weight_order(weight: str) -> int:
    return WEIGHT_ORDER.index(weight) if weight in WEIGHT_ORDER else len(WEIGHT_ORDER)


def similarity_section(table: pd.DataFrame, title: str, notes: list[str]) -> Section:
    """Median over pairs of φ(k, k) per weight and layer, with what random subspaces would give."""
    shown = [k for k in SUMMARY_K if table[f"phi_{k}_{k}"].notna().any()]
    grouped = table.groupby(["weight", "layer"])
    summary = grouped[[f"phi_{k}_{k}" for k in shown]].median().reset_index()
    summary["pairs"] = grouped.size().values
    summary = summary.sort_values(["weight", "layer"], key=lambda c: c.map(weight_order) if c.name == "weight"
                                  else c)
    d = int(table["d"].iloc[0])
    display = pd.DataFrame({"weight": "W" + summary["weight"], "layer": summary["layer"].astype(int)})
    for k in shown:
        display[f"φ({k},{k})"] = summary[f"phi_{k}_{k}"].map("{:.2f}".format)
    display[f"random φ({shown[-1]},{shown[-1]}) ≈ {shown[-1]}/d"] = f"{shown[-1] / d:.2f}"
    display["pairs"] = summary["pairs"].astype(int)
    return Section(title, display, notes)


def heatmaps(grids: dict[tuple[str, int], np.ndarray], xlabel: str, ylabel: str) -> Figure:
    """One φ heatmap per (weight, layer): rows of panels = weights, columns = layers (as Figures 3-4)."""
    weights = sorted({w for w, _ in grids}, key=weight_order)
    layers = sorted({layer for _, layer in grids})
    figure = Figure(figsize=(2.4 * len(layers) + 1, 2.2 * len(weights)), layout="constrained")
    axes = figure.subplots(len(weights), len(layers), squeeze=False)
    image = None
    for row, weight in enumerate(weights):
        for col, layer in enumerate(layers):
            ax, grid = axes[row][col], grids.get((weight, layer))
            if grid is None:
                ax.set_axis_off()
                continue
            image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto", origin="upper",
                              extent=(0.5, grid.shape[1] + 0.5, grid.shape[0] + 0.5, 0.5))
            ax.set_title(f"ΔW{weight}, layer {layer}", fontsize=8)
            ax.tick_params(labelsize=6)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            if row == len(weights) - 1:
                ax.set_xlabel(xlabel, fontsize=7)
            if col == 0:
                ax.set_ylabel(ylabel, fontsize=7)
    if image is not None:
        figure.colorbar(image, ax=axes, shrink=0.8, label="φ(i, j)")
    return figure


def amplification_report(table: pd.DataFrame, notes: list[str]) -> Report:
    """The Table 7 analog: the paper's GPT-3 rows, then ours (median over layers and seeds per rank, weight)."""
    columns = ["delta_norm", "weight_norm", "in_delta_dirs", "in_weight_dirs", "in_random_dirs", "factor"]
    header = {"delta_norm": "‖ΔW‖", "weight_norm": "‖W‖", "in_delta_dirs": "‖UᵀWV‖ ΔW's dirs",
              "in_weight_dirs": "‖UᵀWV‖ W's top dirs", "in_random_dirs": "‖UᵀWV‖ random dirs",
              "factor": "‖ΔW‖ / ‖UᵀWV‖ (ΔW's)"}
    paper = paper_table("table7")
    grouped = table.groupby(["model", "task", "weight", "r"])
    ours = grouped[columns].median().reset_index()
    ours["n"] = grouped.size().values
    ours = ours.sort_values(["model", "task", "weight", "r"],
                            key=lambda c: c.map(weight_order) if c.name == "weight" else c)
    rows = [{"model": f"{row['model']} (paper)", "weight": f"W{row['weight']}, layer {row['layer']}",
             "r": int(row["r"]), **{header[c]: f"{float(row[c]):.2f}" for c in columns}, "n": "-"}
            for _, row in paper.iterrows()]
    rows += [{"model": f"{row['model']}, {task_name(row['task'])}", "weight": f"W{row['weight']}, all layers",
              "r": int(row["r"]), **{header[c]: f"{row[c]:.2f}" for c in columns}, "n": int(row["n"])}
             for _, row in ours.iterrows()]
    section = Section("Table 7 analog: how ΔW relates to W (Frobenius norms)", pd.DataFrame(rows), notes)
    return Report(name="amplification", title="ΔW against W: the amplification factor (the paper's Table 7)",
                  sections=[section], tidy=table)


def build_analysis(runs: Sequence[LoraRun], backbones: Backbones, *, ranks: tuple[int, int] = (8, 64),
                   seed_rank: int = 64, targets: str = "q,v", skipped: int = 0) -> Report:
    """The whole analysis of `runs` as a report (with the amplification table as a companion).

    Args:
        runs: the finished LoRA runs on `targets` (see `analysis.factors.lora_runs`).
        backbones: where the frozen W comes from.
        ranks: the two ranks of Figure 3 (the paper: 8 and 64).
        seed_rank: the rank of Figure 4's seed pairs (the paper: 64).
        targets: the weight set analysed, in the paper's order (the paper: q,v).
        skipped: completed LoRA runs on `targets` without stored factors (reported, not analysed).

    Raises:
        UserError: no pair of runs for Figure 3 or Figure 4 (the message lists what there is).
    """
    have = sorted({(run.r, run.seed) for run in runs})
    small, large = ranks
    by_rank, by_seed = rank_pairs(runs, small, large), seed_pairs(runs, seed_rank)
    if not by_rank or not by_seed:
        unread = f" and {skipped} run(s) without factors (rerun them with train.force=true)" if skipped else ""
        raise UserError(f"need LoRA runs on {{{targets}}} with r={small} and r={large} for one seed, and two seeds "
                        f"at r={seed_rank}; found (r, seed) {have or 'none'}{unread}. Run `make mini-ranks`, or "
                        "pass --runs / --ranks / --seed-rank to match your runs")
    ranks_table, rank_grids = similarities(by_rank, f"r={small} vs r={large}")
    seeds_table, seed_grids = similarities(by_seed, f"two seeds at r={seed_rank}")
    where = sorted({f"{run.model}, {task_name(run.task)}" for run in runs})
    common = (f"φ(i, j) = ‖U_iᵀ U_j‖²_F / min(i, j) over the top right-singular vectors of the two runs' A "
              f"(1 = same subspace, 0 = orthogonal); median over pairs. Runs: {'; '.join(where)}, weights "
              f"{{{targets}}}, {len(runs)} runs.")
    sections = [
        similarity_section(ranks_table, f"Figure 3 analog: A of r={small} against A of r={large}, same seed", [
            common, "The paper (GPT-3 175B, layer 48, another model): the top direction is shared, "
            "φ(1,1) > 0.5 for ΔWq and ΔWv, while the other directions of r=8 are not in r=64's top ones.",
            f"Figure: subspace_ranks.png (φ for i ≤ {small}, j ≤ {large}, mean over seeds)."]),
        similarity_section(seeds_table, f"Figure 4 analog: A of two seeds at r={seed_rank}", [
            common, "The paper (GPT-3, layer 48): two seeds learn more common directions for ΔWq than for ΔWv, "
            "which it reads as ΔWq having the higher intrinsic rank; random matrices would share about i/d.",
            "Figure: subspace_seeds.png (mean over seed pairs)."]),
    ]
    if skipped:
        sections[0].notes.append(f"{skipped} completed LoRA run(s) kept no factors and are not analysed.")
    amp_notes = ["U, V: the top-r left/right singular vectors of ΔW = s·B A (r = the run's rank), of W, or "
                 "random orthonormal frames. Ours: median over layers and seeds; each layer and seed is in "
                 "amplification.csv. The paper's rows are GPT-3 175B (another model, one layer)."]
    return Report(name="analysis", title="Understanding the low-rank update (the paper's Section 7)",
                  sections=sections, tidy=pd.concat([ranks_table, seeds_table], ignore_index=True),
                  figures={"subspace_ranks": heatmaps(rank_grids, f"j (r={large})", f"i (r={small})"),
                           "subspace_seeds": heatmaps(seed_grids, "j (second seed)", "i (first seed)")},
                  companions=[amplification_report(amplifications(runs, backbones), amp_notes)])
