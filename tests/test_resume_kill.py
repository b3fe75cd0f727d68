"""Crash-proof sweeps: SIGKILL at several points, then a rerun does only the missing work."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from test_sweep_run import write_spec

pytestmark = pytest.mark.slow


def slow_spec(folder: Path) -> Path:
    # Two compiles of about 2 s each (the factory is slow to build) and four 0.6 s measurements.
    return write_spec(folder, f"""
        version: 1
        name: killme
        framework: torch
        device_type: cpu
        compiler: torchscript
        output_dir: {folder / 'out'}
        models:
          - name: slow
            factory: "sweep_models.py:slow_to_build"
            kwargs: {{features: 8, build_s: 2.0}}
            inputs: [{{shape: [8]}}]
        sweep:
          batch_sizes: [1, 2]
          workers_per_model: [1, 2]
        compile: {{jobs: 1}}
        benchmark: {{duration: 0.6, warmup: {{calls: 3}}, timeout: 60}}
        """)


class Sweep:
    """A real `neuronperf run` in its own session, read line by line."""

    def __init__(self, spec: Path, *options: str):
        self.process = subprocess.Popen(
            [sys.executable, "-u", "-m", "neuronperf", "run", str(spec), *options],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        self.lines: list[str] = []

    def wait_for(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise AssertionError(f"sweep ended before {text!r}:\n" + "".join(self.lines))
            self.lines.append(line)
            if text in line:
                return
        raise AssertionError(f"no {text!r} within {timeout} s:\n" + "".join(self.lines))

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def finish(self) -> str:
        out, _ = self.process.communicate(timeout=120)
        return "".join(self.lines) + out


def assert_no_survivors(processes: list[psutil.Process], timeout: float = 15) -> None:
    gone, alive = psutil.wait_procs(processes, timeout=timeout)
    assert not alive, f"processes survived their sweep: {[p.pid for p in alive]}"


def assert_results_valid(out: Path) -> list[dict]:
    """results.csv/json are complete files at every moment (or not written yet)."""
    if not (out / "results.csv").exists():
        assert not (out / "results.json").exists()
        return []
    text = (out / "results.csv").read_text()
    assert text.startswith("model_name,")
    rows = list(csv.DictReader(text.splitlines()))
    as_json = json.loads((out / "results.json").read_text())
    assert [r["id"] for r in as_json] == [r["id"] for r in rows]
    return rows


def kill_sweep(sweep: Sweep) -> None:
    children = sweep.descendants()
    os.kill(sweep.process.pid, signal.SIGKILL)
    sweep.process.wait(30)
    # Workers notice that their parent died and exit: nothing keeps burning the machine.
    assert_no_survivors(children)


@pytest.mark.parametrize("kill_at", ["compiling slow-bs2", "[2/4]", "inf/s"])
def test_sigkill_then_rerun_loses_only_the_entry_in_flight(tmp_path, kill_at):
    spec = slow_spec(tmp_path)
    out = tmp_path / "out"
    sweep = Sweep(spec)
    sweep.wait_for(kill_at)
    kill_sweep(sweep)
    rows = assert_results_valid(out)
    assert all(r["status"] in ("ok", "skipped") for r in rows)
    kept = {r["id"]: r for r in rows if r["status"] == "ok"}

    rerun = subprocess.run([sys.executable, "-m", "neuronperf", "run", str(spec)],
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    if kept:
        assert f"{len(kept)} of 4 entries reused; running {4 - len(kept)}" in rerun.stderr
    rows = assert_results_valid(out)
    assert sorted(r["id"] for r in rows) == sorted(
        f"slow-bs{b}-p1-m1-w{w}" for b in (1, 2) for w in (1, 2)
    ), "every planned entry exactly once"
    for row in rows:
        if row["id"] in kept:
            assert row == kept[row["id"]], "an entry finished before the kill keeps its numbers"
    if kill_at != "compiling slow-bs2":
        assert "compile slow-bs1-p1: cached" in rerun.stderr or len(kept) >= 2


def test_ctrl_c_stops_cleanly_keeps_what_finished_and_exits_130(tmp_path):
    spec = slow_spec(tmp_path)
    sweep = Sweep(spec)
    sweep.wait_for("[2/4]")
    children = sweep.descendants()
    # A terminal's Ctrl-C reaches the whole process group: the workers get SIGINT too.
    os.killpg(sweep.process.pid, signal.SIGINT)
    output = sweep.finish()
    assert sweep.process.returncode == 130, output
    assert "(interrupted)" in output and "Traceback" not in output
    rows = assert_results_valid(tmp_path / "out")
    assert [(r["id"], r["status"]) for r in rows] == [
        ("slow-bs1-p1-m1-w1", "ok"), ("slow-bs1-p1-m1-w2", "skipped"),
        ("slow-bs2-p1-m1-w1", "skipped"), ("slow-bs2-p1-m1-w2", "skipped"),
    ], "finished entries kept; the others say they were not measured"
    assert_no_survivors(children)
