"""The Neuron contract of the public API, checked with stand-ins for the AWS Neuron SDK.

The SDK and its hardware cannot be installed here. A stand-in ``torch_neuronx`` (put into
``sys.modules``: neuronperf.torch.compile compiles in this process) records its ``trace`` calls
and returns a real TorchScript trace; a stand-in ``neuron-ls`` script reports NeuronCores, so
that core pinning and the busy-core pre-flight run for real in worker processes.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import types

import api_models as am
import pytest
import torch

import neuronperf
import neuronperf.torch as npt
from neuronperf.errors import BackendUnavailable, UsageError

PIPELINE_FLAG = "--neuroncore-pipeline-cores"


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _standin(monkeypatch, name: str):
    calls: list = []
    module = types.ModuleType(name)
    module.__version__ = "0.0.0-standin"

    def trace(func, example_inputs, compiler_args=None, **kwargs):
        calls.append({"func": func, "training": func.training, "inputs": example_inputs,
                      "compiler_args": compiler_args, "kwargs": kwargs})
        return torch.jit.trace(func, example_inputs)

    module.trace = trace
    module.calls = calls
    monkeypatch.setitem(sys.modules, name, module)
    return module


@pytest.fixture
def torch_neuronx(monkeypatch):
    return _standin(monkeypatch, "torch_neuronx")


@pytest.fixture
def no_neuron_sdk(monkeypatch):
    # None in sys.modules makes `import torch_neuronx` raise ImportError, installed or not.
    monkeypatch.setitem(sys.modules, "torch_neuronx", None)
    monkeypatch.setitem(sys.modules, "torch_neuron", None)


def test_compile_traces_once_per_pipeline_size_with_the_pipeline_flag(torch_neuronx, in_tmp):
    model = am.TinyMLP()
    x = torch.rand(1, am.FEATURES)
    index_path = npt.compile(model, [x], batch_sizes=[1], pipeline_sizes=[1, 2], device_type="neuron",
                             compiler_args=["--model-type", "transformer"], filename="neuron.json")

    calls = torch_neuronx.calls
    assert len(calls) == 2
    assert calls[0]["compiler_args"] == ["--model-type", "transformer"]
    assert calls[1]["compiler_args"] == ["--model-type", "transformer", PIPELINE_FLAG, "2"]
    for call in calls:
        (example,) = call["inputs"]  # the example inputs of one call, as a tuple
        assert torch.equal(example, x), "traced with the caller's own tensor, as NeuronPerf did"
        assert call["func"] is model and not call["training"]  # traced in eval mode

    configs = json.loads((in_tmp / "neuron.json").read_text())["model_configs"]
    assert [(c["batch_size"], c["pipeline_size"], c["input_idx"]) for c in configs] == [(1, 1, 0), (1, 2, 0)]
    assert {(c["device_type"], c["compiler"]) for c in configs} == {("neuron", "neuronx")}
    assert all("0.0.0-standin" in c["compiler_version"] for c in configs)
    for config in configs:
        # What the stand-in traced was saved with torch.jit.save, as the real SDK's trace is.
        loaded = torch.jit.load(neuronperf.model_index.artifact_path(index_path, config))
        torch.testing.assert_close(loaded(x), model(x))


def test_compile_is_neuron_by_default_and_accepts_a_flag_string(torch_neuronx, in_tmp):
    npt.compile(am.TinyMLP(), torch.rand(2, am.FEATURES), batch_sizes=2, compiler_args="--fast-math none")
    (call,) = torch_neuronx.calls
    assert call["compiler_args"] == ["--fast-math", "none"]


def test_compile_refuses_a_pipeline_flag_in_compiler_args(torch_neuronx, in_tmp):
    with pytest.raises(UsageError, match="must not contain --neuroncore-pipeline-cores"):
        npt.compile(am.TinyMLP(), torch.rand(1, am.FEATURES), compiler_args=[PIPELINE_FLAG, "2"])
    assert torch_neuronx.calls == []


def test_compile_falls_back_to_torch_neuron_on_inferentia_1(monkeypatch, in_tmp):
    monkeypatch.setitem(sys.modules, "torch_neuronx", None)
    torch_neuron = _standin(monkeypatch, "torch_neuron")

    class Traced:  # torch.neuron.trace returns a ScriptModule that is saved with .save(path)
        def __init__(self, module):
            self.module = module

        def save(self, path):
            self.module.save(path)

    def trace(func, example_inputs, compiler_args=None, **kwargs):
        return Traced(torch_neuron.trace(func, example_inputs, compiler_args=compiler_args, **kwargs))

    # `import torch_neuron` registers the torch.neuron namespace; the stand-in does so up front.
    monkeypatch.setattr(torch, "neuron", types.SimpleNamespace(trace=trace), raising=False)
    index_path = npt.compile(am.TinyMLP(), torch.rand(1, am.FEATURES), pipeline_sizes=4)
    (config,) = neuronperf.model_index.load(index_path)["model_configs"]
    assert config["compiler"] == "neuron" and config["pipeline_size"] == 4
    assert torch_neuron.calls[0]["compiler_args"] == [PIPELINE_FLAG, "4"]


def test_compile_without_the_sdk_says_what_to_install(no_neuron_sdk, in_tmp):
    with pytest.raises(BackendUnavailable) as raised:
        npt.compile(am.TinyMLP(), torch.rand(1, am.FEATURES), batch_sizes=[1], pipeline_sizes=[1, 2])
    message = str(raised.value)
    assert "needs torch-neuronx" in message and "pip install torch-neuronx" in message
    assert not list(in_tmp.glob("*.json")) and not list(in_tmp.glob("models/*"))


def test_compile_with_a_named_compiler_without_its_sdk(no_neuron_sdk, in_tmp):
    with pytest.raises(BackendUnavailable, match="needs torch-neuron,? "):
        npt.compile(am.TinyMLP(), torch.rand(1, am.FEATURES), compiler="neuron")


# ---- benchmark on Neuron: core pinning and the busy-core pre-flight --------------------------------


def _fake_neuron_ls(folder, monkeypatch, cores: int, processes: list) -> None:
    """A neuron-ls on PATH that prints what the real one prints with --json-output."""
    devices = [{"neuron_device": 0, "nc_count": cores, "neuron_processes": processes}]
    script = folder / "neuron-ls"
    script.write_text(f"#!{sys.executable}\nimport json\nprint(json.dumps({devices!r}))\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


@pytest.fixture
def scripted_model(in_tmp):
    x = torch.rand(1, am.FEATURES)
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(am.TinyMLP(), x), "mlp.pt")
    return x


@pytest.fixture
def markers(in_tmp, monkeypatch):
    folder = in_tmp / "markers"
    folder.mkdir()
    monkeypatch.setenv(am.MARKERS_ENV, str(folder))
    return str(folder)


@pytest.mark.slow
def test_each_copy_gets_its_own_cores(scripted_model, in_tmp, markers, monkeypatch):
    _fake_neuron_ls(in_tmp, monkeypatch, cores=4, processes=[])
    reports = neuronperf.benchmark(am.load_tiny_mlp, "mlp.pt", scripted_model, device_type="neuron",
                                   pipeline_sizes=2, workers_per_model=1, duration=0.3,
                                   env_setup_fn=am.env_setup)
    # Default n_models is [1, MAX]; MAX = 4 cores / 2 per copy.
    assert [(r["n_models"], r["pipeline_size"], r["status"]) for r in reports] == [(1, 2, "ok"), (2, 2, "ok")]
    seen = {}
    for marker in am.read_markers(markers, "env_setup"):
        seen.setdefault(marker["entry_id"], set()).add(marker["NEURON_RT_VISIBLE_CORES"])
    assert seen == {"mlp-bs1-p2-m1-w1": {"0-1"}, "mlp-bs1-p2-m2-w1": {"0-1", "2-3"}}


@pytest.mark.slow
def test_busy_cores_make_error_rows_that_name_the_holder(scripted_model, in_tmp, markers, monkeypatch):
    _fake_neuron_ls(in_tmp, monkeypatch, cores=2, processes=[{"pid": 4242, "command": "python serve.py"}])
    reports = neuronperf.benchmark(am.load_tiny_mlp, "mlp.pt", scripted_model, device_type="neuron",
                                   n_models=[1, 4], workers_per_model=1, duration=0.3,
                                   env_setup_fn=am.env_setup)
    assert [r["status"] for r in reports] == ["error", "error"]
    assert "NeuronCore 0 is in use" in reports[0]["error"] and "pid 4242 (python serve.py)" in reports[0]["error"]
    assert "needs 4 NeuronCores; this machine has 2" in reports[1]["error"]
    assert am.read_markers(markers, "env_setup") == []  # no worker was started


def test_neuron_benchmark_without_neuron_ls_is_a_clear_error(scripted_model, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(BackendUnavailable, match="cannot count NeuronCores: neuron-ls is not on PATH"):
        neuronperf.benchmark(am.load_tiny_mlp, "mlp.pt", scripted_model, device_type="neuron", duration=0.3)
