"""The plan stage: a ``Spec`` -> a ``Plan`` of frozen compile and run entries.

Compile entries are the product models x parameter combinations x batch sizes x pipeline sizes
(x logical NeuronCore configs, when the sweep sets them); run entries multiply each by n_models x
workers_per_model (and, in the server scenario, by max_queue_delays_ms x rates: the rate varies
fastest, so a configuration's rates are neighbours in the plan, as its latency-against-rate curve
is drawn). ``exclude`` rules then drop run
entries (the first matching rule is credited), and a compile entry goes when all its run entries
went. The order is stable: models in spec order, then parameters in declared order, then the axes
in the order above, each in its listed order.

``input_idx``: each compile entry points at its example input in the plan's list of distinct
(model, parameter values, batch size) inputs, in order of first appearance. Pipeline-size
variants of one model share an input, because the input does not depend on how the model is split.

Pure like the spec stage: no framework, backend or user code.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping
from typing import Any, Optional

from neuronperf.entries import (
    CompileEntry,
    ModelRef,
    ModelSource,
    Plan,
    RunEntry,
    ServingSettings,
    freeze,
    thaw,
)
from neuronperf.errors import SpecError
from neuronperf.spec.load import spec_problem
from neuronperf.spec.values import (
    MAX_COPIES,
    MAX_RATE,
    ExcludeRule,
    InputTemplate,
    ModelSpec,
    Spec,
    substitute,
)

# Axes decided by the compile entry, and those decided at run time.
_RUN_AXES = ("n_models", "workers_per_model", "rate", "max_queue_delay_ms")


def plan(spec: Spec, device_count: Optional[Callable[..., int]] = None,
         sources: Optional[Mapping[str, Mapping[str, Any]]] = None) -> Plan:
    """Expand ``spec`` into its entries; raise a located ``SpecError`` if nothing is left.

    ``device_count`` says how many devices (NeuronCores, GPUs; 1 on a CPU) this machine has; it
    is asked only when ``n_models`` lists ``max``, which becomes
    ``max(1, device_count // pipeline_size)`` for each pipeline size (a value already listed is
    not planned twice). With ``sweep.logical_nc_configs`` it is asked once per config, as
    ``device_count(lnc)``: the NeuronCores the runtime presents at that config. The plan stage
    cannot ask a backend itself: the driver passes it.

    ``sources`` describes each model that has a built-in source (``hf``, ``timm``,
    ``torchvision``, ``file``), by name: ``neuronperf.sources.describe_spec`` finds its
    ``inputs`` (input dicts, used when the spec gives none), its ``identity`` (part of every
    entry key) and, for an artifact, the ``compiler`` that loads it. The plan stage reads no
    checkpoint itself: the driver passes them, as it passes ``device_count``."""
    rules = [_Rule(rule) for rule in spec.exclude]
    excluded = [0] * len(rules)
    lncs = spec.sweep.logical_nc_configs
    loads = _server_loads(spec)
    runtimes = {}
    for lnc in lncs:
        copies = _copies_per_pipeline(spec, device_count, lnc)
        for p in spec.sweep.pipeline_sizes:
            runtimes[(p, lnc)] = [(m, w, load) for m in copies[p] for w in spec.sweep.workers_per_model for load in loads]
    compile_entries: list[CompileEntry] = []
    run_entries: list[RunEntry] = []
    input_idx: dict[tuple[Any, ...], int] = {}
    id_owner: dict[str, int] = {}  # compile id -> index of the model that produced it
    for model in spec.models:
        names = [name for name, _ in model.params]
        source, templates, compiler = _source_of(spec, model, sources)
        for combo in itertools.product(*(values for _, values in model.params)):
            params = tuple(zip(names, combo))
            values = dict(params)
            ref = ModelRef(
                name=model.name,
                factory=model.factory,
                kwargs=freeze(substitute(thaw(model.kwargs), values)),
                base_dir=model.base_dir,
                source=source,
            )
            tensors = tuple(t.resolve(values) for t in templates)
            for batch_size, pipeline_size, lnc in itertools.product(spec.sweep.batch_sizes, spec.sweep.pipeline_sizes, lncs):
                axes = {"model": model.name, "batch_size": batch_size, "pipeline_size": pipeline_size, **values}
                if lnc is not None:
                    axes["logical_nc_config"] = lnc
                live = [(i, r) for i, r in enumerate(rules) if r.matches(axes)]
                kept = []
                for n_models, workers, load in runtimes[(pipeline_size, lnc)]:
                    for i, rule in live:
                        if rule.matches_runtime(n_models, workers, load):
                            excluded[i] += 1
                            break
                    else:
                        kept.append((n_models, workers, load))
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
                    compiler=compiler,
                    compiler_args=spec.compile.compiler_args,
                    input_idx=input_idx.setdefault((model.index, params, batch_size), len(input_idx)),
                    timeout=spec.compile.timeout,
                    task=model.task,
                    new_tokens=_new_tokens(model.new_tokens, values),
                    lnc=lnc,
                )
                _claim_id(spec, entry.id, model.index, id_owner)
                compile_entries.append(entry)
                run_entries.extend(RunEntry(entry, m, w, spec.benchmark, _for_task(load, model.task))
                                   for m, w, load in kept)
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
        search=spec.search,
    )


def _source_of(spec: Spec, model: ModelSpec, sources: Optional[Mapping[str, Mapping[str, Any]]],
               ) -> tuple[Optional[ModelSource], tuple[InputTemplate, ...], str]:
    """A model's source with its identity, its input templates (the spec's own win) and the
    compiler of its entries (an artifact's kind fixes it)."""
    if model.source is None:
        return None, model.inputs, spec.compiler
    described = (sources or {}).get(model.name)
    if described is None:
        raise SpecError([spec_problem(spec, f"models[{model.index}].{model.source.kind}",
                                      f"{model.source.label} was not described; plan it with `neuronperf plan` or `run`, "
                                      f"or neuronperf.sources.plan_spec (which read its config)")])
    source = dataclasses.replace(model.source, identity=freeze(dict(described["identity"])))
    templates = model.inputs or tuple(
        InputTemplate(shape=tuple(t["shape"]), dtype=str(t.get("dtype", "float32")), low=t.get("low"),
                      high=t.get("high"), name=t.get("name"))
        for t in described["inputs"]
    )
    return source, templates, str(described.get("compiler") or spec.compiler)


def _server_loads(spec: Spec) -> list[Optional[ServingSettings]]:
    """The server scenario's load of each run entry (queue delay x rate, the rate fastest);
    ``[None]`` in the closed loop."""
    rates = spec.sweep.rates
    if spec.benchmark.scenario != "server" or rates is None:
        return [None]
    b = spec.benchmark
    listed: list[Optional[float]] = [None] if rates == MAX_RATE else [float(r) for r in rates]
    return [
        ServingSettings(rate=rate, max_queue_delay_ms=float(delay), arrival=b.arrival, seed=b.seed,
                        rate_precision=b.rate_precision, slo=spec.slo)
        for delay in spec.sweep.max_queue_delays_ms for rate in listed
    ]


def _for_task(load: Optional[ServingSettings], task: str) -> Optional[ServingSettings]:
    """An entry's load with the bounds that change what it measures: a search's (what it
    searches under) and a generation entry's (what its goodput counts); none otherwise, so an
    edit of objectives.slo leaves fixed-rate forward entries done."""
    if load is None or load.search or task == "generate":
        return load
    return dataclasses.replace(load, slo=())


def _new_tokens(value: Any, params: Mapping[str, Any]) -> Optional[int]:
    """A generate model's ``new_tokens`` for one combination of its parameters."""
    if value is None:
        return None
    return int(substitute(value, params))


def _copies_per_pipeline(spec: Spec, device_count: Optional[Callable[..., int]], lnc: Optional[int] = None) -> dict[int, list[int]]:
    """The ``n_models`` values for each pipeline size, with ``max`` resolved (at ``lnc``)."""
    values = spec.sweep.n_models
    if MAX_COPIES not in values:
        return {p: [int(v) for v in values] for p in spec.sweep.pipeline_sizes}
    if device_count is None:
        raise SpecError([spec_problem(spec, "sweep.n_models", "n_models: max needs this machine's device count; plan it with `neuronperf plan` or `run`, which ask the backend")])
    devices = int(device_count() if lnc is None else device_count(lnc))
    result = {}
    for pipeline_size in spec.sweep.pipeline_sizes:
        most = max(1, devices // pipeline_size)
        resolved = [most if v == MAX_COPIES else int(v) for v in values]
        result[pipeline_size] = list(dict.fromkeys(resolved))
    return result


class _Rule:
    """An exclude rule split into its compile-time and run-time halves, for a fast inner loop."""

    def __init__(self, rule: ExcludeRule):
        self.label = rule.label
        self.static = [(axis, values) for axis, values in rule.match if axis not in _RUN_AXES]
        match = dict(rule.match)
        self.n_models = match.get("n_models")
        self.workers = match.get("workers_per_model")
        self.rate = match.get("rate")
        self.delay = match.get("max_queue_delay_ms")

    def matches(self, axes: Mapping[str, Any]) -> bool:
        # A rule naming a parameter that this model does not have does not match it.
        return all(axis in axes and any(_same(axes[axis], v) for v in values) for axis, values in self.static)

    def matches_runtime(self, n_models: int, workers: int, load: Optional[ServingSettings] = None) -> bool:
        if (self.rate is not None or self.delay is not None) and load is None:
            return False
        rate = MAX_RATE if load is None or load.rate is None else load.rate
        return ((self.n_models is None or n_models in self.n_models)
                and (self.workers is None or workers in self.workers)
                and (self.rate is None or any(_same(rate, r) for r in self.rate))
                and (self.delay is None or load is None or any(_same(load.max_queue_delay_ms, d) for d in self.delay)))


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
