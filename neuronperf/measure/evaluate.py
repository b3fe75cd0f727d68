"""Accuracy beside speed: one pass of a model over a dataset, in a worker process of its own.

``run_evaluation(task)`` starts one worker process (from the same forkserver or spawn context as
the measuring workers, so the parent imports neither the framework nor user code), which loads
the model as a measuring worker would, calls it on every dataset item ``(*inputs, target)``,
feeds each metric ``process_record(output, target)`` and sends back the metric instances; the
parent aggregates them (``BaseEvalMetric.aggregate``). Nothing here is timed: accuracy of an
artifact does not depend on how many copies run, so a sweep evaluates each compile entry once
and joins the figures onto every row of that artifact.

A failure (a dataset item that is not a tuple, a model that raises, a worker that dies or hangs)
is an ``EvaluationResult`` with an ``error``, never an exception. The worker's stdout and stderr
go to ``task.log_path`` (a sweep's ``logs/evaluate-<entry>.log``), or else to a temporary file
that is removed when the evaluation succeeds; a failure names the log once something is in it.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import tempfile
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from neuronperf import metrics as metric_registry
from neuronperf.measure.task import ModelLoader, call_args, load_backend

#: Seconds one evaluation may take before its worker is stopped (load included).
DEFAULT_EVAL_TIMEOUT = 1800.0
#: The column that says why an artifact's evaluation failed (its metric columns are then empty).
ERROR_COLUMN = "eval_error"


@dataclass(frozen=True)
class DatasetRef:
    """A dataset named in a spec, ``file.py:callable`` or ``package.module:callable`` (relative
    to ``base_dir``): the callable is imported and called only in the worker, and returns an
    iterable of ``(*inputs, target)`` tuples."""

    reference: str
    base_dir: str = "."


@dataclass(frozen=True)
class EvaluationTask:
    """One pass of one model over one dataset. ``metrics`` are (name, class, constructor
    arguments), resolved in the parent so that metrics registered there exist in the worker."""

    entry_id: str
    loader: ModelLoader
    dataset: Any  # a DatasetRef, or an iterable sent to the worker as it is
    metrics: tuple[tuple[str, type, Any], ...]
    eval_target_col: int = -1
    device_type: str = "cpu"
    device_backend: Optional[str] = None
    device_env: Any = field(default_factory=dict, compare=False)
    preprocess_fn: Optional[Callable[..., Any]] = field(default=None, compare=False)
    postprocess_fn: Optional[Callable[..., Any]] = field(default=None, compare=False)
    timeout: float = DEFAULT_EVAL_TIMEOUT
    #: The file the worker's stdout and stderr go to, and how an error names it (default: its
    #: path); None: a temporary file, kept only when the evaluation fails.
    log_path: Optional[str] = field(default=None, compare=False)
    log_name: Optional[str] = field(default=None, compare=False)


@dataclass(frozen=True)
class EvaluationResult:
    """The figures of one evaluation (metric name -> value, None where undefined), the number
    of dataset items it saw, or the error that stopped it."""

    figures: dict[str, Optional[float]]
    items: int = 0
    error: Optional[str] = None

    def columns(self, names: Any) -> dict[str, Any]:
        """The row columns: one per metric in ``names``, plus ``eval_error`` when it failed."""
        out: dict[str, Any] = {name: self.figures.get(name) for name in names}
        if self.error is not None:
            out[ERROR_COLUMN] = self.error
        return out


def evaluation_task(entry_id: str, loader: ModelLoader, dataset: Any, metric_names: Any, **options: Any) -> EvaluationTask:
    """An ``EvaluationTask`` whose metric names are checked and resolved against the registry
    (``UsageError`` lists the registered names for an unknown one)."""
    names = metric_registry.check_metrics(metric_names)
    resolved = tuple((n, *metric_registry._lookup(n)) for n in names)
    col = options.get("eval_target_col", -1)
    if isinstance(col, bool) or not isinstance(col, int):
        from neuronperf.errors import UsageError

        raise UsageError(f"eval_target_col must be an integer (the target's index in each dataset item), got {col!r}")
    return EvaluationTask(entry_id=entry_id, loader=loader, dataset=dataset, metrics=resolved, **options)


def run_evaluation(task: EvaluationTask, start_method: Optional[str] = None) -> EvaluationResult:
    """Evaluate ``task`` in a fresh worker process; see the module docstring."""
    from neuronperf.measure.supervisor import worker_context
    from neuronperf.util.processes import kill_tree

    try:
        payload = pickle.dumps(task)
    except Exception as e:  # pickling raises several types (PicklingError, TypeError, AttributeError)
        return EvaluationResult({}, error=f"the dataset or a callback cannot be sent to a worker process: {e}")
    log_path, log_name = task.log_path, task.log_name or task.log_path
    if log_path is None:
        from neuronperf.util.paths import safe_name

        # A folder of this user's own: a worker opens its log only in one (``util.nofollow``).
        fd, log_path = tempfile.mkstemp(dir=tempfile.mkdtemp(prefix="neuronperf-logs-"),
                                        prefix=f"evaluate-{safe_name(task.entry_id)}-", suffix=".log")
        os.close(fd)
        log_name = log_path
    ctx = worker_context(start_method)
    parent, child = ctx.Pipe(duplex=False)
    # The driver's environment as it is now (a forkserver's children inherit the one it started with).
    process = ctx.Process(target=_worker_main, args=(child, payload, log_path, dict(os.environ)),
                          name=f"neuronperf-eval-{task.entry_id}")
    process.start()
    child.close()
    error: Optional[str] = None
    message: dict[str, Any] = {}
    try:
        if not parent.poll(task.timeout):
            error = f"evaluation timed out after {task.timeout:g} s"
        else:
            try:
                message = pickle.loads(parent.recv_bytes())
            except (EOFError, OSError):
                process.join(5)
                error = f"the evaluation worker died (exit code {process.exitcode})"
    finally:
        parent.close()
        process.join(5)
        if process.is_alive():
            kill_tree(process.pid)
            process.join(5)
    if error is None and "error" in message:
        error = message["error"]
    if error is not None:
        with contextlib.suppress(OSError):
            if os.path.getsize(log_path) > 0:
                error = f"{error} (log: {log_name})"
        return EvaluationResult({}, items=message.get("items", 0), error=error)
    if task.log_path is None:
        with contextlib.suppress(OSError):
            os.unlink(log_path)
            os.rmdir(os.path.dirname(log_path))
    instances: dict[str, Any] = message["instances"]
    figures = {name: cls.aggregate([instances[name]]) for name, cls, _ in task.metrics}  # type: ignore[attr-defined]
    return EvaluationResult(figures, items=message["items"])


@dataclass(frozen=True)
class EvalRequest:
    """What the Python API's ``eval_metrics=`` asks for: the dataset (materialised once, so an
    iterator is not used up), the metric names and the target's column."""

    dataset: tuple[Any, ...]
    metrics: tuple[str, ...]
    eval_target_col: int = -1

    @classmethod
    def make(cls, dataset: Any, metrics: Any, eval_target_col: Any = -1) -> EvalRequest:
        """Check the metric names, the target column and every dataset item (``UsageError``)."""
        from neuronperf.errors import UsageError

        names = tuple(metric_registry.check_metrics(metrics))
        if isinstance(eval_target_col, bool) or not isinstance(eval_target_col, int):
            raise UsageError(f"eval_target_col must be an integer, got {eval_target_col!r}")
        try:
            items = tuple(dataset)
        except TypeError:
            raise UsageError(f"the dataset is a {type(dataset).__name__}, not an iterable of (*inputs, target) tuples") from None
        if not items:
            raise UsageError("the dataset is empty")
        for i, item in enumerate(items):
            try:
                split_item(item, eval_target_col, i)
            except (TypeError, IndexError) as e:
                raise UsageError(str(e)) from None
        return cls(items, names, eval_target_col)

    def example(self) -> Any:
        """The first item's inputs as the benchmark's example input (a tuple when several)."""
        inputs, _ = split_item(self.dataset[0], self.eval_target_col, 0)
        return inputs[0] if len(inputs) == 1 else inputs

    def task(self, entry_id: str, loader: ModelLoader, **options: Any) -> EvaluationTask:
        """The evaluation of one model on this request's dataset."""
        return evaluation_task(entry_id, loader, self.dataset, self.metrics, eval_target_col=self.eval_target_col, **options)


def devices_env(device_backend: Optional[str], device_type: str, pipeline_size: int, entry: Any = None) -> dict[str, str]:
    """The environment that pins the evaluating worker to the devices of copy 0 (of ``entry``,
    a compile entry of that backend, when given)."""
    if device_backend is None:
        return {}
    if entry is not None:
        return dict(load_backend(device_backend).copy_env(entry, 0))
    return dict(load_backend(device_backend).visible_devices_env(device_type, 0, pipeline_size))


def evaluate_targets(targets: Any, request: EvalRequest, device_type: str, **options: Any) -> list[EvaluationResult]:
    """Evaluate each API target (``api.Target``) on ``request``'s dataset, one worker each."""
    out = []
    for target in targets:
        entry_id = f"{target.model_name}-bs{target.batch_size}-p{target.pipeline_size}"
        task = request.task(entry_id, target.loader, device_type=device_type, device_backend=target.device_backend,
                            device_env=devices_env(target.device_backend, device_type, target.pipeline_size), **options)
        out.append(run_evaluation(task))
    return out


def evaluation_row(target: Any, device_type: str, request: EvalRequest, result: EvaluationResult) -> dict[str, Any]:
    """The report of an untimed evaluation (``duration=0``): the artifact, its status and figures."""
    return {
        "model_name": target.model_name, "model_filename": target.filename, "batch_size": target.batch_size,
        "pipeline_size": target.pipeline_size, "device_type": device_type,
        "status": "ok" if result.error is None else "error", "error": result.error,
        "eval_items": result.items, **{name: result.figures.get(name) for name in request.metrics},
    }


def _worker_main(conn: Any, payload: bytes, log_path: str, parent_env: dict[str, str]) -> None:
    from neuronperf.measure.worker import redirect_output
    from neuronperf.util.processes import adopt_environment

    items = 0
    try:
        redirect_output(log_path)  # never the parent's output: a printing model cannot block it
        # The driver's environment now, not the forkserver's, before unpickling imports the
        # user's modules (one may read a variable as it is imported); then the task's devices.
        adopt_environment(parent_env)
        task: EvaluationTask = pickle.loads(payload)
        os.environ.update(dict(task.device_env))
        instances = {name: cls(**dict(kwargs)) for name, cls, kwargs in task.metrics}
        model = task.loader.load(0)
        backend = load_backend(task.device_backend) if task.device_backend else None
        device = backend.measuring_threads(task.device_type, model)() if backend is not None else None
        context = device.context() if device is not None else contextlib.nullcontext()
        with context:
            for item in _dataset_items(task.dataset):
                inputs, target = split_item(item, task.eval_target_col, items)
                if task.preprocess_fn is not None:
                    inputs = call_args(task.preprocess_fn(*inputs))
                output = model(*inputs)
                if task.postprocess_fn is not None:
                    output = task.postprocess_fn(output)
                for metric in instances.values():
                    metric.process_record(output, target)
                items += 1
        if items == 0:
            raise ValueError("the dataset is empty")
        conn.send_bytes(pickle.dumps({"instances": instances, "items": items}))
    except BaseException as e:  # anything the user's code raises becomes the row's reason
        traceback.print_exc()
        sys.stderr.flush()
        where = f" (dataset item {items})" if items else ""
        conn.send_bytes(pickle.dumps({"error": f"{type(e).__name__}: {_one_line(e)}{where}", "items": items}))
    finally:
        conn.close()


def split_item(item: Any, target_col: int, index: int) -> tuple[tuple[Any, ...], Any]:
    """``(inputs, target)`` of one dataset item ``(*inputs, target)``, the target at ``target_col``."""
    if not isinstance(item, tuple):
        raise TypeError(f"dataset item {index} is a {type(item).__name__}, not a tuple (*inputs, target)")
    if len(item) < 2:
        raise TypeError(f"dataset item {index} has {len(item)} element(s); it must be (*inputs, target)")
    if not -len(item) <= target_col < len(item):
        raise IndexError(f"eval_target_col {target_col} is outside dataset item {index} of {len(item)} elements")
    col = target_col % len(item)
    return item[:col] + item[col + 1:], item[col]


def _dataset_items(dataset: Any) -> Any:
    if isinstance(dataset, DatasetRef):
        from neuronperf.entries import ModelRef
        from neuronperf.sources.factory import resolve_factory

        fn = resolve_factory(ModelRef("dataset", dataset.reference, base_dir=dataset.base_dir))
        dataset = fn()
    try:
        return iter(dataset)
    except TypeError:
        raise TypeError(f"the dataset is a {type(dataset).__name__}, not an iterable of (*inputs, target) tuples") from None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


__all__ = ["DEFAULT_EVAL_TIMEOUT", "ERROR_COLUMN", "DatasetRef", "EvalRequest", "evaluate_targets", "evaluation_row", "EvaluationResult", "EvaluationTask",
           "evaluation_task", "run_evaluation", "split_item"]
