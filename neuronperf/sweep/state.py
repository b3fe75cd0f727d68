"""What an output_dir already knows about a plan: each entry's identity, its latest journal record,
whether it is done, failed or to do, and why a measured entry must run again.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

from neuronperf.backends import find_backend
from neuronperf.backends.base import Backend
from neuronperf.compilation.artifacts import compile_key
from neuronperf.entries import CompileEntry, Plan, RunEntry, stable_hash
from neuronperf.errors import (
    BackendUnavailable,
    SpecError,
    UsageError,
)
from neuronperf.results.journal import Journal
from neuronperf.spec.load import spec_problem
from neuronperf.sweep.outcome import SweepOptions


def load_plan(spec_path: str) -> tuple[Any, Plan]:
    """Load and validate a spec and plan it (no user code or framework in this process).
    Whether its rows will have the objective's column is checked here, above the spec stage,
    which cannot know the columns. A Neuron spec without a compiler gets the installed
    torch-neuronx's (``resolve_compiler``)."""
    from neuronperf.search.checks import objective_problems

    spec = load_sweep_spec(spec_path)
    problems = objective_problems(spec)
    if problems:
        raise SpecError(problems)
    return spec, plan_spec(spec)


#: How long describing the models of hf:/timm:/torchvision:/file: sources may take in a worker
#: (importing their library, fetching a hub config).
SOURCE_DESCRIBE_TIMEOUT_S = 600.0


def plan_spec(spec: Any) -> Plan:
    """The plan of a loaded spec: its source models described (what needs a library, in a
    worker process), ``n_models: max`` counted by the backend."""
    from neuronperf.sources.planning import plan_spec as plan_with_sources

    return plan_with_sources(spec, device_counter(spec), run_elsewhere=in_worker)


def in_worker(fn: Any, args: tuple) -> Any:
    """``fn(*args)`` in a worker process (the driver imports no framework)."""
    from neuronperf.measure.supervisor import run_in_worker

    return run_in_worker(fn, args, timeout=SOURCE_DESCRIBE_TIMEOUT_S)


def load_sweep_spec(spec_path: str) -> Any:
    """The spec as a sweep runs it: loaded and checked, with its compiler resolved
    (``resolve_compiler``)."""
    from neuronperf.spec.load import load_spec

    return resolve_compiler(load_spec(spec_path))


def resolve_compiler(spec: Any) -> Any:
    """A torch spec on Neuron that names no compiler takes the path of the installed
    torch-neuronx: ``native`` from PyTorch 2.10 on (TorchNeuron), ``neuronx`` before (the
    PyTorch/XLA trace), ``neuron`` where only torch-neuron (Inferentia 1) is installed. Read from
    package metadata: nothing is imported. A path the spec's ``instance_type`` cannot run is a
    located ``SpecError`` naming what is installed."""
    from neuronperf.backends.neuron_sdk import pip_version, torch_neuronx_path
    from neuronperf.spec.instances import family_problem

    if spec.compiler_given or spec.framework != "torch" or spec.device_type != "neuron":
        return spec
    installed = pip_version("torch-neuronx")
    path = torch_neuronx_path(installed)
    if path is not None:
        compiler, what = ("native" if path == "native" else "neuronx"), f"torch-neuronx {installed}"
    elif pip_version("torch-neuron"):
        compiler, what = "neuron", f"torch-neuron {pip_version('torch-neuron')}"
    else:
        return spec  # nothing installed: the default, whose backend says how to install it
    problem = family_problem(spec.framework, compiler, spec.instance_type)
    if problem:
        raise SpecError([spec_problem(spec, "instance_type", f"{problem}; the spec names no compiler, and the installed {what} takes this path")])
    return replace(spec, compiler=compiler) if compiler != spec.compiler else spec


def device_counter(spec: Any) -> Any:
    """A callable that counts this machine's devices through the spec's backend (for
    ``n_models: max``), at a logical NeuronCore config when given one; a backend that cannot
    count them is a located ``SpecError``."""

    def count(lnc: Optional[int] = None) -> int:
        try:
            backend = find_backend(spec.framework, spec.device_type, spec.compiler)
            if lnc is None:
                return int(backend.device_count(spec.device_type))
            return int(backend.device_count(spec.device_type, lnc))  # type: ignore[call-arg]
        except (BackendUnavailable, UsageError) as e:
            key = "sweep.n_models" if lnc is None else "sweep.logical_nc_configs"
            raise SpecError([spec_problem(spec, key, f"n_models: max: cannot count this machine's devices: {e}")]) from None

    return count


def run_identity(entry: RunEntry, compile_key: str) -> str:
    """A run entry's identity: its content, its artifact's compile key (compiler version) and the
    measurement method's version (rows of an older method are measured again, never mixed)."""
    from neuronperf.stats.forward import METHOD_VERSION

    return stable_hash({"run": entry.key, "compile": compile_key, "method": METHOD_VERSION})


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
            self.compile_keys[entry] = compile_key(entry, version_cache[entry.compiler])
        self.versions = version_cache
        self.identities = {e: run_identity(e, self.compile_keys[e.compile]) for e in plan.run_entries}
        #: The ``evaluate`` columns of each compile entry, joined onto each of its rows.
        self.evaluations: dict[CompileEntry, dict] = {}
        self._row_columns: dict[CompileEntry, dict] = {}

    def row_columns(self, entry: CompileEntry) -> dict:
        """The backend's columns of ``entry``'s rows (for Neuron: the SDK it ran on), read once."""
        if entry not in self._row_columns:
            try:
                self._row_columns[entry] = dict(self.backend.row_columns(entry))
            except (BackendUnavailable, UsageError):
                self._row_columns[entry] = {}
        return self._row_columns[entry]

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
        from neuronperf.stats.forward import METHOD_VERSION

        if self.record_for(entry) is not None or ("run", entry.id) not in self._latest_by_id:
            return None
        method = (self._latest_by_id[("run", entry.id)].get("row") or {}).get("method_version") or 1
        if method != METHOD_VERSION:
            return f"measured by method {method}; method {METHOD_VERSION} measures it again"
        compile_entry = entry.compile
        compiled = self._latest_by_id.get(("compile", compile_entry.id))
        if compiled is None or compiled["key"] == self.compile_keys[compile_entry]:
            return "benchmark or runtime settings changed since measured"
        from neuronperf.sources.factory import source_digest

        was_source, now_source = compiled.get("source"), source_digest(compile_entry.model)
        if was_source is not None and was_source != now_source:
            return "model source changed since measured"
        was_version, now_version = compiled.get("compiler_version"), self.versions[compile_entry.compiler]
        if was_version is not None and was_version != now_version:
            return f"compiler version changed since measured ({was_version} -> {now_version})"
        return "model or compile settings changed since measured"


def backend_for(plan: Plan) -> Backend:
    first = plan.compile_entries[0]
    return find_backend(first.framework, first.device_type, first.compiler)


def needs_run(state: SweepState, entry: RunEntry, options: SweepOptions) -> bool:
    status = state.status_of(entry)
    if status == "todo":
        return True
    return status == "failed" and options.retry_failed
