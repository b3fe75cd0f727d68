"""``neuronperf.torch.compile`` and ``neuronperf.compile``: compile a model once per (batch size x
pipeline size) with the same compile stage a sweep uses (``compilation.stage.compile_one``),
and write a model index.
"""

from __future__ import annotations

import logging
import os
import secrets
import string
import time
import warnings
from typing import Any, Callable, Optional

from neuronperf import model_index
from neuronperf.api.arguments import (
    as_input_list,
    as_int_list,
    compiler_args_value,
    paired_batch_sizes,
    tensor_specs,
)
from neuronperf.entries import (
    CompileEntry,
)
from neuronperf.errors import (
    BackendUnavailable,
    CompileFailed,
    ModelLoadError,
    UsageError,
)

log = logging.getLogger("neuronperf")

def choose_backend(framework: str, device_type: str, compiler: Optional[str] = None) -> Any:
    """The backend for ``framework`` on ``device_type``. Without a named compiler, the first one
    whose SDK is installed: on Neuron, torch-neuronx, else torch-neuron (NeuronPerf users on
    Inferentia 1 call ``neuronperf.torch.compile`` with torch-neuron installed)."""
    from neuronperf.backends import find_backend, get_backend, registered_backends
    from neuronperf.spec.values import GENERATE_ONLY_COMPILERS

    if compiler is not None:
        backend = find_backend(framework, device_type, compiler)
        backend.check_available(device_type)
        return backend
    first_error: Optional[BackendUnavailable] = None
    for name in registered_backends():
        try:
            backend = get_backend(name)
        except ImportError:  # a broken third-party plug-in must not hide the built-ins
            continue
        if backend.framework != framework or device_type not in backend.device_types:
            continue
        if all((framework, device_type, c) in GENERATE_ONLY_COMPILERS for c in backend.compilers):
            continue  # optimum-neuron builds generation models only; this API compiles forward models
        try:
            backend.check_available(device_type)
        except BackendUnavailable as e:
            first_error = first_error or e
            continue
        return backend
    if first_error is not None:
        raise first_error
    raise BackendUnavailable(f"no backend serves framework {framework!r} on device_type {device_type!r}")


def compile_model(
    framework: str,
    model: Any,
    inputs: Any,
    batch_sizes: Any = None,
    pipeline_sizes: Any = None,
    models_dir: str = "models",
    model_name: Optional[str] = None,
    filename: Optional[str] = None,
    compiler_args: Any = None,
    device_type: str = "neuron",
    compiler: Optional[str] = None,
) -> str:
    """Compile ``model`` once per (batch size x pipeline size) in this process; write a model
    index; return its path.

    A configuration that fails to compile is logged and left out of the index, and the others
    go on (as in NeuronPerf); if every one fails, ``CompileFailed`` says why. A wrong argument
    (``UsageError``) or a missing SDK (``BackendUnavailable``) is raised at once.
    """
    from neuronperf.compilation.artifacts import compile_one
    from neuronperf.sources.factory import register_in_memory, unregister_in_memory

    if model is None:
        raise UsageError("model is required")
    examples = as_input_list(inputs)
    sizes = paired_batch_sizes(examples, batch_sizes)
    specs = [tensor_specs(x) for x in examples]
    pipelines = as_int_list(pipeline_sizes if pipeline_sizes is not None else 1, "pipeline_sizes") or [1]
    backend = choose_backend(framework, device_type, compiler)
    compiler = compiler or backend.default_compiler(device_type)
    if max(pipelines) > 1 and not backend.supports_pipeline:
        raise UsageError(f"pipeline_sizes > 1 need a pipelining compiler; {backend.name}/{compiler} has none")
    suffix = backend.artifact_suffix(compiler)
    if suffix is None:
        raise UsageError(
            f"compiler {compiler!r} builds no artifact to index; benchmark the model directly "
            "(neuronperf.cpu.benchmark) or choose a compiler that saves one"
        )
    if framework == "torch":
        from neuronperf.backends.torch_backend import import_torch

        torch = import_torch()
        if not isinstance(model, torch.nn.Module):
            raise UsageError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    name = model_name or type(model).__name__.lower()
    ref = register_in_memory(model, name, examples)  # traced with the caller's own tensors
    args = compiler_args_value(compiler_args)
    os.makedirs(models_dir, exist_ok=True)
    version = backend.compiler_version(compiler)
    # The backend puts the model in eval mode and (Hugging Face) turns off return_dict to trace
    # it; the caller's model keeps its own settings.
    was_training = getattr(model, "training", None)
    config = getattr(model, "config", None)
    return_dict = getattr(config, "return_dict", None)

    configs, failures = [], []
    try:
        for input_idx, (spec, batch_size) in enumerate(zip(specs, sizes)):
            for pipeline_size in pipelines:
                entry = CompileEntry(
                    model=ref, params=(), inputs=spec, batch_size=batch_size,
                    pipeline_size=pipeline_size, framework=framework, device_type=device_type,
                    compiler=compiler, compiler_args=args, input_idx=input_idx,
                )
                path = _artifact_path(models_dir, name, batch_size, pipeline_size, suffix)
                log.info("compiling %s batch_size=%d pipeline_size=%d", name, batch_size, pipeline_size)
                try:
                    compile_s = compile_one(backend, entry, path)
                except (UsageError, BackendUnavailable, ModelLoadError):
                    raise  # the same mistake would fail every configuration: say it once
                except Exception as e:  # one configuration's failure must not lose the others
                    log.error("compiling %s batch_size=%d pipeline_size=%d failed: %s: %s",
                              name, batch_size, pipeline_size, type(e).__name__, e)
                    failures.append(f"bs{batch_size}-p{pipeline_size}: {type(e).__name__}: {e}")
                    continue
                configs.append(model_index.create(
                    path, input_idx=input_idx, batch_size=batch_size, pipeline_size=pipeline_size,
                    compile_s=round(compile_s, 3), model_name=name, framework=framework,
                    device_type=device_type, compiler=compiler, compiler_version=version,
                ))
    finally:
        unregister_in_memory(ref)
        if was_training is not None and hasattr(model, "train"):
            model.train(was_training)
        if config is not None and return_dict is not None:
            config.return_dict = return_dict
    return _save_index(configs, failures, name, filename)


def compile_with_function(
    compile_fn: Callable[..., Any],
    model: Any,
    inputs: Any,
    batch_sizes: Any = None,
    pipeline_sizes: Any = None,
    models_dir: str = "models",
    model_name: Optional[str] = None,
    filename: Optional[str] = None,
    compiler_args: Any = None,
    suffix: str = ".pt",
) -> str:
    """The generic ``neuronperf.compile``: ``compile_fn(model, example_input, filename,
    batch_size=, pipeline_size=, compiler_args=)`` writes each artifact; we time it and index it."""
    if not callable(compile_fn):
        raise UsageError(f"compile_fn must be callable, got {type(compile_fn).__name__}")
    examples = as_input_list(inputs)
    sizes = paired_batch_sizes(examples, batch_sizes)
    pipelines = as_int_list(pipeline_sizes if pipeline_sizes is not None else 1, "pipeline_sizes") or [1]
    name = model_name or type(model).__name__.lower()
    os.makedirs(models_dir, exist_ok=True)
    configs, failures = [], []
    for input_idx, (example, batch_size) in enumerate(zip(examples, sizes)):
        for pipeline_size in pipelines:
            path = _artifact_path(models_dir, name, batch_size, pipeline_size, suffix)
            started = time.perf_counter()
            try:
                compile_fn(model, example, path, batch_size=batch_size, pipeline_size=pipeline_size,
                           compiler_args=compiler_args)
            except Exception as e:  # one configuration's failure must not lose the others
                log.error("compile_fn failed for batch_size=%d pipeline_size=%d: %s", batch_size, pipeline_size, e)
                failures.append(f"bs{batch_size}-p{pipeline_size}: {type(e).__name__}: {e}")
                continue
            compile_s = time.perf_counter() - started
            if not os.path.exists(path):
                failures.append(f"bs{batch_size}-p{pipeline_size}: compile_fn wrote no file at {path}")
                continue
            configs.append(model_index.create(
                path, input_idx=input_idx, batch_size=batch_size, pipeline_size=pipeline_size,
                compile_s=round(compile_s, 3), model_name=name,
            ))
    return _save_index(configs, failures, name, filename)


def _save_index(configs: list, failures: list[str], name: str, filename: Optional[str]) -> str:
    if not configs:
        raise CompileFailed(name, "every configuration failed to compile: " + "; ".join(failures))
    if failures:
        warnings.warn(
            f"{len(failures)} configuration(s) of {name} failed to compile and are not in the "
            f"index: {'; '.join(failures)}", stacklevel=4,
        )
    index = configs[0]
    for extra in configs[1:]:
        index["model_configs"] += extra["model_configs"]
    return model_index.save(index, filename)


def _artifact_path(models_dir: str, name: str, batch_size: int, pipeline_size: int, suffix: str) -> str:
    """``models/<name>_b<batch>_p<pipeline>_<8 random chars><suffix>``, NeuronPerf's naming."""
    return os.path.abspath(os.path.join(models_dir, f"{name}_b{batch_size}_p{pipeline_size}_{_token()}{suffix}"))


def _token() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))
