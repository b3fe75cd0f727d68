"""``sweep.rates: max`` through ``neuronperf run``: a search killed with SIGKILL resumes from the
probes it recorded, and a bound that no rate can meet is a row that says so."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_resume_kill import Sweep, kill_sweep
from test_sweep_run import write_spec

pytestmark = pytest.mark.slow


def search_spec(folder: Path, bound_ms: float = 40.0) -> Path:
    # 10 ms calls: the capacity is 100 requests/s, the peak under p99 <= 40 ms near 60.
    return write_spec(folder, f"""
        version: 1
        name: peak
        framework: torch
        device_type: cpu
        compiler: eager
        output_dir: {folder / 'out'}
        models:
          - name: sleepy
            factory: "sweep_models.py:sleepy"
            kwargs: {{features: 8, sleep_ms: 10.0}}
            inputs: [{{shape: [8]}}]
        sweep: {{rates: max}}
        objectives: {{slo: {{latency_ms_p99: {bound_ms}}}}}
        benchmark: {{scenario: server, duration: 1, rate_precision: 0.05, warmup: {{calls: 3}}, timeout: 60}}
        """)


def probe_lines(out: Path) -> list[str]:
    found = list(out.glob("samples/*/probes.jsonl"))
    return found[0].read_text().splitlines() if found else []


def test_a_search_killed_with_sigkill_resumes_without_repeating_a_probe(tmp_path):
    spec = search_spec(tmp_path)
    out = tmp_path / "out"
    sweep = Sweep(spec)
    deadline = time.monotonic() + 120
    while len(probe_lines(out)) < 2:
        assert time.monotonic() < deadline and sweep.process.poll() is None, "no two probes recorded"
        time.sleep(0.05)
    kill_sweep(sweep)
    before = probe_lines(out)
    (folder,) = out.glob("samples/*")
    recorded = {p: p.stat().st_mtime_ns for k in range(len(before)) for p in (folder / f"probe-{k}").rglob("*")}
    assert recorded

    rerun = subprocess.run([sys.executable, "-m", "neuronperf", "run", str(spec)], capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    after = probe_lines(out)
    assert after[: len(before)] == before and len(after) > len(before)
    assert {p: p.stat().st_mtime_ns for p in recorded} == recorded, "a recorded probe was measured again"
    (row,) = json.loads((out / "results.json").read_text())
    assert row["status"] == "ok" and row["probes"] == len(after)
    passed = [json.loads(line)["rate"] for line in after if json.loads(line)["passed"]]
    assert row["max_rate_under_slo"] in passed and row["rate_target"] == row["max_rate_under_slo"]
    assert row["latency_ms_p99"] <= 40.0 and row["valid"] is True


def test_a_bound_no_rate_can_meet_is_a_row_that_says_so(tmp_path, cli):
    spec = search_spec(tmp_path, bound_ms=5.0)  # under one 10 ms call
    code, _, err = cli("run", str(spec))
    assert code == 0, err
    (row,) = json.loads((tmp_path / "out" / "results.json").read_text())
    assert row["status"] == "ok" and row["max_rate_under_slo"] is None and row["probes"] == 1
    assert row["valid"] is False and "no rate met the bound: the lowest rate tried" in row["invalid_reason"]
    assert row["latency_ms_p99"] > 5.0
