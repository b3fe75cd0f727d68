"""The NeuronPerf-compatible Python API, as thin layers over the compile and benchmark stages.

``neuronperf.torch``, ``neuronperf.tensorflow`` and ``neuronperf.cpu`` call into here with their
framework; the top-level ``neuronperf.compile`` / ``neuronperf.benchmark`` take user functions.
The same stages as a sweep do the work (``compile.compile_one``, ``benchmark.measure``,
``results.report_row``): there is no second implementation.
"""

from __future__ import annotations

import logging
import os
import secrets
import string
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from neuronperf import model_index
from neuronperf.entries import (
    BenchmarkSettings,
    CompileEntry,
    Measurement,
    ModelRef,
    TensorSpec,
    freeze,
)
from neuronperf.errors import CompileFailed, UsageError

log = logging.getLogger("neuronperf")

#: Seconds each configuration is measured when the caller does not say.
DEFAULT_DURATION = 60.0
_DEFAULT_WORKERS = (1, 2)


# ---- argument normalisation ---------------------------------------------------------------


def as_input_list(inputs: Any) -> list:
    """``inputs`` is one example input or a list of them (one per batch size). A tuple is ONE
    input holding several tensors (the model is called as ``model(*inputs)``)."""
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
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise UsageError(f"{name}: {v!r} is not a positive integer")
    if not values:
        raise UsageError(f"{name} is empty")
    return values


def batch_dim(example: Any) -> int:
    """The batch size of an example input: the first dimension of its first tensor."""
    first = example[0] if isinstance(example, (tuple, list)) and example else example
    if isinstance(first, dict):
        first = next(iter(first.values()))
    shape = getattr(first, "shape", None)
    if not shape:
        raise UsageError("cannot infer the batch size from an input without a shape; pass batch_sizes")
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
        array = t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)
        dtype = str(getattr(t, "dtype", array.dtype)).replace("torch.", "")
        low = high = None
        if array.dtype.kind in "iub" and array.size:
            # Integer inputs (token ids) must stay in range: keep the example's range.
            low, high = float(array.min()), float(array.max()) + 1
        specs.append(TensorSpec(tuple(int(d) for d in array.shape[1:]), dtype, low, high))
    return tuple(specs)


# ---- compile ------------------------------------------------------------------------------


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
    """Compile ``model`` once per (batch size x pipeline size); write a model index; return its path.

    A configuration that fails to compile is logged and left out of the index, and the others
    go on; if every one fails, ``CompileFailed`` says why.
    """
    from neuronperf.backends import find_backend
    from neuronperf.compile_stage import compile_one
    from neuronperf.factory import register_in_memory

    examples = as_input_list(inputs)
    sizes = paired_batch_sizes(examples, batch_sizes)
    pipelines = as_int_list(pipeline_sizes if pipeline_sizes is not None else 1, "pipeline_sizes") or [1]
    backend = find_backend(framework, device_type, compiler)
    compiler = compiler or backend.default_compiler(device_type)
    backend.check_available(device_type)
    if max(pipelines) > 1 and not backend.supports_pipeline:
        raise UsageError(f"pipeline_sizes > 1 need a pipelining compiler; {backend.name}/{compiler} has none")
    suffix = backend.artifact_suffix(compiler)
    if suffix is None:
        raise UsageError(
            f"compiler {compiler!r} builds no artifact to index; benchmark the model directly "
            "(neuronperf.cpu.benchmark) or choose a compiler that saves one"
        )
    name = model_name or type(model).__name__.lower()
    ref = register_in_memory(model, name)
    args = freeze(compiler_args if isinstance(compiler_args, dict) else {"args": compiler_args} if compiler_args else {})
    os.makedirs(models_dir, exist_ok=True)
    version = backend.compiler_version(compiler)

    configs, failures = [], []
    for input_idx, (example, batch_size) in enumerate(zip(examples, sizes)):
        for pipeline_size in pipelines:
            entry = CompileEntry(
                model=ref, params=(), inputs=tensor_specs(example), batch_size=batch_size,
                pipeline_size=pipeline_size, framework=framework, device_type=device_type,
                compiler=compiler, compiler_args=args, input_idx=input_idx,
            )
            path = os.path.abspath(os.path.join(models_dir, f"{name}_b{batch_size}_p{pipeline_size}_{_token()}{suffix}"))
            log.info("compiling %s batch_size=%d pipeline_size=%d", name, batch_size, pipeline_size)
            try:
                compile_s = compile_one(backend, entry, path)
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
    if not configs:
        raise CompileFailed(name, "every configuration failed to compile: " + "; ".join(failures))
    index = configs[0]
    for extra in configs[1:]:
        index["model_configs"] += extra["model_configs"]
    return model_index.save(index, filename)


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
    examples = as_input_list(inputs)
    sizes = paired_batch_sizes(examples, batch_sizes)
    pipelines = as_int_list(pipeline_sizes if pipeline_sizes is not None else 1, "pipeline_sizes") or [1]
    name = model_name or type(model).__name__.lower()
    os.makedirs(models_dir, exist_ok=True)
    configs, failures = [], []
    for input_idx, (example, batch_size) in enumerate(zip(examples, sizes)):
        for pipeline_size in pipelines:
            path = os.path.abspath(os.path.join(models_dir, f"{name}_b{batch_size}_p{pipeline_size}_{_token()}{suffix}"))
            started = time.perf_counter()
            try:
                compile_fn(model, example, path, batch_size=batch_size, pipeline_size=pipeline_size,
                           compiler_args=compiler_args)
            except Exception as e:  # one configuration's failure must not lose the others
                log.error("compile_fn failed for batch_size=%d pipeline_size=%d: %s", batch_size, pipeline_size, e)
                failures.append(f"bs{batch_size}-p{pipeline_size}: {type(e).__name__}: {e}")
                continue
            if not os.path.exists(path):
                failures.append(f"bs{batch_size}-p{pipeline_size}: compile_fn wrote no file at {path}")
                continue
            configs.append(model_index.create(
                path, input_idx=input_idx, batch_size=batch_size, pipeline_size=pipeline_size,
                compile_s=round(time.perf_counter() - started, 3), model_name=name,
            ))
    if not configs:
        raise CompileFailed(name, "every configuration failed to compile: " + "; ".join(failures))
    index = configs[0]
    for extra in configs[1:]:
        index["model_configs"] += extra["model_configs"]
    return model_index.save(index, filename)


def _token() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


# ---- benchmark ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    """One model artifact (or loader) to benchmark, with its example input."""

    loader: Any  # benchmark.ModelLoader
    example: Any
    batch_size: int
    pipeline_size: int
    filename: str


def benchmark_targets(
    targets: Sequence[_Target],
    *,
    device_type: str,
    device_count: int,
    model_name: str,
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
    warmup_calls: int = 10,
    warmup_s: float = 0.0,
    timeout: Optional[float] = None,
    peak_window_s: float = 1.0,
) -> list[dict]:
    """Measure every target x n_models x workers_per_model; return report dicts (or raw results)."""
    from neuronperf.benchmark import BenchmarkTask
    from neuronperf.executors import get_executor
    from neuronperf.reporting import raw_result
    from neuronperf.results import RowConfig, report_row

    duration = DEFAULT_DURATION if duration is None else float(duration)
    if duration <= 0:
        raise UsageError(f"duration must be positive, got {duration}")
    workers = as_int_list(workers_per_model, "workers_per_model") or list(_DEFAULT_WORKERS)
    settings = BenchmarkSettings(
        duration=duration, max_infers=max_infers, warmup_calls=warmup_calls, warmup_s=warmup_s,
        timeout=timeout if timeout is not None else max(300.0, 2 * duration + 120.0),
        peak_window_s=peak_window_s,
    )
    reports = []
    with get_executor("local") as executor:
        for target in targets:
            most = max(1, device_count // target.pipeline_size)
            copies = as_int_list(n_models, "n_models") or sorted({1, most})
            for n in copies:
                for w in workers:
                    entry_id = f"{model_name}-bs{target.batch_size}-p{target.pipeline_size}-m{n}-w{w}"
                    task = BenchmarkTask(
                        entry_id=entry_id, loader=target.loader, batch_size=target.batch_size,
                        pipeline_size=target.pipeline_size, n_models=n, workers_per_model=w,
                        settings=settings, device_type=device_type, inputs=target.example,
                        env_setup_fn=env_setup_fn, setup_fn=setup_fn,
                        preprocess_fn=preprocess_fn, postprocess_fn=postprocess_fn,
                    )
                    log.info("benchmarking %s for %.1f s", entry_id, duration)
                    measurement: Measurement = executor.measure(task)
                    config = RowConfig(
                        id=entry_id, batch_size=target.batch_size, n_models=n, workers_per_model=w,
                        pipeline_size=target.pipeline_size, device_type=device_type,
                        peak_window_s=peak_window_s, model_name=model_name,
                        input_shapes=tuple(s.shape for s in _specs_or_empty(target.example)),
                    )
                    if return_timers:
                        reports.append(raw_result(
                            config, measurement, model_name=model_name, model_filename=target.filename,
                            instance_type=instance_type, cost_per_hour=cost_per_hour,
                        ))
                    else:
                        reports.append(report_row(
                            config, measurement, model_name=model_name, model_filename=target.filename,
                            instance_type=instance_type, cost_per_hour=cost_per_hour,
                        ))
                    if measurement.status != "ok":
                        log.error("%s: %s: %s", entry_id, measurement.status, measurement.error)
    return reports


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
    from neuronperf.backends import find_backend
    from neuronperf.benchmark import BackendLoader

    examples = as_input_list(inputs)
    path = os.fspath(model_filename_or_index)
    if path.endswith(".json"):
        index = model_index.load(path)
        criteria = {}
        if batch_sizes is not None:
            criteria["batch_size"] = as_int_list(batch_sizes, "batch_sizes")
        if pipeline_sizes is not None:
            criteria["pipeline_size"] = as_int_list(pipeline_sizes, "pipeline_sizes")
        configs = model_index.filter(index, **criteria)["model_configs"] if criteria else index["model_configs"]
        if not configs:
            raise UsageError(f"{path}: no model config matches {criteria}")
        pairs = []
        for config in configs:
            idx = int(config.get("input_idx", 0))
            if idx >= len(examples):
                raise UsageError(
                    f"{path}: config {config['filename']} uses input_idx {idx}, but only "
                    f"{len(examples)} inputs were given (pass the inputs in their compile-time order)"
                )
            pairs.append((config, model_index.artifact_path(path, config), examples[idx]))
    else:
        sizes = paired_batch_sizes(examples, batch_sizes)
        pipelines = as_int_list(pipeline_sizes if pipeline_sizes is not None else 1, "pipeline_sizes") or [1]
        if len(pipelines) != 1:
            raise UsageError("one model file has one pipeline size: pass a single pipeline_sizes value")
        pairs = [({"batch_size": b, "pipeline_size": pipelines[0], "input_idx": i}, os.path.abspath(path), x)
                 for i, (x, b) in enumerate(zip(examples, sizes))]

    targets = []
    backend = None
    for config, artifact, example in pairs:
        if not os.path.exists(artifact):
            raise UsageError(f"model file not found: {artifact}")
        backend = find_backend(framework, device_type,
                               config.get("compiler") or compiler or _compiler_for_file(framework, device_type, artifact))
        chosen = config.get("compiler") or compiler or backend.default_compiler(device_type)
        name = model_name or config.get("model_name") or os.path.splitext(os.path.basename(artifact))[0]
        entry = CompileEntry(
            model=ModelRef(name, artifact), params=(), inputs=_specs_or_empty(example),
            batch_size=int(config["batch_size"]), pipeline_size=int(config.get("pipeline_size", 1)),
            framework=framework, device_type=device_type, compiler=chosen,
        )
        loader = BackendLoader(backend=backend.name, entry=entry, artifact_path=artifact)
        targets.append(_Target(loader, example, entry.batch_size, entry.pipeline_size, artifact))
    assert backend is not None
    backend.check_available(device_type)
    name = model_name or (targets[0].loader.entry.model.name if len(targets) == 1 else _index_name(path))
    return benchmark_targets(
        targets, device_type=device_type, device_count=backend.device_count(device_type),
        model_name=name, **_benchmark_options(options),
    )


def benchmark_loader(
    loader: Any,
    filename: str,
    inputs: Any,
    batch_sizes: Any = None,
    device_type: str = "cpu",
    model_name: Optional[str] = None,
    **options: Any,
) -> list[dict]:
    """``neuronperf.cpu.benchmark`` and ``neuronperf.benchmark``: a user class or load function."""
    examples = as_input_list(inputs)
    sizes = paired_batch_sizes(examples, batch_sizes)
    pipeline = (as_int_list(options.pop("pipeline_sizes", None), "pipeline_sizes") or [1])[0]
    targets = [_Target(loader, x, b, pipeline, filename) for x, b in zip(examples, sizes)]
    count = os.cpu_count() or 1 if device_type == "cpu" else 1
    return benchmark_targets(
        targets, device_type=device_type, device_count=count,
        model_name=model_name or os.path.splitext(os.path.basename(filename))[0],
        **_benchmark_options(options),
    )


#: Arguments of the original API that this implementation accepts but does not need.
_IGNORED = {
    "multiprocess": "copies always run in their own processes",
    "multiinterpreter": "copies always run in their own processes",
    "stats_interval": "statistics come from every raw sample",
}


def _benchmark_options(options: dict) -> dict:
    verbosity = options.pop("verbosity", None)
    if verbosity is not None:
        from neuronperf.timer import set_verbosity

        set_verbosity(int(verbosity))
    for name, why in _IGNORED.items():
        value = options.pop(name, None)
        if name in ("multiprocess",) and value is False or name == "multiinterpreter" and value:
            warnings.warn(f"{name}={value!r} is ignored: {why}", stacklevel=3)
    return options


def _compiler_for_file(framework: str, device_type: str, path: str) -> Optional[str]:
    """The compiler an artifact was made with, from its suffix when its index does not say."""
    if framework == "torch" and device_type in ("cpu", "cuda"):
        return {".pt2": "export"}.get(os.path.splitext(path)[1], "torchscript")
    return None


def _index_name(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


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

        set_verbosity(verbosity)
        self._reject_unknown(kwargs)
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

        Extra keywords: ``compiler``, ``instance_type``, ``max_infers``, ``warmup_calls``,
        ``warmup_s``, ``timeout``, ``peak_window_s``.
        """
        return benchmark_artifacts(
            self.framework, model_filename_or_index, inputs, batch_sizes=batch_sizes,
            pipeline_sizes=pipeline_sizes, device_type=device_type, model_name=model_name,
            duration=duration, n_models=n_models, workers_per_model=workers_per_model,
            env_setup_fn=env_setup_fn, setup_fn=setup_fn, preprocess_fn=preprocess_fn,
            postprocess_fn=postprocess_fn, return_timers=return_timers, cost_per_hour=cost_per_hour,
            multiprocess=multiprocess, multiinterpreter=multiinterpreter,
            stats_interval=stats_interval, verbosity=verbosity, **kwargs,
        )


    @staticmethod
    def _reject_unknown(kwargs: dict) -> None:
        if kwargs:
            from neuronperf.errors import UsageError

            raise UsageError(f"compile() got unexpected arguments: {', '.join(sorted(kwargs))}")
