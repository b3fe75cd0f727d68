"""The plan stage: a ``Spec`` -> a ``Plan`` of frozen compile and run entries.

Compile entries are the product models x parameter combinations x batch sizes x pipeline sizes;
run entries multiply each by n_models x workers_per_model. ``exclude`` rules then drop run
entries (the first matching rule is credited), and a compile entry goes when all its run entries
went. The order is stable: models in spec order, then parameters in declared order, then the axes
in the order above, each in its listed order.

``input_idx``: each compile entry points at its example input in the plan's list of distinct
(model, parameter values, batch size) inputs, in order of first appearance. Pipeline-size
variants of one model share an input, because the input does not depend on how the model is split.

Pure like the spec stage: no framework, backend or user code.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional

from neuronperf.entries import (
    CompileEntry,
    ModelRef,
    Plan,
    RunEntry,
    TensorSpec,
    freeze,
    stable_hash,
    thaw,
)
from neuronperf.errors import SpecError
from neuronperf.paths import safe_file_stem
from neuronperf.spec import MAX_COPIES, ExcludeRule, Spec, spec_problem, substitute

# Axes decided by the compile entry, and those decided at run time.
_RUN_AXES = ("n_models", "workers_per_model")


def plan(spec: Spec, device_count: Optional[Callable[[], int]] = None) -> Plan:
    """Expand ``spec`` into its entries; raise a located ``SpecError`` if nothing is left.

    ``device_count`` says how many devices (NeuronCores, GPUs; 1 on a CPU) this machine has; it
    is asked once, and only when ``n_models`` lists ``max``, which becomes
    ``max(1, device_count // pipeline_size)`` for each pipeline size (a value already listed is
    not planned twice). The plan stage cannot ask a backend itself: the driver passes it."""
    rules = [_Rule(rule) for rule in spec.exclude]
    excluded = [0] * len(rules)
    copies = _copies_per_pipeline(spec, device_count)
    runtimes = {
        p: [(m, w) for m in copies[p] for w in spec.sweep.workers_per_model] for p in spec.sweep.pipeline_sizes
    }
    compile_entries: list[CompileEntry] = []
    run_entries: list[RunEntry] = []
    input_idx: dict[tuple[Any, ...], int] = {}
    id_owner: dict[str, int] = {}  # compile id -> index of the model that produced it
    for model in spec.models:
        names = [name for name, _ in model.params]
        for combo in itertools.product(*(values for _, values in model.params)):
            params = tuple(zip(names, combo))
            values = dict(params)
            ref = ModelRef(
                name=model.name,
                factory=model.factory,
                kwargs=freeze(substitute(thaw(model.kwargs), values)),
                base_dir=model.base_dir,
            )
            tensors = tuple(t.resolve(values) for t in model.inputs)
            for batch_size in spec.sweep.batch_sizes:
                for pipeline_size in spec.sweep.pipeline_sizes:
                    axes = {"model": model.name, "batch_size": batch_size, "pipeline_size": pipeline_size, **values}
                    live = [(i, r) for i, r in enumerate(rules) if r.matches(axes)]
                    kept = []
                    for n_models, workers in runtimes[pipeline_size]:
                        for i, rule in live:
                            if rule.matches_runtime(n_models, workers):
                                excluded[i] += 1
                                break
                        else:
                            kept.append((n_models, workers))
                    if not kept:
                        continue
                    entry = CompileEntry(
                        model=ref,
                        params=params,
                        inputs=tensors,
                        batch_size=batch_size,
                        pipeline_size=pipeline_size,
                        framework=spec.framework,
                        device_type=spec.device_type,
                        compiler=spec.compiler,
                        compiler_args=spec.compile.compiler_args,
                        input_idx=input_idx.setdefault((model.index, params, batch_size), len(input_idx)),
                        timeout=spec.compile.timeout,
                        task=model.task,
                        new_tokens=_new_tokens(model.new_tokens, values),
                    )
                    _claim_id(spec, entry.id, model.index, id_owner)
                    compile_entries.append(entry)
                    run_entries.extend(RunEntry(entry, m, w, spec.benchmark) for m, w in kept)
    if not run_entries:
        total = sum(excluded)
        raise SpecError([spec_problem(spec, "exclude", f"the exclude rules drop all {total} entries; nothing is left to run")])
    return Plan(
        name=spec.name,
        output_dir=spec.output_dir,
        compile_entries=tuple(compile_entries),
        run_entries=tuple(run_entries),
        excluded=tuple((rule.label, n) for rule, n in zip(rules, excluded)),
        slo=spec.slo,
        instance_type=spec.instance_type,
        cost_per_hour=spec.cost_per_hour,
        executor=spec.executor,
        ray=spec.ray,
    )


def _new_tokens(value: Any, params: Mapping[str, Any]) -> Optional[int]:
    """A generate model's ``new_tokens`` for one combination of its parameters."""
    if value is None:
        return None
    return int(substitute(value, params))


def _copies_per_pipeline(spec: Spec, device_count: Optional[Callable[[], int]]) -> dict[int, list[int]]:
    """The ``n_models`` values for each pipeline size, with ``max`` resolved."""
    values = spec.sweep.n_models
    if MAX_COPIES not in values:
        return {p: [int(v) for v in values] for p in spec.sweep.pipeline_sizes}
    if device_count is None:
        raise SpecError([spec_problem(spec, "sweep.n_models", "n_models: max needs this machine's device count; plan it with `neuronperf plan` or `run`, which ask the backend")])
    devices = int(device_count())
    result = {}
    for pipeline_size in spec.sweep.pipeline_sizes:
        most = max(1, devices // pipeline_size)
        resolved = [most if v == MAX_COPIES else int(v) for v in values]
        result[pipeline_size] = list(dict.fromkeys(resolved))
    return result


def plan_inputs(plan: Plan) -> list[tuple[tuple[TensorSpec, ...], int]]:
    """The plan's distinct example inputs as (tensor specs, batch size), in ``input_idx`` order."""
    found: dict[int, tuple[tuple[TensorSpec, ...], int]] = {}
    for entry in plan.compile_entries:
        found.setdefault(entry.input_idx, (entry.inputs, entry.batch_size))
    return [found[i] for i in sorted(found)]


def counts(plan: Plan) -> dict[str, Any]:
    """The plan's numbers: planned (before exclusions), excluded (total and per rule), kept."""
    return {
        "planned": len(plan.run_entries) + plan.n_excluded,
        "excluded": plan.n_excluded,
        "excluded_by": dict(plan.excluded),
        "run_entries": len(plan.run_entries),
        "compile_entries": len(plan.compile_entries),
    }


def counts_line(plan: Plan) -> str:
    """e.g. "48 planned, 6 excluded by exclude[1]: 42 run entries, 14 compile entries"."""
    c = counts(plan)
    text = f"{c['planned']} planned"
    by_rule = [f"{n} excluded by {label}" for label, n in plan.excluded]
    if by_rule:
        text += ", " + ", ".join(by_rule)
    runs, compiles = c["run_entries"], c["compile_entries"]
    return text + f": {runs} run {_entries(runs)}, {compiles} compile {_entries(compiles)}"


def compile_keys(entries: Sequence[CompileEntry]) -> list[str]:
    """``entry.key`` of each compile entry (computed once each)."""
    return [stable_hash(e.to_dict()) for e in entries]


def run_keys(entries: Sequence[RunEntry]) -> list[str]:
    """``entry.key`` of each run entry, fast: the hash state of the canonical JSON up to the
    run axes is computed once per (compile entry, settings) pair, then copied per run entry."""
    if not entries:
        return []
    prefixes: dict[tuple[int, int], Any] = {}  # id()s of a shared compile entry and settings
    keys = []
    for e in entries:
        shared = (id(e.compile), id(e.benchmark))
        prefix = prefixes.get(shared)
        if prefix is None:
            # Exactly what json.dumps(sort_keys=True, separators=(",", ":")) writes for to_dict().
            head = f'{{"benchmark":{_canonical(e.benchmark.identity_dict())},"compile":{_canonical(e.compile.to_dict())},"n_models":'
            prefix = prefixes[shared] = hashlib.sha256(head.encode("utf-8"))
        h = prefix.copy()
        h.update(f'{_canonical_int(e.n_models)},"workers_per_model":{_canonical_int(e.workers_per_model)}}}'.encode())
        keys.append(h.hexdigest()[:16])
    # The shortcut mirrors RunEntry.to_dict; should that ever change, fall back to the definition.
    if keys[0] != entries[0].key or keys[-1] != entries[-1].key:
        return [e.key for e in entries]
    return keys


def artifact_relpath(entry: CompileEntry, suffix: Optional[str], key: Optional[str] = None) -> str:
    """Where ``entry``'s artifact goes, relative to the model index's folder:
    ``models/<compile id>-<key[:8]><suffix>``. ``suffix`` is the backend's artifact suffix
    ("" for a folder); None means no artifact at all (eager), and the name is then
    ``<compiler>:<compile id>-<key[:8]>``, which names no file. ``key`` defaults to ``entry.key``."""
    stem = safe_file_stem(entry.id, key or entry.key)
    if suffix is None:
        return f"{entry.compiler}:{stem}"
    return f"models/{stem}{suffix}"


def planned_index(plan: Plan, suffix: Optional[str] = ".pt", keys: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """The model index the compile stage will fill in (``compile_s``, and ``filename`` if it
    chooses another), one config per compile entry, in the seed's format plus identity keys."""
    from neuronperf import __version__

    keys = list(keys) if keys is not None else compile_keys(plan.compile_entries)
    configs = []
    for entry, key in zip(plan.compile_entries, keys):
        configs.append(
            {
                "filename": artifact_relpath(entry, suffix, key),
                "input_idx": entry.input_idx,
                "batch_size": entry.batch_size,
                "pipeline_size": entry.pipeline_size,
                "compile_s": None,
                "id": entry.id,
                "key": key,
                "model_name": entry.model.name,
                "params": dict(entry.params),
            }
        )
    return {"version": __version__, "model_configs": configs}


def plan_dict(plan: Plan) -> dict[str, Any]:
    """The machine-readable plan that ``neuronperf plan --json`` prints."""
    ckeys = compile_keys(plan.compile_entries)
    compiled = []
    by_compile: dict[int, tuple[str, str, dict[str, Any]]] = {}
    for entry, key in zip(plan.compile_entries, ckeys):
        params = dict(entry.params)
        by_compile[id(entry)] = (entry.id, key, params)
        compiled.append({"id": entry.id, "key": key, "input_idx": entry.input_idx, **entry.to_dict()})
    runs = []
    for run, key in zip(plan.run_entries, run_keys(plan.run_entries)):
        compile_id, compile_key, params = by_compile[id(run.compile)]
        runs.append(
            {
                "id": f"{compile_id}-m{run.n_models}-w{run.workers_per_model}",
                "key": key,
                "compile_id": compile_id,
                "compile_key": compile_key,
                "model": run.compile.model.name,
                "params": params,
                "batch_size": run.compile.batch_size,
                "pipeline_size": run.compile.pipeline_size,
                "n_models": run.n_models,
                "workers_per_model": run.workers_per_model,
            }
        )
    return {
        "name": plan.name,
        "output_dir": plan.output_dir,
        "counts": counts(plan),
        "compile_entries": compiled,
        "run_entries": runs,
    }


def plan_json(plan: Plan) -> str:
    """``plan_dict`` as JSON text, serialized in one call."""
    return json.dumps(plan_dict(plan), indent=None, separators=(",", ":"), default=str)


class _Rule:
    """An exclude rule split into its compile-time and run-time halves, for a fast inner loop."""

    def __init__(self, rule: ExcludeRule):
        self.label = rule.label
        self.static = [(axis, values) for axis, values in rule.match if axis not in _RUN_AXES]
        match = dict(rule.match)
        self.n_models = match.get("n_models")
        self.workers = match.get("workers_per_model")

    def matches(self, axes: Mapping[str, Any]) -> bool:
        # A rule naming a parameter that this model does not have does not match it.
        return all(axis in axes and any(_same(axes[axis], v) for v in values) for axis, values in self.static)

    def matches_runtime(self, n_models: int, workers: int) -> bool:
        return (self.n_models is None or n_models in self.n_models) and (self.workers is None or workers in self.workers)


def _same(a: Any, b: Any) -> bool:
    # True == 1 in Python, but a bool parameter value must not match an integer one.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _claim_id(spec: Spec, entry_id: str, model_index: int, owners: dict[str, int]) -> None:
    """Entry ids name results and files, so two entries must never share one."""
    if entry_id not in owners:
        owners[entry_id] = model_index
        return
    first = spec.models[owners[entry_id]].name
    if owners[entry_id] == model_index:
        path: tuple[Any, ...] = ("models", model_index, "params")
        message = f"two parameter combinations give the same entry id '{entry_id}'; make the values distinct"
    else:
        path = ("models", model_index, "name")
        message = f"entry id '{entry_id}' is also produced by model '{first}'; rename one of the models"
    raise SpecError([spec_problem(spec, path, message)])



def _entries(n: int) -> str:
    return "entry" if n == 1 else "entries"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _canonical_int(value: Any) -> str:
    # json.dumps writes an int as str() does; anything else takes the general path.
    return str(value) if type(value) is int else _canonical(value)
