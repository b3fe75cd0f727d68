"""The measure step of a sweep: each run entry becomes a job for the benchmark core; each row is
journaled (durably) and published in the results files as soon as it exists. An entry's raw
samples go to ``samples/<entry>/`` and its workers' output to ``logs/run-<entry>.log``, both
made afresh for each attempt without following links.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Sequence
from typing import Any, Optional

from neuronperf import results
from neuronperf.backends.base import Backend
from neuronperf.compilation.jobs import LOGS_DIR
from neuronperf.entries import CompileEntry, RunEntry
from neuronperf.errors import OutputWriteFailed
from neuronperf.measure.entryloop import Job, JobResult, Sink, WorkerLog, run_entries
from neuronperf.measure.peak import keep_recorded
from neuronperf.results.samples import samples_relpath
from neuronperf.sweep.outcome import Observer, SweepSummary
from neuronperf.sweep.state import SweepState
from neuronperf.util import nofollow
from neuronperf.util.paths import safe_file_stem


def cannot_host(executor: Any, backend: Backend, to_run: Sequence[RunEntry]) -> dict[RunEntry, str]:
    """The entries that no node of the executor's cluster can ever hold, with why."""
    from neuronperf.measure.task import task_for_entry

    found = {}
    for entry in to_run:
        why = executor.cannot_host(task_for_entry(entry, backend.name, None))
        if why is not None:
            found[entry] = why
    return found


def evaluate_all(spec: Any, pending: set, compiled: dict, state: SweepState) -> dict[CompileEntry, dict]:
    """Evaluate each compiled artifact whose model has ``evaluate``, once, in a worker process
    (accuracy does not depend on the copies or threads); return its row columns."""
    from neuronperf.measure.evaluate import DatasetRef, devices_env, evaluation_task, run_evaluation
    from neuronperf.measure.task import BackendLoader

    models = {m.name: m for m in spec.models}
    out: dict[CompileEntry, dict] = {}
    for entry in state.plan.compile_entries:
        model = models.get(entry.model.name)
        result = compiled.get(entry)
        if entry not in pending or model is None or model.evaluate is None or result is None or not result.ok:
            continue
        ev = model.evaluate
        artifact = str(state.output_dir / result.artifact) if result.artifact else None
        log = _empty_log(state, f"{LOGS_DIR}/evaluate-{safe_file_stem(entry.id, state.compile_keys[entry])}.log")
        task = evaluation_task(
            entry.id, BackendLoader(backend=state.backend.name, entry=entry, artifact_path=artifact),
            DatasetRef(ev.dataset, model.base_dir), ev.metrics, eval_target_col=ev.target_col,
            device_type=entry.device_type, device_backend=state.backend.name,
            device_env=devices_env(state.backend.name, entry.device_type, entry.pipeline_size, entry),
            log_path=log.path, log_name=log.name,
        )
        out[entry] = run_evaluation(task).columns(ev.metrics)
    return out


def measure_all(
    to_run: Sequence[RunEntry], infeasible: dict[RunEntry, str], compiled: dict, state: SweepState,
    observer: Observer, summary: SweepSummary, rows: dict, publish: Any, executor: Any = None,
    node_measured: Any = None,
) -> None:
    """Benchmark each entry through the benchmark core; journal and publish each result as soon
    as it exists."""
    from neuronperf.measure.task import task_for_entry

    output_dir = state.output_dir
    preflight = getattr(state.backend, "preflight", None)
    jobs = []
    for entry in to_run:
        config = dataclasses.replace(results.RowConfig.from_run_entry(entry), key=state.identities[entry])
        job = Job(config=config, model_name=entry.compile.model.name, model_filename=entry.compile.model.factory,
                  ref=entry)
        result = compiled.get(entry.compile)
        if entry in infeasible:
            job = dataclasses.replace(job, unrunnable=infeasible[entry])
        elif result is None or not result.ok:
            log = f" (log: {result.log_file})" if result is not None and result.log_file else ""
            error = result.error if result is not None else "no artifact"
            job = dataclasses.replace(job, unrunnable=f"compile failed: {error}{log}")
        else:
            artifact = str(output_dir / result.artifact) if result.artifact else None
            # The entry's logical NeuronCore config decides how many cores there are to check.
            checks = functools.partial(preflight, lnc=entry.compile.lnc) if preflight and entry.compile.lnc else preflight
            job = dataclasses.replace(job, task=task_for_entry(entry, state.backend.name, artifact), preflight=checks,
                                      model_filename=result.artifact or entry.compile.model.factory)
        jobs.append(job)
    settings = to_run[0].benchmark
    run_entries(jobs, executor, _JournalSink(state, observer, summary, rows, publish, node_measured),
                order=settings.order, seed=settings.seed)


class _JournalSink(Sink):
    """The sweep's sink: every row goes into the journal (durably) and the results files."""

    def __init__(self, state: SweepState, observer: Observer, summary: SweepSummary, rows: dict, publish: Any,
                 node_measured: Any = None):
        super().__init__()
        self.state, self.observer, self.summary, self.rows, self.publish = state, observer, summary, rows, publish
        #: node_measured(node) -> why that node's rows cannot be mixed in, or None
        self.node_measured = node_measured
        self._started: dict[RunEntry, float] = {}

    def samples_dir(self, job: Job) -> Optional[str]:
        out, rel = str(self.state.output_dir), samples_relpath(job.id, self.state.identities[job.ref])
        path = os.path.join(out, rel)
        task = job.task
        try:
            if task is not None and task.serving is not None and task.serving.search:
                # A peak search resumes from the probes an interrupted attempt recorded.
                nofollow.make_folders(out, rel)
                keep_recorded(path)
            else:
                nofollow.remove(out, rel)  # what an interrupted earlier attempt left
                nofollow.make_folders(out, rel)
        except OSError as e:
            raise OutputWriteFailed(path, e) from None
        return path

    def worker_log(self, job: Job) -> Optional[WorkerLog]:
        return _empty_log(self.state, worker_log_relpath(job.id, self.state.identities[job.ref]))

    def started(self, job: Job, position: int, total: int) -> None:
        self._started[job.ref] = time.monotonic()
        self.observer.run_started(job.ref, position, total)

    def finished(self, result: JobResult) -> None:
        entry = result.job.ref
        refused = self.node_measured(result.node) if self.node_measured is not None else None
        if refused is not None:
            job = result.job
            row = results.row_for_unrun(job.config, status="error", error=refused, model_name=job.model_name,
                                        model_filename=job.model_filename, extra={"node": result.node})
            result = dataclasses.replace(result, row=row)
        result.row.update(self.state.evaluations.get(entry.compile, {}))
        result.row.update(self.state.row_columns(entry.compile))
        identity = self.state.identities[entry]
        samples_file = None
        if result.samples_dir is not None:
            samples_file = os.path.relpath(result.samples_dir, self.state.output_dir)
        began = self._started.pop(entry, None)
        elapsed = None if began is None else time.monotonic() - began
        record = self.state.journal.record_run(identity, entry.id, result.row, samples_file=samples_file, elapsed_s=elapsed)
        self.state.records[identity] = record  # what the sweep knows now (a search reads its elapsed_s)
        self.rows[entry] = result.row
        self.summary.ran += 1
        self.publish()
        self.observer.run_finished(entry, result.row)


def _empty_log(state: SweepState, rel: str) -> WorkerLog:
    """The log ``rel`` in output_dir, made empty (never through a link) for a worker to append to."""
    out = str(state.output_dir)
    path = os.path.join(out, rel)
    try:
        os.close(nofollow.open_file(out, rel, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, create_folders=True))
    except OSError as e:
        raise OutputWriteFailed(path, e) from None
    return WorkerLog(path, rel)


def worker_log_relpath(entry_id: str, key: str) -> str:
    """Where an entry's worker processes write their output, relative to output_dir."""
    return f"{LOGS_DIR}/run-{safe_file_stem(entry_id, key)}.log"


def not_measured_row(entry: RunEntry, identity: str) -> dict:
    row = results.row_for_unrun(
        entry, status="skipped", error="not measured yet: the sweep was interrupted or is still running",
        model_name=entry.compile.model.name,
    )
    row["key"] = identity
    return row
