"""neuronperf.cpu.benchmark, and the generic neuronperf.compile / neuronperf.benchmark."""

from __future__ import annotations

import os

import api_models as am
import pytest
import torch

import neuronperf
import neuronperf.cpu
from neuronperf.errors import CompileFailed, UsageError

SHORT = {"duration": 0.5, "n_models": 1, "workers_per_model": 1}


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def markers(tmp_path, monkeypatch):
    folder = tmp_path / "markers"
    folder.mkdir()
    monkeypatch.setenv(am.MARKERS_ENV, str(folder))
    return str(folder)


# ---- neuronperf.cpu.benchmark --------------------------------------------------------------------


@pytest.mark.slow
def test_cpu_benchmark_defaults_and_measurements():
    x = torch.zeros(1, 8)
    reports = neuronperf.cpu.benchmark(am.SleepyModel, x, duration=0.3)
    # NeuronPerf's defaults: workers [1, 2] x copies [1, MAX]; for a user's model MAX is the cores.
    most = os.cpu_count() or 1
    expected = [(n, w) for n in sorted({1, most}) for w in (1, 2)]
    assert [(r["n_models"], r["workers_per_model"]) for r in reports] == expected
    for r in reports:
        assert r["status"] == "ok", r["error"]
        assert r["model_name"] == "SleepyModel" and r["device_type"] == "cpu" and r["batch_size"] == 1
        # Each call sleeps 2 ms: the latency cannot be less, and threads overlap their sleeps.
        assert 2.0 <= r["latency_ms_p50"] < 50
        assert r["total_infs"] > 0


@pytest.mark.slow
def test_cpu_benchmark_with_several_inputs_and_a_setup_fn(markers):
    inputs = [torch.zeros(b, 8) for b in (1, 4)]
    reports = neuronperf.cpu.benchmark(am.SleepyModel, inputs, batch_sizes=[1, 4], setup_fn=am.setup,
                                       model_name="sleepy", **SHORT)
    assert [(r["batch_size"], r["status"], r["model_name"]) for r in reports] == [(1, "ok", "sleepy"), (4, "ok", "sleepy")]
    # The class was instantiated in the workers, not here.
    assert [m["model_type"] for m in am.read_markers(markers, "setup")] == ["SleepyModel", "SleepyModel"]
    # Throughput counts batch_size inputs per call.
    assert reports[1]["throughput_avg"] == pytest.approx(reports[1]["total_infs"] * 4 / reports[1]["total_s"], rel=0.02)


def test_cpu_benchmark_argument_errors():
    with pytest.raises(UsageError, match="device_type 'neuron' is not allowed"):
        neuronperf.cpu.benchmark(am.SleepyModel, torch.zeros(1, 8), device_type="neuron", **SHORT)
    with pytest.raises(UsageError, match="model class must be callable"):
        neuronperf.cpu.benchmark("SleepyModel", torch.zeros(1, 8), **SHORT)
    with pytest.raises(UsageError, match="2 example inputs but 1 batch sizes"):
        neuronperf.cpu.benchmark(am.SleepyModel, [torch.zeros(1, 8)] * 2, batch_sizes=[1], **SHORT)
    with pytest.raises(UsageError, match="n_models: -1 is not a positive integer"):
        neuronperf.cpu.benchmark(am.SleepyModel, torch.zeros(1, 8), duration=0.5, n_models=-1)
    with pytest.raises(UsageError, match="env_setup_fn .*cannot be sent to worker processes"):
        neuronperf.cpu.benchmark(am.SleepyModel, torch.zeros(1, 8), env_setup_fn=lambda i, c: None, **SHORT)


# ---- neuronperf.compile / neuronperf.benchmark ------------------------------------------------------


def test_generic_compile_calls_compile_fn_per_configuration(in_tmp, markers):
    model = am.TinyMLP()
    inputs = [torch.rand(b, am.FEATURES) for b in (1, 2)]
    index_path = neuronperf.compile(am.save_scripted, model, inputs, batch_sizes=[1, 2],
                                    compiler_args=["--O2"], filename="generic.json")
    configs = neuronperf.model_index.load(index_path)["model_configs"]
    assert [(c["input_idx"], c["batch_size"]) for c in configs] == [(0, 1), (1, 2)]
    calls = sorted(am.read_markers(markers, "compile_fn"), key=lambda m: m["batch_size"])
    assert [(c["shape"], c["pipeline_size"], c["compiler_args"]) for c in calls] == [
        ([1, 100], 1, ["--O2"]), ([2, 100], 1, ["--O2"])]
    for config, x in zip(configs, inputs):
        loaded = torch.jit.load(neuronperf.model_index.artifact_path(index_path, config))
        torch.testing.assert_close(loaded(x), model(x))


def test_generic_compile_keeps_going_after_a_failed_configuration(in_tmp):
    inputs = [torch.rand(b, am.FEATURES) for b in (1, 2, 3)]
    with pytest.warns(UserWarning, match="bs2-p1: RuntimeError: no kernel for batch size 2"):
        index_path = neuronperf.compile(am.failing_compile_fn, am.TinyMLP(), inputs, batch_sizes=[1, 2, 3])
    configs = neuronperf.model_index.load(index_path)["model_configs"]
    assert [(c["batch_size"], c["input_idx"]) for c in configs] == [(1, 0), (3, 2)]
    with pytest.raises(CompileFailed, match="every configuration failed"):
        neuronperf.compile(am.failing_compile_fn, am.TinyMLP(), inputs[1], batch_sizes=2)


@pytest.mark.slow
def test_generic_benchmark_loads_with_load_fn_in_each_worker(in_tmp, markers):
    model = am.TinyMLP()
    x = torch.rand(2, am.FEATURES)
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(model, x), "mlp.pt")
    reports = neuronperf.benchmark(am.load_tiny_mlp, "mlp.pt", x, duration=0.5, n_models=2, workers_per_model=1)
    assert [(r["status"], r["n_models"], r["batch_size"], r["model_name"]) for r in reports] == [("ok", 2, 2, "mlp")]
    loads = am.read_markers(markers, "load_fn")
    assert sorted(m["device_id"] for m in loads) == [0, 1]
    assert {m["filename"] for m in loads} == {"mlp.pt"}
    assert os.getpid() not in {m["pid"] for m in loads}


@pytest.mark.slow
def test_generic_benchmark_load_failure_is_a_row(in_tmp):
    # The file does not exist: load_fn raises in the worker, and the configuration's row says so.
    (report,) = neuronperf.benchmark(am.load_tiny_mlp, "missing.pt", torch.zeros(1, am.FEATURES), **SHORT)
    assert report["status"] == "error"
    assert "missing.pt" in report["error"] and "loading" in report["error"]
