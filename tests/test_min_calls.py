"""``benchmark.min_calls``: a slow model measured past ``duration`` until it has enough calls for
its tail percentiles, never past what the timeout leaves; and one located line for a bad value."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from test_answers_sweep import sleepy_spec
from test_sweep_run import read_csv

from neuronperf.errors import SpecError
from neuronperf.plan.expand import plan
from neuronperf.spec.load import parse_spec
from neuronperf.stats.forward import MIN_SAMPLES


def spec_text(bench: str) -> str:
    return textwrap.dedent(f"""\
        version: 1
        framework: torch
        device_type: cpu
        compiler: eager
        models:
          - {{name: m, factory: "neuronperf.zoo:mlp", inputs: [{{shape: [8]}}]}}
        benchmark: {bench}
        """)


@pytest.mark.pure
def test_min_calls_is_in_the_identity_only_when_set():
    def entry(bench: str):
        return plan(parse_spec(spec_text(bench), "s.yaml")).run_entries[0]

    unset, set_ = entry("{duration: 1}"), entry("{duration: 1, min_calls: 100}")
    assert set_.benchmark.min_calls == 100 and unset.benchmark.min_calls is None
    assert "min_calls" not in unset.benchmark.identity_dict()  # plans from before it keep their keys
    assert unset.id == set_.id and unset.key != set_.key  # a rerun re-measures, under the same id


@pytest.mark.pure
@pytest.mark.parametrize(("bench", "expected"), [
    ("{min_calls: 0}", "benchmark.min_calls: 0 is not a positive integer"),
    ("{min_calls: 2.5}", "benchmark.min_calls: expected an integer or null, got 2.5"),
    ("{min_calls: 50, max_infers: 10}", "benchmark.min_calls: min_calls (50) must not exceed max_infers (10)"),
])
def test_a_bad_min_calls_is_one_located_line(bench, expected):
    with pytest.raises(SpecError) as info:
        parse_spec(spec_text(bench), "s.yaml")
    (problem,) = [str(p) for p in info.value.problems]
    assert problem.startswith("s.yaml:7:") and expected in problem, problem


@pytest.mark.slow
def test_a_slow_model_is_measured_until_it_has_its_calls(tmp_path: Path, cli):
    # A 10 ms model on 2 threads for 0.3 s makes about 60 calls: too few for the tail figures.
    # With min_calls each thread goes on until it has its 50, and the row stays right.
    axes = "workers_per_model: 2"
    short = sleepy_spec(tmp_path / "short", 10.0, duration=0.3, axes=axes)
    enough = sleepy_spec(tmp_path / "enough", 10.0, duration=0.3, axes=axes)
    enough.write_text(enough.read_text().replace("timeout: 60}", f"timeout: 60, min_calls: {MIN_SAMPLES}}}"))
    for spec in (short, enough):
        assert cli("run", str(spec), "-q").code == 0
    (few,) = read_csv(tmp_path / "short" / "out" / "results.csv")
    (row,) = read_csv(tmp_path / "enough" / "out" / "results.csv")

    assert int(few["total_infs"]) < MIN_SAMPLES
    assert "few samples" in few["warning"] and f"benchmark.min_calls: {MIN_SAMPLES}" in few["warning"]
    assert MIN_SAMPLES <= int(row["total_infs"]) <= MIN_SAMPLES + 2  # each thread stops at its share
    assert not row["warning"], row["warning"]
    # 50 calls of at least 10 ms each, per thread, is a window of at least 0.5 s, not 0.3 s.
    assert float(row["total_s"]) >= 0.5
    # Little's law: 2 threads of back-to-back calls of mean latency L serve 2 / L calls per second.
    little = 2 / (float(row["latency_ms_avg"]) / 1000)
    assert abs(float(row["throughput_avg"]) - little) / little < 0.05


@pytest.mark.slow
def test_a_minimum_out_of_reach_gives_a_row_with_fewer_calls_not_a_timeout(tmp_path: Path, cli):
    spec = sleepy_spec(tmp_path, 10.0, duration=0.3)
    spec.write_text(spec.read_text().replace("timeout: 60}", "timeout: 6, min_calls: 100000}"))
    assert cli("run", str(spec), "-q").code == 0
    (row,) = read_csv(tmp_path / "out" / "results.csv")
    assert row["status"] == "ok"
    assert 30 < int(row["total_infs"]) < 100000
    # It went on for half of what the timeout left after the 0.3 s window, well inside the 6 s.
    assert 0.6 < float(row["total_s"]) < 4.0
