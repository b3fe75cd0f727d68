"""The benchmark core: one entry loop that measures every entry, whoever asked for it.

``run_entries(jobs, executor, sink)`` is used by ``neuronperf run`` (the sink journals each row
and rewrites the results files) and by the NeuronPerf facades (``neuronperf.torch.benchmark``
and the others; the sink is a list), so both get the same rows, ids, failure handling,
pre-flight and repeats. For each job, in the planned or a shuffled order: an entry that cannot
run gets its error row; the backend's pre-flight runs (busy NeuronCores make that entry's row
an error, the rest go on); the entry is measured ``repeat`` times, each time in a fresh set of
worker processes by the executor; the row is computed from the repeats (``results.report_row``);
the sink receives it.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

from neuronperf.entries import Measurement
from neuronperf.errors import BackendUnavailable
from neuronperf.journal import repeat_dir, write_samples_header
from neuronperf.results import RowConfig, report_row, row_for_unrun
from neuronperf.task import BenchmarkTask, check_task

if TYPE_CHECKING:  # the facades import this module; executors load only when something runs
    from neuronperf.executors.base import Executor

ORDERS = ("planned", "shuffled")


@dataclass(frozen=True)
class Job:
    """One row to produce: a task to measure, or the reason the entry cannot be measured.

    ``ref`` is the caller's own handle on the entry (the driver's ``RunEntry``); the core only
    passes it back."""

    config: RowConfig
    task: Optional[BenchmarkTask] = None
    unrunnable: Optional[str] = None
    model_name: Optional[str] = None
    model_filename: Optional[str] = None
    #: ``preflight(device_type, devices_needed)`` raises ``BackendUnavailable`` when the device
    #: cannot host the entry right now (Neuron: cores held by another process).
    preflight: Optional[Callable[[str, int], None]] = None
    cost_per_hour: Optional[float] = None
    instance_type: Optional[str] = None
    ref: Any = None

    @property
    def id(self) -> str:
        return self.config.id


@dataclass(frozen=True)
class JobResult:
    """What one job produced: its row, and the measurements of its repeats (empty when it was
    not measured). ``samples_dir`` is the sink's folder of raw samples, when it gave one."""

    job: Job
    row: dict
    measurements: tuple[Measurement, ...]
    samples_dir: Optional[str]


class Sink:
    """Where rows go; the default keeps them in ``results`` and raw samples nowhere."""

    def __init__(self) -> None:
        self.results: list[JobResult] = []

    def samples_dir(self, job: Job) -> Optional[str]:
        """The folder to keep ``job``'s raw samples in; None: a temporary folder, removed once
        the row is computed."""
        return None

    def started(self, job: Job, position: int, total: int) -> None:
        """``job`` is about to be measured (``position`` counts from 1)."""

    def finished(self, result: JobResult) -> None:
        """``result`` is final; a sink that stores it durably does so here."""
        self.results.append(result)


def ordered(jobs: Sequence[Job], order: str = "planned", seed: int = 0) -> list[Job]:
    """The jobs in the order they are measured: as planned, or shuffled by ``seed`` (the same
    seed gives the same order, so a resumed sweep interleaves its remaining entries alike)."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    out = list(jobs)
    if order == "shuffled":
        random.Random(seed).shuffle(out)
    return out


def run_entries(jobs: Sequence[Job], executor: Executor, sink: Sink, *, order: str = "planned", seed: int = 0) -> None:
    """Measure every job (see the module docstring); each row reaches ``sink`` as soon as it
    exists. A bad task raises ``UsageError`` before anything is measured."""
    for job in jobs:
        if job.task is not None and job.unrunnable is None:
            check_task(job.task)
    todo = ordered(jobs, order, seed)
    for position, job in enumerate(todo, 1):
        sink.started(job, position, len(todo))
        sink.finished(_run_one(job, executor, sink))


def _run_one(job: Job, executor: Executor, sink: Sink) -> JobResult:
    def unmeasured(error: str) -> JobResult:
        row = row_for_unrun(job.config, status="error", error=error, model_name=job.model_name,
                            model_filename=job.model_filename, instance_type=job.instance_type)
        return JobResult(job, row, (), None)

    task = job.task
    if job.unrunnable is not None or task is None:
        return unmeasured(job.unrunnable or "nothing to measure")
    if job.preflight is not None:
        try:
            job.preflight(task.device_type, task.devices_needed)
        except BackendUnavailable as e:  # busy or too few cores: this entry's row says so
            return unmeasured(f"pre-flight: {e}")

    kept = sink.samples_dir(job)
    folder = kept if kept is not None else tempfile.mkdtemp(prefix="neuronperf-samples-")
    if kept is not None:
        shutil.rmtree(kept, ignore_errors=True)  # what an interrupted earlier attempt left
    try:
        measurements: list[Measurement] = []
        for r in range(task.settings.repeat):
            measurement = executor.measure(task, repeat_dir(folder, r))
            measurements.append(measurement)
            if measurement.status != "ok":
                break  # a failing entry fails again: its row says which repeat failed
        row = report_row(job.config, measurements, model_name=job.model_name, model_filename=job.model_filename,
                         instance_type=job.instance_type, cost_per_hour=job.cost_per_hour)
        if kept is not None:
            write_samples_header(kept, job.id, job.config.key or "", measurements)
        return JobResult(job, row, tuple(measurements), kept)
    finally:
        if kept is None:
            shutil.rmtree(folder, ignore_errors=True)


def infeasible(task: BenchmarkTask, device_count: Callable[[str], int]) -> Optional[str]:
    """Why this machine can never host ``task`` (more NeuronCores or GPUs than it has), or None.
    Checked before anything is compiled; CPU copies share the cores and always fit."""
    if task.device_type not in ("neuron", "cuda"):
        return None
    have = device_count(task.device_type)
    need = task.devices_needed
    if need <= have:
        return None
    unit = "NeuronCores" if task.device_type == "neuron" else "GPUs"
    return (f"infeasible: this entry needs {need} {unit} (n_models {task.n_models} x pipeline_size "
            f"{task.pipeline_size}); this machine has {have}")


__all__ = ["ORDERS", "Job", "JobResult", "Sink", "infeasible", "ordered", "run_entries"]
