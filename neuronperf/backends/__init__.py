"""Backend registry: backends register under the ``neuronperf.backends`` entry-point group.

Built-in backends are listed here as well, so that a source checkout that was never installed
still finds them. A third party adds one by declaring, in its own pyproject.toml::

    [project.entry-points."neuronperf.backends"]
    mybackend = "my_package.module:MyBackend"
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Optional

from neuronperf.backends.base import Backend
from neuronperf.errors import BackendUnavailable, UsageError

ENTRY_POINT_GROUP = "neuronperf.backends"

BUILTIN_BACKENDS = {
    "torch": "neuronperf.backends.torch_backend:TorchBackend",
    "onnxruntime": "neuronperf.backends.onnxruntime_backend:OnnxRuntimeBackend",
    "tensorflow": "neuronperf.backends.tensorflow_backend:TensorFlowBackend",
    # torch-neuronx first: find_backend("torch", "neuron") without a compiler must agree with
    # catalog.default_compiler, whose default on neuron is neuronx (current hardware).
    "torch-neuronx": "neuronperf.backends.neuron:TorchNeuronxBackend",
    "torch-neuron": "neuronperf.backends.neuron:TorchNeuronBackend",
    "tensorflow-neuron": "neuronperf.backends.neuron:TensorFlowNeuronBackend",
}


def registered_backends() -> dict[str, str]:
    """Backend name -> "module:Class" reference, built-ins first, then installed plug-ins."""
    found = dict(BUILTIN_BACKENDS)
    from importlib.metadata import entry_points

    try:
        eps = entry_points(group=ENTRY_POINT_GROUP)  # type: ignore[call-arg]
    except TypeError:  # Python 3.9: entry_points() takes no arguments
        eps = entry_points().get(ENTRY_POINT_GROUP, [])  # type: ignore[attr-defined,arg-type]
    for ep in eps:
        found.setdefault(ep.name, ep.value)
    return found


@cache
def get_backend(name: str) -> Backend:
    """Instantiate the backend registered as ``name`` (imports its module, not its framework)."""
    refs = registered_backends()
    if name not in refs:
        raise UsageError(f"unknown backend {name!r}; registered: {', '.join(sorted(refs))}")
    module_name, _, class_name = refs[name].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls()  # type: ignore[no-any-return]


def find_backend(framework: str, device_type: str, compiler: Optional[str] = None) -> Backend:
    """The backend serving ``framework`` on ``device_type`` (and ``compiler``, when given)."""
    candidates = []
    for name in registered_backends():
        backend = get_backend(name)
        if backend.framework == framework and device_type in backend.device_types:
            if compiler is None or compiler in backend.compilers:
                return backend
            candidates.append(backend)
    if candidates:
        offered = sorted({c for b in candidates for c in b.compilers})
        raise UsageError(
            f"framework {framework!r} on {device_type!r} has no compiler {compiler!r}; "
            f"choose one of: {', '.join(offered)}"
        )
    raise BackendUnavailable(f"no backend serves framework {framework!r} on device_type {device_type!r}")
