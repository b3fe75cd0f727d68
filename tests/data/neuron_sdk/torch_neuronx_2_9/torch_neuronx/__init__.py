"""A stand-in for AWS's torch-neuronx 2.9.x, the PyTorch/XLA library (Inf2, Trn1; Trn2/Trn3 up to
Neuron 2.33), which cannot be installed without Neuron hardware. NOT the AWS package.

It offers the documented inference calls with their documented signatures and records every call:

- ``trace(func, example_inputs, *_, input_output_aliases={}, compiler_workdir=None,
  compiler_args=None, partitioner_config=None, inline_weights_to_neff=True, cpu_backend=False)``
  ("PyTorch NeuronX Tracing API for Inference"): returns a real ``torch.jit`` trace, run on the
  CPU, that ``torch.jit.save``/``torch.jit.load`` handle as they would a Neuron one. Like
  neuronx-cc it refuses ``--logical-nc-config 2`` for a ``--target`` other than trn2
  (NCC_EARG001).
- ``DataParallel(model, device_ids=None, dim=0, set_dynamic_batching=True)`` ("PyTorch NeuronX
  DataParallel API"): calls the model as is.
- ``set_neuron_cores(trace, start_nc=-1, nc_count=-1)`` ("NeuronCore Allocation and Model
  Placement for Inference"): records only.

Calls are kept in ``calls`` (this process) and, when ``NEURONPERF_STANDIN_LOG`` names a file,
appended to it as JSON lines with the Neuron environment variables the process had, so that a
test sees what worker processes did.
"""

from __future__ import annotations

import json
import os

__version__ = "2.9.0.2.15.32035"

calls: list = []

_ENV = ("NEURON_RT_VISIBLE_CORES", "NEURON_LOGICAL_NC_CONFIG", "NEURON_CC_FLAGS")
_NON_TRN2_TARGETS = ("inf2", "trn1", "trn1n")


def _record(kind: str, **details) -> None:
    event = {"call": kind, "pid": os.getpid(), **details, "env": {k: os.environ.get(k) for k in _ENV}}
    calls.append(event)
    path = os.environ.get("NEURONPERF_STANDIN_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(event, default=repr) + "\n")


def _flag_value(args: list, *names: str):
    value = None
    for i, arg in enumerate(args):
        name, eq, rest = arg.partition("=")
        if name in names:
            value = rest if eq else (args[i + 1] if i + 1 < len(args) else None)
    return value


def trace(func, example_inputs, *_, input_output_aliases={}, compiler_workdir=None, compiler_args=None,  # noqa: B006 - the documented signature
          partitioner_config=None, inline_weights_to_neff=True, cpu_backend=False):
    import torch

    args = compiler_args.split() if isinstance(compiler_args, str) else list(compiler_args or [])
    _record("trace", func=type(func).__name__, training=bool(getattr(func, "training", False)),
            shapes=[list(x.shape) for x in (example_inputs if isinstance(example_inputs, tuple) else (example_inputs,))],
            compiler_args=args, inline_weights_to_neff=inline_weights_to_neff, cpu_backend=cpu_backend,
            compiler_workdir=compiler_workdir)
    target = _flag_value(args, "--target")
    lnc = _flag_value(args, "--logical-nc-config", "-lnc", "--lnc")
    if lnc == "2" and target in _NON_TRN2_TARGETS:
        raise RuntimeError(f"NCC_EARG001: logical NeuronCore config 2 is not supported on {target}")
    return torch.jit.trace(func, example_inputs)


class DataParallel:
    """Replicates a traced model over NeuronCores and splits the batch; here: calls it as is."""

    def __init__(self, model, device_ids=None, dim=0, set_dynamic_batching=True):
        self.module = model
        self.device_ids = device_ids
        self.dim = dim
        self.dynamic_batching = set_dynamic_batching
        self.num_workers = 2 * len(device_ids) if device_ids else 2
        _record("DataParallel", device_ids=device_ids, dim=dim, set_dynamic_batching=set_dynamic_batching)

    def disable_dynamic_batching(self):
        self.dynamic_batching = False
        _record("DataParallel.disable_dynamic_batching")

    def __call__(self, *inputs):
        return self.module(*inputs)


def set_neuron_cores(trace, start_nc=-1, nc_count=-1):
    _record("set_neuron_cores", start_nc=start_nc, nc_count=nc_count)
