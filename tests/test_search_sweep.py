"""Searches in real sweeps: worker processes measuring a model that sleeps 5 + 10 x batch ms per
call, so that which entries meet a p99 bound is known (a sleep of known length) and the search's
decisions can be checked exactly. Kept few and short: the decisions themselves are tested on
stand-in measurers in test_search.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_resume_kill import Sweep, kill_sweep
from test_sweep_run import write_spec

pytestmark = pytest.mark.slow


def spec(folder: Path, strategy: str = "prune", bound: int = 35, batches: str = "[1, 2, 4, 8]", threads: str = "[1, 2]") -> Path:
    # Latencies 15, 25, 45 and 85 ms by batch size: a bound of 35 ms rules out batch 4 and up.
    return write_spec(folder, f"""
        version: 1
        name: searched
        framework: torch
        device_type: cpu
        compiler: eager
        output_dir: {folder / 'out'}
        models:
          - name: sleepy
            factory: "sweep_models.py:sleep_per_item"
            kwargs: {{base_ms: 5, per_item_ms: 10}}
            inputs: [{{shape: [4]}}]
        sweep:
          batch_sizes: {batches}
          workers_per_model: {threads}
        search: {strategy}
        objectives:
          slo: {{latency_ms_p99: {bound}}}
        benchmark: {{duration: 0.3, warmup: 2, timeout: 60}}
        """)


def neuronperf(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "neuronperf", *args], capture_output=True, text=True, timeout=300)


def rows(folder: Path) -> dict[str, dict]:
    return {r["id"]: r for r in json.loads((folder / "out" / "results.json").read_text())}


def run_records(folder: Path) -> list[str]:
    lines = (folder / "out" / "journal.jsonl").read_text().splitlines()
    return [r["id"] for r in map(json.loads, lines) if r["kind"] == "run"]


def test_prune_skips_what_a_failed_bound_rules_out_says_why_and_a_new_bound_measures_only_the_rest(tmp_path):
    path = spec(tmp_path)
    planned = neuronperf("plan", "--search", str(path))
    assert planned.returncode == 0, planned.stderr
    assert "search: prune, maximising throughput_avg under p99<=35ms" in planned.stdout
    assert "1 todo, 7 undecided" in planned.stdout  # the smallest entry first

    first = neuronperf("run", str(path))
    assert first.returncode == 0, first.stdout + first.stderr
    got = rows(tmp_path)
    measured = {i for i, r in got.items() if r["status"] == "ok"}
    assert measured == {"sleepy-bs1-p1-m1-w1", "sleepy-bs1-p1-m1-w2", "sleepy-bs2-p1-m1-w1", "sleepy-bs2-p1-m1-w2",
                        "sleepy-bs4-p1-m1-w1"}
    culprit = got["sleepy-bs4-p1-m1-w1"]
    for skipped in ("sleepy-bs4-p1-m1-w2", "sleepy-bs8-p1-m1-w1", "sleepy-bs8-p1-m1-w2"):
        assert got[skipped]["status"] == "skipped"
        assert got[skipped]["error"].startswith("p99 ") and got[skipped]["error"].endswith(" ms > 35 ms at sleepy-bs4-p1-m1-w1")
        assert float(got[skipped]["error"].split()[1]) == pytest.approx(culprit["latency_ms_p99"], abs=0.05)
    assert "searched: measured 5 of 8 entries (3 skipped by the prune search)" in first.stdout
    assert "saved against the grid's estimate" in first.stdout
    assert "under p99<=35ms: sleepy-bs2-p1-m1-w2" in first.stdout

    status = neuronperf("status", str(path))
    assert "sleepy-bs8-p1-m1-w1  skipped  (p99 " in status.stdout
    assert "5 done, 0 failed, 0 to do, 3 skipped by the search, 0 undecided (the search has finished)" in status.stdout

    again = neuronperf("run", str(path))
    assert "the search has decided every entry: nothing to measure" in again.stderr
    assert "5 reused, 0 run" in again.stdout
    assert rows(tmp_path) == got

    # A looser bound: batch 4 meets it now, so batch 4 with two threads and batch 8 are measured;
    # nothing measured before is measured again.
    spec(tmp_path, bound=60)
    looser = neuronperf("run", str(path))
    assert looser.returncode == 0, looser.stdout + looser.stderr
    assert "5 reused, 2 run" in looser.stdout
    ids = run_records(tmp_path)
    assert sorted(ids) == sorted(measured | {"sleepy-bs4-p1-m1-w2", "sleepy-bs8-p1-m1-w1"})
    assert rows(tmp_path)["sleepy-bs8-p1-m1-w2"]["error"].endswith(" ms > 60 ms at sleepy-bs8-p1-m1-w1")


def test_quick_killed_mid_search_continues_from_its_journal_to_the_same_answer(tmp_path):
    # Throughput grows with the batch (sleep 5 + 10 x batch ms): the climb goes up the batch
    # sizes to 4 (45 ms < 50), and 8 (85 ms) is over the bound.
    path = spec(tmp_path, "quick", bound=50, batches="[1, 2, 4, 8]", threads="[1]")
    sweep = Sweep(path)
    sweep.wait_for("sleepy-bs2-p1-m1-w1: ")  # the second entry has its row
    kill_sweep(sweep)
    before = run_records(tmp_path)
    assert before[:2] == ["sleepy-bs1-p1-m1-w1", "sleepy-bs2-p1-m1-w1"]

    rerun = neuronperf("run", str(path))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    ids = run_records(tmp_path)
    assert len(ids) == len(set(ids))  # nothing measured twice
    assert set(ids) == {"sleepy-bs1-p1-m1-w1", "sleepy-bs2-p1-m1-w1", "sleepy-bs4-p1-m1-w1", "sleepy-bs8-p1-m1-w1"}
    assert "under p99<=50ms: sleepy-bs4-p1-m1-w1" in rerun.stdout
