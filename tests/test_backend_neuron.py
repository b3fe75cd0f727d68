"""Contract tests of the Neuron backends against stand-in SDK modules.

The AWS Neuron SDK and its hardware cannot be installed here. The stand-ins below take the
SDK's place in ``sys.modules``: they record every call the backend makes (the trace call, its
example inputs, the compiler arguments, the save path) and return real ``torch.jit`` traced
modules, so that the saved artifact really loads and runs. ``neuron-ls`` is stood in for by a
real executable script on PATH that prints canned JSON.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import types
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from neuronperf.backends import find_backend, get_backend  # noqa: E402
from neuronperf.backends.neuron import neuron_compiler_args, neuron_core_range  # noqa: E402
from neuronperf.entries import CompileEntry, ModelRef, TensorSpec, freeze  # noqa: E402
from neuronperf.errors import BackendUnavailable, ModelLoadError, UsageError  # noqa: E402
from neuronperf.sources.factory import build_model  # noqa: E402

INSTALL_INDEX = "--extra-index-url=https://pip.repos.neuron.amazonaws.com"


def make_entry(compiler: str = "neuronx", pipeline_size: int = 1, compiler_args=None, batch_size: int = 2) -> CompileEntry:
    return CompileEntry(
        model=ModelRef("mlp", "neuronperf.zoo:mlp", freeze({"in_features": 32, "hidden": 64})),
        params=(),
        inputs=(TensorSpec((32,)),),
        batch_size=batch_size,
        pipeline_size=pipeline_size,
        framework="torch",
        device_type="neuron",
        compiler=compiler,
        compiler_args=freeze(compiler_args if compiler_args is not None else {}),
    )


class SavedRecorder:
    """What the torch-neuron stand-in's trace returns: a real ScriptModule whose ``save`` is
    recorded (torch.neuron.trace returns a ScriptModule saved with ``.save(path)``)."""

    def __init__(self, module, calls: list):
        self.module = module
        self.calls = calls

    def save(self, path):
        self.calls.append(("save", path))
        self.module.save(path)


@pytest.fixture
def torch_neuronx_standin(monkeypatch):
    calls: list = []
    module = types.ModuleType("torch_neuronx")
    module.__version__ = "2.9.0-standin"

    def trace(func, example_inputs, *, compiler_args=None, **kwargs):
        calls.append(("trace", func, example_inputs, compiler_args, kwargs))
        return torch.jit.trace(func, example_inputs)

    module.trace = trace
    module.calls = calls
    monkeypatch.setitem(sys.modules, "torch_neuronx", module)
    return module


@pytest.fixture
def torch_neuron_standin(monkeypatch):
    # `import torch_neuron` registers the torch.neuron namespace; the stand-in does so up front.
    calls: list = []
    module = types.ModuleType("torch_neuron")
    module.__version__ = "1.13.1-standin"

    def trace(func, example_inputs, compiler_args=None, **kwargs):
        calls.append(("trace", func, example_inputs, compiler_args, kwargs))
        return SavedRecorder(torch.jit.trace(func, example_inputs), calls)

    module.calls = calls
    monkeypatch.setitem(sys.modules, "torch_neuron", module)
    monkeypatch.setattr(torch, "neuron", types.SimpleNamespace(trace=trace), raising=False)
    return module


def test_torch_neuronx_trace_call_and_artifact(torch_neuronx_standin, tmp_path):
    backend = get_backend("torch-neuronx")
    entry = make_entry(pipeline_size=2, compiler_args={"args": ["--model-type", "transformer"]})
    path = tmp_path / f"{entry.id}{backend.artifact_suffix('neuronx')}"
    backend.compile(entry, path)

    (call,) = torch_neuronx_standin.calls
    kind, func, example_inputs, compiler_args, kwargs = call
    assert kind == "trace"
    assert isinstance(func, torch.nn.Sequential) and not func.training
    assert isinstance(example_inputs, tuple) and [tuple(x.shape) for x in example_inputs] == [(2, 32)]
    assert compiler_args == ["--model-type", "transformer", "--neuroncore-pipeline-cores", "2"]
    assert kwargs == {}
    assert path.suffix == ".pt" and path.is_file()  # written with torch.jit.save

    model = backend.load(entry, path, device_id=0)
    inputs = backend.example_inputs(entry)
    eager = build_model(entry.model).eval()
    with torch.no_grad():
        want = eager(*inputs).numpy()
    np.testing.assert_allclose(backend.to_numpy(model(*inputs)), want, rtol=1e-5, atol=1e-6)


def test_torch_neuron_trace_call_and_save(torch_neuron_standin, tmp_path):
    backend = get_backend("torch-neuron")
    entry = make_entry("neuron", pipeline_size=4, compiler_args=["--fast-math", "none"], batch_size=1)
    path = tmp_path / "mlp.pt"
    backend.compile(entry, path)

    trace, save = torch_neuron_standin.calls
    assert trace[0] == "trace"
    assert [tuple(x.shape) for x in trace[2]] == [(1, 32)]
    assert trace[3] == ["--fast-math", "none", "--neuroncore-pipeline-cores", "4"]
    assert save == ("save", str(path))
    out = backend.load(entry, path, 0)(*backend.example_inputs(entry))
    assert tuple(out.shape) == (1, 10)


def test_pipeline_size_one_adds_no_flag_and_trace_kwargs_pass_through(torch_neuronx_standin, tmp_path):
    backend = get_backend("torch-neuronx")
    entry = make_entry(compiler_args={"args": "--auto-cast none", "trace_kwargs": {"inline_weights_to_neff": False}})
    backend.compile(entry, tmp_path / "m.pt")
    (_, _, _, compiler_args, kwargs) = torch_neuronx_standin.calls[0]
    assert compiler_args == ["--auto-cast", "none"]
    assert kwargs == {"inline_weights_to_neff": False}


@pytest.mark.parametrize(
    ("compiler_args", "message"),
    [
        ({"flags": ["-O2"]}, "flags not understood.*accepted: args"),
        ({"args": [True]}, "must be a list of strings or one string"),
        ({"trace_kwargs": [1]}, "trace_kwargs must be a mapping"),
        (["--neuroncore-pipeline-cores", "2"], "set the pipeline size with sweep.pipeline_sizes"),
        ("--neuroncore-pipeline-cores=2", "set the pipeline size with sweep.pipeline_sizes"),
    ],
)
def test_bad_compiler_args_are_usage_errors(compiler_args, message):
    with pytest.raises(UsageError, match=message):
        neuron_compiler_args(make_entry(compiler_args=compiler_args))


def test_missing_sdk_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch_neuronx", None)  # makes `import torch_neuronx` fail
    monkeypatch.setitem(sys.modules, "torch_neuron", None)
    backend = get_backend("torch-neuronx")
    for call in (
        lambda: backend.check_available("neuron"),
        lambda: backend.compiler_version("neuronx"),
        lambda: backend.compile(make_entry(), tmp_path / "m.pt"),
    ):
        with pytest.raises(BackendUnavailable) as raised:
            call()
        message = str(raised.value)
        assert "device_type neuron" in message
        assert f"install with: pip install torch-neuronx {INSTALL_INDEX}" in message
    with pytest.raises(BackendUnavailable, match=f"pip install torch-neuron {INSTALL_INDEX}"):
        get_backend("torch-neuron").check_available("neuron")
    assert not (tmp_path / "m.pt").exists()


def test_missing_tensorflow_neuron_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow.neuron", None)
    with pytest.raises(BackendUnavailable, match=r"needs tensorflow-neuron\[cc\].*pip install tensorflow-neuron\[cc\] --extra"):
        get_backend("tensorflow-neuron").check_available("neuron")


def test_load_without_the_sdk_is_refused(torch_neuronx_standin, monkeypatch, tmp_path):
    backend = get_backend("torch-neuronx")
    backend.compile(make_entry(), tmp_path / "m.pt")
    monkeypatch.setitem(sys.modules, "torch_neuronx", None)
    with pytest.raises(BackendUnavailable, match="torch-neuronx"):
        backend.load(make_entry(), tmp_path / "m.pt", 0)
    with pytest.raises(ModelLoadError, match="artifact not found"):
        get_backend("torch-neuron").load(make_entry("neuron"), tmp_path / "absent.pt", 0)


def test_compiler_version_uses_the_sdk_version(torch_neuronx_standin, torch_neuron_standin, monkeypatch):
    assert get_backend("torch-neuronx").compiler_version("neuronx").startswith("torch-neuronx 2.9.0-standin")
    assert get_backend("torch-neuron").compiler_version("neuron").startswith("torch-neuron 1.13.1-standin")
    tfn = types.ModuleType("tensorflow.neuron")
    tfn.__version__ = "2.10.1-standin"
    monkeypatch.setitem(sys.modules, "tensorflow.neuron", tfn)
    assert get_backend("tensorflow-neuron").compiler_version("neuron").startswith("tensorflow-neuron 2.10.1-standin")
    with pytest.raises(UsageError):
        get_backend("torch-neuronx").compiler_version("neuron")


def test_torch_on_neuron_defaults_to_neuronx():
    assert find_backend("torch", "neuron").name == "torch-neuronx"
    assert find_backend("torch", "neuron", "neuron").name == "torch-neuron"


@pytest.mark.parametrize(
    ("copy_idx", "pipeline_size", "cores"),
    [(0, 1, "0"), (3, 1, "3"), (0, 2, "0-1"), (1, 2, "2-3"), (2, 4, "8-11")],
)
def test_each_copy_gets_its_own_cores(copy_idx, pipeline_size, cores):
    assert neuron_core_range(copy_idx, pipeline_size) == cores
    for name in ("torch-neuron", "torch-neuronx", "tensorflow-neuron", "optimum-neuron"):
        env = get_backend(name).visible_devices_env("neuron", copy_idx, pipeline_size)
        assert env == {"NEURON_RT_VISIBLE_CORES": cores}


# ---- neuron-ls: core count and pre-flight -----------------------------------------------------


def install_neuron_ls(folder: Path, monkeypatch, devices=None, exit_code: int = 0, raw: str | None = None) -> None:
    """Put an executable ``neuron-ls`` on PATH that prints ``devices`` as JSON."""
    output = raw if raw is not None else json.dumps(devices)
    script = folder / "neuron-ls"
    script.write_text(
        f"#!{sys.executable}\nimport sys\nassert sys.argv[1:] == ['--json-output'], sys.argv\n"
        f"print({output!r})\nsys.stderr.write('driver not loaded' if {exit_code} else '')\nsys.exit({exit_code})\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")


def device(index: int, cores: int, processes=()) -> dict:
    return {
        "neuron_device": index,
        "bdf": f"00:1{index}.0",
        "nc_count": cores,
        "memory_size": 34359738368,
        "neuron_processes": [{"pid": pid, "command": command} for pid, command in processes],
    }


def test_device_count_sums_cores(tmp_path, monkeypatch):
    install_neuron_ls(tmp_path, monkeypatch, [device(0, 2), device(1, 2)])
    assert get_backend("torch-neuronx").device_count("neuron") == 4
    get_backend("torch-neuronx").preflight("neuron", 4)


def test_preflight_names_busy_cores_and_their_process(tmp_path, monkeypatch):
    install_neuron_ls(tmp_path, monkeypatch, [device(1, 2, [(4242, "python serve.py")]), device(0, 2)])
    backend = get_backend("torch-neuronx")
    backend.preflight("neuron", 2)  # cores 0-1 are on device 0, which is free
    with pytest.raises(BackendUnavailable, match=r"NeuronCore 2 is in use \(this entry needs cores 0-2\) by pid 4242 \(python serve.py\)"):
        backend.preflight("neuron", 3)
    with pytest.raises(BackendUnavailable, match=r"NeuronCores 2-3 are in use .* by pid 4242"):
        backend.preflight("neuron", 4)


def test_preflight_ignores_this_process(tmp_path, monkeypatch):
    install_neuron_ls(tmp_path, monkeypatch, [device(0, 4, [(os.getpid(), "pytest")])])
    get_backend("torch-neuron").preflight("neuron", 4)


def test_preflight_too_few_cores(tmp_path, monkeypatch):
    install_neuron_ls(tmp_path, monkeypatch, [device(0, 2)])
    with pytest.raises(BackendUnavailable, match="needs 8 NeuronCores; this machine has 2"):
        get_backend("tensorflow-neuron").preflight("neuron", 8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"devices": [], "exit_code": 1}, "exited with 1: driver not loaded"),
        ({"raw": "not json"}, "printed no JSON"),
        ({"devices": {"nc_count": 2}}, "unexpected"),
    ],
)
def test_neuron_ls_problems_are_reported(tmp_path, monkeypatch, kwargs, message):
    install_neuron_ls(tmp_path, monkeypatch, **kwargs)
    with pytest.raises(BackendUnavailable, match=message):
        get_backend("torch-neuronx").device_count("neuron")


def test_missing_neuron_ls_is_explained(tmp_path, monkeypatch):
    if os.path.exists("/opt/aws/neuron/bin/neuron-ls"):
        pytest.skip("this machine has the Neuron tools")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BackendUnavailable, match="neuron-ls is not on PATH.*aws-neuronx-tools"):
        get_backend("torch-neuronx").preflight("neuron", 1)


# ---- tensorflow-neuron (needs tensorflow itself; the Neuron part is a stand-in) ----------------


@pytest.mark.tensorflow
def test_tensorflow_neuron_trace_call_flags_and_save(monkeypatch, tmp_path):
    tf = pytest.importorskip("tensorflow")
    calls: list = []

    class Traced(tf.Module):
        """What tfn.trace returns: a callable that saves itself as a SavedModel folder."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec((2, 16), tf.float32)])
        def __call__(self, x):
            return self.model(x, training=False)

        def save(self, path):
            calls.append(("save", path))
            tf.saved_model.save(self, path)

    def trace(model, example_inputs, **kwargs):
        calls.append(("trace", model, example_inputs, os.environ.get("NEURON_CC_FLAGS"), kwargs))
        return Traced(model)

    module = types.ModuleType("tensorflow.neuron")
    module.__version__ = "2.10.1-standin"
    module.trace = trace
    monkeypatch.setitem(sys.modules, "tensorflow.neuron", module)
    monkeypatch.setattr(tf, "neuron", module, raising=False)
    monkeypatch.delenv("NEURON_CC_FLAGS", raising=False)
    backend = get_backend("tensorflow-neuron")
    entry = CompileEntry(
        model=ModelRef("kmlp", "neuronperf.zoo:keras_mlp", freeze({"in_features": 16, "hidden": 8})),
        params=(),
        inputs=(TensorSpec((16,)),),
        batch_size=2,
        pipeline_size=2,
        framework="tensorflow",
        device_type="neuron",
        compiler="neuron",
        compiler_args=freeze(["--fast-math", "none"]),
    )
    path = tmp_path / "kmlp"
    backend.compile(entry, path)
    (kind, model, example, flags, kwargs), save = calls
    assert kind == "trace" and tuple(example.shape) == (2, 16) and kwargs == {}
    assert flags == "--fast-math none --neuroncore-pipeline-cores 2"
    assert "NEURON_CC_FLAGS" not in os.environ  # restored after the trace
    assert save == ("save", str(path))
    loaded = backend.load(entry, path, 0)
    inputs = backend.example_inputs(entry)
    np.testing.assert_allclose(backend.to_numpy(loaded(*inputs)), model(inputs[0]).numpy(), rtol=1e-5)
