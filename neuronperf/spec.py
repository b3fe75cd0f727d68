"""The spec stage: a sweep YAML file -> a validated, typed ``Spec``.

Pure and fast: it reads one file and imports no user code, backend or framework. Validation runs
the shipped JSON Schema (``spec_schema.json``) through jsonschema, then the checks a schema cannot
express (known frameworks and compilers, declared ``$param`` references, duplicate values, exclude
rules naming real axes, ...). Every problem is located (``FILE:LINE:COL: key.path: message``) and
all problems of a file are raised together as one ``SpecError``.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Optional, Union

from neuronperf import catalog
from neuronperf.entries import (
    BenchmarkSettings,
    Frozen,
    FrozenDict,
    RaySettings,
    TensorSpec,
    freeze,
)
from neuronperf.errors import Problem, SpecError
from neuronperf.spec_yaml import (
    KeyPath,
    LoadedYaml,
    Position,
    format_path,
    load_yaml_bytes,
    load_yaml_file,
    one_line,
)

SPEC_VERSION = 1
SCHEMA_FILE = Path(__file__).with_name("spec_schema.json")

#: sweep key -> the singular axis name used in entry ids, exclude rules and reports.
SWEEP_AXES = {
    "batch_sizes": "batch_size",
    "pipeline_sizes": "pipeline_size",
    "n_models": "n_models",
    "workers_per_model": "workers_per_model",
}
#: Names an exclude rule may use besides the model parameters.
EXCLUDE_AXES = ("model", "batch_size", "pipeline_size", "n_models", "workers_per_model")
EXECUTORS = ("local", "ray")
TASKS = ("forward", "generate")
#: (framework, device_type, compiler) that can run ``task: generate``: a causal LM's own
#: generate loop needs the model itself (eager), or a compiler built for generation (optimum-neuron).
GENERATE_CAPABLE = {
    ("torch", "cpu", "eager"),
    ("torch", "cuda", "eager"),
    ("torch", "neuron", "optimum"),
}
#: Compilers that build nothing but generation models.
GENERATE_ONLY_COMPILERS = {("torch", "neuron", "optimum")}
#: Executors that a later release adds; named so the error can say "not yet" instead of "unknown".
PLANNED_EXECUTORS: tuple[str, ...] = ()
#: A larger sweep is almost always a mistake (a stray value in an axis), and its plan alone would
#: take seconds and hundreds of MB; split real sweeps of this size into several specs.
MAX_RUN_ENTRIES = 1_000_000

#: ``n_models: max``: as many copies as fit on the machine, resolved when planning.
MAX_COPIES = "max"
#: The latency columns an ``objectives.slo`` bound may name (the reported percentiles).
SLO_COLUMNS = tuple(f"latency_ms_p{q}" for q in (0, 50, 90, 95, 99, 100))

DEFAULT_DURATION = 5.0
DEFAULT_WARMUP_CALLS = 10
DEFAULT_BENCHMARK_TIMEOUT = 300.0
DEFAULT_PEAK_WINDOW = 1.0
DEFAULT_COMPILE_TIMEOUT = 1800.0

_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REFERENCE = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")
_INT_RANGES = {
    "int8": (-(2**7), 2**7),
    "uint8": (0, 2**8),
    "int16": (-(2**15), 2**15),
    "int32": (-(2**31), 2**31),
    "int64": (-(2**63), 2**63),
}
# Names people write for these values; difflib alone would not find them.
_FRAMEWORK_ALIASES = {"pytorch": "torch", "onnx": "onnxruntime", "ort": "onnxruntime", "tf": "tensorflow"}
_DEVICE_ALIASES = {"gpu": "cuda", "inf1": "neuron", "inf2": "neuron", "trn1": "neuron", "inferentia": "neuron"}
# Backend registry names that people write as a framework: what they mean in spec terms.
_BACKEND_NAMES = {
    "torch-neuron": ("torch", "neuron", "neuron"),
    "torch-neuronx": ("torch", "neuron", "neuronx"),
    "tensorflow-neuron": ("tensorflow", "neuron", "neuron"),
}


# ---- the typed spec ---------------------------------------------------------------------------


@dataclass(frozen=True)
class InputTemplate:
    """One input tensor as written in the spec (no batch dimension); a dimension may be a
    ``"$param"`` reference that the planner substitutes."""

    shape: tuple[Union[int, str], ...]
    dtype: str = "float32"
    low: Optional[float] = None
    high: Optional[float] = None

    def resolve(self, params: Mapping[str, Any]) -> TensorSpec:
        """The concrete ``TensorSpec`` for one combination of the model's parameters."""
        dims = tuple(int(params[d[1:]]) if isinstance(d, str) else d for d in self.shape)
        return TensorSpec(shape=dims, dtype=self.dtype, low=self.low, high=self.high)


@dataclass(frozen=True)
class ModelSpec:
    """One entry of ``models``: a factory, its kwargs, its inputs and its swept parameters."""

    name: str
    factory: str
    kwargs: Frozen  # may hold "$param" strings, substituted per combination by the planner
    inputs: tuple[InputTemplate, ...]
    #: Swept parameters in declared order: (("seq_len", (128, 256)),).
    params: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    #: The spec file's folder: file-relative factories resolve against it.
    base_dir: str = field(default=".", compare=False)
    #: Where the ``factory`` value is, so a factory that does not resolve can be reported there.
    factory_pos: Position = field(default=(1, 1), compare=False)
    #: This model's position in ``models`` (its key path is ``models[index]``).
    index: int = field(default=0, compare=False)
    #: Its ``evaluate`` key: a dataset and metrics evaluated once per compile entry.
    evaluate: Optional[EvaluateSpec] = None
    #: What one timed call is: "forward" (one forward pass) or "generate" (one generation request).
    task: str = "forward"
    #: ``generate.new_tokens`` of a generate model: an integer, or a ``"$param"`` reference that
    #: the planner substitutes.
    new_tokens: Union[int, str, None] = None


@dataclass(frozen=True)
class EvaluateSpec:
    """A model's ``evaluate`` key: ``dataset`` ("file.py:callable", called in a worker, returns
    ``(*inputs, target)`` items), the registered ``metrics`` and the target's column."""

    dataset: str
    metrics: tuple[str, ...]
    target_col: int = -1


@dataclass(frozen=True)
class SweepAxes:
    """The run axes of ``sweep``, each a non-empty tuple of distinct positive integers."""

    batch_sizes: tuple[int, ...] = (1,)
    pipeline_sizes: tuple[int, ...] = (1,)
    #: Positive integers, or ``"max"``: as many copies as fit (resolved when planning).
    n_models: tuple[Union[int, str], ...] = (1,)
    workers_per_model: tuple[int, ...] = (1,)


@dataclass(frozen=True)
class ExcludeRule:
    """``exclude[index]``: drops every entry whose axes match all of ``match``."""

    index: int
    #: axis name -> the values that match, e.g. (("batch_size", (16,)), ("n_models", (2, 4))).
    match: tuple[tuple[str, tuple[Any, ...]], ...]

    @property
    def label(self) -> str:
        return f"exclude[{self.index}]"


@dataclass(frozen=True)
class CompileSettings:
    """The spec's ``compile`` section."""

    jobs: int
    compiler_args: Frozen = FrozenDict()
    timeout: float = DEFAULT_COMPILE_TIMEOUT


@dataclass(frozen=True)
class Spec:
    """A validated sweep spec: everything the planner needs, plus where each value came from."""

    source: str  # the spec's path as the user gave it; messages name it
    name: str
    framework: str
    device_type: str
    compiler: str
    executor: str
    output_dir: str  # as written (or runs/<name>), relative to the working directory
    models: tuple[ModelSpec, ...]
    sweep: SweepAxes
    exclude: tuple[ExcludeRule, ...]
    compile: CompileSettings
    benchmark: BenchmarkSettings
    version: int = SPEC_VERSION
    #: ``objectives.slo``: (("latency_ms_p99", 20.0),), in file order.
    slo: tuple[tuple[str, float], ...] = ()
    instance_type: Optional[str] = None
    cost_per_hour: Optional[float] = None
    #: The ``ray`` section (used when ``executor`` is ray).
    ray: RaySettings = RaySettings()
    value_pos: Mapping[KeyPath, Position] = field(default_factory=dict, compare=False, hash=False, repr=False)
    key_pos: Mapping[KeyPath, Position] = field(default_factory=dict, compare=False, hash=False, repr=False)


# ---- public functions -------------------------------------------------------------------------


def load_spec(path: Union[str, os.PathLike]) -> Spec:
    """Read and validate the spec at ``path``; raise ``SpecError`` with every problem found."""
    source = os.fspath(path)
    return _build(load_yaml_file(source), source, os.path.dirname(os.path.abspath(source)))


def parse_spec(content: Union[str, bytes], source: str = "<spec>", base_dir: str = ".") -> Spec:
    """Validate spec text that is already in memory; ``source`` names it in messages."""
    raw = content.encode("utf-8") if isinstance(content, str) else content
    return _build(load_yaml_bytes(raw), source, os.path.abspath(base_dir))


@cache
def schema_text() -> str:
    """The spec's JSON Schema, as shipped in the package."""
    return SCHEMA_FILE.read_text(encoding="utf-8")


def schema() -> dict:
    """The spec's JSON Schema as a dict (a fresh copy)."""
    return json.loads(schema_text())  # type: ignore[no-any-return]


def spec_problem(spec: Spec, key_path: Union[str, KeyPath], message: str, at_key: bool = False) -> Problem:
    """A ``Problem`` located at ``key_path`` (e.g. ``"models[0].factory"``) in the spec's file,
    or at its nearest ancestor that has a position."""
    path = parse_path(key_path) if isinstance(key_path, str) else tuple(key_path)
    line, col = _locate(spec.value_pos, spec.key_pos, path, at_key)
    return Problem(spec.source, line, col, format_path(path), one_line(message))


def parse_path(text: str) -> KeyPath:
    """``"models[0].factory"`` -> ``("models", 0, "factory")``."""
    parts: list[Union[str, int]] = []
    for token in re.finditer(r"\[(\d+)\]|([^.\[\]]+)", text):
        parts.append(int(token.group(1)) if token.group(1) is not None else token.group(2))
    return tuple(parts)


def default_compile_jobs() -> int:
    """Half the CPU cores, between 1 and 4: each compile is multi-threaded and memory-hungry
    itself (a Neuron compile of BERT takes several GB), so more jobs only contend."""
    return max(1, min(4, (os.cpu_count() or 1) // 2))


def plugin_frameworks() -> tuple[str, ...]:
    """Framework names that installed plug-ins register (not the built-in backend names)."""
    from neuronperf.catalog import BUILTIN_BACKENDS, registered_backends

    return tuple(sorted(n for n in registered_backends() if n not in BUILTIN_BACKENDS))


def substitute(value: Any, params: Mapping[str, Any]) -> Any:
    """Replace every string ``"$name"`` in a JSON-like value by ``params[name]`` (keeping its
    type); ``"$$text"`` stands for the literal string ``"$text"``."""
    if isinstance(value, str):
        ref = _REFERENCE.match(value)
        if ref:
            return params[ref.group(1)]
        return value[1:] if value.startswith("$$") else value
    if isinstance(value, dict):
        return {k: substitute(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, params) for v in value]
    return value


# ---- building ---------------------------------------------------------------------------------


def _build(loaded: LoadedYaml, source: str, base_dir: str) -> Spec:
    checker = _Checker(loaded, source, base_dir)
    spec = checker.check()
    if checker.problems or spec is None:
        raise SpecError(_without_echoes(checker.problems, len(loaded.problems)))
    return spec


def _without_echoes(problems: list[Problem], n_reading: int) -> list[Problem]:
    """Drop repeats, and later problems at a path where reading the file already failed (a
    rejected tag leaves a null behind; "expected a string, got null" would only be noise)."""
    reading, rest = problems[:n_reading], problems[n_reading:]
    failed_paths = {p.path for p in reading}
    return list(dict.fromkeys(reading + [p for p in rest if p.path not in failed_paths]))


@dataclass(frozen=True)
class _Target:
    """framework / device_type / compiler as far as they are known to be valid (else None)."""

    framework: Optional[str]
    device_type: Optional[str]
    compiler: Optional[str]
    builtin: bool  # a framework of the catalog (not a plug-in)


class _Checker:
    """Collects every problem of one file, then builds the ``Spec`` if there are none."""

    def __init__(self, loaded: LoadedYaml, source: str, base_dir: str):
        self.loaded = loaded
        self.source = source
        self.base_dir = base_dir
        self.problems: list[Problem] = [
            Problem(source, p.line, p.col, format_path(p.path), p.message) for p in loaded.problems
        ]

    # -- helpers --

    def problem(self, path: KeyPath, message: str, at_key: bool = False) -> None:
        line, col = _locate(self.loaded.value_pos, self.loaded.key_pos, path, at_key)
        self.problems.append(Problem(self.source, line, col, format_path(path), one_line(message)))

    def line_of(self, path: KeyPath) -> int:
        return _locate(self.loaded.value_pos, self.loaded.key_pos, path, False)[0]

    # -- the passes --

    def check(self) -> Optional[Spec]:
        data = self.loaded.data
        if data is None and self.problems:
            return None  # the file could not be read as YAML at all
        if not isinstance(data, dict):
            self.problem((), f"the top level must be a mapping (version: 1, framework: ..., models: ...), got {_describe(data)}")
            return None
        self.finite_pass(data, ())
        self.schema_pass(data)
        target = self.target_pass(data)
        models = data.get("models")
        params_by_model = self.models_pass(models) if isinstance(models, list) else []
        sweep = data.get("sweep")
        axes = self.sweep_pass(sweep if isinstance(sweep, dict) else {}, target)
        exclude = data.get("exclude")
        if isinstance(exclude, list):
            self.exclude_pass(exclude, models if isinstance(models, list) else [], params_by_model, axes)
        benchmark = data.get("benchmark")
        if isinstance(benchmark, dict):
            self.benchmark_pass(benchmark)
        if isinstance(models, list):
            self.task_pass(models, target)
        self.size_pass(params_by_model, axes)
        if self.problems:
            return None
        return self.make_spec(data, target, axes)

    def finite_pass(self, value: Any, path: KeyPath) -> None:
        """NaN and infinity slip past every range check (all comparisons with NaN are false)
        and cannot be written as JSON: reject them wherever they are."""
        if isinstance(value, float) and not math.isfinite(value):
            self.problem(path, f"{_show(value)} is not a finite number")
        elif isinstance(value, dict):
            for key, item in value.items():
                self.finite_pass(item, (*path, key))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self.finite_pass(item, (*path, i))

    def schema_pass(self, data: dict) -> None:
        for error in sorted(_validator().iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
            self.schema_error(error)

    def schema_error(self, error: Any) -> None:
        path: KeyPath = tuple(error.absolute_path)
        kind = error.validator
        value = error.instance
        rule = error.validator_value
        if kind == "additionalProperties" and isinstance(value, dict):
            allowed = list(error.schema.get("properties", {}))
            for key in value:
                if key not in allowed:
                    self.problem((*path, key), f"unknown key '{key}'{_hint(key, allowed)}", at_key=True)
        elif kind == "required" and isinstance(value, dict):
            for key in rule:
                if key not in value:
                    self.problem(path, f"missing required key '{key}'")
        elif kind == "type":
            types = [rule] if isinstance(rule, str) else list(rule)
            self.problem(path, f"expected {_type_phrase(types)}, got {_describe(value)}")
        elif kind == "minimum":
            if rule == 1:
                self.problem(path, f"{_show(value)} is not a positive integer")
            elif rule == 0:
                self.problem(path, f"{_show(value)} must not be negative")
            else:
                self.problem(path, f"{_show(value)} is less than the minimum {rule}")
        elif kind == "maximum":
            self.problem(path, f"{_show(value)} is more than the maximum {_show(rule)}")
        elif kind == "exclusiveMinimum":
            self.problem(path, f"{_show(value)} must be greater than {rule}")
        elif kind == "minItems":
            self.problem(path, "must not be an empty list")
        elif kind == "minProperties":
            self.problem(path, "an empty rule would exclude everything; name at least one axis")
        elif kind == "enum":
            allowed = [str(v) for v in rule]
            aliases = _DEVICE_ALIASES if path == ("device_type",) else {}
            self.problem(path, f"{_show(value)} is not one of: {', '.join(allowed)}{_hint(value, allowed, aliases, listed=True)}")
        elif kind == "const" and path == ("version",):
            self.problem(path, f"unsupported spec version {_show(value)}; this neuronperf reads version {SPEC_VERSION}")
        elif kind == "pattern" and path[:2] == ("sweep", "n_models"):
            self.problem(path, f"expected a positive integer, 'max' or a list of them, got {_describe(value)}")
        elif kind == "pattern" and path == ("objectives", "slo"):
            self.problem((*path, value), f"'{value}' is not a reported latency percentile (choose: {', '.join(SLO_COLUMNS)}){_hint(value, list(SLO_COLUMNS))}", at_key=True)
        elif kind == "pattern":
            what = str(error.schema.get("description", "")).rstrip(".")
            what = what[:1].lower() + what[1:]
            self.problem(path, f"{_show(value)} is not valid ({what})" if what else f"{_show(value)} is not valid")
        else:
            self.problem(path, error.message)

    def target_pass(self, data: dict) -> _Target:
        """Check framework / device_type / compiler / executor; return the resolved values (None
        where unknown) so that later checks can use what is known."""
        framework = data.get("framework")
        device = data.get("device_type") if data.get("device_type") in catalog.DEVICE_TYPES else None
        compiler = data.get("compiler") if isinstance(data.get("compiler"), str) else None
        builtin = False
        if isinstance(framework, str) and framework:
            if framework in catalog.COMPILERS:
                builtin = True
            elif framework in _BACKEND_NAMES:
                fw, dev, comp = _BACKEND_NAMES[framework]
                self.problem(("framework",), f"'{framework}' is a backend, not a framework; write framework: {fw}, device_type: {dev}, compiler: {comp}")
                framework = None
            elif framework not in plugin_frameworks():
                known = sorted(catalog.COMPILERS)
                hint = _hint(framework, known + list(plugin_frameworks()), _FRAMEWORK_ALIASES)
                self.problem(
                    ("framework",),
                    f"unknown framework '{framework}'{hint} (built in: {', '.join(known)}; "
                    "plug-ins register under the 'neuronperf.backends' entry-point group)",
                )
                framework = None
        else:
            framework = None
        if builtin and device is not None and device not in catalog.COMPILERS[str(framework)]:
            offered = ", ".join(catalog.COMPILERS[str(framework)])
            self.problem(("device_type",), f"framework '{framework}' does not run on '{device}' (choose: {offered})")
            device = None
        if builtin and device is not None:
            offered_compilers = catalog.COMPILERS[str(framework)][device]
            if compiler is None and "compiler" not in data:
                compiler = offered_compilers[0]
            elif compiler is not None and compiler not in offered_compilers:
                self.problem(
                    ("compiler",),
                    f"'{compiler}' is not a compiler of {framework} on {device} "
                    f"(choose: {', '.join(offered_compilers)}){_hint(compiler, list(offered_compilers))}",
                )
                compiler = None
        elif framework is not None and not builtin and "compiler" not in data:
            self.problem(("framework",), f"framework '{framework}' is a plug-in: name its compiler with a 'compiler:' key")
        executor = data.get("executor", "local")
        if isinstance(executor, str) and executor not in EXECUTORS:
            if executor in PLANNED_EXECUTORS:
                self.problem(("executor",), f"executor '{executor}' is not available yet; use 'local' (the default)")
            else:
                self.problem(("executor",), f"unknown executor '{executor}' (choose: {', '.join(EXECUTORS)}){_hint(executor, list(EXECUTORS + PLANNED_EXECUTORS))}")
        return _Target(framework, device, compiler, builtin)

    def models_pass(self, models: list) -> list[dict[str, list[Any]]]:
        """Check names, params and ``$param`` references; return each model's usable params."""
        first_name: dict[str, int] = {}
        all_params: list[dict[str, list[Any]]] = []
        for i, model in enumerate(models):
            params: dict[str, list[Any]] = {}
            all_params.append(params)
            if not isinstance(model, dict):
                continue
            base: KeyPath = ("models", i)
            name = model.get("name")
            if isinstance(name, str):
                if name in first_name:
                    self.problem((*base, "name"), f"duplicate model name '{name}' (first at line {first_name[name]})")
                else:
                    first_name[name] = self.line_of((*base, "name"))
            self.factory_file_check((*base, "factory"), model.get("factory"))
            if isinstance(model.get("evaluate"), dict):
                self.evaluate_check((*base, "evaluate"), model["evaluate"])
            raw_params: dict = model["params"] if isinstance(model.get("params"), dict) else {}
            params.update(self.params_check(base, raw_params))
            declared = set(raw_params)
            used: dict[str, list[KeyPath]] = {}
            inputs = model.get("inputs")
            if isinstance(inputs, list):
                for j, tensor in enumerate(inputs):
                    self.input_check((*base, "inputs", j), tensor, declared, used)
            kwargs = model.get("kwargs")
            if isinstance(kwargs, dict):
                for ref_path, ref in _references(kwargs, (*base, "kwargs")):
                    self.reference_check(ref_path, ref, declared)
                    used.setdefault(ref, [])
            generate = model.get("generate")
            new_tokens = generate.get("new_tokens") if isinstance(generate, dict) else None
            token_ref = _REFERENCE.match(new_tokens) if isinstance(new_tokens, str) else None
            if token_ref:
                tokens_path: KeyPath = (*base, "generate", "new_tokens")
                self.reference_check(tokens_path, token_ref.group(1), declared)
                used.setdefault(token_ref.group(1), []).append(tokens_path)
            for pname in list(params):
                if pname not in used:
                    self.problem((*base, "params", pname), f"parameter '{pname}' is not used; refer to it as '${pname}' in an input shape, in kwargs or in generate.new_tokens", at_key=True)
                for dim_path in used.get(pname, [])[:1]:
                    self.dimension_values_check(base, pname, raw_params[pname], dim_path)
        return all_params

    def params_check(self, base: KeyPath, raw: dict) -> dict[str, list[Any]]:
        usable: dict[str, list[Any]] = {}
        for pname, values in raw.items():
            path: KeyPath = (*base, "params", pname)
            if not _PARAM_NAME.match(pname):
                self.problem(path, f"'{pname}' is not a valid parameter name (a letter or '_', then letters, digits or '_')", at_key=True)
                continue
            if pname in EXCLUDE_AXES:
                self.problem(path, f"'{pname}' is an axis of every sweep; choose another parameter name", at_key=True)
                continue
            listed = values if isinstance(values, list) else [values]
            as_list = isinstance(values, list)
            seen: dict[str, int] = {}
            for k, v in enumerate(listed):
                if not _is_scalar(v):
                    continue  # the schema reported it
                shown = _id_text(v)
                item_path = (*path, k) if as_list else path
                if shown in seen:
                    self.problem(item_path, f"duplicate value {_show(v)} (already at {format_path((*path, seen[shown]))})")
                else:
                    seen[shown] = k
            usable[pname] = [v for v in listed if _is_scalar(v)]
        return usable

    def input_check(self, path: KeyPath, tensor: Any, declared: set, used: dict[str, list[KeyPath]]) -> None:
        shape_path: KeyPath = path if isinstance(tensor, list) else (*path, "shape")
        shape = tensor if isinstance(tensor, list) else tensor.get("shape") if isinstance(tensor, dict) else None
        if isinstance(shape, list):
            for d, dim in enumerate(shape):
                ref = _REFERENCE.match(dim) if isinstance(dim, str) else None
                if ref:
                    self.reference_check((*shape_path, d), ref.group(1), declared)
                    used.setdefault(ref.group(1), []).append((*shape_path, d))
        if not isinstance(tensor, dict):
            return
        dtype = tensor.get("dtype", "float32") if isinstance(tensor.get("dtype", "float32"), str) else None
        low: Any = tensor.get("low")
        high: Any = tensor.get("high")
        bound: Any
        for key, bound in (("low", low), ("high", high)):
            if not _is_number(bound):
                continue
            if dtype == "bool":
                self.problem((*path, key), "a bool input takes no low/high (its values are False and True)")
            elif dtype in _INT_RANGES:
                lo, hi = _INT_RANGES[dtype]
                # Generated integers are in [low, high): high may be one past the largest value.
                shift = 1 if key == "high" else 0
                if not _is_integral(bound):
                    self.problem((*path, key), f"{_show(bound)} is not an integer, as {dtype} values are")
                elif not lo + shift <= bound <= hi - 1 + shift:
                    self.problem((*path, key), f"{_show(bound)} is outside what {dtype} holds ({lo} to {hi - 1}; high is exclusive)")
        if _is_number(low) and _is_number(high) and not low < high and dtype != "bool":
            self.problem((*path, "high"), f"high ({_show(high)}) must be greater than low ({_show(low)})")

    def reference_check(self, path: KeyPath, name: str, declared: set) -> None:
        if name in declared:
            return
        if declared:
            close = _closest(name, sorted(declared))
            hint = f"; did you mean '${close}'?" if close else ""
            listed = ", ".join(sorted(declared))
            self.problem(path, f"unknown parameter '${name}'{hint} (this model's params: {listed})")
        else:
            self.problem(path, f"unknown parameter '${name}': declare it under this model's 'params', e.g. params: {{{name}: [...]}}")

    def dimension_values_check(self, base: KeyPath, pname: str, raw: Any, dim_path: KeyPath) -> None:
        path: KeyPath = (*base, "params", pname)
        listed = raw if isinstance(raw, list) else [raw]
        for k, v in enumerate(listed):
            if _is_scalar(v) and not (_is_integral(v) and v >= 1):
                where = format_path(dim_path[len(base):])
                item_path = (*path, k) if isinstance(raw, list) else path
                role = f"is {where}" if dim_path[len(base):][:1] == ("generate",) else f"is a dimension in {where}"
                self.problem(item_path, f"{_show(v)} is not a positive integer, but '${pname}' {role}")

    def task_pass(self, models: list, target: _Target) -> None:
        """``task: generate`` needs a ``generate`` key, one integer input (the prompt's token
        ids), no ``evaluate``, and a target that can generate; ``generate`` means nothing to a
        forward model, and a generation-only compiler runs no forward model."""
        fw, dev, comp = target.framework, target.device_type, target.compiler
        known_target = target.builtin and dev is not None and comp is not None
        for i, model in enumerate(models):
            if not isinstance(model, dict) or model.get("task", "forward") not in TASKS:
                continue
            base: KeyPath = ("models", i)
            if model.get("task", "forward") == "forward":
                if "generate" in model:
                    self.problem((*base, "generate"), "generate applies to 'task: generate' models only; add task: generate or remove it", at_key=True)
                if known_target and (fw, dev, comp) in GENERATE_ONLY_COMPILERS:
                    self.problem(base, f"compiler {comp} builds generation models only; give this model task: generate")
                continue
            if "generate" not in model:
                self.problem((*base, "task"), "task: generate needs a generate key: generate: {new_tokens: N}")
            if known_target and (fw, dev, comp) not in GENERATE_CAPABLE:
                capable = ", ".join("/".join(t) for t in sorted(GENERATE_CAPABLE))
                here = [c for f, d, c in sorted(GENERATE_CAPABLE) if (f, d) == (fw, dev)]
                fix = f"; use compiler: {here[0]}" if here else ""
                self.problem((*base, "task"), f"task: generate does not run on {fw}/{dev}/{comp} (framework/device_type/compiler){fix}; it runs on: {capable}")
            if "evaluate" in model:
                self.problem((*base, "evaluate"), "evaluate measures the accuracy of forward models; a 'task: generate' model takes none", at_key=True)
            inputs = model.get("inputs")
            if isinstance(inputs, list) and len(inputs) != 1:
                self.problem((*base, "inputs"), f"a 'task: generate' model takes one input, the prompt's token ids ({{shape: [$prompt_len], dtype: int64, low: 0, high: VOCAB}}); got {len(inputs)}")
            elif isinstance(inputs, list) and inputs:
                tensor = inputs[0]
                dtype = tensor.get("dtype", "float32") if isinstance(tensor, dict) else "float32"
                shape = tensor.get("shape") if isinstance(tensor, dict) else tensor
                if isinstance(dtype, str) and dtype not in ("int64", "int32"):
                    self.problem((*base, "inputs", 0, "dtype") if isinstance(tensor, dict) and "dtype" in tensor else (*base, "inputs", 0),
                                 f"the prompt's token ids are integers: give the input dtype: int64 (got {dtype})")
                if isinstance(shape, list) and len(shape) != 1:
                    self.problem((*base, "inputs", 0), f"the prompt's token ids have one dimension without the batch, [$prompt_len]; got {len(shape)}")
                if isinstance(tensor, dict) and tensor.get("high") is None and isinstance(dtype, str) and dtype in ("int64", "int32"):
                    self.problem((*base, "inputs", 0), "give the prompt's token ids a range, low: 0 and high: the vocabulary size, so that every id is a real token")

    def evaluate_check(self, path: KeyPath, evaluate: dict) -> None:
        """The dataset file must exist and every metric must be registered (built-in or by
        ``neuronperf.torch``; importing user code to find more would run it)."""
        from neuronperf.metrics import list_metrics

        self.factory_file_check((*path, "dataset"), evaluate.get("dataset"), what="dataset")
        metrics = evaluate.get("metrics")
        listed = [metrics] if isinstance(metrics, str) else metrics if isinstance(metrics, list) else []
        seen: set = set()
        for k, name in enumerate(listed):
            where = (*path, "metrics", k) if isinstance(metrics, list) else (*path, "metrics")
            if not isinstance(name, str):
                continue
            if name not in list_metrics():
                self.problem(where, f"unknown metric '{name}'{_hint(name, list_metrics(), listed=True)} (registered: {', '.join(list_metrics())})")
            elif name in seen:
                self.problem(where, f"metric '{name}' is listed twice")
            seen.add(name)

    def factory_file_check(self, path: KeyPath, factory: Any, what: str = "factory") -> None:
        """A ``file.py:callable`` factory's file must exist (relative to the spec's folder).
        Only its existence is checked: importing it would run user code, which validate never does."""
        if not isinstance(factory, str):
            return
        module, sep, attr = factory.rpartition(":")
        if not sep or not module.endswith(".py") or not attr:
            return
        file = module if os.path.isabs(module) else os.path.join(self.base_dir, module)
        if not os.path.isfile(file):
            state = "is a folder" if os.path.isdir(file) else "does not exist"
            self.problem(path, f"{what} file {module!r} {state} (looked for {os.path.abspath(file)})")

    def sweep_pass(self, sweep: dict, target: _Target) -> dict[str, list[Any]]:
        """Check each axis for duplicates and pipeline support; return the axes' values."""
        axes: dict[str, list[int]] = {}
        for key, axis in SWEEP_AXES.items():
            raw = sweep.get(key, 1)
            listed = raw if isinstance(raw, list) else [raw]
            values: list[Any] = [int(v) if _is_integral(v) else v for v in listed if (_is_integral(v) and v >= 1) or (key == "n_models" and v == MAX_COPIES)]
            axes[axis] = values
            seen: dict[Any, int] = {}
            for k, v in enumerate(listed):
                if not (_is_integral(v) or (key == "n_models" and v == MAX_COPIES)):
                    continue
                item_path: KeyPath = ("sweep", key, k) if isinstance(raw, list) else ("sweep", key)
                marker = v if isinstance(v, str) else int(v)
                if marker in seen:
                    self.problem(item_path, f"duplicate value {_show(v)} (already at sweep.{key}[{seen[marker]}])")
                else:
                    seen[marker] = k
                if isinstance(v, str):
                    continue
                if key == "pipeline_sizes" and v > 1:
                    self.pipeline_check(item_path, int(v), target)
        return axes

    def pipeline_check(self, path: KeyPath, size: int, target: _Target) -> None:
        fw, dev, comp = target.framework, target.device_type, target.compiler
        if not target.builtin or dev is None or comp is None:
            return  # unknown or plug-in target: the backend decides when the sweep starts
        if (fw, dev, comp) not in catalog.PIPELINE_CAPABLE:
            capable = ", ".join("/".join(t) for t in sorted(catalog.PIPELINE_CAPABLE))
            self.problem(path, f"pipeline_size {size} needs a pipelining compiler; {fw} on {dev} with {comp} runs whole models only (pipelining: {capable})")

    def exclude_pass(self, rules: list, models: list, params_by_model: list[dict[str, list[Any]]], axes: dict[str, list[Any]]) -> None:
        values: dict[str, list[Any]] = dict(axes)
        model_names = [m.get("name") for m in models if isinstance(m, dict) and isinstance(m.get("name"), str)]
        values["model"] = list(dict.fromkeys(model_names))
        for params in params_by_model:
            for pname, pvalues in params.items():
                known = values.setdefault(pname, [])
                known += [v for v in pvalues if not any(_same(v, k) for k in known)]
        names = list(EXCLUDE_AXES) + [n for n in values if n not in EXCLUDE_AXES]
        for i, rule in enumerate(rules):
            if not isinstance(rule, dict):
                continue
            for key, wanted in rule.items():
                path: KeyPath = ("exclude", i, key)
                if key not in values:
                    self.problem(path, f"unknown axis '{key}'{_hint(key, names)} (axes: {', '.join(names)})", at_key=True)
                    continue
                listed = wanted if isinstance(wanted, list) else [wanted]
                for k, v in enumerate(listed):
                    if not _is_scalar(v) or any(_same(v, known) for known in values[key] if known != MAX_COPIES):
                        continue
                    item_path = (*path, k) if isinstance(wanted, list) else path
                    if key == "n_models" and MAX_COPIES in values[key]:
                        # What 'max' comes to is known only when planning on the machine.
                        if v == MAX_COPIES:
                            self.problem(item_path, "exclude a number of copies, not 'max' (what max comes to depends on the machine)")
                        continue
                    known_text = ", ".join(_show(x) for x in values[key])
                    hint = _hint(v, [x for x in values[key] if isinstance(x, str)]) if isinstance(v, str) else ""
                    self.problem(item_path, f"{key} {_show(v)} is not in the sweep{hint} ({key}: {known_text})")

    def benchmark_pass(self, bench: dict) -> None:
        least, most = bench.get("min_calls"), bench.get("max_infers")
        if isinstance(least, int) and isinstance(most, int) and least > most:
            self.problem(("benchmark", "min_calls"), f"min_calls ({least}) must not exceed max_infers ({most})")
        duration = bench.get("duration", DEFAULT_DURATION)
        timeout = bench.get("timeout", DEFAULT_BENCHMARK_TIMEOUT)
        warmup = bench.get("warmup")
        warmup_s = warmup.get("seconds", 0) if isinstance(warmup, dict) else 0
        if not (_is_number(duration) and _is_number(timeout) and _is_number(warmup_s)):
            return
        if duration > 0 and timeout > 0 and duration + warmup_s >= timeout:
            at = ("benchmark", "timeout") if "timeout" in bench else ("benchmark", "duration")
            self.problem(at, f"timeout ({_show(timeout)} s) must be longer than duration ({_show(duration)} s) plus warm-up seconds ({_show(warmup_s)})")
        window = bench.get("peak_window")
        if _is_number(window) and _is_number(duration) and window > duration:
            self.problem(("benchmark", "peak_window"), f"peak_window ({_show(window)} s) must not exceed duration ({_show(duration)} s)")

    def size_pass(self, params_by_model: list[dict[str, list[Any]]], axes: dict[str, list[Any]]) -> None:
        combos = sum(math.prod(len(v) or 1 for v in params.values()) for params in params_by_model)
        total = combos * math.prod(len(v) or 1 for v in axes.values())
        if total > MAX_RUN_ENTRIES:
            self.problem(("sweep",) if ("sweep",) in self.loaded.value_pos else (), f"the sweep has {total:,} entries before exclusions; the limit is {MAX_RUN_ENTRIES:,} (split it into several specs)")

    # -- construction (only reached when every check passed) --

    def make_spec(self, data: dict, target: _Target, axes: dict[str, list[Any]]) -> Spec:
        name = data.get("name") or Path(self.source).stem
        models = tuple(self.make_model(i, m) for i, m in enumerate(data["models"]))
        rules = tuple(
            ExcludeRule(i, tuple((k, tuple(v) if isinstance(v, list) else (v,)) for k, v in rule.items()))
            for i, rule in enumerate(data.get("exclude") or [])
        )
        compile_data = data.get("compile") or {}
        return Spec(
            source=self.source,
            version=SPEC_VERSION,
            name=name,
            framework=str(target.framework),
            device_type=str(target.device_type or data["device_type"]),
            compiler=str(target.compiler or data["compiler"]),
            executor=data.get("executor", "local"),
            output_dir=data.get("output_dir") or os.path.join("runs", name),
            models=models,
            sweep=SweepAxes(*(tuple(axes[a]) for a in SWEEP_AXES.values())),
            exclude=rules,
            compile=CompileSettings(
                jobs=int(compile_data.get("jobs", default_compile_jobs())),
                compiler_args=freeze(compile_data.get("compiler_args", {})),
                timeout=float(compile_data.get("timeout", DEFAULT_COMPILE_TIMEOUT)),
            ),
            benchmark=_benchmark_settings(data.get("benchmark") or {}),
            slo=tuple((str(k), float(v)) for k, v in ((data.get("objectives") or {}).get("slo") or {}).items()),
            instance_type=data.get("instance_type"),
            cost_per_hour=None if data.get("cost_per_hour") is None else float(data["cost_per_hour"]),
            ray=_ray_settings(data.get("ray") or {}),
            value_pos=MappingProxyType(dict(self.loaded.value_pos)),
            key_pos=MappingProxyType(dict(self.loaded.key_pos)),
        )

    def make_model(self, i: int, model: dict) -> ModelSpec:
        params = tuple(
            (k, tuple(v) if isinstance(v, list) else (v,)) for k, v in (model.get("params") or {}).items()
        )
        return ModelSpec(
            name=model["name"],
            factory=model["factory"],
            kwargs=freeze(model.get("kwargs") or {}),
            inputs=tuple(_input_template(t) for t in model["inputs"]),
            params=params,
            base_dir=self.base_dir,
            factory_pos=self.loaded.value_pos.get(("models", i, "factory"), (1, 1)),
            index=i,
            evaluate=_evaluate_spec(model.get("evaluate")),
            task=model.get("task", "forward"),
            new_tokens=(model.get("generate") or {}).get("new_tokens"),
        )


def _evaluate_spec(evaluate: Any) -> Optional[EvaluateSpec]:
    if not isinstance(evaluate, dict):
        return None
    metrics = evaluate["metrics"]
    return EvaluateSpec(dataset=evaluate["dataset"], metrics=tuple([metrics] if isinstance(metrics, str) else metrics),
                        target_col=int(evaluate.get("target_col", -1)))


def _input_template(tensor: Any) -> InputTemplate:
    if isinstance(tensor, list):
        return InputTemplate(shape=tuple(_dimension(d) for d in tensor))
    low, high = tensor.get("low"), tensor.get("high")
    return InputTemplate(
        shape=tuple(_dimension(d) for d in tensor["shape"]),
        dtype=tensor.get("dtype", "float32"),
        low=None if low is None else float(low),
        high=None if high is None else float(high),
    )


def _dimension(value: Any) -> Union[int, str]:
    return value if isinstance(value, str) else int(value)


def _ray_settings(section: dict) -> RaySettings:
    defaults = RaySettings()
    return RaySettings(
        address=section.get("address"),
        cpus_per_thread=int(section.get("cpus_per_thread", defaults.cpus_per_thread)),
        max_retries=int(section.get("max_retries", defaults.max_retries)),
        max_artifact_mb=float(section.get("max_artifact_mb", defaults.max_artifact_mb)),
    )


def _benchmark_settings(bench: dict) -> BenchmarkSettings:
    # Numbers are stored as floats so that `duration: 5` and `duration: 5.0` hash the same.
    duration = float(bench.get("duration", DEFAULT_DURATION))
    warmup = bench.get("warmup", DEFAULT_WARMUP_CALLS)
    if isinstance(warmup, dict):
        calls, seconds = int(warmup.get("calls", DEFAULT_WARMUP_CALLS)), float(warmup.get("seconds", 0))
    else:
        calls, seconds = int(warmup), 0.0
    max_infers, min_calls = bench.get("max_infers"), bench.get("min_calls")
    return BenchmarkSettings(
        duration=duration,
        max_infers=None if max_infers is None else int(max_infers),
        min_calls=None if min_calls is None else int(min_calls),
        warmup_calls=calls,
        warmup_s=seconds,
        timeout=float(bench.get("timeout", DEFAULT_BENCHMARK_TIMEOUT)),
        peak_window_s=float(bench.get("peak_window", min(DEFAULT_PEAK_WINDOW, duration))),
        repeat=int(bench.get("repeat", 1)),
        order=str(bench.get("order", "planned")),
        seed=int(bench.get("seed", 0)),
    )


@cache
def _validator() -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(json.loads(schema_text()))


def _locate(value_pos: Mapping[KeyPath, Position], key_pos: Mapping[KeyPath, Position], path: KeyPath, at_key: bool) -> Position:
    if at_key and path in key_pos:
        return key_pos[path]
    for n in range(len(path), -1, -1):
        if path[:n] in value_pos:
            return value_pos[path[:n]]
    return (1, 1)


def _references(value: Any, path: KeyPath) -> list[tuple[KeyPath, str]]:
    """Every ``"$name"`` string inside a kwargs value, with its key path."""
    if isinstance(value, str):
        ref = _REFERENCE.match(value)
        return [(path, ref.group(1))] if ref else []
    if isinstance(value, dict):
        return [r for k, v in value.items() for r in _references(v, (*path, k))]
    if isinstance(value, list):
        return [r for i, v in enumerate(value) for r in _references(v, (*path, i))]
    return []


def _hint(value: Any, choices: Sequence[str], aliases: Optional[Mapping[str, str]] = None, listed: bool = False) -> str:
    """"; did you mean 'x'?" for a close match (or a known alias), else ""."""
    if not isinstance(value, str):
        return ""
    if aliases and value.lower() in aliases and aliases[value.lower()] in choices:
        return f"; did you mean '{aliases[value.lower()]}'?"
    close = _closest(value, choices)
    if close:
        return f"; did you mean '{close}'?"
    if listed or len(choices) > 16:
        return ""
    return f" (allowed: {', '.join(choices)})"


def _closest(value: str, choices: Sequence[str]) -> Optional[str]:
    """The choice that ``value`` most likely misspells (case-insensitively), if any."""
    for choice in choices:
        if choice.lower() == value.lower():
            return choice
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def _same(a: Any, b: Any) -> bool:
    # True == 1 in Python, but a bool parameter value must not match an integer one.
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _is_integral(value: Any) -> bool:
    return _is_number(value) and (isinstance(value, int) or float(value).is_integer())


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, bool)) or _is_number(value)


def _id_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return _show(value)
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {text!r}"
    if isinstance(value, (int, float)):
        return _show(value)
    return f"a {type(value).__name__} value"


_TYPE_WORDS = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "array": "a list",
    "object": "a mapping",
    "boolean": "true or false",
    "null": "null",
}


def _type_phrase(types: list[str]) -> str:
    if "integer" in types and "number" in types:
        types = [t for t in types if t != "integer"]
    words = [_TYPE_WORDS.get(t, t) for t in types]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


__all__ = [
    "EXCLUDE_AXES",
    "GENERATE_CAPABLE",
    "TASKS",
    "MAX_RUN_ENTRIES",
    "SWEEP_AXES",
    "CompileSettings",
    "ExcludeRule",
    "InputTemplate",
    "ModelSpec",
    "Spec",
    "SweepAxes",
    "default_compile_jobs",
    "load_spec",
    "parse_path",
    "parse_spec",
    "schema",
    "schema_text",
    "spec_problem",
    "substitute",
]
