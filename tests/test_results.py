"""Report rows, results.csv / results.json / run.json, and atomic writes."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from neuronperf.entries import (
    BenchmarkSettings,
    CompileEntry,
    Measurement,
    ModelRef,
    RunEntry,
    TensorSpec,
    WorkerSamples,
)
from neuronperf.errors import JournalError, UsageError
from neuronperf.results.columns import DEFAULT_CSV_COLS, RESULT_COLUMNS
from neuronperf.results.files import read_run_info, write_results, write_run_info
from neuronperf.results.rows import RowConfig, report_row, row_for_unrun
from neuronperf.stats.forward import METHOD_VERSION
from neuronperf.util import atomic

pytestmark = pytest.mark.pure

MS = 1_000_000
S = 1_000_000_000


def run_entry(batch_size=4, n_models=2, workers=1, params=(("seq_len", 128),)):
    compile_entry = CompileEntry(
        model=ModelRef("bert", "neuronperf.zoo:bert"),
        params=params,
        inputs=(TensorSpec((128,), "int64"), TensorSpec((128,), "int64")),
        batch_size=batch_size,
        pipeline_size=1,
        framework="torch",
        device_type="cpu",
        compiler="torchscript",
    )
    return RunEntry(compile_entry, n_models=n_models, workers_per_model=workers,
                    benchmark=BenchmarkSettings(duration=2.0, peak_window_s=0.5))


def ok_measurement():
    # 4 calls of 250 ms each, back to back, filling a 1 s window.
    w = WorkerSamples(0, 0, start_ns=tuple(i * 250 * MS for i in range(4)), latency_ns=(250 * MS,) * 4)
    return Measurement("ok", window_start_ns=0, window_end_ns=S, workers=(w,))


def test_ok_row_has_neuronperf_keys_and_ours():
    entry = run_entry()
    row = report_row(entry, ok_measurement(), model_filename="models/bert.pt", instance_type="inf2.xlarge",
                     cost_per_hour=0.76, extra={"compiler": "torchscript"})
    assert list(row)[: len(RESULT_COLUMNS)] == list(RESULT_COLUMNS)
    assert row["model_name"] == "bert" and row["model_filename"] == "models/bert.pt"
    assert row["id"] == entry.id == "bert-seq_len128-bs4-p1-m2-w1" and row["key"] == entry.key
    assert (row["batch_size"], row["n_models"], row["workers_per_model"], row["pipeline_size"]) == (4, 2, 1, 1)
    assert row["device_type"] == "cpu" and row["instance_type"] == "inf2.xlarge"
    assert row["status"] == "ok" and row["error"] is None
    assert row["input_shapes"] == "128;128"
    assert row["seq_len"] == 128 and row["compiler"] == "torchscript"
    assert row["total_infs"] == 4 and row["throughput_avg"] == 16.0  # 4 calls x 4 / 1 s
    # 0.5 s slices: each holds 2 calls.
    assert row["throughput_peak"] == 2 * 4 / 0.5
    assert row["latency_ms_p50"] == 250.0 and row["percentile_method"] == "linear"
    assert row["method_version"] == METHOD_VERSION and row["repeats"] == 1 and row["throughput_ci_low"] is None
    assert row["cost_per_1m_inf"] == pytest.approx(0.76 * 1e6 / (3600 * 16.0))
    assert "few samples" in row["warning"]


def steady(calls_per_s: float) -> Measurement:
    lat = int(S / calls_per_s)
    w = WorkerSamples(0, 0, start_ns=tuple(i * lat for i in range(10)), latency_ns=(lat,) * 10)
    return Measurement("ok", window_start_ns=0, window_end_ns=10 * lat, workers=(w,))


def test_cost_has_one_definition_for_the_python_api_and_the_sweep():
    """Two repeats at 100/s and 300/s: the row's throughput is their mean, 200/s, and the cost is
    priced from it (c / 200), whether the Python API priced the row as it made it or the sweep
    priced the stored row; not the median of per-repeat costs (c / 150). A price of 0 is a price."""
    from neuronperf.answers import prices

    config = RowConfig(id="x", batch_size=1)
    for price in (7.2, 0.0):
        api = report_row(config, [steady(100.0), steady(300.0)], cost_per_hour=price)
        sweep = prices.apply_pricing(report_row(config, [steady(100.0), steady(300.0)]),
                                     prices.resolve_pricing(None, price))
        assert api["throughput_avg"] == pytest.approx(200.0)
        assert api["cost_per_1m_inf"] == pytest.approx(price * 1e6 / (3600 * 200.0))
        assert sweep["cost_per_1m_inf"] == api["cost_per_1m_inf"]
    assert report_row(config, steady(100.0))["cost_per_1m_inf"] is None  # no price, no cost


def test_failed_entry_keeps_identity_and_empty_numbers():
    entry = run_entry()
    row = report_row(entry, Measurement("timeout", error="no result within 300 s; killed the worker tree"))
    assert row["status"] == "timeout" and "killed" in row["error"]
    assert row["id"] == entry.id and row["batch_size"] == 4 and row["model_name"] == "bert"
    for name in ("throughput_avg", "throughput_peak", "latency_ms_p50", "total_infs", "cost_per_1m_inf"):
        assert row[name] is None


def test_row_for_unrun_entry():
    row = row_for_unrun(run_entry(), "error", "compile failed: out of memory")
    assert row["status"] == "error" and row["error"] == "compile failed: out of memory"
    assert row["throughput_avg"] is None and row["id"] == run_entry().id
    with pytest.raises(UsageError, match="status"):
        row_for_unrun(run_entry(), "ok", None)


def test_row_without_a_run_entry_and_bad_status():
    config = RowConfig(id="model_b1_p1", batch_size=1, device_type="neuron", model_name="model.pt")
    row = report_row(config, ok_measurement())
    assert row["id"] == "model_b1_p1" and row["key"] is None and row["input_shapes"] is None
    assert row["throughput_avg"] == 4.0
    with pytest.raises(UsageError, match="unknown status"):
        report_row(config, Measurement("done"))
    with pytest.raises(UsageError, match="RowConfig or a RunEntry"):
        report_row({"id": "x"}, ok_measurement())  # type: ignore[arg-type]


def test_param_named_like_a_column_does_not_overwrite_it():
    row = report_row(run_entry(params=(("batch_size", 99),)), ok_measurement())
    assert row["batch_size"] == 4 and row["param_batch_size"] == 99


def test_row_config_round_trips_and_rejects_unknown_fields():
    config = RowConfig.from_run_entry(run_entry())
    assert config.peak_window_s == 0.5 and config.input_shapes == ((128,), (128,))
    assert RowConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with_list = RowConfig.from_dict({"id": "x", "batch_size": 1, "params": [["dims", [3, 4]]]})
    assert with_list.params == (("dims", (3, 4)),) and hash(with_list)
    with pytest.raises(UsageError, match="unknown fields: colour"):
        RowConfig.from_dict({"id": "x", "batch_size": 1, "colour": "red"})
    with pytest.raises(UsageError, match="'batch_size'"):
        RowConfig.from_dict({"id": "x"})


def test_write_results_csv_header_and_strict_json(tmp_path):
    rows = [
        report_row(run_entry(), ok_measurement()),
        report_row(run_entry(batch_size=8), Measurement("error", error='model raised ValueError("bad, input")')),
        dict(report_row(run_entry(batch_size=16), ok_measurement()), throughput_cv=float("nan")),
    ]
    csv_path, json_path = write_results(str(tmp_path), rows)
    with open(csv_path, newline="") as f:
        lines = list(csv.reader(f))
    header = lines[0]
    assert header[: len(DEFAULT_CSV_COLS)] == list(DEFAULT_CSV_COLS)
    assert header[len(DEFAULT_CSV_COLS)] == "status" and "seq_len" in header
    assert len(lines) == 4
    failed = dict(zip(header, lines[2]))
    assert failed["status"] == "error" and failed["error"] == 'model raised ValueError("bad, input")'
    assert failed["throughput_avg"] == ""  # empty cell, not "None" or "nan"
    assert float(dict(zip(header, lines[1]))["throughput_avg"]) == rows[0]["throughput_avg"]

    text = Path(json_path).read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text)
    assert isinstance(data, list) and len(data) == 3
    assert data[0]["throughput_avg"] == rows[0]["throughput_avg"]
    assert data[2]["throughput_cv"] is None
    assert list(data[0]) == header  # same columns, same order in both files


def test_atomic_write_keeps_the_old_file_when_the_rename_fails(tmp_path, monkeypatch):
    rows = [report_row(run_entry(), ok_measurement())]
    write_results(str(tmp_path), rows)
    before = {name: (tmp_path / name).read_bytes() for name in ("results.csv", "results.json")}

    def crash(*args, **kwargs):  # also relative to folder descriptors
        raise OSError("simulated crash during rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        write_results(str(tmp_path), rows + [row_for_unrun(run_entry(batch_size=8), "skipped", "excluded")])
    assert sorted(os.listdir(tmp_path)) == ["results.csv", "results.json"]  # no temp file left
    assert (tmp_path / "results.csv").read_bytes() == before["results.csv"]
    assert (tmp_path / "results.json").read_bytes() == before["results.json"]


def test_atomic_write_cleans_up_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "data.json"
    atomic.atomic_write_json(str(target), {"a": 1})

    def failing_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        atomic.atomic_write_json(str(target), {"a": 2})
    assert json.loads(target.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["data.json"]


def test_strict_json_helpers():
    assert atomic.json_ready({"x": float("inf"), "y": (1, float("nan")), 3: True}) == {"x": None, "y": [1, None], "3": True}
    import numpy as np

    assert atomic.dumps_strict({"n": np.int64(3), "f": np.float32(0.5), "g": np.float64("nan")}) == '{"n": 3, "f": 0.5, "g": null}'


def test_run_info_round_trip_and_versions(tmp_path):
    assert read_run_info(str(tmp_path)) is None
    env = {"cpu_model": "Test CPU", "versions": {"torch": "2.3.1"}}
    write_run_info(str(tmp_path), env, name="quickstart")
    info = read_run_info(str(tmp_path))
    assert info["environment"] == env and info["name"] == "quickstart"
    assert info["format"] == 1 and info["results_format"] == 1
    # A newer writer's file is refused with a clear message.
    (tmp_path / "run.json").write_text(json.dumps(dict(info, format=99)))
    with pytest.raises(JournalError, match="written by a newer neuronperf"):
        read_run_info(str(tmp_path))
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(JournalError, match="run.json: cannot be read"):
        read_run_info(str(tmp_path))
    (tmp_path / "run.json").write_text(json.dumps({"format": 1}))
    with pytest.raises(JournalError, match="no 'environment' object"):
        read_run_info(str(tmp_path))
    # An older file (without results_format) is accepted.
    (tmp_path / "run.json").write_text(json.dumps({"format": 1, "environment": env}))
    assert read_run_info(str(tmp_path))["environment"] == env
