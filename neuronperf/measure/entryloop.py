"""The benchmark core: one entry loop that measures every entry, whoever asked for it.

``run_entries(jobs, executor, sink)`` is used by ``neuronperf run`` (the sink journals each row
and rewrites the results files) and by the NeuronPerf facades (``neuronperf.torch.benchmark``
and the others; the sink is a list), so both get the same rows, ids, failure handling,
pre-flight and repeats. For each job, in the planned or a shuffled order: an entry that cannot
run gets its error row; the backend's pre-flight runs (busy NeuronCores make that entry's row
an error, the rest go on); the entry is measured ``repeat`` times, each time in a fresh set of
worker processes by the executor; the row is computed from the repeats (``results.report_row``);
the sink receives it. The executor decides where and how many entries run at once
(``Executor.measure_entries``): the local executor measures one at a time on this machine, the
Ray executor several at once, each on one node of a cluster. Every row names the node that
measured it (``node``).
"""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

from neuronperf.entries import Measurement
from neuronperf.measure.contract import EntryOutcome, EntryWork
from neuronperf.measure.task import BenchmarkTask, check_task
from neuronperf.results.rows import RowConfig, report_row, row_for_unrun
from neuronperf.results.samples import write_samples_header

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
    #: The node that measured it (a host name; on Ray, host and node id), None if none did.
    node: Optional[str] = None


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
    exists. A bad task raises ``UsageError`` before anything is measured.

    The executor pulls the entries to measure from this loop and hands back each one's outcome
    as it finishes: the local executor one at a time, in order; a cluster executor several at
    once (their rows then arrive in the order they finish). An entry that cannot run is
    answered here, as the executor reaches it."""
    for job in jobs:
        if job.task is not None and job.unrunnable is None:
            check_task(job.task)
    todo = ordered(jobs, order, seed)
    position = 0
    folders: dict[int, tuple[str, bool]] = {}  # id(job) -> (its samples folder, kept by the sink)

    def started(work: EntryWork) -> None:
        nonlocal position
        position += 1
        sink.started(work.ref, position, len(todo))

    def works() -> Iterator[EntryWork]:
        nonlocal position
        for job in todo:
            task = job.task
            if job.unrunnable is not None or task is None:
                position += 1
                sink.started(job, position, len(todo))
                sink.finished(_unmeasured(job, job.unrunnable or "nothing to measure"))
                continue
            kept = sink.samples_dir(job)
            if kept is not None and task.serving is not None and task.serving.search:
                # A peak search resumes from the probes an interrupted attempt recorded.
                from neuronperf.measure.peak import keep_recorded

                keep_recorded(kept)
            elif kept is not None:
                shutil.rmtree(kept, ignore_errors=True)  # what an interrupted earlier attempt left
            folder = kept if kept is not None else tempfile.mkdtemp(prefix="neuronperf-samples-")
            folders[id(job)] = (folder, kept is not None)
            yield EntryWork(ref=job, task=task, samples_dir=folder, preflight=job.preflight)

    try:
        for outcome in executor.measure_entries(works(), started):
            job = outcome.ref
            folder, kept = folders.pop(id(job))
            try:
                sink.finished(_result(job, outcome, folder if kept else None))
            finally:
                if not kept:
                    shutil.rmtree(folder, ignore_errors=True)
    finally:
        for folder, kept in folders.values():  # entries interrupted in flight
            if not kept:
                shutil.rmtree(folder, ignore_errors=True)


def _unmeasured(job: Job, error: str, status: str = "error", node: Optional[str] = None) -> JobResult:
    row = row_for_unrun(job.config, status=status, error=error, model_name=job.model_name,
                        model_filename=job.model_filename, instance_type=job.instance_type,
                        extra={"node": node} if node is not None else None)
    return JobResult(job, row, (), None, node)


def _result(job: Job, outcome: EntryOutcome, kept: Optional[str]) -> JobResult:
    if outcome.error is not None or not outcome.measurements:
        return _unmeasured(job, outcome.error or "nothing was measured", outcome.status, outcome.node)
    measurements = list(outcome.measurements)
    extra: dict[str, Any] = {"node": outcome.node} if outcome.node is not None else {}
    if outcome.probes and all(m.status == "ok" for m in measurements):
        from neuronperf.measure.peak import probes_extra, record_probes

        extra.update(probes_extra(outcome.probes))
        if kept is not None:
            record_probes(kept, outcome.probes)  # measured elsewhere (a Ray node): keep them here too
    row = report_row(job.config, measurements, model_name=job.model_name, model_filename=job.model_filename,
                     instance_type=job.instance_type, cost_per_hour=job.cost_per_hour, extra=extra or None)
    if kept is not None:
        write_samples_header(kept, job.id, job.config.key or "", measurements)
    return JobResult(job, row, tuple(measurements), kept, outcome.node)
