"""A stand-in for AWS's torch-neuronx 2.14.x, TorchNeuron, the native PyTorch backend for
Trn2/Trn3 (Neuron 2.33+), which cannot be installed without Neuron hardware. NOT the AWS package.

TorchNeuron registers a ``neuron`` device with PyTorch (PrivateUse1) and a TorchDynamo backend
named ``neuron`` ("What is TorchNeuron?", "torch.compile on Neuron"). A CPU build of torch cannot
hold tensors on a device it has no kernels for, so this stand-in, on import:

- wraps ``torch.nn.Module.to`` and ``torch.Tensor.to`` so that ``.to("neuron")`` is recorded and
  leaves the module or tensor on the CPU (every other ``.to`` is untouched);
- registers a TorchDynamo backend ``neuron`` that records the graph it is given and runs it as
  is, and wraps ``torch.compile`` to record the keywords of a ``backend="neuron"`` call.

It has no ``trace``: that is the PyTorch/XLA library's API (torch-neuronx 2.9.x).

Calls are kept in ``calls`` (module moves, compiles; tensor moves are only counted, in
``tensor_moves``) and, when ``NEURONPERF_STANDIN_LOG`` names a file, appended to it as JSON lines
with the Neuron environment variables the process had. ``uninstall()`` restores torch.
"""

from __future__ import annotations

import json
import os
import sys

import torch

__version__ = "2.14.3.0"

calls: list = []
tensor_moves = 0

_ENV = ("NEURON_RT_VISIBLE_CORES", "NEURON_LOGICAL_NC_CONFIG", "NEURON_CC_FLAGS", "TORCH_DEVICE_BACKEND_AUTOLOAD")
_originals: dict = {}


def _record(kind: str, **details) -> None:
    event = {"call": kind, "pid": os.getpid(), **details, "env": {k: os.environ.get(k) for k in _ENV}}
    calls.append(event)
    path = os.environ.get("NEURONPERF_STANDIN_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(event, default=repr) + "\n")


def _is_neuron(args, kwargs) -> bool:
    device = kwargs.get("device", args[0] if args else None)
    return isinstance(device, str) and device.split(":")[0] == "neuron"


def _module_to(self, *args, **kwargs):
    if _is_neuron(args, kwargs):
        _record("Module.to", module=type(self).__name__, device=kwargs.get("device", args[0] if args else None))
        return self
    return _originals["Module.to"](self, *args, **kwargs)


def _tensor_to(self, *args, **kwargs):
    global tensor_moves
    if _is_neuron(args, kwargs):
        tensor_moves += 1
        return self
    return _originals["Tensor.to"](self, *args, **kwargs)


def _compile(model=None, *args, **kwargs):
    if kwargs.get("backend") == "neuron":
        _record("torch.compile", model=type(model).__name__,
                **{k: v for k, v in kwargs.items() if k in ("backend", "fullgraph", "dynamic", "mode", "options")})
    return _originals["compile"](model, *args, **kwargs)


def _neuron_dynamo_backend(graph_module, example_inputs):
    # Looked up at call time: a re-imported stand-in records into its own module.
    this = sys.modules.get(__name__)
    if this is not None:
        this._record("dynamo backend", nodes=len(graph_module.graph.nodes), inputs=len(example_inputs))
    return graph_module.forward


def install() -> None:
    if _originals:
        return
    _originals["Module.to"] = torch.nn.Module.to
    _originals["Tensor.to"] = torch.Tensor.to
    _originals["compile"] = torch.compile
    torch.nn.Module.to = _module_to
    # TorchDynamo cannot trace through this wrapper to torch's own Tensor.to (a builtin), which a
    # compiled model's forward calls (``.to(dtype)``): it goes into the graph as one opaque call.
    torch.Tensor.to = torch.compiler.allow_in_graph(_tensor_to)
    torch.compile = _compile
    from torch._dynamo import list_backends, register_backend

    if "neuron" not in list_backends(exclude_tags=()):
        register_backend(compiler_fn=_neuron_dynamo_backend, name="neuron")
    _record("import", version=__version__)


def uninstall() -> None:
    """Restore torch (the dynamo backend stays registered; it records into whichever stand-in
    is imported)."""
    if not _originals:
        return
    torch.nn.Module.to = _originals.pop("Module.to")
    torch.Tensor.to = _originals.pop("Tensor.to")
    torch.compile = _originals.pop("compile")


install()
