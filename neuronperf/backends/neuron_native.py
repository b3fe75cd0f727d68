"""TorchNeuron, the native PyTorch backend for Trn2/Trn3 (torch-neuronx 2.13/2.14, Neuron 2.33+).

TorchNeuron registers Trainium as the torch device ``neuron``: a model runs eagerly once moved
there with ``.to("neuron")``, or just-in-time compiled with ``torch.compile(model,
backend="neuron")`` ("What is TorchNeuron?", "torch.compile on Neuron",
https://awsdocs-neuron.readthedocs-hosted.com/en/latest/torch/). Its pip name is still
``torch-neuronx``; versions before PyTorch 2.10 are the PyTorch/XLA library that
``neuronperf.backends.neuron.TorchNeuronxBackend`` drives with ``torch_neuronx.trace``.

Compilers:

- ``native``: eager on the ``neuron`` device. Supported operators run on the NeuronCores,
  compiled one by one and cached; unsupported ones fall back to the CPU ("Best practices for
  TorchNeuron").
- ``native-compile``: ``torch.compile(model, backend="neuron", fullgraph=True)``. The how-to
  ("How to optimize a model with torch.compile") recommends ``fullgraph=True`` so that a graph
  break is an error rather than a model silently split between compiled graphs; it supports
  ``mode="default"`` only and no dynamic shapes.

Neither writes an artifact: compilation is just-in-time, on a worker's first call, and lands in
the load and warm-up figures (never in the measured window); TorchNeuron keeps the NEFFs in its
persistent cache (``TORCH_NEURONX_NEFF_CACHE_DIR``), so a rerun starts faster.

What one call times: the inputs are host tensors moved with ``.to("neuron")``, the outputs are
moved back with ``.cpu()``, the same host-in, host-out call as a ``torch_neuronx.trace`` module,
so rows of both paths compare like for like (``.cpu()`` also waits for the device).

``compiler_args`` (a mapping): ``args`` (neuronx-cc flags, handed to the compiler through the
``NEURON_CC_FLAGS`` environment variable of each copy's process; AWS documents that variable for
torch-neuronx, and its TorchNeuron pages name no other way), ``fullgraph`` and ``options``
(``native-compile`` only: passed to ``torch.compile``). With ``sweep.logical_nc_configs``, each
copy also gets ``--logical-nc-config N`` in ``NEURON_CC_FLAGS`` and ``NEURON_LOGICAL_NC_CONFIG=N``.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Optional

from neuronperf.backends.base import ThreadDevice, arguments_of
from neuronperf.backends.neuron import NEURON_PIP_INDEX, _NeuronBackend, _version, check_lnc_args
from neuronperf.backends.neuron_sdk import flags_for_lnc, torch_neuronx_path
from neuronperf.backends.torch_backend import (
    build_torch_module,
    compiler_options,
    import_torch,
    input_names,
    tensors_to_numpy,
    torch_inputs,
    torch_measuring_threads,
)
from neuronperf.entries import CompileEntry
from neuronperf.errors import BackendUnavailable, ModelLoadError, UsageError

#: The torch device TorchNeuron registers.
NEURON_DEVICE = "neuron"
CC_FLAGS_ENV = "NEURON_CC_FLAGS"
#: compiler_args keys per compiler.
NATIVE_ARG_KEYS = {"native": ("args",), "native-compile": ("args", "fullgraph", "options")}
#: The documented install (Neuron 2.33, "Update a manual PyTorch installation").
NATIVE_INSTALL = (
    f'pip install "torch-neuronx==2.14.*" "neuronx-cc==2.*" {NEURON_PIP_INDEX} '
    "--extra-index-url=https://download.pytorch.org/whl/cpu"
)


def native_options(entry: CompileEntry) -> dict[str, Any]:
    """``entry.compiler_args`` for a native compiler, checked (``UsageError`` otherwise)."""
    options = compiler_options(entry, NATIVE_ARG_KEYS.get(entry.compiler, ()))
    args = options.get("args")
    if args is not None and not (
        isinstance(args, str) or (isinstance(args, list) and all(isinstance(a, str) for a in args))
    ):
        raise UsageError(f"{entry.id}: compiler_args.args must be a list of flags or one string, got {args!r}")
    fullgraph = options.get("fullgraph")
    if fullgraph is not None and not isinstance(fullgraph, bool):
        raise UsageError(f"{entry.id}: compiler_args.fullgraph must be true or false, got {fullgraph!r}")
    extra = options.get("options")
    if extra is not None and not isinstance(extra, dict):
        raise UsageError(f"{entry.id}: compiler_args.options must be a mapping (torch.compile's options), got {extra!r}")
    return options


def native_cc_flags(entry: CompileEntry) -> list[str]:
    """The neuronx-cc flags ``compiler_args.args`` asks for."""
    args = native_options(entry).get("args")
    if args is None:
        return []
    return shlex.split(args) if isinstance(args, str) else list(args)


def to_host(output: Any) -> Any:
    """``output`` with every tensor moved to the host (containers kept)."""
    if hasattr(output, "cpu") and callable(output.cpu):
        return output.cpu()
    if isinstance(output, dict):
        return {key: to_host(value) for key, value in output.items()}
    if isinstance(output, (list, tuple)):
        return type(output)(to_host(value) for value in output)
    return output


class NativeNeuronCall:
    """One model call on the ``neuron`` device, host tensors in and out. With ``names`` (a model
    source's inputs, or inputs named in the spec) the inputs, given by position as every
    backend's callable takes them, reach the model by keyword: ``module(input_ids=...,
    attention_mask=...)``, as on the CPU's eager path. Eager and ``torch.compile`` take keywords,
    so no positional wrapper is needed, unlike the trace path."""

    def __init__(self, module: Any, names: Optional[Sequence[str]] = None):
        self.module = module
        self.names = tuple(names) if names else None

    def __call__(self, *inputs: Any) -> Any:
        moved = tuple(x.to(NEURON_DEVICE) if hasattr(x, "to") and hasattr(x, "shape") else x for x in inputs)
        if self.names is None:
            return to_host(self.module(*moved))
        return to_host(self.module(**dict(zip(self.names, moved))))


class TorchNeuronNativeBackend(_NeuronBackend):
    """TorchNeuron (torch-neuronx >= 2.10, Trn2/Trn3): eager ``.to("neuron")`` or
    ``torch.compile(backend="neuron")``."""

    name = "torchneuron"
    framework = "torch"
    compilers = ("native", "native-compile")
    sdk_module = "torch_neuronx"
    sdk_package = "torch-neuronx"
    compiler_package = "neuronx-cc"
    hardware = "Trn2/Trn3, TorchNeuron: torch-neuronx 2.13 or 2.14"
    # A copy is one process on its own NeuronCores: splitting a model over cores is a
    # torch.distributed matter on TorchNeuron, not a compiler flag.
    supports_pipeline = False
    # PyTorch imports installed device backends when torch itself is imported ("Autoload
    # Mechanism", PyTorch >= 2.5), and TorchNeuron is one. The workers' server imports torch
    # before any copy exists: it must not bring up the Neuron runtime there, before a copy's
    # NEURON_RT_VISIBLE_CORES and NEURON_LOGICAL_NC_CONFIG are set (a forked runtime, or one that
    # took every core, would break every copy). Each worker imports torch_neuronx itself, in load.
    worker_env = {"TORCH_DEVICE_BACKEND_AUTOLOAD": "0"}

    def artifact_suffix(self, compiler: str) -> Optional[str]:
        self._check_compiler(compiler)
        return None  # just-in-time: nothing to save

    @property
    def path(self) -> str:
        return "native"

    def check_compiler_args(self, entry: CompileEntry) -> None:
        self._check_compiler(entry.compiler)
        native_options(entry)
        check_lnc_args(entry, native_cc_flags(entry))

    def compiler_flags(self, entry: CompileEntry) -> list[str]:
        # The runtime compiles just in time at the LNC it runs at; only an LNC the sweep sets is
        # passed on (the machine's own needs no flag to agree with it).
        return flags_for_lnc(native_cc_flags(entry), entry.lnc, where=f"{entry.id}: compiler_args")

    def copy_env(self, entry: CompileEntry, copy_idx: int) -> dict[str, str]:
        env = super().copy_env(entry, copy_idx)
        flags = self.compiler_flags(entry)
        if flags:
            # Added to what the user's environment already asks of the compiler.
            env[CC_FLAGS_ENV] = " ".join(filter(None, [os.environ.get(CC_FLAGS_ENV), shlex.join(flags)]))
        return env

    def check_available(self, device_type: str) -> None:
        super().check_available(device_type)
        self.require_native()

    def require_native(self) -> str:
        """The installed torch-neuronx version, or ``BackendUnavailable`` when it is not TorchNeuron."""
        module = self.import_sdk()
        version = _version(self.sdk_package, module)
        path = torch_neuronx_path(version)
        if path != "native":
            raise BackendUnavailable(
                f"compilers native and native-compile need TorchNeuron (torch-neuronx 2.13 or 2.14, Trn2/Trn3); "
                f"installed: torch-neuronx {version}"
                + (" (the PyTorch/XLA library: use compiler neuronx)" if path == "xla-trace" else "")
                + f"; install with: {NATIVE_INSTALL}"
            )
        return version

    def compile(self, entry: CompileEntry, artifact_path: Optional[Path]) -> None:
        # Nothing is built ahead of time; building the model once here turns a broken factory
        # into this entry's compile error rather than every copy's load error.
        self.check_compiler_args(entry)
        build_torch_module(entry)

    def load(self, entry: CompileEntry, artifact_path: Optional[Path], device_id: int) -> Callable[..., Any]:
        # device_id is not used: the runtime places the model on the cores NEURON_RT_VISIBLE_CORES
        # (visible_devices_env) makes visible.
        self._check_compiler(entry.compiler)
        options = native_options(entry)
        torch = import_torch()
        self.require_native()
        try:
            module = build_torch_module(entry).to(NEURON_DEVICE)
        except Exception as e:  # no device, no driver, an operator TorchNeuron cannot place, ...
            raise ModelLoadError(f"{entry.id}: moving the model to the neuron device failed: {type(e).__name__}: {e}") from e
        if entry.compiler == "native-compile":
            kwargs: dict[str, Any] = {"backend": "neuron", "fullgraph": options.get("fullgraph", True)}
            if options.get("options"):
                kwargs["options"] = dict(options["options"])
            module = torch.compile(module, **kwargs)
        return NativeNeuronCall(module, input_names(entry))

    def example_inputs(self, entry: CompileEntry, seed: int = 0) -> tuple[Any, ...]:
        return arguments_of(torch_inputs(entry, seed))

    def to_numpy(self, output: Any) -> Any:
        return tensors_to_numpy(output)

    def measuring_threads(self, device_type: str, model: Any) -> Callable[[], ThreadDevice]:
        # Each call ends with .cpu(), which waits for the device: nothing more to synchronize.
        return torch_measuring_threads("neuron", no_grad=True)
