"""What the built-in backends offer, as plain data.

The spec stage validates ``framework``/``device_type``/``compiler`` against this table without
importing any backend (spec and plan must stay pure and fast). Each built-in backend class
declares the same facts; ``tests/test_catalog.py`` keeps the two in agreement. Plug-in backends
are not listed here: the spec accepts their framework names and they are checked when the sweep
starts.
"""

from __future__ import annotations

DEVICE_TYPES = ("cpu", "cuda", "neuron")

#: framework -> device_type -> compilers, the default first.
COMPILERS: dict[str, dict[str, tuple[str, ...]]] = {
    "torch": {
        "cpu": ("torchscript", "eager", "export", "inductor"),
        "cuda": ("torchscript", "eager", "export", "inductor"),
        # neuronx (torch-neuronx's XLA trace) stays the spec's default, so that specs written
        # before TorchNeuron keep their entry identities; a sweep whose spec names no compiler
        # takes the path of the installed torch-neuronx instead (native from PyTorch 2.10 on:
        # sweep.state.resolve_compiler). optimum (optimum-neuron) builds generation models only.
        "neuron": ("neuronx", "neuron", "optimum", "native", "native-compile"),
    },
    "onnxruntime": {
        "cpu": ("onnx",),
        "cuda": ("onnx",),
    },
    "tensorflow": {
        "cpu": ("savedmodel",),
        "cuda": ("savedmodel",),
        "neuron": ("neuron",),
    },
}

#: (framework, device_type, compiler) combinations that honour pipeline_size > 1.
PIPELINE_CAPABLE = {
    ("torch", "neuron", "neuron"),
    ("torch", "neuron", "neuronx"),
    # optimum-neuron: pipeline_size is the number of NeuronCores the model is split over
    # (tensor parallel, the SDK's num_cores).
    ("torch", "neuron", "optimum"),
    ("tensorflow", "neuron", "neuron"),
}

DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")


def default_compiler(framework: str, device_type: str) -> str | None:
    """The compiler a spec gets when it names none, or None if the pair is unknown."""
    compilers = COMPILERS.get(framework, {}).get(device_type)
    return compilers[0] if compilers else None


#: The entry-point group under which backends register (see ``neuronperf.backends``).
ENTRY_POINT_GROUP = "neuronperf.backends"

#: Built-in backends by registry name. Listed here, not only as entry points, so that a source
#: checkout that was never installed still finds them.
BUILTIN_BACKENDS = {
    "torch": "neuronperf.backends.torch_backend:TorchBackend",
    "onnxruntime": "neuronperf.backends.onnxruntime_backend:OnnxRuntimeBackend",
    "tensorflow": "neuronperf.backends.tensorflow_backend:TensorFlowBackend",
    # torch-neuronx first: find_backend("torch", "neuron") without a compiler must agree with
    # default_compiler, whose default on neuron is neuronx (current hardware).
    "torch-neuronx": "neuronperf.backends.neuron:TorchNeuronxBackend",
    "torch-neuron": "neuronperf.backends.neuron:TorchNeuronBackend",
    "optimum-neuron": "neuronperf.backends.neuron:OptimumNeuronBackend",
    "tensorflow-neuron": "neuronperf.backends.neuron:TensorFlowNeuronBackend",
    # TorchNeuron, the native PyTorch backend (Trn2/Trn3): compilers native and native-compile.
    "torchneuron": "neuronperf.backends.neuron_native:TorchNeuronNativeBackend",
}


def registered_backends() -> dict[str, str]:
    """Backend name -> "module:Class", built-ins first, then installed plug-ins. Reads package
    metadata only: no backend module is imported."""
    from importlib.metadata import entry_points

    found = dict(BUILTIN_BACKENDS)
    try:
        eps = entry_points(group=ENTRY_POINT_GROUP)  # type: ignore[call-arg]
    except TypeError:  # Python 3.9: entry_points() takes no arguments
        eps = entry_points().get(ENTRY_POINT_GROUP, [])  # type: ignore[attr-defined,arg-type]
    for ep in eps:
        found.setdefault(ep.name, ep.value)
    return found
