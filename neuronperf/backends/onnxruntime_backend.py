"""ONNX Runtime on CPU (and CUDA where onnxruntime-gpu is installed): a torch model exported
to ONNX, one static-shape ``.onnx`` file per batch size, run by an InferenceSession."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Optional

from neuronperf.backends.base import Backend, ThreadDevice, arguments_of
from neuronperf.backends.torch_backend import (
    build_torch_module,
    compiler_options,
    cuda_pinning_env,
    import_torch,
    input_names,
    positional_module,
    torch_inputs,
    tuple_call_kwargs,
    visible_cuda_devices,
)
from neuronperf.entries import CompileEntry
from neuronperf.errors import BackendUnavailable, CompileFailed, ModelLoadError, UsageError
from neuronperf.sources.inputs import make_arrays

ORT_INSTALL = "pip install onnxruntime onnx (onnxruntime-gpu for device_type cuda)"

#: The ONNX opset used when compiler_args names none: supported by torch's TorchScript-based
#: exporter and by every onnxruntime since 1.14.
DEFAULT_OPSET = 17

_COMPILER_ARG_KEYS = ("opset", "intra_op_num_threads", "inter_op_num_threads", "graph_optimization_level")
_OPTIMIZATION_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as e:
        raise BackendUnavailable(f"framework onnxruntime is not installed ({e}); install with: {ORT_INSTALL}") from e
    return onnxruntime


def _input_name(i: int) -> str:
    return f"input_{i}"


class OrtCallable:
    """Runs an InferenceSession as ``model(*arrays)``, feeding each array by its input's name
    (``names``, else ``input_<i>``); one output comes back bare, several as a tuple (like the
    torch model it was exported from)."""

    def __init__(self, session: Any, n_inputs: int, names: Optional[Sequence[str]] = None):
        self.session = session
        graph_inputs = [node.name for node in session.get_inputs()]
        wanted = list(names) if names else [_input_name(i) for i in range(n_inputs)]
        if not set(wanted) & set(graph_inputs) and len(graph_inputs) == n_inputs:
            wanted = graph_inputs  # an .onnx file of the user's, its inputs passed in its order
        # The exporter drops inputs that the model never reads (say an unused mask): feed only
        # the positions that the graph kept.
        self._names = [(i, name) for i, name in enumerate(wanted) if name in graph_inputs]

    def __call__(self, *inputs: Any) -> Any:
        outputs = self.session.run(None, {name: inputs[i] for i, name in self._names})
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


class OnnxRuntimeBackend(Backend):
    """framework onnxruntime on cpu/cuda, compiler ``onnx``: ``torch.onnx.export`` with the
    TorchScript-based exporter (``dynamo=False``: no onnxscript, no ``.onnx.data`` side file)."""

    name = "onnxruntime"
    framework = "onnxruntime"
    device_types = ("cpu", "cuda")
    compilers = ("onnx",)
    # Importing onnxruntime loads its libraries and starts no thread (a session starts its pools).
    worker_preload = ("onnxruntime",)

    def check_available(self, device_type: str) -> None:
        ort = _import_ort()
        import_torch()  # the exporter
        try:
            import onnx  # noqa: F401 - torch.onnx.export needs it
        except ImportError as e:
            raise BackendUnavailable(f"onnxruntime backend needs the onnx package ({e}); install with: {ORT_INSTALL}") from e
        if device_type == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise BackendUnavailable(
                f"device_type cuda needs onnxruntime-gpu and a GPU; this onnxruntime {ort.__version__} "
                f"offers only {', '.join(ort.get_available_providers())} "
                f"(install with: pip install onnxruntime-gpu)"
            )
        if device_type not in self.device_types:
            raise BackendUnavailable(f"backend onnxruntime does not serve device_type {device_type!r}")

    def compiler_version(self, compiler: str) -> str:
        self._check_compiler(compiler)
        # The artifact depends on the exporter (torch, onnx); onnxruntime is included because it
        # decides what the results mean, and re-exporting is cheap. Package metadata, not
        # imports: a resume with nothing to do must not pay for three framework imports.
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"torch {version('torch')}; onnx {version('onnx')}; onnxruntime {version('onnxruntime')}"
        except PackageNotFoundError:  # not installed: importing says so with the install command
            torch = import_torch()
            import onnx

            return f"torch {torch.__version__}; onnx {onnx.__version__}; onnxruntime {_import_ort().__version__}"

    def artifact_suffix(self, compiler: str) -> Optional[str]:
        self._check_compiler(compiler)
        return ".onnx"

    def check_compiler_args(self, entry: CompileEntry) -> None:
        compiler_options(entry, _COMPILER_ARG_KEYS)

    def compile(self, entry: CompileEntry, artifact_path: Optional[Path]) -> None:
        self._check_compiler(entry.compiler)
        options = compiler_options(entry, _COMPILER_ARG_KEYS)
        if artifact_path is None:
            raise CompileFailed(entry.id, "compiler onnx needs an artifact path")
        if any(spec.dtype == "bfloat16" for spec in entry.inputs):
            raise UsageError(f"{entry.id}: onnxruntime takes numpy inputs, and numpy has no bfloat16")
        torch = import_torch()
        names = input_names(entry)
        # The TorchScript-based exporter binds inputs by position: a wrapper passes them on by
        # name (and asks a transformers model for a plain tuple).
        wrapper = positional_module(torch, build_torch_module(entry), names, tuple_call_kwargs(entry))
        inputs = torch_inputs(entry)
        try:
            with warnings.catch_warnings(), torch.no_grad():
                # The TorchScript-based exporter is deprecated in torch 2.9+, and chosen on purpose.
                warnings.filterwarnings("ignore", category=DeprecationWarning)
                warnings.filterwarnings("ignore", category=FutureWarning)
                torch.onnx.export(
                    wrapper,
                    inputs,
                    str(artifact_path),
                    dynamo=False,
                    input_names=list(names) if names else [_input_name(i) for i in range(len(inputs))],
                    opset_version=int(options.get("opset", DEFAULT_OPSET)),
                )
        except Exception as e:  # any exporter failure becomes this entry's recorded error
            raise CompileFailed(entry.id, f"torch.onnx.export failed: {type(e).__name__}: {e}") from e

    def load(self, entry: CompileEntry, artifact_path: Optional[Path], device_id: int) -> Callable[..., Any]:
        self._check_compiler(entry.compiler)
        options = compiler_options(entry, _COMPILER_ARG_KEYS)
        if artifact_path is None or not os.path.isfile(artifact_path):
            raise ModelLoadError(f"{entry.id}: artifact not found: {artifact_path}")
        ort = _import_ort()
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = int(options.get("intra_op_num_threads", _default_threads()))
        if "inter_op_num_threads" in options:
            session_options.inter_op_num_threads = int(options["inter_op_num_threads"])
        level = options.get("graph_optimization_level", "all")
        if level not in _OPTIMIZATION_LEVELS:
            raise UsageError(
                f"{entry.id}: compiler_args.graph_optimization_level {level!r} is not one of: {', '.join(_OPTIMIZATION_LEVELS)}"
            )
        session_options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPTIMIZATION_LEVELS[level])
        providers: list[Any] = ["CPUExecutionProvider"]
        if entry.device_type == "cuda":
            self.check_available("cuda")
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": _cuda_index(device_id)}))
        session = ort.InferenceSession(str(artifact_path), sess_options=session_options, providers=providers)
        return OrtCallable(session, len(entry.inputs), input_names(entry))

    def example_inputs(self, entry: CompileEntry, seed: int = 0) -> tuple[Any, ...]:
        # numpy on every device: the session copies inputs to the GPU itself.
        return arguments_of(make_arrays(entry.inputs, entry.batch_size, seed))

    def measuring_threads(self, device_type: str, model: Any) -> Callable[[], ThreadDevice]:
        # session.run returns host arrays: a call is complete when it returns, on every device.
        return ThreadDevice

    def to_numpy(self, output: Any) -> Any:
        if isinstance(output, (list, tuple)):
            converted = [self.to_numpy(v) for v in output]
            return converted if isinstance(output, list) else tuple(converted)
        return output

    def visible_devices_env(self, device_type: str, copy_idx: int, pipeline_size: int) -> dict[str, str]:
        if device_type != "cuda":
            return {}
        return cuda_pinning_env(copy_idx, self.device_count("cuda"))

    def device_count(self, device_type: str) -> int:
        if device_type != "cuda":
            return 1  # one session already spreads over the cores (intra_op_num_threads)
        visible = visible_cuda_devices()
        if visible is not None:
            return len(visible)
        return int(import_torch().cuda.device_count())

    def _check_compiler(self, compiler: str) -> None:
        if compiler not in self.compilers:
            raise UsageError(f"backend onnxruntime has no compiler {compiler!r}; choose: onnx")


def _default_threads() -> int:
    # In a benchmark worker, the share of the cores that the worker gives each measuring thread
    # (copies and threads would otherwise oversubscribe the machine).
    share = os.environ.get("NEURONPERF_CPU_THREADS", "")
    if share.isdigit() and int(share) > 0:
        return int(share)
    # onnxruntime's own default is every physical core of the machine, even when this process
    # is pinned to fewer; the CPUs this process may run on is the better default.
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _cuda_index(device_id: int) -> int:
    visible = visible_cuda_devices()
    # Pinned by visible_devices_env: the worker sees one GPU, ordinal 0.
    if visible is not None and len(visible) >= 1:
        return device_id % len(visible)
    return device_id
