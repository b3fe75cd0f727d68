"""The NeuronPerf-compatible Python API, as thin layers over the compile and benchmark stages.

``neuronperf.torch``, ``neuronperf.tensorflow`` and ``neuronperf.cpu`` call into here with their
framework; the top-level ``neuronperf.compile`` / ``neuronperf.benchmark`` take user functions.
The same stages as a sweep do the work (``compile_stage.compile_one``, and the benchmark core's
``run_entries`` with a list as its sink, which measures and makes rows exactly as for
``neuronperf run``): there is no second implementation.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import secrets
import string
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from neuronperf import model_index
from neuronperf.core import Sink
from neuronperf.entries import (
    BenchmarkSettings,
    CompileEntry,
    Measurement,
    ModelRef,
    TensorSpec,
    freeze,
)
from neuronperf.errors import (
    BackendUnavailable,
    CompileFailed,
    ModelLoadError,
    NeuronPerfError,
    UsageError,
)

log = logging.getLogger("neuronperf")

#: Seconds each configuration is measured when the caller does not say (NeuronPerf's documented
#: default; its code used 120).
DEFAULT_DURATION = 60.0
#: NeuronPerf's default worker threads per model copy.
DEFAULT_WORKERS_PER_MODEL = (1, 2)


# ---- argument normalisation ---------------------------------------------------------------


def as_input_list(inputs: Any) -> list:
    """``inputs`` is one example input or a list of them (one per batch size). A tuple is ONE
    input holding several tensors (the model is called as ``model(*inputs)``)."""
    if inputs is None:
        raise UsageError("inputs is required: give one example input per batch size")
    if isinstance(inputs, list):
        if not inputs:
            raise UsageError("inputs is empty: give one example input per batch size")
        return inputs
    return [inputs]


def as_int_list(value: Any, name: str) -> Optional[list[int]]:
    """Scalars are accepted wherever lists are; every value must be a positive integer."""
    if value is None:
        return None
    values = list(value) if isinstance(value, (list, tuple, range)) else [value]
    if not values:
        raise UsageError(f"{name} is empty")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise UsageError(f"{name}: {v!r} is not a positive integer")
    if len(set(values)) != len(values):
        raise UsageError(f"{name}: {values} lists a value twice")
    return [int(v) for v in values]


def _positive_number(value: Any, name: str, allow_zero: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
    if not ok or float(value) < 0 or (float(value) == 0 and not allow_zero):
        kind = "a non-negative" if allow_zero else "a positive"
        raise UsageError(f"{name} must be {kind} number, got {value!r}")
    return float(value)


def _count(value: Any, name: str) -> int:
    """A whole number of calls, zero allowed."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise UsageError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def batch_dim(example: Any) -> int:
    """The batch size of an example input: the first dimension of its first tensor."""
    first = example[0] if isinstance(example, (tuple, list)) and example else example
    if isinstance(first, dict):
        first = next(iter(first.values()), None)
    shape = getattr(first, "shape", None)
    if not shape:
        raise UsageError(
            f"cannot infer the batch size from an input of type {type(first).__name__} without a "
            "batch dimension; pass batch_sizes"
        )
    return int(shape[0])


def paired_batch_sizes(inputs: list, batch_sizes: Any) -> list[int]:
    """``inputs[i]`` is the example for ``batch_sizes[i]``; infer them from the inputs if unset."""
    sizes = as_int_list(batch_sizes, "batch_sizes")
    if sizes is None:
        return [batch_dim(x) for x in inputs]
    if len(sizes) != len(inputs):
        raise UsageError(
            f"{len(inputs)} example inputs but {len(sizes)} batch sizes: inputs[i] is the "
            "example input for batch_sizes[i]"
        )
    return sizes


def tensor_specs(example: Any) -> tuple[TensorSpec, ...]:
    """Shapes (without the batch dimension), dtypes and value ranges of an example input."""
    import numpy as np

    tensors = example if isinstance(example, (tuple, list)) else (example,)
    specs = []
    for t in tensors:
        if hasattr(t, "detach"):
            array = t.detach().cpu()
            # numpy has no bfloat16: its shape and range survive a float32 view
            array = (array.float() if str(array.dtype) == "torch.bfloat16" else array).numpy()
        elif hasattr(t, "shape") and hasattr(t, "dtype"):
            array = np.asarray(t)
        else:
            raise UsageError(
                f"an example input holds a {type(t).__name__}, not a tensor or array; compile "
                "needs tensors (a tuple of them for a model with several arguments, in argument order)"
            )
        if array.ndim == 0:
            raise UsageError("an example input tensor has no batch dimension (it is a scalar)")
        dtype = str(getattr(t, "dtype", array.dtype)).replace("torch.", "")
        low = high = None
        if array.dtype.kind in "iub" and array.size:
            # Integer inputs (token ids) must stay in range: keep the example's range.
            low, high = float(array.min()), float(array.max()) + 1
        specs.append(TensorSpec(tuple(int(d) for d in array.shape[1:]), dtype, low, high))
    return tuple(specs)


# ---- compile ------------------------------------------------------------------------------


def choose_backend(framework: str, device_type: str, compiler: Optional[str] = None) -> Any:
    """The backend for ``framework`` on ``device_type``. Without a named compiler, the first one
    whose SDK is installed: on Neuron, torch-neuronx, else torch-neuron (NeuronPerf users on
    Inferentia 1 call ``neuronperf.torch.compile`` with torch-neuron installed)."""
    from neuronperf.backends import find_backend, get_backend, registered_backends
    from neuronperf.spec import GENERATE_ONLY_COMPILERS

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


def _compiler_args(compiler_args: Any) -> Any:
    """NeuronPerf passed compiler_args to the compiler as they were (a list of flags or one
    string); a mapping is a backend's own options (e.g. ``{"freeze": False}`` for TorchScript)."""
    if compiler_args is None:
        return freeze({})
    if isinstance(compiler_args, dict):
        return freeze(compiler_args)
    if isinstance(compiler_args, (list, tuple, str)):
        return freeze({"args": list(compiler_args) if not isinstance(compiler_args, str) else compiler_args})
    raise UsageError(f"compiler_args must be a list of flags, a string or a mapping, got {type(compiler_args).__name__}")


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
    from neuronperf.compile_stage import compile_one
    from neuronperf.factory import register_in_memory, unregister_in_memory

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
    args = _compiler_args(compiler_args)
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


# ---- benchmark ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One model artifact (or loader) to benchmark, with its example input."""

    loader: Any  # a task.ModelLoader
    example: Any
    batch_size: int
    pipeline_size: int
    filename: str
    model_name: str
    #: The backend whose device services (pinning, thread shares, synchronisation) the workers use.
    device_backend: Optional[str] = None
    #: A Neuron backend checks that the copies' cores are free before each configuration.
    preflight: Optional[Callable[[str, int], None]] = None


def config_grid(n_models: Any, workers_per_model: Any, device_count: Callable[[], int],
                pipeline_size: int = 1) -> list[tuple[int, int]]:
    """The (n_models, workers_per_model) pairs measured for one artifact. NeuronPerf's defaults:
    workers ``[1, 2]`` x copies ``[1, MAX]``, MAX being how many copies of ``pipeline_size``
    devices fit (``device_count`` is asked only when needed: on Neuron it runs neuron-ls)."""
    workers = as_int_list(workers_per_model, "workers_per_model") or list(DEFAULT_WORKERS_PER_MODEL)
    copies = as_int_list(n_models, "n_models")
    if copies is None:
        most = max(1, device_count() // pipeline_size)
        copies = sorted({1, most})
    return [(n, w) for n in copies for w in workers]


def benchmark_targets(
    targets: Sequence[Target],
    *,
    device_type: str,
    device_count: Callable[[], int],
    duration: Optional[float] = None,
    n_models: Any = None,
    workers_per_model: Any = None,
    env_setup_fn: Optional[Callable[..., Any]] = None,
    setup_fn: Optional[Callable[..., Any]] = None,
    preprocess_fn: Optional[Callable[..., Any]] = None,
    postprocess_fn: Optional[Callable[..., Any]] = None,
    return_timers: bool = False,
    cost_per_hour: Optional[float] = None,
    instance_type: Optional[str] = None,
    max_infers: Optional[int] = None,
    min_calls: Optional[int] = None,
    warmup_calls: int = 10,
    warmup_s: float = 0.0,
    timeout: Optional[float] = None,
    peak_window_s: float = 1.0,
    repeat: int = 1,
    evaluation: Any = None,
) -> list[dict]:
    """Measure every target x n_models x workers_per_model; return report dicts (or raw results).

    Every configuration gets a report, failed ones too (``status`` and ``error`` say why).
    ``evaluation`` (an ``evaluate.EvalRequest``) evaluates each target once and joins its
    figures onto its reports; with ``duration=0`` nothing is timed."""
    from neuronperf.core import Job, run_entries
    from neuronperf.executors import get_executor
    from neuronperf.reporting import raw_result
    from neuronperf.results import RowConfig
    from neuronperf.task import BenchmarkTask

    duration = DEFAULT_DURATION if duration is None else _positive_number(duration, "duration", allow_zero=evaluation is not None)
    # -- accuracy beside speed (issue 14): evaluate each target once, in a worker of its own --
    evaluated: list = []
    if evaluation is not None:
        from neuronperf.evaluate import evaluate_targets, evaluation_row

        evaluated = evaluate_targets(targets, evaluation, device_type, preprocess_fn=preprocess_fn,
                                     postprocess_fn=postprocess_fn)
        if duration == 0:
            return [evaluation_row(t, device_type, evaluation, r) for t, r in zip(targets, evaluated)]
    if cost_per_hour is not None:
        cost_per_hour = _positive_number(cost_per_hour, "cost_per_hour", allow_zero=True)
    if max_infers is not None:
        max_infers = (as_int_list(max_infers, "max_infers") or [0])[0]
    if min_calls is not None:
        min_calls = (as_int_list(min_calls, "min_calls") or [0])[0]
    settings = BenchmarkSettings(
        duration=duration, max_infers=max_infers, min_calls=min_calls,
        warmup_calls=_count(warmup_calls, "warmup_calls"),
        warmup_s=_positive_number(warmup_s, "warmup_s", allow_zero=True),
        timeout=_positive_number(timeout, "timeout") if timeout is not None else max(300.0, 2 * duration + 120.0),
        peak_window_s=_positive_number(peak_window_s, "peak_window_s"),
        repeat=(as_int_list(repeat, "repeat") or [1])[0],
    )
    # Expand every configuration first: a bad n_models fails before anything is measured.
    jobs = []
    columns_of_job: list[dict] = []  # the evaluation columns of each job's target
    for i, target in enumerate(targets):
        for n, w in config_grid(n_models, workers_per_model, device_count, target.pipeline_size):
            entry_id = f"{target.model_name}-bs{target.batch_size}-p{target.pipeline_size}-m{n}-w{w}"
            task = BenchmarkTask(
                entry_id=entry_id, loader=target.loader, batch_size=target.batch_size,
                pipeline_size=target.pipeline_size, n_models=n, workers_per_model=w,
                settings=settings, device_type=device_type, device_backend=target.device_backend,
                inputs=target.example, env_setup_fn=env_setup_fn, setup_fn=setup_fn,
                preprocess_fn=preprocess_fn, postprocess_fn=postprocess_fn,
            )
            config = RowConfig(
                id=entry_id, batch_size=target.batch_size, n_models=n, workers_per_model=w,
                pipeline_size=target.pipeline_size, device_type=device_type,
                peak_window_s=settings.peak_window_s, model_name=target.model_name,
                input_shapes=tuple(s.shape for s in _specs_or_empty(target.example)),
            )
            jobs.append(Job(config=config, task=task, model_name=target.model_name, model_filename=target.filename,
                            preflight=target.preflight, cost_per_hour=cost_per_hour, instance_type=instance_type))
            columns_of_job.append(evaluated[i].columns(evaluation.metrics) if evaluated else {})
    sink = _LoggingSink()
    with get_executor("local") as executor:
        run_entries(jobs, executor, sink)
    if not return_timers:
        return [{**r.row, **columns_of_job[jobs.index(r.job)]} for r in sink.results]
    # A raw result keeps the raw samples of the (first) measurement, as NeuronPerf's timers did.
    return [
        raw_result(r.job.config, r.measurements[0] if r.measurements else Measurement(status="error", error=r.row.get("error")),
                   model_name=r.job.model_name, model_filename=r.job.model_filename,
                   instance_type=instance_type, cost_per_hour=cost_per_hour)
        for r in sink.results
    ]


class _LoggingSink(Sink):
    """Keeps the rows, and logs progress and failures as NeuronPerf did."""

    def started(self, job: Any, position: int, total: int) -> None:
        log.info("benchmarking %s for %.1f s", job.id, job.task.settings.duration if job.task else 0.0)

    def finished(self, result: Any) -> None:
        super().finished(result)
        if result.row.get("status") != "ok":
            log.error("%s: %s: %s", result.job.id, result.row.get("status"), result.row.get("error"))


def _specs_or_empty(example: Any) -> tuple[TensorSpec, ...]:
    try:
        return tensor_specs(example)
    except Exception:  # an exotic input (a dict, a string) still benchmarks; it just has no shape column
        return ()


def benchmark_artifacts(
    framework: str,
    model_filename_or_index: Union[str, os.PathLike[str]],
    inputs: Any,
    batch_sizes: Any = None,
    pipeline_sizes: Any = None,
    device_type: str = "neuron",
    model_name: Optional[str] = None,
    compiler: Optional[str] = None,
    **options: Any,
) -> list[dict]:
    """``neuronperf.torch.benchmark``: an index (``.json``) or one model file, run by a backend.

    With an index, ``batch_sizes``/``pipeline_sizes`` filter it, and each artifact gets the
    input at its config's ``input_idx``.
    """
    if not isinstance(model_filename_or_index, (str, os.PathLike)):
        raise UsageError(
            f"model_filename_or_index must be the path of a model file or a model index, got "
            f"{type(model_filename_or_index).__name__}"
        )
    options = _benchmark_options(options)
    examples = as_input_list(inputs)
    path = os.fspath(model_filename_or_index)
    pairs: list[tuple[dict, str, Any]] = []
    if path.endswith(".json"):
        index = model_index.load(path)
        criteria = {}
        if batch_sizes is not None:
            criteria["batch_size"] = as_int_list(batch_sizes, "batch_sizes")
        if pipeline_sizes is not None:
            criteria["pipeline_size"] = as_int_list(pipeline_sizes, "pipeline_sizes")
        configs = model_index.filter(path, **criteria)["model_configs"] if criteria else index["model_configs"]
        if not configs:
            raise UsageError(f"{path}: no model config matches {criteria}")
        for config in configs:
            idx = config.get("input_idx", 0)
            if isinstance(idx, bool) or not isinstance(idx, int) or idx < 0:
                raise UsageError(f"{path}: config {config['filename']} has input_idx {idx!r}, not an index into inputs")
            if idx >= len(examples):
                raise UsageError(
                    f"{path}: config {config['filename']} uses input_idx {idx}, but only "
                    f"{len(examples)} input(s) were given (pass the inputs in their compile-time "
                    "order, all of them, even when benchmarking a subset)"
                )
            pairs.append((config, model_index.artifact_path(path, config), examples[idx]))
    else:
        sizes = paired_batch_sizes(examples, batch_sizes)
        pipelines = as_int_list(pipeline_sizes if pipeline_sizes is not None else 1, "pipeline_sizes") or [1]
        if len(pipelines) != 1:
            raise UsageError("one model file has one pipeline size: pass a single pipeline_sizes value")
        pairs = [({"batch_size": b, "pipeline_size": pipelines[0], "input_idx": i}, os.path.abspath(path), x)
                 for i, (x, b) in enumerate(zip(examples, sizes))]

    from neuronperf.task import BackendLoader

    targets = []
    backends = {}
    for config, artifact, example in pairs:
        if not os.path.exists(artifact):
            raise UsageError(f"model file not found: {artifact}")
        chosen = config.get("compiler") or compiler or _compiler_for_file(framework, device_type, artifact)
        if config.get("device_type") not in (None, device_type):
            raise UsageError(
                f"{artifact} was compiled for device_type {config['device_type']!r}; benchmark it with "
                f"device_type={config['device_type']!r} (got {device_type!r})"
            )
        backend = choose_backend(framework, device_type, chosen)
        backends[backend.name] = backend
        chosen = chosen or backend.default_compiler(device_type)
        name = model_name or config.get("model_name") or os.path.splitext(os.path.basename(artifact))[0]
        entry = CompileEntry(
            model=ModelRef(name, artifact), params=(), inputs=_specs_or_empty(example),
            batch_size=int(config["batch_size"]), pipeline_size=int(config.get("pipeline_size", 1)),
            framework=framework, device_type=device_type, compiler=chosen,
        )
        loader = BackendLoader(backend=backend.name, entry=entry, artifact_path=artifact)
        targets.append(Target(loader, example, entry.batch_size, entry.pipeline_size, artifact, name,
                              backend.name, getattr(backend, "preflight", None)))
    first = next(iter(backends.values()))
    return benchmark_targets(targets, device_type=device_type, device_count=lambda: first.device_count(device_type),
                             **options)


def benchmark_loader(
    loader_kind: str,
    target: Any,
    filename: str,
    inputs: Any,
    batch_sizes: Any = None,
    device_type: str = "cpu",
    model_name: Optional[str] = None,
    pipeline_sizes: Any = None,
    **options: Any,
) -> list[dict]:
    """``neuronperf.cpu.benchmark`` (``loader_kind`` "class": ``target()`` in each worker) and
    ``neuronperf.benchmark`` ("load_fn": ``target(filename, device_id=i)`` in each worker)."""
    if not callable(target):
        what = "model class" if loader_kind == "class" else "load_fn"
        raise UsageError(f"{what} must be callable, got {type(target).__name__}")
    options = _benchmark_options(options)
    from neuronperf.task import LoadFnLoader, factory_loader

    loader = factory_loader(target) if loader_kind == "class" else LoadFnLoader(load_fn=target, filename=filename)
    examples = as_input_list(inputs)
    sizes = paired_batch_sizes(examples, batch_sizes)
    pipelines = as_int_list(pipeline_sizes, "pipeline_sizes") or [1]
    if len(pipelines) != 1:
        raise UsageError("one model has one pipeline size: pass a single pipeline_sizes value")
    preflight = _neuron_backend().preflight if device_type == "neuron" else None
    name = model_name or os.path.splitext(os.path.basename(filename))[0]
    device_backend = _user_model_backend(device_type)
    targets = [Target(loader, x, b, pipelines[0], filename, name, device_backend, preflight)
               for x, b in zip(examples, sizes)]
    return benchmark_targets(targets, device_type=device_type, device_count=lambda: _device_count(device_type),
                             **options)


def _user_model_backend(device_type: str) -> Optional[str]:
    """The backend whose device services a user's own model gets: on Neuron, a Neuron backend's
    core pinning (it needs only neuron-ls); elsewhere torch's (inference mode, CPU thread shares,
    CUDA pinning and per-thread streams) when torch is installed, since NeuronPerf's models are
    torch models; else none."""
    import importlib.util

    if device_type == "neuron":
        return "torch-neuronx"
    return "torch" if importlib.util.find_spec("torch") is not None else None


def _neuron_backend() -> Any:
    # Counting and checking NeuronCores needs only neuron-ls, not an SDK: any Neuron backend does.
    from neuronperf.backends import get_backend

    return get_backend("torch-neuronx")


def _device_count(device_type: str) -> int:
    """MAX copies for a user's own model: one per NeuronCore or GPU; on CPU one per core,
    since a user's model need not use more than one thread."""
    if device_type == "neuron":
        return int(_neuron_backend().device_count("neuron"))
    if device_type == "cuda":
        from neuronperf.backends import get_backend

        return int(get_backend("torch").device_count("cuda"))
    return os.cpu_count() or 1


#: Arguments of the original API that this implementation accepts but does not need.
_IGNORED = {
    "multiprocess": "copies always run in their own processes",
    "multiinterpreter": "copies always run in their own processes",
    "stats_interval": "statistics come from every raw sample",
}
#: Keyword arguments ``benchmark_targets`` takes from the caller.
_OPTIONS = (
    "duration", "n_models", "workers_per_model", "env_setup_fn", "setup_fn", "preprocess_fn",
    "postprocess_fn", "return_timers", "cost_per_hour", "instance_type", "max_infers",
    "min_calls", "warmup_calls", "warmup_s", "timeout", "peak_window_s", "repeat", "evaluation",
)


def _benchmark_options(options: dict) -> dict:
    options = dict(options)
    verbosity = options.pop("verbosity", None)
    if verbosity is not None:
        from neuronperf.timer import set_verbosity

        set_verbosity(int(verbosity))
    multiprocess = options.pop("multiprocess", True)
    multiinterpreter = options.pop("multiinterpreter", False)
    options.pop("stats_interval", None)
    if multiprocess is False or multiinterpreter:
        which = "multiprocess=False" if multiprocess is False else "multiinterpreter=True"
        warnings.warn(f"{which} is ignored: {_IGNORED['multiprocess']}", stacklevel=4)
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise UsageError(f"benchmark() got unexpected arguments: {', '.join(unknown)}")
    return options


def _compiler_for_file(framework: str, device_type: str, path: str) -> Optional[str]:
    """The compiler an artifact was made with, from its suffix when its index does not say."""
    if framework == "torch" and device_type in ("cpu", "cuda"):
        return {".pt2": "export"}.get(os.path.splitext(path)[1], "torchscript")
    return None


class FrameworkAPI:
    """NeuronPerf's ``compile``/``benchmark`` pair for one framework (``neuronperf.torch``,
    ``neuronperf.tensorflow``): the same signatures, bound to that framework's backends."""

    def __init__(self, framework: str):
        self.framework = framework

    def compile(
        self,
        model: Any,
        inputs: Any,
        batch_sizes: Any = None,
        pipeline_sizes: Any = None,
        models_dir: str = "models",
        model_name: Optional[str] = None,
        filename: Optional[str] = None,
        compiler_args: Any = None,
        verbosity: int = 1,
        device_type: str = "neuron",
        compiler: Optional[str] = None,
        **kwargs: Any,
    ) -> str:
        """Compile ``model`` for each (batch size x pipeline size); return the model index path.

        ``inputs[i]`` is the example input for ``batch_sizes[i]`` (recorded as ``input_idx``).
        """
        from neuronperf.timer import set_verbosity

        if kwargs:
            raise UsageError(f"compile() got unexpected arguments: {', '.join(sorted(kwargs))}")
        set_verbosity(verbosity)
        return compile_model(
            self.framework, model, inputs, batch_sizes=batch_sizes, pipeline_sizes=pipeline_sizes,
            models_dir=models_dir, model_name=model_name, filename=filename,
            compiler_args=compiler_args, device_type=device_type, compiler=compiler,
        )

    def benchmark(
        self,
        model_filename_or_index: Any,
        inputs: Any,
        batch_sizes: Any = None,
        duration: Optional[float] = None,
        n_models: Any = None,
        workers_per_model: Any = None,
        pipeline_sizes: Any = None,
        env_setup_fn: Optional[Callable[..., Any]] = None,
        setup_fn: Optional[Callable[..., Any]] = None,
        preprocess_fn: Optional[Callable[..., Any]] = None,
        postprocess_fn: Optional[Callable[..., Any]] = None,
        multiprocess: bool = True,
        multiinterpreter: bool = False,
        return_timers: bool = False,
        stats_interval: float = 0.5,
        device_type: str = "neuron",
        cost_per_hour: Optional[float] = None,
        model_name: Optional[str] = None,
        verbosity: int = 1,
        **kwargs: Any,
    ) -> list:
        """Benchmark a model file or every artifact of a model index; return one report per config.

        Extra keywords: ``compiler``, ``instance_type``, ``max_infers``, ``min_calls``, ``warmup_calls``,
        ``warmup_s``, ``timeout``, ``peak_window_s``, ``repeat``; ``eval_metrics`` (then
        ``inputs`` is a dataset of ``(*inputs, target)`` items, each report gains one column per
        metric, and ``duration=0`` means one untimed pass) and ``eval_target_col``.
        """
        eval_metrics = kwargs.pop("eval_metrics", None)
        eval_target_col = kwargs.pop("eval_target_col", -1)
        if eval_metrics is not None:
            from neuronperf.evaluate import EvalRequest

            kwargs["evaluation"] = EvalRequest.make(inputs, eval_metrics, eval_target_col)
            inputs = kwargs["evaluation"].example()
        return benchmark_artifacts(
            self.framework, model_filename_or_index, inputs, batch_sizes=batch_sizes,
            pipeline_sizes=pipeline_sizes, device_type=device_type, model_name=model_name,
            duration=duration, n_models=n_models, workers_per_model=workers_per_model,
            env_setup_fn=env_setup_fn, setup_fn=setup_fn, preprocess_fn=preprocess_fn,
            postprocess_fn=postprocess_fn, return_timers=return_timers, cost_per_hour=cost_per_hour,
            multiprocess=multiprocess, multiinterpreter=multiinterpreter,
            stats_interval=stats_interval, verbosity=verbosity, **kwargs,
        )

    def evaluate(
        self,
        model_index_or_path: Any,
        dataset: Any,
        metrics: Any = "accuracy",
        eval_target_col: int = -1,
        **kwargs: Any,
    ) -> list:
        """One untimed pass of each artifact over ``dataset`` (an iterable of ``(*inputs, target)``),
        in a worker process; return one report per artifact with a column per metric."""
        kwargs.setdefault("n_models", 1)
        kwargs.setdefault("workers_per_model", 1)
        return self.benchmark(model_index_or_path, dataset, duration=0, eval_metrics=metrics,
                              eval_target_col=eval_target_col, **kwargs)


__all__ = [
    "DEFAULT_DURATION", "DEFAULT_WORKERS_PER_MODEL", "FrameworkAPI", "NeuronPerfError",
    "benchmark_artifacts", "benchmark_loader", "choose_backend", "compile_model",
    "compile_with_function", "config_grid",
]
