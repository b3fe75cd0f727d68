"""PyTorch on CPU and CUDA: eager, TorchScript, torch.export and torch.compile (inductor).

The helpers at the top (``import_torch``, ``build_torch_module``, ``torch_inputs``,
``tensors_to_numpy``, ``InferenceCallable``) are shared with the ONNX Runtime and Neuron
backends, which also start from a torch model. torch itself is imported only inside functions.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Callable, Optional

from neuronperf.backends.base import Backend, ThreadDevice, arguments_of
from neuronperf.backends.generation import CausalLMGenerate, generation_problem
from neuronperf.entries import CompileEntry, thaw
from neuronperf.errors import BackendUnavailable, CompileFailed, ModelLoadError, UsageError
from neuronperf.sources.factory import build_model, in_memory_example
from neuronperf.sources.inputs import make_arrays

TORCH_INSTALL = "pip install torch"

#: compiler_args keys each torch compiler accepts (all accept ``num_threads``).
_COMPILER_ARG_KEYS = {
    "torchscript": ("num_threads", "freeze"),
    "eager": ("num_threads",),
    "export": ("num_threads", "strict"),
    "inductor": ("num_threads", "mode", "fullgraph", "dynamic", "backend"),
}


# ---- helpers shared by every backend that starts from a torch model --------------------------


def import_torch() -> Any:
    """Import torch, or raise ``BackendUnavailable`` with the install command."""
    try:
        import torch
    except ImportError as e:
        raise BackendUnavailable(f"framework torch is not installed ({e}); install with: {TORCH_INSTALL}") from e
    return torch


def torch_measuring_threads(device_type: str, no_grad: bool = False) -> Callable[[], ThreadDevice]:
    """How each measuring thread calls a torch model (backends that start from torch share it).

    Every thread takes the thread count the worker's main thread ended with (OpenMP keeps its
    pool size per thread, so a new thread would otherwise use every core whatever the CPU share,
    OMP_NUM_THREADS or the user's setup_fn chose) and runs its calls in inference mode (autograd
    bookkeeping is not inference cost; ``no_grad`` for Neuron's traced graphs, which predate it).
    On CUDA each thread queues its work on a stream of its own and waits for that stream alone:
    a whole-device synchronize would make every thread wait for the others' calls too."""
    torch = import_torch()
    threads = torch.get_num_threads()
    grad_off = torch.no_grad if no_grad or not hasattr(torch, "inference_mode") else torch.inference_mode

    def per_thread() -> ThreadDevice:
        torch.set_num_threads(threads)
        if device_type != "cuda":
            return ThreadDevice(context=grad_off)
        torch.cuda.synchronize()  # the inputs were made on the default stream
        stream = torch.cuda.Stream()

        @contextlib.contextmanager
        def context() -> Iterator[None]:
            with grad_off(), torch.cuda.stream(stream):
                yield

        return ThreadDevice(context=context, sync=stream.synchronize)

    return per_thread


def build_torch_module(entry: CompileEntry) -> Any:
    """Build ``entry``'s model from its factory or its source (hf, timm, torchvision), in eval
    mode, cast to the entry's ``dtype`` parameter when it has one, ready to be traced."""
    torch = import_torch()
    source = entry.model.source
    if source is not None:
        # transformers' outputs stay ModelOutput here (TorchScript with strict=False and
        # torch.export keep them; ``config.return_dict = False`` breaks GPT-2 and ViT in
        # transformers 5): the compilers that need tuples ask for them per call (TUPLE_CALL).
        from neuronperf.sources.models import build

        return build(source, entry.task, dtype=entry_dtype(entry))
    model = build_model(entry.model)
    if not isinstance(model, torch.nn.Module):
        raise ModelLoadError(
            f"factory {entry.model.factory!r} returned {type(model).__name__}, not a torch.nn.Module"
        )
    model.eval()
    # transformers 5.x ignores config.torchscript; its models return a dict-like ModelOutput
    # unless return_dict is off, and tracers want plain tuples.
    config = getattr(model, "config", None)
    # generate needs the ModelOutput of each step, and nothing is traced for a generate task.
    if config is not None and hasattr(config, "return_dict") and entry.task != "generate":
        config.return_dict = False
    dtype = entry_dtype(entry)
    return model.to(getattr(torch, dtype)) if dtype is not None else model


def entry_dtype(entry: CompileEntry) -> Optional[str]:
    """The entry's ``dtype`` parameter (the precision the model is cast to), or None."""
    value = dict(entry.params).get("dtype")
    return str(value) if value is not None else None


def input_names(entry: CompileEntry) -> Optional[tuple[str, ...]]:
    """The keywords a call passes its inputs by, when every input has a name (a model source's
    generated inputs, or named ones in the spec); None: by position. A generation request takes
    its prompt's ids by position (the generation contract)."""
    names = tuple(t.name for t in entry.inputs)
    if entry.task == "generate" or not names or any(n is None for n in names):
        return None
    return names  # type: ignore[return-value]  # no None left


def tuple_call_kwargs(entry: CompileEntry) -> dict[str, Any]:
    """What makes a model source's transformers model return a plain tuple (for the compilers
    that need one: the ONNX exporter, the Neuron tracers); nothing for other models."""
    source = entry.model.source
    if source is not None and source.kind == "hf":
        from neuronperf.sources.hf import TUPLE_CALL

        return dict(TUPLE_CALL)
    return {}


def keyword_module(torch: Any, model: Any, fixed: Mapping[str, Any]) -> Any:
    """``model`` behind a forward that takes keyword inputs and adds ``fixed`` keywords (for
    torch.export of a transformers model, which must return a plain tuple to load again)."""

    class Keywords(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, **inputs: Any) -> Any:
            return self.model(**inputs, **fixed)

    return Keywords()


def positional_module(torch: Any, model: Any, names: Optional[Sequence[str]], fixed: Mapping[str, Any]) -> Any:
    """``model`` behind a forward that takes positional arguments only, passing them on by
    ``names`` (keyword inputs) with ``fixed`` keywords added: for the tracers that bind inputs
    by position (the TorchScript-based ONNX exporter, the Neuron SDKs' trace calls), so each
    tensor still reaches the parameter it is named for."""

    class Positional(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: Any) -> Any:
            if names is None:
                return self.model(*inputs, **fixed)
            return self.model(**dict(zip(names, inputs)), **fixed)

    return Positional()


def torch_inputs(entry: CompileEntry, seed: int = 0, device: Optional[str] = None) -> tuple[Any, ...]:
    """The example inputs of one call as torch tensors (bfloat16 cast from float32); the caller's
    own tensors when the Python API compiles a model object."""
    torch = import_torch()
    given = in_memory_example(entry)
    if given is not None:
        return tuple(torch.as_tensor(t).to(device) if device is not None else torch.as_tensor(t) for t in given)
    tensors = []
    for spec, array in zip(entry.inputs, make_arrays(entry.inputs, entry.batch_size, seed)):
        tensor = torch.from_numpy(array)
        if spec.dtype == "bfloat16":  # numpy has no bfloat16; make_arrays gives float32
            tensor = tensor.to(torch.bfloat16)
        if device is not None:
            tensor = tensor.to(device)
        tensors.append(tensor)
    return tuple(tensors)


def tensors_to_numpy(output: Any) -> Any:
    """Convert torch tensors inside a (nested) output to numpy arrays, keeping the nesting."""
    if hasattr(output, "detach") and hasattr(output, "cpu"):
        tensor = output.detach().cpu()
        if str(tensor.dtype) == "torch.bfloat16":
            tensor = tensor.float()
        return tensor.numpy()
    if isinstance(output, dict):  # also transformers' ModelOutput, an OrderedDict subclass
        return {k: tensors_to_numpy(v) for k, v in output.items()}
    if isinstance(output, (list, tuple)):
        converted = [tensors_to_numpy(v) for v in output]
        return converted if isinstance(output, list) else tuple(converted)
    return output


class InferenceCallable:
    """Calls a torch module under ``torch.inference_mode`` (no autograd bookkeeping), moving
    inputs to the module's device first when they are elsewhere. With ``names``, the inputs
    (given by position, as every backend's callable takes them) are passed by keyword:
    ``module(input_ids=..., attention_mask=...)``."""

    def __init__(self, module: Any, device: Any = None, names: Optional[Sequence[str]] = None):
        import torch

        self.module = module
        self.device = device
        self.names = tuple(names) if names else None
        self._inference_mode = torch.inference_mode
        self._in_inference_mode = torch.is_inference_mode_enabled

    def __call__(self, *inputs: Any) -> Any:
        if self.device is not None:
            inputs = tuple(
                x.to(self.device) if hasattr(x, "device") and x.device != self.device else x for x in inputs
            )
        # Benchmark workers enter inference mode once per thread: entering it again on every
        # call would add about 3 us to each timed call, a third of a small model's latency.
        if self._in_inference_mode():
            return self._call(inputs)
        with self._inference_mode():
            return self._call(inputs)

    def _call(self, inputs: tuple[Any, ...]) -> Any:
        if self.names is None:
            return self.module(*inputs)
        return self.module(**dict(zip(self.names, inputs)))


@contextlib.contextmanager
def quiet_torchscript_deprecation() -> Iterator[None]:
    """Silence torch 2.x's "torch.jit.trace/freeze is deprecated" warnings, and only those.

    TorchScript is what the Neuron SDKs produce and load, so neuronperf uses it on purpose
    (see docs/backends.md); the warning is noise in every compile log."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.\w+` is deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.\w+` is deprecated", category=FutureWarning)
        yield


def compiler_options(entry: CompileEntry, allowed: tuple[str, ...]) -> dict[str, Any]:
    """``entry.compiler_args`` as a dict, or ``UsageError`` naming any key not in ``allowed``."""
    options = thaw(entry.compiler_args)
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise UsageError(
            f"{entry.id}: compiler_args for {entry.framework}/{entry.compiler} must be a mapping "
            f"with keys from: {', '.join(allowed)}; got {options!r}"
        )
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise UsageError(
            f"{entry.id}: compiler_args key(s) {', '.join(unknown)} not understood by "
            f"{entry.framework}/{entry.compiler}; accepted: {', '.join(allowed) or 'none'}"
        )
    return options


def visible_cuda_devices() -> Optional[list[str]]:
    """The entries of CUDA_VISIBLE_DEVICES, or None when it is unset."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def cuda_pinning_env(copy_idx: int, device_count: int) -> dict[str, str]:
    """CUDA_VISIBLE_DEVICES for model copy ``copy_idx``: one GPU each, chosen round-robin among
    the GPUs this process may use (the user's own CUDA_VISIBLE_DEVICES is respected)."""
    choices = visible_cuda_devices()
    if choices is None:
        choices = [str(i) for i in range(device_count)]
    if not choices:
        raise BackendUnavailable("device_type cuda: no CUDA device is visible to this process")
    return {"CUDA_VISIBLE_DEVICES": choices[copy_idx % len(choices)]}


def cuda_device_index(device_id: int, device_count: int) -> int:
    """The CUDA ordinal a worker uses for ``device_id``. A worker pinned by ``cuda_pinning_env``
    sees exactly one GPU, so this is 0 there; unpinned, ids wrap round the visible GPUs."""
    if device_count < 1:
        raise BackendUnavailable("device_type cuda: no CUDA device is visible to this process")
    return device_id % device_count


# ---- the backend ------------------------------------------------------------------------------

#: compiler_args num_threads of the model this worker process loaded (empty: none chosen), so
#: that the CPU share given after loading does not override the user's choice.
_threads_chosen_by_user: list[int] = []


class TorchBackend(Backend):
    """torch on cpu/cuda. Compilers: torchscript (default; ``torch.jit.trace`` + ``freeze``,
    ``.pt``), eager (no artifact), export (``torch.export``, ``.pt2``) and inductor
    (``torch.compile``, compiled in each worker at load time: no artifact)."""

    name = "torch"
    framework = "torch"
    device_types = ("cpu", "cuda")
    compilers = ("torchscript", "eager", "export", "inductor")

    def check_available(self, device_type: str) -> None:
        if device_type == "cpu":
            # Found, not imported: the sweep driver need not pay torch's import (the workers do).
            import importlib.util

            if importlib.util.find_spec("torch") is None:
                raise BackendUnavailable(f"framework torch is not installed; install with: {TORCH_INSTALL}")
            return
        torch = import_torch()
        if device_type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable(
                f"device_type cuda needs a CUDA GPU and a CUDA build of torch; this torch "
                f"{torch.__version__} (CUDA {torch.version.cuda or 'none'}) sees no GPU"
            )
        if device_type not in self.device_types:
            raise BackendUnavailable(f"backend torch does not serve device_type {device_type!r}")

    def compiler_version(self, compiler: str) -> str:
        self._check_compiler(compiler)
        # Package metadata, not `import torch`: a resumed sweep with nothing to do must not pay
        # two seconds of torch import just to confirm that its artifacts are current.
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"torch {version('torch')}"
        except PackageNotFoundError:  # no metadata (a source build, or not installed): ask torch
            return f"torch {import_torch().__version__}"

    def artifact_suffix(self, compiler: str) -> Optional[str]:
        self._check_compiler(compiler)
        return {"torchscript": ".pt", "export": ".pt2"}.get(compiler)

    def check_compiler_args(self, entry: CompileEntry) -> None:
        self._check_compiler(entry.compiler)
        compiler_options(entry, _COMPILER_ARG_KEYS[entry.compiler])

    def compile(self, entry: CompileEntry, artifact_path: Optional[Path]) -> None:
        self._check_compiler(entry.compiler)
        options = compiler_options(entry, _COMPILER_ARG_KEYS[entry.compiler])
        torch = import_torch()
        # Build the model here even for eager/inductor: a broken factory then fails in the
        # compile stage, once, with a log, instead of in every benchmark worker.
        model = build_torch_module(entry)
        if entry.task == "generate":
            problem = generation_problem(model, entry)
            if problem is not None:
                raise CompileFailed(entry.id, problem)
        if entry.compiler in ("eager", "inductor"):
            return
        if artifact_path is None:
            raise CompileFailed(entry.id, f"compiler {entry.compiler} needs an artifact path")
        device = self._device(entry.device_type, 0)
        model.to(device)
        inputs = torch_inputs(entry, device=str(device))
        names = input_names(entry)
        # Named inputs are traced by name, so that each reaches its parameter whatever the
        # forward's order (DistilBERT's takes no token types; BERT's third is token_type_ids).
        by_name = dict(zip(names, inputs)) if names else None
        try:
            if entry.compiler == "torchscript":
                with quiet_torchscript_deprecation(), torch.no_grad():
                    # check_trace re-runs the model and would double the compile time; the
                    # tests compare the artifact's output with the eager model's instead.
                    if by_name is not None:
                        module = torch.jit.trace(model, example_kwarg_inputs=by_name, check_trace=False, strict=False)
                    else:
                        module = torch.jit.trace(model, inputs, check_trace=False, strict=False)
                    if options.get("freeze", True):
                        # Folds parameters into the graph as constants (no autograd, fewer lookups).
                        module = torch.jit.freeze(module)
                    torch.jit.save(module, str(artifact_path))
            else:  # export
                strict = bool(options.get("strict", False))
                if by_name is not None:
                    # A saved program can hold transformers' ModelOutput but not load it again
                    # (its pytree node is registered without a serialized name): plain tuples.
                    fixed = tuple_call_kwargs(entry)
                    exported = keyword_module(torch, model, fixed) if fixed else model
                    program = torch.export.export(exported, (), kwargs=by_name, strict=strict)
                else:
                    program = torch.export.export(model, inputs, strict=strict)
                torch.export.save(program, str(artifact_path))
        except Exception as e:  # any tracer failure becomes this entry's recorded error
            raise CompileFailed(entry.id, f"{self._api(entry.compiler)} failed: {type(e).__name__}: {e}") from e

    def load(self, entry: CompileEntry, artifact_path: Optional[Path], device_id: int) -> Callable[..., Any]:
        self._check_compiler(entry.compiler)
        options = compiler_options(entry, _COMPILER_ARG_KEYS[entry.compiler])
        torch = import_torch()
        if options.get("num_threads"):
            torch.set_num_threads(int(options["num_threads"]))
            _threads_chosen_by_user.append(int(options["num_threads"]))
        device = self._device(entry.device_type, device_id)
        if entry.task == "generate":
            if entry.compiler != "eager":
                raise UsageError(f"{entry.id}: task: generate runs with the eager compiler on torch (the model's own generate)")
            model = build_torch_module(entry)
            # Eager builds nothing ahead of time, so the worker is the first to see the model.
            problem = generation_problem(model, entry)
            if problem is not None:
                raise ModelLoadError(f"{entry.id}: {problem}")
            return CausalLMGenerate(model.to(device), int(entry.new_tokens or 1), self._input_device(device))
        names = input_names(entry)
        if entry.compiler in ("eager", "inductor"):
            model = build_torch_module(entry).to(device)
            if entry.compiler == "inductor":
                # torch.compile is lazy: the first call compiles, so load + warm-up cover it.
                kwargs = {k: options[k] for k in ("mode", "fullgraph", "dynamic", "backend") if k in options}
                model = torch.compile(model, **kwargs)
            return InferenceCallable(model, self._input_device(device), names)
        if artifact_path is None or not os.path.exists(artifact_path):
            raise ModelLoadError(f"{entry.id}: artifact not found: {artifact_path}")
        if entry.compiler == "torchscript":
            with quiet_torchscript_deprecation():
                module = torch.jit.load(str(artifact_path), map_location=device)
            return InferenceCallable(module, self._input_device(device), names)
        program = torch.export.load(str(artifact_path))
        if device.type != "cpu":
            from torch.export.passes import move_to_device_pass

            program = move_to_device_pass(program, device)
        return InferenceCallable(program.module(), self._input_device(device), names)

    def example_inputs(self, entry: CompileEntry, seed: int = 0) -> tuple[Any, ...]:
        # On cuda the inputs go to the current device, which is the model's under pinning;
        # InferenceCallable moves them otherwise.
        return arguments_of(torch_inputs(entry, seed, device="cuda" if entry.device_type == "cuda" else None))

    def to_numpy(self, output: Any) -> Any:
        return tensors_to_numpy(output)

    def synchronize(self, device_type: str) -> None:
        if device_type == "cuda":
            import_torch().cuda.synchronize()

    def use_cpu_threads(self, threads: int) -> None:
        # The user's own choice wins: OMP_NUM_THREADS, or compiler_args num_threads at load.
        if "OMP_NUM_THREADS" not in os.environ and not _threads_chosen_by_user:
            import_torch().set_num_threads(threads)

    def measuring_threads(self, device_type: str, model: Any) -> Callable[[], ThreadDevice]:
        return torch_measuring_threads(device_type)

    def visible_devices_env(self, device_type: str, copy_idx: int, pipeline_size: int) -> dict[str, str]:
        if device_type != "cuda":
            return {}
        return cuda_pinning_env(copy_idx, self.device_count("cuda"))

    def device_memory_peak(self, device_type: str) -> Optional[int]:
        if device_type != "cuda":
            return None
        cuda = import_torch().cuda
        if not cuda.is_initialized():
            return None
        # The caching allocator's peak of memory handed to tensors since this worker started
        # (load, warm-up and window), on every GPU the copy sees (one, when pinned).
        return sum(int(cuda.max_memory_allocated(d)) for d in range(cuda.device_count()))

    def device_count(self, device_type: str) -> int:
        if device_type == "cuda":
            return int(import_torch().cuda.device_count())
        # One copy already uses every core through torch's intra-op threads.
        return 1

    def _device(self, device_type: str, device_id: int) -> Any:
        torch = import_torch()
        if device_type == "cuda":
            self.check_available("cuda")
            return torch.device("cuda", cuda_device_index(device_id, torch.cuda.device_count()))
        return torch.device("cpu")

    @staticmethod
    def _input_device(device: Any) -> Any:
        # CPU inputs are already in place: skip the per-call device check.
        return None if device.type == "cpu" else device

    def _check_compiler(self, compiler: str) -> None:
        if compiler not in self.compilers:
            raise UsageError(f"backend torch has no compiler {compiler!r}; choose one of: {', '.join(self.compilers)}")

    @staticmethod
    def _api(compiler: str) -> str:
        return {"torchscript": "torch.jit.trace", "export": "torch.export.export"}.get(compiler, compiler)
