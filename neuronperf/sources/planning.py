"""The sources' part of planning: describe every model of a spec that has a built-in source
(its inputs, its identity), check what the spec file alone could not (a sequence longer than
the model's positions, an artifact of another framework), and hand the descriptions to the
plan stage, which reads no checkpoint itself.

What needs a library (timm, torchvision, a hub config not yet cached, an ONNX graph) runs
through ``run_elsewhere``, a function the caller gives that runs a call in a worker process (the
driver's ``run_in_worker``), so the driver imports no framework; without one it runs here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional

from neuronperf.entries import CompileEntry, Plan
from neuronperf.errors import ModelLoadError, Problem, SpecError
from neuronperf.plan.expand import plan
from neuronperf.sources import files
from neuronperf.sources.models import describe_all, needs_worker
from neuronperf.spec.load import spec_problem
from neuronperf.spec.values import Spec

#: ``run_elsewhere(fn, args)``: call ``fn(*args)`` in a worker process and return its result.
RunElsewhere = Callable[[Callable[..., Any], tuple], Any]


def describe_spec(spec: Spec, run_elsewhere: Optional[RunElsewhere] = None) -> dict[str, dict]:
    """Each source model's description JSON, by name (see ``plan``'s ``sources``); every
    problem located at its model's key, all at once, as a ``SpecError``."""
    here: list[Any] = []
    elsewhere: list[Any] = []
    for model in spec.models:
        if model.source is None:
            continue
        given = bool(model.inputs)
        request = (model.name, model.source, [n for n, _ in model.params], model.task, given)
        (elsewhere if needs_worker(model.source, given) else here).append(request)
    answers = describe_all(here)
    if elsewhere:
        try:
            answers.update(run_elsewhere(describe_all, (elsewhere,)) if run_elsewhere else describe_all(elsewhere))
        except Exception as e:  # the worker died or timed out: every model it had is unknown
            message = " ".join(str(e).split())
            answers.update({r[0]: {"error": f"{r[1].label}: describing it in a worker process failed: {message}"}
                            for r in elsewhere})
    problems: list[Problem] = []
    described: dict[str, dict] = {}
    for model in spec.models:
        if model.source is None:
            continue
        answer = answers[model.name]
        key = f"models[{model.index}].{model.source.kind}"
        if "error" in answer:
            problems.append(spec_problem(spec, key, answer["error"]))
            continue
        description = dict(answer["ok"])
        problems += _length_problems(spec, model, description)
        if model.source.kind == "file":
            try:
                kind = files.artifact_kind(files.resolve_path(model.source.value, model.source.base_dir), model.source.label)
            except ModelLoadError as e:
                problems.append(spec_problem(spec, key, str(e)))
                continue
            wrong = files.check_target(kind, spec.framework, spec.device_type, model.source.label, spec.compiler)
            if wrong and kind == "neuron" and spec.compiler in files.NATIVE_COMPILERS and not spec.compiler_given:
                wrong += (f"; the spec names no compiler, and the installed torch-neuronx takes the {spec.compiler} "
                          "path: set compiler: neuronx")
            if wrong:
                problems.append(spec_problem(spec, key, wrong))
            description["compiler"] = files.compiler_for(kind, spec.compiler)
        described[model.name] = description
    if problems:
        raise SpecError(problems)
    return described


def _length_problems(spec: Spec, model: Any, description: Mapping[str, Any]) -> list[Problem]:
    """A generated sequence longer than the text model's position embeddings, at that value."""
    longest = description.get("max_length")
    if not isinstance(longest, int) or model.inputs:
        return []
    problems = []
    for name, values in model.params:
        if name not in ("seq_len", "prompt_len"):
            continue
        for k, value in enumerate(values):
            if isinstance(value, int) and value > longest:
                path = f"models[{model.index}].params.{name}" + (f"[{k}]" if len(values) > 1 or _listed(spec, model, name) else "")
                problems.append(spec_problem(spec, path, f"{name} {value} is longer than {model.source.label} takes "
                                                         f"({longest} positions, its config's maximum)"))
    return problems


def _listed(spec: Spec, model: Any, name: str) -> bool:
    return (("models", model.index, "params", name, 0)) in spec.value_pos


def plan_spec(spec: Spec, device_count: Optional[Callable[[], int]] = None,
              run_elsewhere: Optional[RunElsewhere] = None) -> Plan:
    """``plan`` of ``spec`` with its source models described (``describe_spec``)."""
    return plan(spec, device_count, describe_spec(spec, run_elsewhere))


def model_errors(entries: Sequence[CompileEntry]) -> dict[str, tuple[str, str]]:
    """What is wrong with the model of each of these compile entries (one per model), by model
    name: the spec key to report it at and one line. Factories are resolved; built-in sources
    are checked by their library without loading weights (a task that does not serve the
    architecture, a forward that takes not the generated inputs, an unknown architecture).
    Runs in a worker process: it imports user code and frameworks."""
    from neuronperf.sources.factory import resolve_errors
    from neuronperf.sources.models import check_all

    failures = {name: ("factory", error) for name, error in resolve_errors([e.model for e in entries]).items()}
    requests = [(e.model.name, e.model.source, [t.to_dict() for t in e.inputs], e.task)
                for e in entries if e.model.source is not None]
    for name, error in check_all(requests).items():
        source = next(e.model.source for e in entries if e.model.name == name)
        assert source is not None
        key = "hf_task" if source.kind == "hf" and "hf_task" in error and "unknown hf_task" not in error else source.kind
        failures[name] = (key, error)
    return failures
