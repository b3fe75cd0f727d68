"""Artifacts a user already has (``file: <path>``): a TorchScript ``.pt``, a ``torch.export``
``.pt2``, an ``.onnx`` file, a TensorFlow SavedModel folder, or a Neuron-compiled ``.pt``. There
is no compile step: the artifact is loaded by the backend of its kind and measured as it is.

``artifact_kind`` tells the kind from the file itself (its suffix, and for a ``.pt`` its
archive's listing and code), without importing a framework, so the spec stage can say at the
``file:`` line that a ``.onnx`` file needs ``framework: onnxruntime``. ``onnx_inputs`` reads an
ONNX graph's declared inputs (the onnx package, in a worker).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from typing import Any, Optional

from neuronperf.errors import ModelLoadError
from neuronperf.sources.digest import content_digest

#: Kind -> the framework whose backend loads it.
FRAMEWORK_OF = {
    "torchscript": "torch",
    "export": "torch",
    "neuron": "torch",
    "onnx": "onnxruntime",
    "savedmodel": "tensorflow",
}

#: Kind -> the compiler whose ``load`` reads it, on CPU and CUDA (on Neuron: the spec's compiler).
COMPILER_OF = {"torchscript": "torchscript", "export": "export", "onnx": "onnx", "savedmodel": "savedmodel"}

_TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript", ".jit")
#: What the code of a Neuron-compiled TorchScript module calls: torch-neuronx's and
#: torch-neuron's custom operators (``torch.ops.neuron.forward_v2``, ``ops.neuron.forward_1``).
_NEURON_OPS = (b"ops.neuron.", b"torch.ops.neuron")


def resolve_path(value: str, base_dir: str = ".") -> str:
    """``file:``'s value as an absolute path (relative to the spec's folder; ``~`` expanded)."""
    expanded = os.path.expanduser(value)
    return os.path.abspath(expanded if os.path.isabs(expanded) else os.path.join(base_dir, expanded))


def artifact_kind(path: str, label: Optional[str] = None) -> str:
    """One of ``FRAMEWORK_OF``'s kinds, or a ``ModelLoadError`` of one line saying what the file
    is not (missing, a pickled ``torch.save`` object, an unknown suffix)."""
    label = label or f"file {path!r}"
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "saved_model.pb")) or os.path.isfile(os.path.join(path, "saved_model.pbtxt")):
            return "savedmodel"
        if os.path.isfile(os.path.join(path, "config.json")):
            raise ModelLoadError(f"{label}: {path} is a Hugging Face checkpoint folder; write hf: {path} (with hf_task:) instead of file:")
        raise ModelLoadError(f"{label}: {path} is a folder without saved_model.pb, so not a TensorFlow SavedModel")
    if not os.path.isfile(path):
        raise ModelLoadError(f"{label}: no such file: {path}")
    lower = path.lower()
    if lower.endswith(".onnx"):
        return "onnx"
    if lower.endswith(".pt2"):
        return "export"
    if lower.endswith(_TORCHSCRIPT_SUFFIXES):
        return _torch_archive_kind(path, label)
    raise ModelLoadError(
        f"{label}: cannot tell what {os.path.basename(path)} is from its suffix; file: takes a TorchScript .pt, "
        f"a torch.export .pt2, an .onnx file or a TensorFlow SavedModel folder"
    )


def _torch_archive_kind(path: str, label: str) -> str:
    """A ``.pt``: TorchScript (an archive with ``code/``), Neuron-compiled TorchScript (whose
    code calls the Neuron operators), or a pickled object that ``file:`` cannot run."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            code = [n for n in names if "/code/" in n and n.endswith(".py")]
            if not code:
                raise ModelLoadError(
                    f"{label}: {os.path.basename(path)} is a pickled torch object (torch.save), not a TorchScript module; "
                    f"save one with torch.jit.save(torch.jit.trace(model, example_inputs), path), or use a factory"
                )
            for name in code:
                if any(op in archive.read(name) for op in _NEURON_OPS):
                    return "neuron"
    except zipfile.BadZipFile:
        raise ModelLoadError(f"{label}: {os.path.basename(path)} is not a TorchScript archive (not a zip file)") from None
    except OSError as e:
        raise ModelLoadError(f"{label}: cannot read {path}: {e.strerror}") from None
    return "torchscript"


#: TorchNeuron's compilers (Trn2/Trn3): they compile the model itself, just in time, and load no
#: traced artifact.
NATIVE_COMPILERS = ("native", "native-compile")


def check_target(kind: str, framework: str, device_type: str, label: str,
                 compiler: Optional[str] = None) -> Optional[str]:
    """Why an artifact of ``kind`` cannot run under ``framework``/``device_type`` (and
    ``compiler``, when given) (a message), or None when it can."""
    wanted = FRAMEWORK_OF[kind]
    if framework != wanted:
        return f"{label}: a {describe_kind(kind)} runs with framework: {wanted} (this spec's framework is {framework})"
    if kind == "neuron" and device_type != "neuron":
        return f"{label}: a {describe_kind(kind)} runs on device_type: neuron only (this spec's device_type is {device_type})"
    if kind == "neuron" and compiler in NATIVE_COMPILERS:
        # A torch_neuronx.trace (or torch.neuron.trace) artifact holds graphs compiled ahead of
        # time for the trace path's runtime; TorchNeuron has no trace and loads no such file.
        return (f"{label}: a {describe_kind(kind)} (torch_neuronx.trace or torch.neuron.trace) runs with compiler "
                f"neuronx (torch-neuronx 2.9.x) or neuron (torch-neuron), not {compiler}: TorchNeuron compiles the "
                "model itself; give its source (hf:, timm:, torchvision: or factory:)")
    if kind in ("torchscript", "export") and device_type == "neuron":
        return f"{label}: a {describe_kind(kind)} was not compiled for Neuron; compile it with torch_neuronx.trace, or use a factory or hf: source"
    return None


def describe_kind(kind: str) -> str:
    return {
        "torchscript": "TorchScript .pt",
        "export": "torch.export .pt2",
        "neuron": "Neuron-compiled TorchScript .pt",
        "onnx": ".onnx file",
        "savedmodel": "TensorFlow SavedModel",
    }[kind]


def compiler_for(kind: str, spec_compiler: str) -> str:
    """The compiler whose ``load`` reads a ``kind`` artifact: fixed by the kind on CPU and CUDA,
    the spec's own on Neuron (neuronx or neuron for a .pt, neuron for a SavedModel)."""
    if kind == "neuron":
        return spec_compiler
    if kind == "savedmodel" and spec_compiler == "neuron":
        return "neuron"
    return COMPILER_OF[kind]


def identity(path: str) -> dict:
    """What makes the artifact's results what they are: its content, not where it lies."""
    return {"file_digest": content_digest(path)}


# ---- declared inputs (in a worker) --------------------------------------------------------------

_ONNX_DTYPES = {1: "float32", 10: "float16", 16: "bfloat16", 11: "float64", 7: "int64", 6: "int32", 5: "int16",
                3: "int8", 2: "uint8", 9: "bool"}


def onnx_inputs(path: str, params: Optional[Mapping[str, Any]] = None) -> list[dict]:
    """The graph inputs an ONNX file declares (initializers left out), without the batch
    dimension, as input dicts. A symbolic dimension after the batch takes the value of the
    parameter of the same name in ``params``; one that no parameter names is an error naming it
    (a size is never guessed)."""
    try:
        import onnx
    except ImportError as e:
        raise ModelLoadError(f"file {path!r}: reading an ONNX graph needs onnx ({e}); install with: pip install onnx") from e
    try:
        graph = onnx.load(path, load_external_data=False).graph
    except Exception as e:  # onnx raises DecodeError and others for a damaged file
        raise ModelLoadError(f"file {path!r}: not a readable ONNX model: {type(e).__name__}: {e}") from None
    params = dict(params or {})
    initializers = {init.name for init in graph.initializer}
    found = []
    for value in graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        dims: list[Any] = []
        for i, dim in enumerate(tensor.shape.dim):
            if i == 0:
                continue  # the batch dimension: the sweep's batch size
            if dim.HasField("dim_value"):
                dims.append(int(dim.dim_value))
            elif dim.dim_param in params:
                dims.append(int(params[dim.dim_param]))
            else:
                raise ModelLoadError(
                    f"file {path!r}: input {value.name!r} has a symbolic dimension {dim.dim_param or '?'} (axis {i}); "
                    f"give the model's inputs: with a size for it"
                )
        dtype = _ONNX_DTYPES.get(tensor.elem_type, "float32")
        low, high = _KNOWN_RANGES.get(value.name, (None, None)) if dtype.startswith("int") else (None, None)
        found.append({"name": value.name, "shape": dims, "dtype": dtype, "low": low, "high": high})
    return found


#: Integer inputs whose values a graph's input name tells (a transformers export's): an all-ones
#: mask and one segment. Other integers are drawn from [0, 100): give inputs: for a vocabulary.
_KNOWN_RANGES = {"attention_mask": (1, 2), "token_type_ids": (0, 1)}
