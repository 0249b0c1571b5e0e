"""Two processes on one config: one trains, the other skips; nothing is overwritten or left behind."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from lora_repro.records.io import atomic_write
from tests.conftest import write_tiny_glue


@pytest.mark.slow
def test_two_processes_on_one_config_train_it_once(tmp_path):
    glue_dir = write_tiny_glue(tmp_path / "glue", n_train=1500, n_dev=40)
    args = [sys.executable, "-m", "lora_repro", "train", "model=tiny_bert", "task=sst2", "train.batch_size=8",
            "train.max_seq_length=32", "train.epochs=2", f"paths.root={tmp_path}"]
    env = {**os.environ, "GLUE_DIR": str(glue_dir)}
    both = [subprocess.Popen([*args, f"hydra.run.dir={tmp_path}/hydra{k}"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for k in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in both]
    assert [p.returncode for p in both] == [0, 0], outputs
    trained = [o for o in outputs if "completed " in o and "dev/accuracy" in o]
    skipped = [o for o in outputs if "another process is running it" in o or "already completed" in o]
    assert len(trained) == 1 and len(skipped) == 1, outputs
    records = list(tmp_path.rglob("record.json"))
    assert len(records) == 1 and '"status": "completed"' in records[0].read_text()
    assert not list(tmp_path.rglob("*.tmp"))


def test_atomic_writes_leave_normal_permissions_and_no_temp_file(tmp_path):
    def write(tmp):
        tmp.write_text("x")
        os.chmod(tmp, 0o600)  # as some writers (tempfile-based ones) leave it

    atomic_write(tmp_path / "file.txt", write)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "file.txt").stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]
