"""Telemetry in the pipeline: the spec key, entry identities, the supervisor's sampler around a
real entry, the row columns and the answers that use them. The sources themselves are tested in
test_trackers.py."""

from __future__ import annotations

import time

import pytest

from neuronperf.answers import summary
from neuronperf.entries import DEFAULT_TELEMETRY_PERIOD_MS, BenchmarkSettings
from neuronperf.errors import SpecError
from neuronperf.results import RESULT_COLUMNS, RowConfig, report_row
from neuronperf.results.columns import TELEMETRY_COLUMNS
from neuronperf.spec import parse_spec
from neuronperf.trackers import Sample

SPEC = """\
version: 1
framework: torch
device_type: cpu
models:
  - name: mlp
    factory: "neuronperf.zoo:mlp"
    inputs: [{shape: [128]}]
"""
S = 1_000_000_000


@pytest.mark.pure
@pytest.mark.parametrize("benchmark, period", [
    ("", DEFAULT_TELEMETRY_PERIOD_MS),
    ("benchmark: {telemetry: true}\n", DEFAULT_TELEMETRY_PERIOD_MS),
    ("benchmark: {telemetry: {period_ms: 250}}\n", 250.0),
    ("benchmark: {telemetry: false}\n", None),
])
def test_the_spec_key(benchmark, period):
    assert parse_spec(SPEC + benchmark, "s.yaml").benchmark.telemetry_period_ms == period


@pytest.mark.pure
def test_a_bad_period_is_one_located_line():
    with pytest.raises(SpecError) as info:
        parse_spec(SPEC + "benchmark: {telemetry: {period_ms: 1}}\n", "s.yaml")
    assert str(info.value) == "s.yaml:8:36: benchmark.telemetry.period_ms: 1 is less than the minimum 10"


@pytest.mark.pure
def test_identity_changes_only_when_telemetry_is_set_otherwise():
    before = {"duration": 5.0, "max_infers": None, "warmup_calls": 10, "warmup_s": 0.0, "peak_window_s": 1.0}
    assert BenchmarkSettings().identity_dict() == before  # entries measured before telemetry resume
    assert BenchmarkSettings(telemetry_period_ms=100.0).identity_dict() == before
    assert BenchmarkSettings(telemetry_period_ms=None).identity_dict() == {**before, "telemetry_period_ms": None}


class Linear:
    """A source whose energy grows by exactly 40 W of the real clock: every figure has a truth."""

    name = "linear"
    mem_column = "device_mem_mb_peak"

    def open(self):
        return None

    def reads_power(self):
        return True

    def poll(self, pids):
        t = time.perf_counter_ns()
        return [Sample(t_ns=t, energy_j={"pkg": 40.0 * t / S}, mem_bytes={"dev": 64 * 2**20 * len(pids)},
                       util_pct={"dev": 50.0})]

    def entry_channels(self, samples):
        return None, None

    def notes(self):
        return []

    def close(self):
        pass


@pytest.mark.slow
def test_the_supervisor_samples_around_a_real_entry():
    """One real copy, telemetry from a source with a known power: the row's power is 40 W, its
    energy per inference is 40 W x the window over the inferences, idle power was measured, and
    the readings never ran in the copy (its pid is only watched)."""
    from measuring import measure

    from neuronperf.measure.task import BenchmarkTask, factory_loader
    from neuronperf.zoo import mlp

    task = BenchmarkTask("mlp", factory_loader(mlp, in_features=16, hidden=16), inputs=_inputs(),
                         batch_size=2, settings=BenchmarkSettings(duration=0.5, warmup_calls=5, telemetry_period_ms=20))
    result = measure(task, tracker=Linear())
    assert result.status == "ok", result.error
    assert result.telemetry is not None and result.telemetry.power_w_idle == pytest.approx(40.0)
    row = report_row(_config(task), result)
    assert row["power_w_avg"] == pytest.approx(40.0) and row["energy_source"] == "linear"
    assert row["energy_j_per_inf"] * row["total_infs"] * 2 == pytest.approx(40.0 * row["total_s"])
    assert row["device_mem_mb_peak"] == 64.0 and row["device_util_pct_avg"] == 50.0
    # The telemetry columns come as one block after "node", in the row and in the files' order.
    after_node = list(RESULT_COLUMNS).index("node") + 1
    assert list(RESULT_COLUMNS[after_node:after_node + len(TELEMETRY_COLUMNS)]) == list(TELEMETRY_COLUMNS)
    columns = list(row)
    assert columns[columns.index("node") + 1:][:len(TELEMETRY_COLUMNS)] == list(TELEMETRY_COLUMNS)

    # This machine's own CPU source: RAPL, absent here (the note says so), or readable.
    plain = measure(BenchmarkTask("mlp", factory_loader(mlp, in_features=16, hidden=16), inputs=_inputs(),
                                  settings=BenchmarkSettings(duration=0.2, warmup_calls=1)))
    assert plain.telemetry is not None
    assert plain.telemetry.energy_source == "rapl" or plain.telemetry.note.startswith("no readable powercap files")
    off = measure(BenchmarkTask("mlp", factory_loader(mlp, in_features=16, hidden=16), inputs=_inputs(),
                                settings=BenchmarkSettings(duration=0.2, warmup_calls=1, telemetry_period_ms=None)))
    assert off.status == "ok" and off.telemetry is None


def _inputs():
    import torch

    return torch.zeros(2, 16)


def _config(task):
    return RowConfig(id="mlp-bs2-p1-m1-w1", batch_size=2)


def _row(id_, m, mem, energy, power=100.0):
    return {"model_name": "cnn", "id": id_, "status": "ok", "throughput_avg": 1000.0, "latency_ms_p99": 2.0,
            "batch_size": 8, "n_models": m, "workers_per_model": 1, "pipeline_size": 1,
            "device_mem_mb_peak": mem, "energy_j_per_inf": energy, "power_w_avg": power, "power_w_idle": 60.0,
            "energy_source": "nvml"}


ROWS = [
    _row("cnn-bs8-p1-m1-w1", 1, 120.0, 0.004),
    _row("cnn-bs8-p1-m2-w1", 2, 241.5, 0.003),
    _row("cnn-bs1-p1-m1-w1", 1, 100.0, 0.010),
]


@pytest.mark.pure
def test_the_summary_ranks_by_energy_and_shows_memory_against_copies():
    text = summary.render(ROWS, rank_by="energy_j_per_inf")
    assert "least energy per inference: cnn-bs8-p1-m2-w1 at 3 mJ/inf (100.0 W, idle 60.0 W, nvml)" in text
    memory = text.split("device memory against copies (device_mem_mb_peak, MB):\n", 1)[1].split("\n\n")[0].splitlines()
    assert memory[0].split() == ["configuration", "1", "copy", "2", "copies"]
    assert memory[2].split() == ["cnn-bs8-p1-w1", "120.000", "241.500"]
    assert memory[3].split() == ["cnn-bs1-p1-w1", "100.000", "N/A"]
    ranking = text.split("ranked by energy_j_per_inf (lower is better):\n", 1)[1].splitlines()
    assert [line.split()[0] for line in ranking[2:5]] == ["cnn-bs8-p1-m2-w1", "cnn-bs8-p1-m1-w1", "cnn-bs1-p1-m1-w1"]


@pytest.mark.pure
def test_rank_by_an_unknown_column_exits_2(cli, tmp_path):
    result = cli("summary", str(tmp_path), "--rank-by", "joules")
    assert result.code == 2 and "--rank-by 'joules': not a column to rank by" in result.err
