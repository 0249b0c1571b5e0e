"""lora-repro as users install it: `pip install .` (not editable), then the command from another folder."""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_wheel_install_runs_every_command_from_another_folder(tmp_path):
    venv = tmp_path / "venv"
    # The venv sees the packages of the interpreter running the tests (torch, transformers, ...) but gets its
    # own lora-repro, built as a wheel from the checkout: what `pip install .` gives a user. A .pth file, not
    # --system-site-packages: inside a virtualenv that flag exposes the base interpreter's packages instead.
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    own = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                         check=True, capture_output=True, text=True).stdout.strip()
    (Path(own) / "outer_site_packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT),
                    "-w", str(tmp_path / "dist")], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("lora_repro-*.whl"))
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True,
                   capture_output=True)
    elsewhere = tmp_path / "somewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(venv / "bin" / "lora-repro"), *args], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=600)

    where = subprocess.run([str(python), "-c", "import lora_repro; print(lora_repro.__file__)"], cwd=elsewhere,
                           env=env, capture_output=True, text=True, check=True).stdout
    assert str(venv) in where  # the installed copy, not the checkout
    assert run("--version").stdout.startswith("lora-repro ")
    plan = run("plan", "experiment=table2_roberta_base", "task=rte", "method=lora_paper")
    assert plan.returncode == 0, plan.stderr
    assert "5 runs:" in plan.stdout
    module = subprocess.run([str(python), "-m", "lora_repro", "train", "--cfg", "job", "task=cola"], cwd=elsewhere,
                            env=env, capture_output=True, text=True, timeout=300)
    assert module.returncode == 0 and "name: cola" in module.stdout, module.stderr
    assert not (elsewhere / "experiments").exists() or not any((elsewhere / "experiments").rglob("record.json"))
