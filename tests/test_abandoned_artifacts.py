"""Half-built artifacts of stopped runs: a run removes those whose building process is gone, and
never one that a live process is still writing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from neuronperf.compilation.artifacts import remove_abandoned_temporaries, temporary_path


def _finished_pid() -> int:
    """The pid of a process that has exited (and been reaped): nobody runs under it now."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid


def _plant(folder: Path, name: str, pid: int) -> Path:
    path = Path(temporary_path(str(folder / name), pid))
    path.write_bytes(b"x" * 1024)
    return path


@pytest.mark.pure
def test_only_temporaries_of_gone_processes_are_removed(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    dead = _plant(models, "mlp-bs1-p1-abcd1234.pt", _finished_pid())
    folder_artifact = Path(temporary_path(str(models / "saved-bs1-p1-abcd1234"), _finished_pid()))
    folder_artifact.mkdir()
    (folder_artifact / "saved_model.pb").write_bytes(b"y")
    # A live writer (started before its temporary was written) keeps its work.
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.1)
        live = _plant(models, "mlp-bs8-p1-abcd1234.pt", writer.pid)
        mine = _plant(models, "mlp-bs4-p1-abcd1234.pt", os.getpid())
        unrelated = models / "mlp-bs2-p1-abcd1234.pt"
        unrelated.write_bytes(b"artifact")
        (models / ".tmp-notapid-x.pt").write_bytes(b"not ours")

        removed = remove_abandoned_temporaries(str(models))

        assert sorted(removed) == sorted([str(dead), str(folder_artifact)])
        assert not dead.exists() and not folder_artifact.exists()
        assert live.exists() and mine.exists() and unrelated.exists()
        assert (models / ".tmp-notapid-x.pt").exists()
    finally:
        writer.kill()
        writer.wait()


@pytest.mark.pure
def test_a_reused_pid_does_not_protect_an_older_temporary(tmp_path):
    """A pid is reused: the process running under it now started after the temporary was last
    written, so it is not the writer."""
    runner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = _plant(tmp_path, "m.pt", runner.pid)
        an_hour_ago = time.time() - 3600
        os.utime(stale, (an_hour_ago, an_hour_ago))
        assert remove_abandoned_temporaries(str(tmp_path)) == [str(stale)]
    finally:
        runner.kill()
        runner.wait()


@pytest.mark.pure
def test_a_missing_folder_has_nothing_to_remove(tmp_path):
    assert remove_abandoned_temporaries(str(tmp_path / "never-created")) == []


@pytest.mark.slow
def test_a_run_removes_what_a_stopped_run_left_and_says_so(tmp_path, cli):
    spec = tmp_path / "sweep.yaml"
    spec.write_text(f"""
version: 1
framework: torch
device_type: cpu
compiler: torchscript
output_dir: {tmp_path / 'out'}
models:
  - {{name: mlp, factory: "neuronperf.zoo:mlp", kwargs: {{in_features: 8, hidden: 8, out_features: 2}}, inputs: [[8]]}}
sweep: {{batch_sizes: [1]}}
benchmark: {{duration: 0.2, warmup: 2, timeout: 60}}
""")
    models = tmp_path / "out" / "models"
    models.mkdir(parents=True)
    leftover = _plant(models, "mlp-bs1-p1-0123abcd.pt", _finished_pid())
    done = cli("run", str(spec))
    assert done.code == 0, done.err
    assert not leftover.exists()
    assert "removed 1 half-built artifact that a stopped run left in" in done.err
    assert not [p for p in models.iterdir() if p.name.startswith(".tmp-")]
