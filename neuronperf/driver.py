"""The driver: runs the stages in order (spec -> plan -> compile -> benchmark -> results).

It owns the sweep's bookkeeping (the lock, the journal, resume) and reports progress through
an ``Observer`` so that the CLI, the only place that prints, can show it. Library code here
raises typed errors and never exits.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from neuronperf import compile_stage, prices, results
from neuronperf.backends import find_backend
from neuronperf.backends.base import Backend
from neuronperf.core import Job, JobResult, Sink, run_entries
from neuronperf.entries import CompileEntry, Plan, RunEntry, stable_hash, thaw
from neuronperf.errors import (
    BackendUnavailable,
    OutputWriteFailed,
    SpecError,
    UsageError,
)
from neuronperf.journal import Journal, OutputDirLock, lock_holder, samples_relpath
from neuronperf.spec import spec_problem

#: Files and folders a sweep writes into output_dir; `--fresh` removes exactly these.
OWNED_PATHS = (
    "journal.jsonl", "results.csv", "results.json", "run.json", "model_index.json",
    "models", "logs", "samples",
)


class Observer:
    """Progress callbacks; the default ignores everything. The CLI subclasses it to print."""

    def planned(self, plan: Plan, reused: int, to_run: int) -> None: ...
    def compile_started(self, entry: CompileEntry) -> None: ...
    def compile_finished(self, result: compile_stage.CompileResult) -> None: ...
    def run_started(self, entry: RunEntry, position: int, total: int) -> None: ...
    def run_finished(self, entry: RunEntry, row: dict) -> None: ...


@dataclass(frozen=True)
class SweepOptions:
    """How ``run_sweep`` treats what output_dir already holds."""

    fresh: bool = False  # forget everything from earlier runs and start over
    retry_failed: bool = True  # rerun entries whose last attempt failed (else keep their rows)
    allow_env_mismatch: bool = False  # accept results from another machine or toolchain
    compile_only: bool = False  # stop after the compile stage
    cost_per_hour: Optional[float] = None  # overrides the spec's cost_per_hour and the price table
    price_file: Optional[str] = None  # a YAML/JSON file of instance type -> USD per hour
    executor: Optional[str] = None  # overrides the spec's executor ("local", "ray")
    address: Optional[str] = None  # overrides the spec's ray.address


@dataclass
class SweepSummary:
    """What a sweep did; ``exit_code`` follows design.md."""

    plan: Plan
    output_dir: Path
    rows: list = field(default_factory=list)
    reused: int = 0
    ran: int = 0
    compiled: int = 0
    compile_reused: int = 0
    compile_failed: list = field(default_factory=list)
    interrupted: bool = False
    #: Set when a file in output_dir could not be written (a full disk): the sweep stopped
    #: there; what finished is in ``rows`` and, durably, in the journal.
    write_error: Optional[str] = None

    @property
    def failed_rows(self) -> list:
        return [r for r in self.rows if r.get("status") in ("error", "timeout")]

    @property
    def not_measured(self) -> int:
        return sum(1 for r in self.rows if r.get("status") == "skipped")

    @property
    def exit_code(self) -> int:
        if self.write_error is not None:
            return OutputWriteFailed.exit_code
        if self.interrupted:
            return 130
        return 1 if self.failed_rows or self.compile_failed else 0


def load_plan(spec_path: str) -> tuple[Any, Plan]:
    """Load and validate a spec and plan it (pure: no user code, no framework)."""
    from neuronperf.plan import plan as make_plan
    from neuronperf.spec import load_spec

    spec = load_spec(spec_path)
    return spec, make_plan(spec, device_counter(spec))


def device_counter(spec: Any) -> Any:
    """A callable that counts this machine's devices through the spec's backend (for
    ``n_models: max``); a backend that cannot count them is a located ``SpecError``."""

    def count() -> int:
        try:
            return int(find_backend(spec.framework, spec.device_type, spec.compiler).device_count(spec.device_type))
        except BackendUnavailable as e:
            raise SpecError([spec_problem(spec, "sweep.n_models", f"n_models: max: cannot count this machine's devices: {e}")]) from None

    return count


def run_identity(entry: RunEntry, compile_key: str) -> str:
    """A run entry's identity: its content, its artifact's compile key (compiler version) and the
    measurement method's version (rows of an older method are measured again, never mixed)."""
    from neuronperf.stats import METHOD_VERSION

    return stable_hash({"run": entry.key, "compile": compile_key, "method": METHOD_VERSION})


#: How long importing the factories' modules may take, checked before a sweep starts.
FACTORY_CHECK_TIMEOUT_S = 600.0


def check_factories(spec: Any, entries: Sequence[CompileEntry]) -> None:
    """Resolve the factory of every model these entries build, in a worker process (the driver
    imports no user code or framework itself); report failures at their spec position."""
    from neuronperf.factory import resolve_errors
    from neuronperf.supervisor import WorkerCallFailed, run_in_worker

    refs = list({e.model.name: e.model for e in entries}.values())
    if not refs:
        return
    try:
        # In a fork of the workers' server: its libraries are loaded already, so this costs
        # little beyond running the factories' own modules.
        failures = run_in_worker(resolve_errors, (refs,), timeout=FACTORY_CHECK_TIMEOUT_S)
    except WorkerCallFailed as e:
        failures = {r.name: f"factory {r.factory!r}: importing it failed: {e}" for r in refs}
    problems = []
    for index, model in enumerate(spec.models):
        if model.name in failures:
            problems.append(spec_problem(spec, f"models[{index}].factory", failures[model.name]))
    if problems:
        raise SpecError(problems)


class SweepState:
    """What output_dir already knows about a plan: compile keys, finished runs, rows."""

    def __init__(self, plan: Plan, output_dir: Path, backend: Backend):
        self.plan = plan
        self.output_dir = output_dir
        self.backend = backend
        self.journal = Journal(str(output_dir))
        self.records: dict[str, dict] = {}  # run identity -> its latest record
        self.compile_records: dict[str, dict] = {}  # compile key -> its latest record
        self._latest_by_id: dict[tuple[str, str], dict] = {}  # (kind, entry id) -> latest record
        for record in self.journal.load() if self.journal.exists() else []:
            (self.records if record["kind"] == "run" else self.compile_records)[record["key"]] = record
            if isinstance(record.get("id"), str):
                self._latest_by_id[(record["kind"], record["id"])] = record
        version_cache: dict[str, str] = {}
        self.compile_keys: dict[CompileEntry, str] = {}
        for entry in plan.compile_entries:
            if entry.compiler not in version_cache:
                version_cache[entry.compiler] = self._compiler_version(entry.compiler)
            self.compile_keys[entry] = compile_stage.compile_key(entry, version_cache[entry.compiler])
        self.versions = version_cache
        self.identities = {e: run_identity(e, self.compile_keys[e.compile]) for e in plan.run_entries}
        #: The ``evaluate`` columns of each compile entry, joined onto each of its rows.
        self.evaluations: dict[CompileEntry, dict] = {}

    def _compiler_version(self, compiler: str) -> str:
        """The compiler's version; where its SDK is not installed (results copied off the
        machine that made them), the version the journal recorded, so `status` still works."""
        try:
            return self.backend.compiler_version(compiler)
        except BackendUnavailable:
            recorded = [r.get("compiler_version") for r in self.compile_records.values() if r.get("compiler_version")]
            if recorded:
                return str(recorded[-1])
            if not self.journal.exists():
                # Nothing measured yet: every entry is to do whatever the version, and `status`
                # can say so on a machine without the framework (`run` checks it before working).
                return "unavailable"
            raise

    def record_for(self, entry: RunEntry) -> Optional[dict]:
        return self.records.get(self.identities[entry])

    def status_of(self, entry: RunEntry) -> str:
        """"done", "failed" or "todo"."""
        record = self.record_for(entry)
        if record is None:
            return "todo"
        return "done" if record.get("status") == "ok" else "failed"

    def why_todo(self, entry: RunEntry) -> Optional[str]:
        """Why an entry measured before (under the same id) must run again, or None if it never
        was: what changed between that measurement and the spec and files of now."""
        from neuronperf.stats import METHOD_VERSION

        if self.record_for(entry) is not None or ("run", entry.id) not in self._latest_by_id:
            return None
        method = (self._latest_by_id[("run", entry.id)].get("row") or {}).get("method_version") or 1
        if method != METHOD_VERSION:
            return f"measured by method {method}; method {METHOD_VERSION} measures it again"
        compile_entry = entry.compile
        compiled = self._latest_by_id.get(("compile", compile_entry.id))
        if compiled is None or compiled["key"] == self.compile_keys[compile_entry]:
            return "benchmark or runtime settings changed since measured"
        from neuronperf.factory import source_digest

        was_source, now_source = compiled.get("source"), source_digest(compile_entry.model)
        if was_source is not None and was_source != now_source:
            return "model source changed since measured"
        was_version, now_version = compiled.get("compiler_version"), self.versions[compile_entry.compiler]
        if was_version is not None and was_version != now_version:
            return f"compiler version changed since measured ({was_version} -> {now_version})"
        return "model or compile settings changed since measured"


@dataclass(frozen=True)
class StatusReport:
    """What ``neuronperf status`` shows: each planned run entry's state, why a measured one
    must run again, the folder that was read and who holds it now."""

    plan: Plan
    output_dir: Path
    states: dict  # RunEntry -> "done" | "failed" | "todo"
    reasons: dict  # RunEntry -> why a "todo" entry that was measured before must run again
    holder: Optional[str]  # "pid N" while a run holds output_dir, else None


def sweep_report(spec_path: str) -> StatusReport:
    """The ``StatusReport`` of a spec's output_dir, without running or writing anything."""
    _, plan = load_plan(spec_path)
    backend = _backend_for(plan)
    output_dir = Path(plan.output_dir).resolve()
    state = SweepState(plan, output_dir, backend)
    states = {e: state.status_of(e) for e in plan.run_entries}
    reasons = {e: why for e in plan.run_entries if (why := state.why_todo(e))}
    return StatusReport(plan, output_dir, states, reasons, lock_holder(str(output_dir)))


def sweep_status(spec_path: str) -> tuple[Plan, dict[RunEntry, str]]:
    """Each planned run entry's state in output_dir (done, failed, todo), without running."""
    report = sweep_report(spec_path)
    return report.plan, report.states


def _backend_for(plan: Plan) -> Backend:
    first = plan.compile_entries[0]
    return find_backend(first.framework, first.device_type, first.compiler)


def run_sweep(spec_path: str, options: SweepOptions = SweepOptions(), observer: Optional[Observer] = None) -> SweepSummary:
    """Run (or resume) a sweep; return its summary. Raises typed errors for bad input."""
    observer = observer or Observer()
    spec, plan = load_plan(spec_path)
    backend = _backend_for(plan)
    try:
        backend.check_compiler_args(plan.compile_entries[0])  # every entry shares them
    except UsageError as e:
        raise SpecError([spec_problem(spec, "compile.compiler_args", str(e))]) from None

    output_dir = Path(plan.output_dir).resolve()
    if options.fresh:
        check_fresh_allowed(output_dir)
    _prepare(spec, plan, output_dir, backend, options)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SpecError([spec_problem(spec, "output_dir", f"cannot create {output_dir}: {e.strerror}")]) from None
    with OutputDirLock(str(output_dir)):
        if options.fresh:
            _remove_owned(output_dir)
        return _run_locked(spec, plan, output_dir, backend, options, observer)


def _prepare(spec: Any, plan: Plan, output_dir: Path, backend: Backend, options: SweepOptions) -> None:
    """Before anything is written: start the workers' server early and check the factories of
    the models that have work to do. A rerun with nothing to do does neither, so it imports no
    framework or user code (what is done is read again, under the lock, by ``_run_locked``)."""
    with_work: Sequence[CompileEntry]
    if options.compile_only:
        with_work = plan.compile_entries
    else:
        done = SweepState(plan, output_dir, backend) if (output_dir / "journal.jsonl").exists() and not options.fresh else None
        to_run = [e for e in plan.run_entries if done is None or _needs_run(done, e, options)]
        with_work = list({e.compile: None for e in to_run})
        if to_run:
            # The workers' server imports the models' libraries while the factories are checked
            # and the artifacts compiled, so that the first entry waits for nothing.
            from neuronperf.factory import worker_preload
            from neuronperf.supervisor import start_workers_early

            start_workers_early(worker_preload([e.model for e in with_work]) + tuple(backend.worker_preload))
    check_factories(spec, with_work)


def _run_locked(
    spec: Any, plan: Plan, output_dir: Path, backend: Backend, options: SweepOptions, observer: Observer,
) -> SweepSummary:
    from neuronperf.environment import (
        capture_environment,
    )

    state = SweepState(plan, output_dir, backend)
    versions: dict[str, Optional[str]] = {f"{backend.name}/{c}": v for c, v in state.versions.items()}
    versions.update(_library_versions(plan))
    environment = capture_environment(versions, plan.compile_entries[0].device_type)
    to_run = [e for e in plan.run_entries if _needs_run(state, e, options)]
    executor_name, executor_options = executor_choice(plan, options)
    # Connected before anything is compiled or journaled: an unreachable cluster is one line.
    executor = open_executor(executor_name, executor_options) if to_run and not options.compile_only else None
    try:
        return _run_with(spec, plan, output_dir, backend, options, observer, state, environment, to_run,
                         executor_name, executor)
    finally:
        if executor is not None:
            executor.close()


def executor_choice(plan: Plan, options: SweepOptions) -> tuple[str, dict[str, Any]]:
    """The executor a sweep runs on (the command line over the spec) and its options."""
    name = options.executor or plan.executor
    if name == "ray":
        ray = plan.ray
        return name, {"address": options.address or ray.address, "cpus_per_thread": ray.cpus_per_thread,
                      "max_retries": ray.max_retries, "max_artifact_mb": ray.max_artifact_mb}
    if options.address:
        raise UsageError(f"--address is for the ray executor; this sweep runs on {name!r} (add --executor ray)")
    return name, {}


def open_executor(name: str, options: dict[str, Any]) -> Any:
    """A connected executor (for Ray: the cluster reached, or a local instance started)."""
    from neuronperf.executors import get_executor

    return get_executor(name, **options)


@dataclass(frozen=True)
class EnvironmentProbe:
    """Describes the machine it is called on, as ``_run_locked`` describes the driver's: a
    picklable value, so that a cluster executor runs it on each of its nodes."""

    backend: str
    compilers: tuple[str, ...]
    libraries: tuple[str, ...]
    device_type: str

    def __call__(self) -> dict[str, Any]:
        from neuronperf.environment import capture_environment, distribution_version
        from neuronperf.task import load_backend

        versions: dict[str, Optional[str]] = {}
        for compiler in self.compilers:
            try:
                versions[f"{self.backend}/{compiler}"] = load_backend(self.backend).compiler_version(compiler)
            except BackendUnavailable:
                versions[f"{self.backend}/{compiler}"] = None
        versions.update({f"library/{name}": distribution_version(name) for name in self.libraries})
        return capture_environment(versions, self.device_type)


def _run_with(
    spec: Any, plan: Plan, output_dir: Path, backend: Backend, options: SweepOptions, observer: Observer,
    state: SweepState, environment: dict, to_run: list, executor_name: str, executor: Any,
) -> SweepSummary:
    from neuronperf.environment import (
        check_compatible,
        environment_fingerprint,
        fingerprint_differences,
    )
    from neuronperf.errors import EnvironmentMismatch

    saved = results.read_run_info(str(output_dir))
    if executor_name == "local" or executor is None:
        # The driver's machine is the one that measures (or, with nothing to measure, the one
        # that holds the results).
        nodes = {"": environment}
    else:
        probe = EnvironmentProbe(backend.name, tuple(state.versions), tuple(sorted({
            name for e in plan.compile_entries for name in _factory_libraries(e)})), plan.compile_entries[0].device_type)
        nodes = executor.node_environments(probe)
    if saved is not None and not options.allow_env_mismatch:
        for name, env in nodes.items():
            try:
                check_compatible(saved["environment"], env)
            except EnvironmentMismatch as e:
                raise EnvironmentMismatch(f"node {name}: {e}" if name else str(e)) from None
    # The first run's environment stays the one later runs are checked against; every distinct
    # environment that contributed results is kept, so mixing (--allow-env-mismatch) stays visible.
    baseline = saved["environment"] if saved else next(iter(nodes.values()))
    if saved is None and not options.allow_env_mismatch:
        first = next(iter(nodes))
        for name, env in nodes.items():
            differ = fingerprint_differences(baseline, env, (f"node {first}", f"node {name}"))
            if differ:
                raise EnvironmentMismatch(
                    f"the cluster's nodes differ: {'; '.join(differ)}; rerun with --allow-env-mismatch to mix "
                    "their results"
                )
    history = list(saved.get("environments") or [baseline]) if saved else [baseline]
    for env in nodes.values():
        if all(environment_fingerprint(e) != environment_fingerprint(env) for e in history):
            history.append(env)
    from neuronperf.stats import METHOD_VERSION

    pricing = prices.resolve_pricing(plan.instance_type, options.cost_per_hour or plan.cost_per_hour, options.price_file)
    # Each node that measured, with its environment (kept across runs; one file, rewritten as a
    # node measures its first entry).
    measured_on: dict[str, Any] = dict((saved or {}).get("nodes") or {})

    def write_run_info() -> None:
        results.write_run_info(
            str(output_dir), baseline, name=plan.name, environments=history, method_version=METHOD_VERSION,
            objectives={"slo": dict(plan.slo)}, pricing=pricing.to_dict(), nodes=measured_on,
        )

    write_run_info()

    def node_measured(node: Optional[str]) -> Optional[str]:
        """Record the environment of a node's first result; why its rows cannot be mixed in."""
        if node is None or node in measured_on:
            return None
        env = nodes.get("") if executor_name == "local" else (nodes.get(node) or executor.environment_of(node))
        if env is None:
            return None
        differ = fingerprint_differences(baseline, env, ("baseline", f"node {node}"))
        if differ and not options.allow_env_mismatch:
            return (f"measured on node {node}, whose environment differs from the baseline: {'; '.join(differ)}; "
                    "rerun with --allow-env-mismatch to mix its results")
        measured_on[node] = env
        if all(environment_fingerprint(e) != environment_fingerprint(env) for e in history):
            history.append(env)
        write_run_info()
        return None

    summary = SweepSummary(plan, output_dir)
    summary.reused = len(plan.run_entries) - len(to_run)
    observer.planned(plan, summary.reused, len(to_run))

    # One row per planned entry at every moment: what is not measured yet says so.
    # Rows are priced as they are placed (the journal keeps them unpriced: a rerun prices anew).
    rows = results.RowTable(plan.run_entries, lambda e: _not_measured_row(e, state.identities[e]),
                            transform=lambda row: prices.apply_pricing(row, pricing))
    running = set(to_run)
    for entry in plan.run_entries:
        record = state.record_for(entry)
        if record is not None and entry not in running:
            rows[entry] = record["row"]
    summary.rows = rows.ordered
    writer = results.ResultsWriter(str(output_dir))

    def publish() -> None:
        writer.update(rows.ordered)  # rewrites as often as stays linear in the sweep's length

    if to_run or options.compile_only:
        # Checked only when there is work: a resume with nothing to do need not import torch.
        backend.check_available(plan.compile_entries[0].device_type)
    try:
        # Entries no machine can ever host are rows saying so, found before any compile.
        infeasible = _cannot_host(executor, backend, to_run) if executor is not None else {}
        # Only the compile entries that still have something to run need an artifact.
        # (`neuronperf compile` asks for every artifact.)
        pending = {r.compile for r in to_run if r not in infeasible}
        needed = [c for c in plan.compile_entries if options.compile_only or c in pending]
        compiled = _compile(needed, spec.compile.jobs, output_dir, state, observer, summary)
        _write_model_index(plan, output_dir, state, compiled)
        if options.compile_only:
            return summary
        if to_run:
            state.evaluations = _evaluate_all(spec, pending, compiled, state)
            _measure_all(to_run, infeasible, compiled, state, observer, summary, rows, publish, executor, node_measured)
    except KeyboardInterrupt:
        summary.interrupted = True
    except OutputWriteFailed as e:
        # A full disk: stop here. The journal holds every entry that finished (an append the
        # disk refused is cut off again), so a rerun once there is space goes on from there.
        summary.write_error = str(e)
    if not options.compile_only:
        try:
            writer.flush(rows.ordered)
        except OutputWriteFailed as e:
            summary.write_error = summary.write_error or str(e)
    return summary


def _cannot_host(executor: Any, backend: Backend, to_run: Sequence[RunEntry]) -> dict[RunEntry, str]:
    """The entries that no node of the executor's cluster can ever hold, with why."""
    from neuronperf.task import task_for_entry

    found = {}
    for entry in to_run:
        why = executor.cannot_host(task_for_entry(entry, backend.name, None))
        if why is not None:
            found[entry] = why
    return found


def _factory_libraries(entry: CompileEntry) -> list[str]:
    from neuronperf.factory import factory_libraries

    return list(factory_libraries(entry.model))


def _evaluate_all(spec: Any, pending: set, compiled: dict, state: SweepState) -> dict[CompileEntry, dict]:
    """Evaluate each compiled artifact whose model has ``evaluate``, once, in a worker process
    (accuracy does not depend on the copies or threads); return its row columns."""
    from neuronperf.evaluate import DatasetRef, devices_env, evaluation_task, run_evaluation
    from neuronperf.task import BackendLoader

    models = {m.name: m for m in spec.models}
    out: dict[CompileEntry, dict] = {}
    for entry in state.plan.compile_entries:
        model = models.get(entry.model.name)
        result = compiled.get(entry)
        if entry not in pending or model is None or model.evaluate is None or result is None or not result.ok:
            continue
        ev = model.evaluate
        artifact = str(state.output_dir / result.artifact) if result.artifact else None
        task = evaluation_task(
            entry.id, BackendLoader(backend=state.backend.name, entry=entry, artifact_path=artifact),
            DatasetRef(ev.dataset, model.base_dir), ev.metrics, eval_target_col=ev.target_col,
            device_type=entry.device_type, device_backend=state.backend.name,
            device_env=devices_env(state.backend.name, entry.device_type, entry.pipeline_size),
        )
        out[entry] = run_evaluation(task).columns(ev.metrics)
    return out


def _library_versions(plan: Plan) -> dict[str, Optional[str]]:
    """``library/<name>`` -> version of each library the plan's factories build on (package
    metadata only: resuming a finished sweep imports no framework)."""
    from neuronperf.environment import distribution_version
    from neuronperf.factory import factory_libraries

    names = {name for e in plan.compile_entries for name in factory_libraries(e.model)}
    return {f"library/{name}": distribution_version(name) for name in sorted(names)}




def _measure_all(
    to_run: Sequence[RunEntry], infeasible: dict[RunEntry, str], compiled: dict, state: SweepState,
    observer: Observer, summary: SweepSummary, rows: dict, publish: Any, executor: Any = None,
    node_measured: Any = None,
) -> None:
    """Benchmark each entry through the benchmark core; journal and publish each result as soon
    as it exists."""
    from neuronperf.task import task_for_entry

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
            job = dataclasses.replace(job, task=task_for_entry(entry, state.backend.name, artifact), preflight=preflight,
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

    def samples_dir(self, job: Job) -> Optional[str]:
        return str(self.state.output_dir / samples_relpath(job.id, self.state.identities[job.ref]))

    def started(self, job: Job, position: int, total: int) -> None:
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
        identity = self.state.identities[entry]
        samples_file = None
        if result.samples_dir is not None:
            samples_file = os.path.relpath(result.samples_dir, self.state.output_dir)
        self.state.journal.record_run(identity, entry.id, result.row, samples_file=samples_file)
        self.rows[entry] = result.row
        self.summary.ran += 1
        self.publish()
        self.observer.run_finished(entry, result.row)


def _not_measured_row(entry: RunEntry, identity: str) -> dict:
    row = results.row_for_unrun(
        entry, status="skipped", error="not measured yet: the sweep was interrupted or is still running",
        model_name=entry.compile.model.name,
    )
    row["key"] = identity
    return row


def _needs_run(state: SweepState, entry: RunEntry, options: SweepOptions) -> bool:
    status = state.status_of(entry)
    if status == "todo":
        return True
    return status == "failed" and options.retry_failed


def _compile(
    needed: Sequence[CompileEntry], jobs: int, output_dir: Path, state: SweepState,
    observer: Observer, summary: SweepSummary,
) -> dict[CompileEntry, compile_stage.CompileResult]:

    from neuronperf.factory import source_digest

    def on_result(result: compile_stage.CompileResult) -> None:
        state.journal.record_compile(
            result.cache_key, result.entry.id, result.status, artifact=result.artifact,
            compile_s=result.compile_s, compiler_version=result.compiler_version,
            error=result.error, log_file=result.log_file,
            source=source_digest(result.entry.model),  # so `status` can say "model source changed"
        )
        if result.reused:
            summary.compile_reused += 1
        elif result.ok:
            summary.compiled += result.artifact is not None  # eager builds nothing to count
        else:
            summary.compile_failed.append(result)
        observer.compile_finished(result)

    outcomes = compile_stage.compile_all(
        needed, str(output_dir), jobs=jobs, on_result=on_result, on_start=observer.compile_started
    )
    return {r.entry: r for r in outcomes}


def _write_model_index(plan: Plan, output_dir: Path, state: SweepState, compiled: dict) -> None:
    """model_index.json, one config per compile entry (design.md), in the seed's format."""
    from neuronperf import model_index
    from neuronperf.plan import planned_index

    first = plan.compile_entries[0]
    keys = [state.compile_keys[e] for e in plan.compile_entries]
    index = planned_index(plan, state.backend.artifact_suffix(first.compiler), keys)
    for config, entry in zip(index["model_configs"], plan.compile_entries):
        config["backend"] = state.backend.name
        config["compiler"] = entry.compiler
        config["compiler_version"] = state.versions[entry.compiler]
        config["compiler_args"] = thaw(entry.compiler_args)
        result = compiled.get(entry) or state.compile_records.get(state.compile_keys[entry])
        if result is None:
            config["status"] = "todo"
        elif isinstance(result, compile_stage.CompileResult):
            config["status"] = result.status
            config["compile_s"] = _seconds(result.compile_s)
        else:  # a journal record of an earlier run
            config["status"] = result.get("status")
            config["compile_s"] = _seconds(result.get("compile_s"))
    model_index.save(index, str(output_dir / "model_index.json"))


def _seconds(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 3)


def check_fresh_allowed(output_dir: Path) -> None:
    """Refuse ``--fresh`` on a folder neuronperf did not write: it removes ``models/``, ``logs/``
    and ``samples/``, which in a foreign folder (``output_dir: .`` in a repository) are someone
    else's. Allowed where the folder is missing or empty, or holds neuronperf's ``run.json``."""
    try:
        present = sorted(p.name for p in output_dir.iterdir())
    except FileNotFoundError:
        return
    except OSError as e:
        raise UsageError(f"--fresh: cannot read {output_dir}: {e.strerror}") from None
    if not [name for name in present if name != ".lock"]:
        return
    if (output_dir / results.RUN_INFO).is_file():
        results.read_run_info(str(output_dir))  # a run.json that is not ours raises JournalError
        return
    owned = [name for name in OWNED_PATHS if name in present]
    at_risk = f" (it would remove {', '.join(owned)})" if owned else ""
    raise UsageError(
        f"--fresh refused: {output_dir} is not empty and has no {results.RUN_INFO}, so neuronperf did "
        f"not write it{at_risk}; point output_dir at a folder of its own"
    )


def _remove_owned(output_dir: Path) -> None:
    for name in OWNED_PATHS:
        path = output_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif os.path.lexists(path):
            path.unlink()
