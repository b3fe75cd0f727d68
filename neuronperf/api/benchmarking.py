"""``neuronperf.torch.benchmark``, ``neuronperf.cpu.benchmark`` and ``neuronperf.benchmark``: each
configuration becomes a job for the benchmark core (``measure.entryloop.run_entries``, with a
list as its sink), so the rows are exactly those of ``neuronperf run``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from neuronperf import model_index
from neuronperf.api.arguments import (
    as_input_list,
    as_int_list,
    benchmark_options,
    benchmark_settings,
    compiler_for_file,
    config_grid,
    paired_batch_sizes,
    positive_number,
    specs_or_empty,
)
from neuronperf.api.compiling import choose_backend
from neuronperf.entries import (
    CompileEntry,
    Measurement,
    ModelRef,
)
from neuronperf.errors import (
    UsageError,
)
from neuronperf.measure.entryloop import Sink

log = logging.getLogger("neuronperf")

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
    allow_oversubscription: bool = False,
) -> list[dict]:
    """Measure every target x n_models x workers_per_model; return report dicts (or raw results).

    Every configuration gets a report, failed ones too (``status`` and ``error`` say why).
    ``evaluation`` (an ``evaluate.EvalRequest``) evaluates each target once and joins its
    figures onto its reports; with ``duration=0`` nothing is timed. A configuration with more
    measuring threads than this machine's cores carry is a report that says why, unless
    ``allow_oversubscription``. The workers' output goes to a temporary log file per
    configuration, removed when it is ok and named by its report when it failed."""
    from neuronperf.api.reporting import raw_result
    from neuronperf.executors import get_executor
    from neuronperf.measure.contract import machine_cores, oversubscribed
    from neuronperf.measure.entryloop import Job, run_entries
    from neuronperf.measure.task import BenchmarkTask
    from neuronperf.results.rows import RowConfig

    settings = benchmark_settings(
        duration, max_infers=max_infers, min_calls=min_calls, warmup_calls=warmup_calls, warmup_s=warmup_s,
        timeout=timeout, peak_window_s=peak_window_s, repeat=repeat, evaluating=evaluation is not None,
        allow_oversubscription=allow_oversubscription,
    )
    if cost_per_hour is not None:
        cost_per_hour = positive_number(cost_per_hour, "cost_per_hour", allow_zero=True)
    # -- accuracy beside speed (issue 14): evaluate each target once, in a worker of its own --
    evaluated: list = []
    if evaluation is not None:
        from neuronperf.measure.evaluate import evaluate_targets, evaluation_row

        evaluated = evaluate_targets(targets, evaluation, device_type, preprocess_fn=preprocess_fn,
                                     postprocess_fn=postprocess_fn)
        if settings.duration == 0:
            return [evaluation_row(t, device_type, evaluation, r) for t, r in zip(targets, evaluated)]
    # Expand every configuration first: a bad n_models fails before anything is measured.
    jobs = []
    columns_of_job: list[dict] = []  # the evaluation columns of each job's target
    cores = machine_cores()
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
                input_shapes=tuple(s.shape for s in specs_or_empty(target.example)),
            )
            jobs.append(Job(config=config, task=task, model_name=target.model_name, model_filename=target.filename,
                            preflight=target.preflight, cost_per_hour=cost_per_hour, instance_type=instance_type,
                            unrunnable=oversubscribed(task, cores)))
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
    options = benchmark_options(options)
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

    from neuronperf.measure.task import BackendLoader

    targets = []
    backends = {}
    for config, artifact, example in pairs:
        if not os.path.exists(artifact):
            raise UsageError(f"model file not found: {artifact}")
        chosen = config.get("compiler") or compiler or compiler_for_file(framework, device_type, artifact)
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
            model=ModelRef(name, artifact), params=(), inputs=specs_or_empty(example),
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
    options = benchmark_options(options)
    from neuronperf.measure.task import LoadFnLoader, factory_loader

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
