"""catalog.py (what the pure spec stage validates against) agrees with the backend classes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from neuronperf.backends import BUILTIN_BACKENDS, find_backend, get_backend
from neuronperf.spec import catalog

BACKENDS = [get_backend(name) for name in BUILTIN_BACKENDS]
COMBINATIONS = [(fw, dev) for fw, devices in catalog.COMPILERS.items() for dev in devices]


@pytest.mark.parametrize(("framework", "device_type"), COMBINATIONS)
def test_every_catalog_compiler_has_a_backend(framework, device_type):
    serving = [b for b in BACKENDS if b.framework == framework and device_type in b.device_types]
    assert serving, f"no backend serves {framework}/{device_type}"
    offered = {c for b in serving for c in b.compilers}
    assert offered == set(catalog.COMPILERS[framework][device_type])
    for compiler in catalog.COMPILERS[framework][device_type]:
        assert compiler in find_backend(framework, device_type, compiler).compilers


@pytest.mark.parametrize(("framework", "device_type"), COMBINATIONS)
def test_default_compiler_agrees(framework, device_type):
    # The spec fills in catalog.default_compiler; a caller that names no compiler gets
    # find_backend's first match: both must mean the same compiler.
    backend = find_backend(framework, device_type)
    assert backend.default_compiler(device_type) == catalog.default_compiler(framework, device_type)


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
def test_every_backend_is_in_the_catalog(backend):
    for device_type in backend.device_types:
        assert device_type in catalog.DEVICE_TYPES
        assert set(backend.compilers) <= set(catalog.COMPILERS[backend.framework][device_type])


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
def test_pipeline_capability_agrees(backend):
    for device_type in backend.device_types:
        for compiler in backend.compilers:
            capable = (backend.framework, device_type, compiler) in catalog.PIPELINE_CAPABLE
            assert backend.supports_pipeline == capable, (backend.name, device_type, compiler)


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
def test_artifact_suffix_needs_no_framework(backend):
    for compiler in backend.compilers:
        suffix = backend.artifact_suffix(compiler)
        assert suffix is None or suffix == "" or suffix.startswith(".")


def test_registered_names_match_the_classes():
    for name, backend in zip(BUILTIN_BACKENDS, BACKENDS):
        assert backend.name == name


def test_backend_modules_import_no_framework():
    # Importing every backend module and the zoo, and asking the pure questions, must not pull
    # in a framework: the spec and plan stages rely on it.
    code = (
        "import sys\n"
        "import neuronperf.zoo\n"
        "from neuronperf.backends import BUILTIN_BACKENDS, get_backend\n"
        "for name in BUILTIN_BACKENDS:\n"
        "    b = get_backend(name)\n"
        "    [b.artifact_suffix(c) for c in b.compilers]\n"
        "    [b.visible_devices_env('neuron', 1, 2) for _ in [0] if 'neuron' in b.device_types]\n"
        "loaded = sorted(m for m in ('torch', 'tensorflow', 'onnxruntime', 'onnx', 'transformers') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
