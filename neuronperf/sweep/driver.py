"""The driver: runs the stages in order (spec -> plan -> compile -> benchmark -> results).

It owns the sweep's bookkeeping (the lock, the journal, resume) and reports progress through
an ``Observer`` so that the CLI, the only place that prints, can show it. Library code here
raises typed errors and never exits.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from neuronperf import results
from neuronperf.answers import prices
from neuronperf.backends.base import Backend
from neuronperf.compilation.artifacts import remove_abandoned_temporaries
from neuronperf.compilation.jobs import CompileResult, compile_all
from neuronperf.entries import CompileEntry, Plan, RunEntry, thaw
from neuronperf.errors import (
    OutputWriteFailed,
    SpecError,
    UnsafeOutputDir,
    UsageError,
)
from neuronperf.plan.index import MODELS_DIR
from neuronperf.results.lock import OutputDirLock
from neuronperf.spec.load import spec_problem
from neuronperf.sweep.environments import (
    EnvironmentProbe,
    RunEnvironments,
    factory_libraries_of,
    library_versions,
)
from neuronperf.sweep.measuring import cannot_host, evaluate_all, measure_all, not_measured_row
from neuronperf.sweep.outcome import Observer, SweepOptions, SweepSummary
from neuronperf.sweep.output_dir import check_fresh_allowed, check_output_dir, remove_owned
from neuronperf.sweep.searching import SweepSearch, first_search_wave
from neuronperf.sweep.state import SweepState, backend_for, load_plan, needs_run
from neuronperf.util import nofollow

#: How long importing the factories' modules may take, checked before a sweep starts.
FACTORY_CHECK_TIMEOUT_S = 600.0


def check_factories(spec: Any, entries: Sequence[CompileEntry]) -> None:
    """Resolve the factory of every model these entries build, in a worker process (the driver
    imports no user code or framework itself); report failures at their spec position."""
    from neuronperf.measure.supervisor import WorkerCallFailed, run_in_worker
    from neuronperf.sources.planning import model_errors

    first = list({e.model.name: e for e in entries}.values())
    if not first:
        return
    try:
        # In a fork of the workers' server: its libraries are loaded already, so this costs
        # little beyond running the factories' own modules.
        failures = run_in_worker(model_errors, (first,), timeout=FACTORY_CHECK_TIMEOUT_S)
    except WorkerCallFailed as e:
        failures = {x.model.name: (x.model.source.kind if x.model.source else "factory",
                                   f"{x.model.label}: importing it failed: {e}") for x in first}
    problems = []
    for index, model in enumerate(spec.models):
        if model.name in failures:
            key, message = failures[model.name]
            problems.append(spec_problem(spec, f"models[{index}].{key}", message))
    if problems:
        raise SpecError(problems)


def run_sweep(spec_path: str, options: Optional[SweepOptions] = None, observer: Optional[Observer] = None) -> SweepSummary:
    """Run (or resume) a sweep; return its summary. Raises typed errors for bad input."""
    options = options or SweepOptions()
    observer = observer or Observer()
    spec, plan = load_plan(spec_path)
    backend = backend_for(plan)
    try:
        backend.check_compiler_args(plan.compile_entries[0])  # every entry shares them
    except UsageError as e:
        raise SpecError([spec_problem(spec, "compile.compiler_args", str(e))]) from None
    try:
        # Reads package metadata and the Neuron sysfs only: no framework is imported.
        backend.check_target(plan.compile_entries, plan.instance_type)
    except UsageError as e:
        where = "compiler" if spec.compiler_given else ("instance_type" if plan.instance_type else "device_type")
        raise SpecError([spec_problem(spec, where, str(e))]) from None

    # Before any work: an output_dir others could turn against this run is one line, exit 2.
    check_output_dir(Path(os.path.abspath(plan.output_dir)))
    output_dir = Path(plan.output_dir).resolve()
    if options.fresh:
        check_fresh_allowed(output_dir)
    _prepare(spec, plan, output_dir, backend, options)
    try:
        output_dir.mkdir(parents=True, exist_ok=True, mode=nofollow.FOLDER_MODE)
    except OSError as e:
        raise SpecError([spec_problem(spec, "output_dir", f"cannot create {output_dir}: {e.strerror}")]) from None
    with OutputDirLock(str(output_dir)):
        if options.fresh:
            remove_owned(output_dir)
        return _run_locked(spec, plan, output_dir, backend, options, observer)


def _prepare(spec: Any, plan: Plan, output_dir: Path, backend: Backend, options: SweepOptions) -> None:
    """Before anything is written: start the workers' server early and check the factories of
    the models that have work to do. A rerun with nothing to do does neither, so it imports no
    framework or user code (what is done is read again, under the lock, by ``_run_locked``)."""
    with_work: Sequence[CompileEntry]
    if options.compile_only:
        with_work = plan.compile_entries
    else:
        if (output_dir / "journal.jsonl").exists() and not options.fresh:
            to_run = first_wave(plan, SweepState(plan, output_dir, backend), options)
        else:
            to_run = first_wave(plan, None, options)
        with_work = list({e.compile: None for e in to_run})
        if to_run:
            # The workers' server imports the models' libraries while the factories are checked
            # and the artifacts compiled, so that the first entry waits for nothing.
            from neuronperf.measure.supervisor import start_workers_early
            from neuronperf.sources.factory import worker_preload

            # Before the server starts: it imports torch, and these must hold from then on.
            os.environ.update(backend.worker_env)
            start_workers_early(worker_preload([e.model for e in with_work]) + tuple(backend.worker_preload))
    check_factories(spec, with_work)


def _run_locked(
    spec: Any, plan: Plan, output_dir: Path, backend: Backend, options: SweepOptions, observer: Observer,
) -> SweepSummary:
    from neuronperf.results.environment import capture_environment

    state = SweepState(plan, output_dir, backend)
    versions: dict[str, Optional[str]] = {f"{backend.name}/{c}": v for c, v in state.versions.items()}
    versions.update(library_versions(plan))
    environment = capture_environment(versions, plan.compile_entries[0].device_type)
    to_run = first_wave(plan, state, options)
    executor_name, executor_options = executor_choice(plan, options)
    # Connected before anything is compiled or journaled: an unreachable cluster is one line.
    executor = open_executor(executor_name, executor_options) if to_run and not options.compile_only else None
    try:
        return _run_with(spec, plan, output_dir, backend, options, observer, state, environment, to_run,
                         executor_name, executor)
    finally:
        if executor is not None:
            executor.close()


def searching(plan: Plan, options: SweepOptions) -> bool:
    """Whether this sweep measures by a search (``neuronperf compile`` builds every artifact)."""
    return plan.search.strategy != "grid" and not options.compile_only


def first_wave(plan: Plan, state: Optional[SweepState], options: SweepOptions) -> list[RunEntry]:
    """The entries a run measures first: every entry still to do (grid), or the search's next
    wave, decided from what output_dir already holds (None: nothing)."""
    if not searching(plan, options):
        return [e for e in plan.run_entries if state is None or needs_run(state, e, options)]
    if state is None:
        return first_search_wave(plan)
    pricing = prices.resolve_pricing(plan.instance_type, price_per_hour(plan, options), options.price_file)
    return SweepSearch(plan, state, options, lambda row: prices.apply_pricing(row, pricing)).pending


def price_per_hour(plan: Plan, options: SweepOptions) -> Optional[float]:
    """The price the rows are priced at: ``--cost-per-hour`` over the spec's (0 is a price, not
    a missing one)."""
    return plan.cost_per_hour if options.cost_per_hour is None else options.cost_per_hour


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


def _run_with(
    spec: Any, plan: Plan, output_dir: Path, backend: Backend, options: SweepOptions, observer: Observer,
    state: SweepState, environment: dict, to_run: list, executor_name: str, executor: Any,
) -> SweepSummary:
    if executor_name == "local" or executor is None:
        # The driver's machine is the one that measures (or, with nothing to measure, the one
        # that holds the results).
        nodes = {"": environment}
    else:
        probe = EnvironmentProbe(backend.name, tuple(state.versions), tuple(sorted({
            name for e in plan.compile_entries for name in factory_libraries_of(e)})), plan.compile_entries[0].device_type)
        nodes = executor.node_environments(probe)
    from neuronperf.stats.forward import (
        METHOD_VERSION,  # read when the sweep runs (tests change it)
    )

    pricing = prices.resolve_pricing(plan.instance_type, price_per_hour(plan, options), options.price_file)
    environments = RunEnvironments(
        str(output_dir), nodes, allow_mismatch=options.allow_env_mismatch,
        environment_of=None if executor_name == "local" or executor is None else executor.environment_of,
        run_fields={"name": plan.name, "method_version": METHOD_VERSION,
                    "objectives": {"slo": dict(plan.slo), "maximize": plan.search.maximize},
                    "search": plan.search.strategy, "pricing": pricing.to_dict()},
    )

    def price(row: Any) -> Any:
        return prices.apply_pricing(row, pricing)

    summary = SweepSummary(plan, output_dir)
    # Under the lock, so no other run builds here; a live process's temporary is kept anyway.
    summary.abandoned_removed = remove_abandoned_temporaries(str(output_dir / MODELS_DIR))
    search = SweepSearch(plan, state, options, price) if searching(plan, options) else None
    summary.reused = len(plan.run_entries) - len(to_run) if search is None else len(search.known)
    observer.planned(plan, summary.reused, len(to_run))

    # One row per planned entry at every moment: what is not measured yet says so.
    # Rows are priced as they are placed (the journal keeps them unpriced: a rerun prices anew).
    rows = results.RowTable(plan.run_entries, lambda e: not_measured_row(e, state.identities[e]), transform=price)
    running = set(to_run)
    for entry in plan.run_entries:
        record = state.record_for(entry)
        if record is not None and entry not in running:
            rows[entry] = record["row"]
    if search is not None:
        for entry, row in search.skipped_rows().items():
            rows[entry] = row
    summary.rows = rows.ordered
    writer = results.ResultsWriter(str(output_dir))

    def publish() -> None:
        writer.update(rows.ordered)  # rewrites as often as stays linear in the sweep's length

    if to_run or options.compile_only:
        # Checked only when there is work: a resume with nothing to do need not import torch.
        backend.check_available(plan.compile_entries[0].device_type)
    try:
        compiled: dict[CompileEntry, CompileResult] = {}
        wave, first = list(to_run), True
        # A grid is one wave; a search measures wave after wave, each decided by the rows of
        # the ones before, compiling only the artifacts the next wave needs.
        while first or wave:
            # Entries no machine can ever host are rows saying so, found before any compile.
            infeasible = cannot_host(executor, backend, wave) if executor is not None else {}
            # Only the compile entries that still have something to run need an artifact.
            # (`neuronperf compile` asks for every artifact.)
            pending = {r.compile for r in wave if r not in infeasible}
            needed = [c for c in plan.compile_entries if (options.compile_only or c in pending) and c not in compiled]
            if first or needed:
                compiled.update(_compile(needed, spec.compile.jobs, output_dir, state, observer, summary))
                _write_model_index(plan, output_dir, state, compiled)
            first = False
            if options.compile_only:
                return summary
            if wave:
                state.evaluations.update(evaluate_all(spec, {c for c in pending if c in needed}, compiled, state))
                measure_all(wave, infeasible, compiled, state, observer, summary, rows, publish, executor,
                            environments.node_measured)
            if search is None:
                break
            wave = search.measured(rows, wave)
            for entry, row in search.skipped_rows().items():
                rows[entry] = row
            if wave:
                observer.search_round(plan, search.decision)
    except KeyboardInterrupt:
        summary.interrupted = True
    except OutputWriteFailed as e:
        # A full disk: stop here. The journal holds every entry that finished (an append the
        # disk refused is cut off again), so a rerun once there is space goes on from there.
        summary.write_error = str(e)
    except UnsafeOutputDir as e:
        # A link (or another user's file) appeared where the sweep writes: stop, as for a full
        # disk, without writing through it.
        summary.refused = str(e)
    if search is not None:
        summary.search = search.report()
    if not options.compile_only:
        try:
            writer.flush(rows.ordered)
        except OutputWriteFailed as e:
            summary.write_error = summary.write_error or str(e)
        except UnsafeOutputDir as e:
            summary.refused = summary.refused or str(e)
    return summary


def _compile(
    needed: Sequence[CompileEntry], jobs: int, output_dir: Path, state: SweepState,
    observer: Observer, summary: SweepSummary,
) -> dict[CompileEntry, CompileResult]:

    from neuronperf.sources.factory import source_digest

    def on_result(result: CompileResult) -> None:
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

    outcomes = compile_all(
        needed, str(output_dir), jobs=jobs, on_result=on_result, on_start=observer.compile_started
    )
    return {r.entry: r for r in outcomes}


def _write_model_index(plan: Plan, output_dir: Path, state: SweepState, compiled: dict) -> None:
    """model_index.json, one config per compile entry (design.md), in the seed's format."""
    from neuronperf import model_index
    from neuronperf.plan.index import planned_index

    first = plan.compile_entries[0]
    keys = [state.compile_keys[e] for e in plan.compile_entries]
    index = planned_index(plan, state.backend.artifact_suffix(first.compiler), keys)
    for config, entry in zip(index["model_configs"], plan.compile_entries):
        config["backend"] = state.backend.name
        config["compiler"] = entry.compiler
        config["compiler_version"] = state.versions[entry.compiler]
        config["compiler_args"] = thaw(entry.compiler_args)
        source = entry.model.source
        if source is not None and source.kind == "file":
            # A saved artifact is measured where it is: the index names the user's file.
            from neuronperf.sources.files import resolve_path

            config["filename"] = os.path.relpath(resolve_path(source.value, source.base_dir), output_dir.resolve())
        result = compiled.get(entry) or state.compile_records.get(state.compile_keys[entry])
        if result is None:
            config["status"] = "todo"
        elif isinstance(result, CompileResult):
            config["status"] = result.status
            config["compile_s"] = _seconds(result.compile_s)
        else:  # a journal record of an earlier run
            config["status"] = result.get("status")
            config["compile_s"] = _seconds(result.get("compile_s"))
    model_index.save(index, str(output_dir / "model_index.json"), root=str(output_dir))


def _seconds(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 3)
