"""The Neuron SDK as it is in 2026, checked against stand-ins (tests/neuron_fakes.py): which path
an installed torch-neuronx gives, what neuron-ls says each instance family has, how copies are
laid out at a logical NeuronCore config, and the native (TorchNeuron) backend's documented calls.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from neuron_fakes import install_neuron_ls, neuron_ls_devices, use_torch_neuronx

from neuronperf.backends.neuron_sdk import (
    SdkVersions,
    flags_for_lnc,
    implicit_defaults,
    lnc_in_flags,
    os_package_version,
    read_sdk_versions,
    torch_neuronx_path,
)
from neuronperf.backends.neuron_topology import parse_neuron_ls, run_neuron_ls, visible_cores_value
from neuronperf.errors import BackendUnavailable, UsageError
from neuronperf.spec.instances import FAMILIES, INSTANCES, family_of, paths_of


def topology(machine: str, lnc=None):
    return parse_neuron_ls(json.dumps(neuron_ls_devices(machine, lnc)))


@pytest.mark.parametrize(
    ("version", "path"),
    [("2.9.0.2.15.32035", "xla-trace"), ("2.9.0-standin", "xla-trace"), ("1.13.1.1.14.0", "xla-trace"),
     ("2.13.0.1.0", "native"), ("2.14.3.0", "native"), (None, None), ("unknown", None)],
)
def test_the_installed_version_picks_the_path(version, path):
    assert torch_neuronx_path(version) == path


def test_versions_are_read_without_importing_the_sdk():
    pip = {"torch-neuronx": "2.14.3.0", "neuronx-cc": "2.28.7631.0"}.get
    versions = read_sdk_versions(pip=pip, os_package={"aws-neuronx-runtime-lib": "2.35.30.0", "aws-neuronx-dkms": "2.31.7.0"}.get,
                                 driver=lambda: None)
    assert versions == SdkVersions("2.14.3.0", "2.28.7631.0", "2.35.30.0", "2.31.7.0")
    assert versions.torch_path == "native"
    assert read_sdk_versions(pip={"torch-neuron": "1.13.1.2.11.13.0"}.get, os_package=lambda p: None,
                             driver=lambda: "2.31.7.0").torch_path == "inf1"
    # dpkg first (Ubuntu DLAMIs), rpm where there is no dpkg (Amazon Linux)
    seen = []
    assert os_package_version("aws-neuronx-dkms", run=lambda c: seen.append(c[0]) or "2.31.7.0",
                              which=lambda tool: tool == "rpm") == "2.31.7.0"
    assert seen == ["rpm"]


def test_lnc_flag_spellings_and_agreement_with_the_runtime():
    assert lnc_in_flags(["--logical-nc-config", "2"]) == 2
    assert lnc_in_flags(["--lnc=1"]) == 1
    assert lnc_in_flags(["-lnc", "2", "--lnc", "1"]) == 1  # the right-most wins, as in neuronx-cc
    assert flags_for_lnc(["--auto-cast", "none"], 2) == ["--auto-cast", "none", "--logical-nc-config", "2"]
    assert flags_for_lnc(["--lnc=2"], 2) == ["--lnc=2"]
    with pytest.raises(UsageError, match="compile for logical NeuronCore config 1 but this entry runs at LNC 2"):
        flags_for_lnc(["--lnc", "1"], 2)
    with pytest.raises(UsageError, match="1 or 2"):
        lnc_in_flags(["--logical-nc-config=4"])


def test_the_defaults_that_changed_in_neuronx_cc_2_22_are_named():
    assert implicit_defaults([], "2.21.33363.0") == ("--auto-cast=matmult",)
    assert implicit_defaults([], "2.22.12471.0") == ("--auto-cast=none", "--enable-mixed-precision-accumulation")
    assert implicit_defaults(["--auto-cast=matmult"], "2.28.7631.0") == ("--enable-mixed-precision-accumulation",)
    assert implicit_defaults([], None) == ()


def test_instance_facts():
    assert INSTANCES["trn2.48xlarge"].physical_cores == 128
    assert INSTANCES["trn2.48xlarge"].logical_cores(2) == 64
    assert INSTANCES["inf2.xlarge"].physical_cores == 2 and INSTANCES["inf1.xlarge"].physical_cores == 4
    assert INSTANCES["trn1n.32xlarge"].physical_cores == 32 and INSTANCES["inf2.48xlarge"].physical_cores == 24
    assert family_of("trn2u.48xlarge").chip == "Trainium2"
    assert family_of("Inf2") is FAMILIES["inf2"] and family_of("trn3pds.98xlarge") is FAMILIES["trn3"]
    assert family_of("m5.large") is None
    assert paths_of(FAMILIES["trn2"]) == ("native", "xla-trace") and paths_of(FAMILIES["inf1"]) == ("inf1",)


@pytest.mark.parametrize(
    ("machine", "lnc", "physical", "logical", "per_device"),
    [("inf1.xlarge", None, 4, 4, 4), ("inf2.xlarge", None, 2, 2, 2), ("trn1.2xlarge", None, 2, 2, 2),
     ("trn2.48xlarge", 2, 128, 64, 4), ("trn2.48xlarge", 1, 128, 128, 8), ("trn3", 2, 32, 16, 4)],
)
def test_neuron_ls_counts_logical_and_physical_cores(machine, lnc, physical, logical, per_device):
    found = topology(machine, lnc)
    assert found.physical_cores == physical
    assert found.reported_lnc == lnc
    at = lnc or 1
    assert found.logical_cores(at) == logical
    layout = found.layout(at, n_models=logical, cores_per_copy=1)
    assert layout.copies_per_device == per_device and layout.max_copies == logical
    assert layout.physical_cores_per_copy == at


def test_a_trn2_at_either_lnc_gives_the_same_layout_whichever_lnc_neuron_ls_ran_at():
    for reported in (1, 2):
        found = topology("trn2.48xlarge", reported)
        two = found.layout(2, n_models=64, cores_per_copy=1)
        assert (two.copies_per_device, two.physical_cores_per_copy, two.visible_cores(63)) == (4, 2, "63")
        one = found.layout(1, n_models=3, cores_per_copy=2)
        assert [one.visible_cores(i) for i in range(3)] == ["0-1", "2-3", "4-5"] and one.copies_per_device == 4
        with pytest.raises(BackendUnavailable, match="65 copies x 1 NeuronCore.*need 65 NeuronCores at LNC 2; this machine has 64"):
            found.layout(2, n_models=65, cores_per_copy=1)


def test_lnc_2_is_refused_where_cores_are_not_grouped():
    with pytest.raises(UsageError, match="logical NeuronCore config 2 needs Trn2 or Trn3"):
        topology("inf2.xlarge").layout(2, 1, 1)


def test_busy_devices_are_named_at_the_entrys_lnc():
    devices = neuron_ls_devices("trn2.48xlarge", 2)
    devices[1]["neuron_processes"] = [{"pid": 4242, "command": "python serve.py", "neuron_runtime_version": "2.35.30.0"}]
    found = parse_neuron_ls(json.dumps(devices))
    found.check_free(found.layout(2, n_models=4, cores_per_copy=1), own_pid=1)  # device 0 only
    with pytest.raises(BackendUnavailable, match=r"NeuronCore 8 is in use \(this entry needs cores 0-8 at LNC 1\) by pid 4242"):
        found.check_free(found.layout(1, n_models=9, cores_per_copy=1), own_pid=1)


def test_visible_cores_values():
    assert [visible_cores_value(c) for c in ([3], [4, 5, 6, 7], [4, 6])] == ["3", "4-7", "4,6"]


def test_the_fake_neuron_ls_answers_at_the_callers_lnc(tmp_path, monkeypatch):
    install_neuron_ls(tmp_path, monkeypatch, "trn2.48xlarge")
    monkeypatch.delenv("NEURON_LOGICAL_NC_CONFIG", raising=False)
    assert run_neuron_ls().reported_lnc == 2
    monkeypatch.setenv("NEURON_LOGICAL_NC_CONFIG", "1")
    assert run_neuron_ls().reported_lnc == 1 and run_neuron_ls().logical_cores(1) == 128


# ---- the stand-in packages -----------------------------------------------------------------------


def test_both_standins_report_their_version_through_package_metadata(monkeypatch):
    from importlib import metadata

    for version, path in (("2.9", "xla-trace"), ("2.14", "native")):
        module = use_torch_neuronx(monkeypatch, version)
        assert torch_neuronx_path(metadata.version("torch-neuronx")) == path == torch_neuronx_path(module.__version__)
        monkeypatch.undo()
    assert "torch_neuronx" not in __import__("sys").modules


def test_the_xla_standin_records_trace_and_dataparallel(monkeypatch):
    torch = pytest.importorskip("torch")
    sdk = use_torch_neuronx(monkeypatch, "2.9")
    model = torch.nn.Linear(4, 2).eval()
    traced = sdk.trace(model, (torch.rand(3, 4),), compiler_args=["--target", "trn2", "--lnc", "2"])
    parallel = sdk.DataParallel(traced, device_ids=[0, 1])
    assert tuple(parallel(torch.rand(3, 4)).shape) == (3, 2)
    assert [c["call"] for c in sdk.calls] == ["trace", "DataParallel"]
    assert sdk.calls[1]["device_ids"] == [0, 1]
    with pytest.raises(RuntimeError, match="NCC_EARG001"):
        sdk.trace(model, (torch.rand(3, 4),), compiler_args="--target inf2 --logical-nc-config=2")


# ---- the native backend (TorchNeuron) ------------------------------------------------------------


def native_entry(compiler="native", compiler_args=None):
    from neuronperf.entries import CompileEntry, ModelRef, TensorSpec, freeze

    return CompileEntry(
        model=ModelRef("mlp", "neuronperf.zoo:mlp", freeze({"in_features": 32, "hidden": 64})),
        params=(), inputs=(TensorSpec((32,)),), batch_size=2, pipeline_size=1, framework="torch",
        device_type="neuron", compiler=compiler, compiler_args=freeze(compiler_args or {}),
    )


@pytest.mark.parametrize("compiler", ["native", "native-compile"])
def test_native_backend_moves_the_model_to_the_neuron_device(monkeypatch, compiler):
    torch = pytest.importorskip("torch")
    import numpy as np

    from neuronperf.backends.neuron_native import TorchNeuronNativeBackend
    from neuronperf.sources.factory import build_model

    sdk = use_torch_neuronx(monkeypatch, "2.14")
    monkeypatch.delenv("NEURON_CC_FLAGS", raising=False)
    backend = TorchNeuronNativeBackend()
    entry = native_entry(compiler, {"args": ["--auto-cast", "matmult"]})
    backend.check_available("neuron")
    assert backend.artifact_suffix(compiler) is None
    backend.compile(entry, None)
    model = backend.load(entry, None, 0)
    inputs = backend.example_inputs(entry)
    with torch.no_grad():
        got = backend.to_numpy(model(*inputs))
        want = build_model(entry.model).eval()(*inputs).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    kinds = [c["call"] for c in sdk.calls]
    assert kinds[:2] == ["import", "Module.to"] and sdk.calls[1]["device"] == "neuron"
    assert sdk.tensor_moves == 1  # the input, once per call
    if compiler == "native-compile":
        compiled = next(c for c in sdk.calls if c["call"] == "torch.compile")
        assert (compiled["backend"], compiled["fullgraph"]) == ("neuron", True)
        assert "dynamo backend" in kinds
    else:
        assert "torch.compile" not in kinds
    # The flags reach the just-in-time compiler through each copy's environment.
    assert backend.copy_env(entry, 1) == {"NEURON_RT_VISIBLE_CORES": "1", "NEURON_CC_FLAGS": "--auto-cast matmult"}
    lnc2 = dataclasses.replace(entry, lnc=2)
    assert backend.copy_env(lnc2, 0) == {"NEURON_RT_VISIBLE_CORES": "0", "NEURON_LOGICAL_NC_CONFIG": "2",
                                         "NEURON_CC_FLAGS": "--auto-cast matmult --logical-nc-config 2"}


def test_native_backend_refuses_the_xla_library_and_bad_args(monkeypatch):
    pytest.importorskip("torch")
    from neuronperf.backends.neuron_native import TorchNeuronNativeBackend

    use_torch_neuronx(monkeypatch, "2.9")
    backend = TorchNeuronNativeBackend()
    with pytest.raises(BackendUnavailable, match=r"need TorchNeuron .*installed: torch-neuronx 2\.9\.0\.2\.15\.32035 \(the PyTorch/XLA library: use compiler neuronx\)"):
        backend.check_available("neuron")
    with pytest.raises(UsageError, match="fullgraph must be true or false"):
        backend.check_compiler_args(native_entry("native-compile", {"fullgraph": "yes"}))
    with pytest.raises(UsageError, match="not understood by torch/native; accepted: args"):
        backend.check_compiler_args(native_entry("native", {"fullgraph": True}))
