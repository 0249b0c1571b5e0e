"""notebooks/results.ipynb runs top to bottom on a folder of synthetic records and draws the figures."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.report.test_tables import write_runs

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "results.ipynb"


@pytest.mark.slow
def test_the_notebook_runs_on_synthetic_records(tmp_path, monkeypatch):
    runs = write_runs(tmp_path / "runs")
    monkeypatch.setenv("LORA_REPRO_RUNS", str(runs / "main"))  # the kernel inherits the environment
    monkeypatch.setenv("LORA_REPRO_RANK_RUNS", str(runs / "rank"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any(f"run records in {runs}" in o.get("text", "") for o in outputs)
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2  # the per-task figure and the rank figure
