"""bf16 against fp32 per task and method: is bf16 within the fp32 seeds' range, and how fast is it."""

from __future__ import annotations

import math

import pandas as pd

from lora_repro.methods.registry import label_order
from lora_repro.report.cells import MISSING, format_cell, summarize_cells
from lora_repro.report.layout import (
    Report,
    Section,
    legend,
    metric_note,
    not_results_note,
    order_tasks,
    position,
    require_completed,
    task_name,
)

__all__ = ["precision_report"]

def precision_report(records: pd.DataFrame, seeds: int) -> Report:
    """bf16 against fp32 per task and method: is bf16's mean within the fp32 seeds' range, and its speed."""
    done = require_completed(records, "precision")
    cells = summarize_cells(done, ["task", "label", "train.precision"])
    cells = cells.set_index(["task", "label", "train.precision"])
    rows = []
    for task in order_tasks(done["task"]):
        for label in sorted(set(done.loc[done["task"] == task, "label"]), key=lambda x: position(x, label_order())):
            key = (task, label)
            if (*key, "fp32") not in cells.index or (*key, "bf16") not in cells.index:
                continue
            fp32, bf16 = cells.loc[(*key, "fp32")], cells.loc[(*key, "bf16")]
            runs = done[(done["task"] == task) & (done["label"] == label)]
            values = runs[runs["train.precision"] == "fp32"]["best"].astype(float)
            seconds = runs.groupby("train.precision")["train_seconds"].median()
            rows.append({"task": task, "method": label, "fp32": fp32["center"], "fp32_std": fp32["std"],
                         "fp32_min": values.min(), "fp32_max": values.max(), "bf16": bf16["center"],
                         "bf16_std": bf16["std"], "difference": bf16["center"] - fp32["center"],
                         "within": bool(values.min() <= bf16["center"] <= values.max()),
                         "n_fp32": int(fp32["n_seeds"]), "n_bf16": int(bf16["n_seeds"]),
                         "time_ratio": seconds.get("bf16", math.nan) / seconds.get("fp32", math.nan)})
    table = pd.DataFrame(rows)
    shown = pd.DataFrame({
        "Task": table["task"].map(task_name), "Method": table["method"],
        "fp32": [format_cell(m, s, n, seeds, False) for m, s, n in zip(table["fp32"], table["fp32_std"],
                                                                          table["n_fp32"], strict=True)],
        "fp32 seeds' range": [f"{100 * lo:.1f}–{100 * hi:.1f}" for lo, hi in zip(table["fp32_min"], table["fp32_max"],
                                                                                 strict=True)],
        "bf16": [format_cell(m, s, n, seeds, False) for m, s, n in zip(table["bf16"], table["bf16_std"],
                                                                          table["n_bf16"], strict=True)],
        "bf16 − fp32": table["difference"].map(lambda d: f"{100 * d:+.1f}"),
        "bf16 mean within the fp32 range": table["within"].map({True: "yes", False: "no"}),
        "train time bf16 / fp32": table["time_ratio"].map(lambda r: MISSING if pd.isna(r) else f"{r:.2f}"),
    })
    notes = [legend(seeds, records), metric_note(records),
             "bf16 = autocast: matmuls in bf16, weights and AdamW state in fp32 (train.precision=bf16, what "
             "`auto` resolves to on a CPU with AVX512-BF16 or AMX). Train time: median over seeds of each run's "
             "train_seconds, which includes the evaluations; the runs shared the machine with other work, so the "
             "ratio is indicative. `make bench` times bf16 against fp32 side by side (bf16 vs fp32).",
             not_results_note(records)]
    return Report("precision", "bf16 against fp32 on the CPU (MiniLM, the mini's protocol)",
                  [Section("bf16 x fp32", shown, [n for n in notes if n])], table)
