"""The NeuronPerf reporting API (get_reports, print_reports, write_csv, write_json) and the
Timer / timestamp_convert / set_verbosity utilities."""

from __future__ import annotations

import csv
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from neuronperf.api.reporting import (
    DEFAULT_CSV_COLS,
    get_reports,
    parse_raw_result,
    print_reports,
    raw_result,
    write_csv,
    write_json,
)
from neuronperf.api.timer import Timer, set_verbosity, timestamp_convert
from neuronperf.entries import CopyStats, Measurement, WorkerSamples
from neuronperf.errors import UsageError
from neuronperf.results.rows import RowConfig

pytestmark = pytest.mark.pure

MS = 1_000_000
S = 1_000_000_000


def measurement(latency_ms=10, calls=4):
    w = WorkerSamples(0, 0, start_ns=tuple(i * 100 * MS for i in range(calls)),
                      latency_ns=(latency_ms * MS,) * calls, infer_ns_total=calls * latency_ms * MS // 2)
    copy = CopyStats(0, pid=1234, load_ms=50.0, warmup_ms=12.5, cpu_avg_percent=95.0, peak_rss_bytes=2**30)
    return Measurement("ok", window_start_ns=0, window_end_ns=S, workers=(w,), copies=(copy,))


def config(batch_size=1, n_models=1, name="model_b1.pt"):
    return RowConfig(id=f"{name}-bs{batch_size}-m{n_models}", batch_size=batch_size, n_models=n_models,
                     device_type="neuron", model_name="resnet")


def test_raw_result_is_json_and_round_trips():
    raw = raw_result(config(), measurement(), model_filename="model_b1.pt", cost_per_hour=1.0)
    raw = json.loads(json.dumps(raw, allow_nan=False))  # JSON-able, strictly
    cfg, m, meta = parse_raw_result(raw)
    assert cfg == config()
    expected = measurement()
    assert (m.status, m.window_start_ns, m.window_end_ns, m.copies) == (expected.status, 0, S, expected.copies)
    assert [list(w.start_ns) for w in m.workers] == [list(w.start_ns) for w in expected.workers]
    assert [list(w.latency_ns) for w in m.workers] == [list(w.latency_ns) for w in expected.workers]
    assert meta == {"model_filename": "model_b1.pt", "cost_per_hour": 1.0}


def test_raw_result_errors_are_clear():
    with pytest.raises(UsageError, match="unknown metadata colour"):
        raw_result(config(), measurement(), colour="red")
    with pytest.raises(UsageError, match="not a raw result"):
        get_reports([{"throughput_avg": 1.0}])
    newer = dict(raw_result(config(), measurement()), format=2)
    with pytest.raises(UsageError, match="newer neuronperf"):
        get_reports([newer])
    broken = raw_result(config(), measurement())
    broken["measurement"]["workers"][0].pop("latency_ns")
    with pytest.raises(UsageError, match="malformed measurement"):
        get_reports([broken])


def test_get_reports_computes_rows_from_raw_results():
    raws = [
        raw_result(config(batch_size=1), measurement(), model_filename="model_b1.pt", instance_type="inf2.xlarge"),
        raw_result(config(batch_size=4), measurement(latency_ms=20), model_filename="model_b4.pt"),
    ]
    reports = get_reports(raws)
    assert [r["batch_size"] for r in reports] == [1, 4]
    # Method 2: 4 calls over the thread's measuring span, first start to last end (0.31 / 0.32 s).
    assert reports[0]["throughput_avg"] == pytest.approx(4 / 0.31)
    assert reports[1]["throughput_avg"] == pytest.approx(4 * 4 / 0.32)
    assert reports[1]["latency_ms_p50"] == 20.0 and reports[1]["infer_avg_ms"] == 10.0
    assert reports[0]["load_avg_ms"] == 50.0 and reports[0]["peak_rss_mb"] == 1024.0
    assert reports[0]["instance_type"] == "inf2.xlarge" and reports[0]["model_name"] == "resnet"
    assert get_reports(raws[0]) == reports[:1]  # a single raw result works too


def reports_for_printing():
    return [
        {"throughput_avg": 100.0, "latency_ms_p50": 10.0, "latency_ms_p99": 12.345, "n_models": 1,
         "pipeline_size": 1, "workers_per_model": 1, "batch_size": 1, "model_filename": "m_b1.pt", "model_name": "m"},
        {"throughput_avg": None, "latency_ms_p50": None, "latency_ms_p99": None, "n_models": 2,
         "pipeline_size": 1, "workers_per_model": 2, "batch_size": 8, "model_filename": "m_b8.pt", "model_name": "m",
         "status": "error"},
        {"throughput_avg": 250.5, "latency_ms_p50": 8.0, "latency_ms_p99": float("nan"), "n_models": 2,
         "pipeline_size": 1, "workers_per_model": 1, "batch_size": 4, "model_filename": "m_b4.pt", "model_name": "m"},
    ]


def test_print_reports_fixed_width_sorted_with_missing_last(capsys):
    print_reports(reports_for_printing())
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["throughput_avg", "latency_ms_p50", "latency_ms_p99", "n_models",
                                "pipeline_size", "workers_per_model", "batch_size", "model_filename"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    body = lines[2:]
    assert [line.split()[-1] for line in body] == ["m_b1.pt", "m_b4.pt", "m_b8.pt"]  # ascending, N/A last
    assert body[0].split()[:3] == ["100.000", "10.000", "12.345"]
    assert body[1].split()[2] == "N/A" and body[2].split()[:3] == ["N/A", "N/A", "N/A"]
    # Fixed width: every column starts at the same offset on every line.
    starts = [m.start() for m in re.finditer(r"\S+", lines[0])]
    for line in body:
        assert [m.start() for m in re.finditer(r"\S+", line)][-1] == starts[-1]


def test_print_reports_columns_reverse_and_bad_sort_key(capsys):
    print_reports(reports_for_printing(), cols=["batch_size", "throughput_avg"], sort_by="batch_size", reverse=True)
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[2:]] == ["8", "4", "1"]
    with pytest.raises(UsageError, match="no report has the column 'speed'"):
        print_reports(reports_for_printing(), sort_by="speed")


def test_write_csv_default_name_and_na(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    name = write_csv(reports_for_printing())
    assert re.fullmatch(r"m\.results-\d{8}-\d{6}\.csv", name)
    with open(tmp_path / name, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == list(DEFAULT_CSV_COLS)
    failed = dict(zip(rows[0], rows[2]))
    assert failed["throughput_avg"] == "N/A" and failed["instance_type"] == "N/A"
    assert dict(zip(rows[0], rows[3]))["latency_ms_p99"] == "N/A"  # NaN is missing too
    assert dict(zip(rows[0], rows[1]))["throughput_avg"] == "100.0"


def test_write_csv_given_name_and_columns(tmp_path):
    path = str(tmp_path / "out.csv")
    assert write_csv(reports_for_printing(), path, cols=["batch_size", "status"]) == path
    assert Path(path).read_text().splitlines() == ["batch_size,status", "1,N/A", "8,error", "4,N/A"]


def test_write_json_strict_with_default_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    reports = reports_for_printing()
    reports[0]["model_name"] = "my model/v2"
    name = write_json(reports)
    assert re.fullmatch(r"v2\.results-\d{8}-\d{6}\.json", name)  # path parts and spaces are dropped
    text = (tmp_path / name).read_text()
    assert "NaN" not in text
    data = json.loads(text)
    assert data[2]["latency_ms_p99"] is None and data[0]["throughput_avg"] == 100.0
    assert write_json([], str(tmp_path / "empty.json")) == str(tmp_path / "empty.json")
    assert json.loads((tmp_path / "empty.json").read_text()) == []


def test_timer_with_an_exact_fake_clock():
    ticks = iter([1_000, 3_000, 10_000, 16_000])
    timer = Timer(clock=lambda: next(ticks))
    with timer:
        pass
    timer.start()
    assert timer.stop() == 6_000 / 1e9
    assert len(timer) == 2
    assert timer.durations("ns") == [2_000, 6_000]
    assert timer.durations("us") == [2.0, 6.0]
    assert timer.total("us") == 8.0 and timer.avg("us") == 4.0
    timer.reset()
    with pytest.raises(UsageError, match="no finished intervals"):
        timer.avg()


def test_timer_misuse_and_real_clock():
    timer = Timer()
    with pytest.raises(UsageError, match="without start"):
        timer.stop()
    timer.start()
    with pytest.raises(UsageError, match="twice"):
        timer.start()
    assert timer.stop() >= 0
    with pytest.raises(UsageError, match="unknown time unit 'hours'"):
        timer.total("hours")


def test_timestamp_convert():
    assert timestamp_convert(1_500_000, "ns", "ms") == 1.5
    assert timestamp_convert(2, "s", "us") == 2_000_000
    assert timestamp_convert([1, 2], "ms", "s") == [0.001, 0.002]
    with pytest.raises(UsageError, match="unknown time unit"):
        timestamp_convert(1, "ns", "minutes")


def test_set_verbosity():
    logger = logging.getLogger("neuronperf")
    old = logger.level
    try:
        set_verbosity(2)
        assert logger.level == logging.DEBUG
        set_verbosity(0)
        assert logger.level == logging.WARNING
        with pytest.raises(UsageError, match="verbosity must be 0, 1 or 2"):
            set_verbosity(5)
    finally:
        logger.setLevel(old)


def test_results_modules_import_no_framework():
    code = (
        "import sys; import neuronperf.api.reporting, neuronperf.results, neuronperf.results.journal, "
        "neuronperf.results.environment, neuronperf.api.timer; "
        "assert not {'torch', 'tensorflow', 'onnxruntime'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
