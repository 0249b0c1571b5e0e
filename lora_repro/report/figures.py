"""The report's figures, drawn from its tidy tables (matplotlib's object API: no pyplot, no display).

`params_figure`: average GLUE score against trainable parameters per method (Table 2), ours filled,
the paper's matching rows hollow. `task_figure`: one panel per task, each method's mean with its
seeds' std and the trivial baseline (so no task's scale hides another's). `rank_figure`: score against
LoRA rank per weight set (Table 6).
Both return a `Figure`; `lora_repro.report.render` saves it, the notebook shows it.
"""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.figure import Figure

from lora_repro.methods.registry import label_colours
from lora_repro.paper import paper_table
from lora_repro.report.layout import task_name

__all__ = ["params_figure", "rank_figure", "task_figure"]

PANEL_SIZE = (4.8, 3.6)


def panels(n: int) -> tuple[Figure, list]:
    """A figure with `n` side-by-side panels (at least one)."""
    figure = Figure(figsize=(PANEL_SIZE[0] * max(n, 1), PANEL_SIZE[1]), layout="constrained")
    axes = figure.subplots(1, max(n, 1), squeeze=False)[0]
    return figure, list(axes)


def params_figure(avg: pd.DataFrame) -> Figure:
    """Average score vs. trainable parameters (log x), one panel per model.

    Args:
        avg: The Avg lines of the Table 2 tidy table (columns model, method, label, params, center,
            paper, paper_index). Ours is drawn only for rows with a value on every task, the paper's
            for rows that have a counterpart.

    Returns:
        The figure.
    """
    avg = avg[avg["center"].notna() | avg["paper"].notna()]
    models = list(dict.fromkeys(avg["model"]))
    figure, axes = panels(len(models))
    printed = paper_table("table2")["trainable_params_m"]
    for ax, model in zip(axes, models, strict=False):
        for row in avg[avg["model"] == model].itertuples():
            color = label_colours().get(row.label, "black")
            if pd.notna(row.center):
                ax.scatter(row.params, 100 * row.center, color=color, label=row.label, zorder=3)
                ax.annotate(row.method, (row.params, 100 * row.center), fontsize=6, xytext=(3, 3),
                            textcoords="offset points")
            if pd.notna(row.paper):
                x = float(printed[int(row.paper_index)]) * 1e6
                ax.scatter(x, 100 * row.paper, facecolors="none", edgecolors=color, label=f"{row.label} (paper)")
        handles = dict(zip(*reversed(ax.get_legend_handles_labels()), strict=True))  # one entry per label
        ax.legend(handles.values(), handles.keys(), fontsize=7)
        ax.set(xscale="log", title=model, xlabel="# trainable parameters", ylabel="Avg. score (x100)")
    if not models:
        axes[0].text(0.5, 0.5, "no row has a value for every task", ha="center", transform=axes[0].transAxes)
    return figure


def rank_figure(cells: pd.DataFrame) -> Figure:
    """Score vs. LoRA rank r (log2 x) per weight set, one panel per model x task (Table 6).

    Args:
        cells: Table 6 cells (columns model, task, weights, r, center, std).

    Returns:
        The figure.
    """
    groups = list(cells.groupby(["model", "task"], sort=True))
    figure, axes = panels(len(groups))
    for ax, ((model, task), group) in zip(axes, groups, strict=False):
        for weights, line in group.groupby("weights", sort=False):
            line = line.sort_values("r")
            std = line["std"].fillna(0) * 100
            ax.errorbar(line["r"], 100 * line["center"], yerr=std, marker="o", capsize=2,
                        label="{" + ",".join(f"W{w}" for w in weights.split(",")) + "}")
        ranks = sorted(set(group["r"]))
        ax.set_xscale("log", base=2)
        ax.set_xticks(ranks, [str(r) for r in ranks])
        metric = ",".join(sorted(set(group["metric"].dropna()))).partition("/")[2] or "score"
        ax.set(title=f"{model}, {task_name(task)}", xlabel="rank r",
               ylabel=f"dev {metric} (x100), mean ± std over seeds")
        ax.legend(fontsize=7)
        ax.set_xlim(min(ranks) / math.sqrt(2), max(ranks) * math.sqrt(2))
    if not groups:
        axes[0].text(0.5, 0.5, "no LoRA rank sweep in the records", ha="center", transform=axes[0].transAxes)
    return figure


def task_figure(cells: pd.DataFrame, baseline: pd.DataFrame) -> Figure:
    """One panel per task: each method's mean ± std over seeds, and the trivial baseline as a line.

    Args:
        cells: Table 2 tidy cells without the Avg lines (columns task, method, label, center, std, metric).
        baseline: `lora_repro.report.claims.trivial_baseline` (columns task, metric, value).

    Returns:
        The figure.
    """
    tasks = [t for t in dict.fromkeys(cells["task"]) if cells.loc[cells["task"] == t, "center"].notna().any()]
    figure, axes = panels(len(tasks))
    floor = dict(zip(baseline["task"], baseline["value"], strict=True))
    for ax, task in zip(axes, tasks, strict=False):
        rows = cells[(cells["task"] == task) & cells["center"].notna()].reset_index(drop=True)
        for x, row in rows.iterrows():
            ax.errorbar(x, 100 * row["center"], yerr=100 * (0 if pd.isna(row["std"]) else row["std"]), marker="o",
                        capsize=3, color=label_colours().get(row["label"], "black"))
        if task in floor:
            ax.axhline(100 * floor[task], color="0.5", linestyle="--", label="trivial baseline")
            ax.legend(fontsize=7, loc="lower right")
        ax.set_xticks(range(len(rows)), list(rows["label"]), fontsize=8)
        metric = ",".join(sorted(set(rows["metric"].dropna()))).partition("/")[2] or "score"
        ax.set(title=task_name(task), ylabel=f"dev {metric} (x100), mean ± std over seeds")
    if not tasks:
        axes[0].text(0.5, 0.5, "no completed runs", ha="center", transform=axes[0].transAxes)
    return figure
