"""The typed spec: frozen values the planner reads, and the spec format's constants.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from neuronperf.entries import (
    SOURCE_KINDS,
    BenchmarkSettings,
    Frozen,
    FrozenDict,
    ModelSource,
    RaySettings,
    SearchSettings,
    TensorSpec,
)
from neuronperf.spec.yaml_source import (
    KeyPath,
    Position,
)

SPEC_VERSION = 1


#: sweep key -> the singular axis name used in entry ids, exclude rules and reports.
SWEEP_AXES = {
    "batch_sizes": "batch_size",
    "pipeline_sizes": "pipeline_size",
    "n_models": "n_models",
    "workers_per_model": "workers_per_model",
}


#: ``sweep.logical_nc_configs`` (Trn2/Trn3): its singular axis name, and the values it takes.
LNC_AXIS = ("logical_nc_configs", "logical_nc_config")
LNC_VALUES = (1, 2)


#: The server scenario's sweep keys -> their axis names (entry ids, exclude rules, reports).
SERVER_AXES = {"rates": "rate", "max_queue_delays_ms": "max_queue_delay_ms"}


#: ``sweep.rates: max``: the highest rate that meets ``objectives.slo``, searched per entry.
MAX_RATE = "max"


#: Names an exclude rule may use besides the model parameters (and, in the server scenario,
#: the ``SERVER_AXES``). ``logical_nc_config`` is one only where the sweep sets
#: ``logical_nc_configs``.
EXCLUDE_AXES = ("model", "batch_size", "pipeline_size", "n_models", "workers_per_model", "logical_nc_config")


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


#: The columns an ``objectives.slo`` bound may name: the reported latency percentiles, and a
#: generation row's time to first token and time per output token.
SLO_COLUMNS = (*(f"latency_ms_p{q}" for q in (0, 50, 90, 95, 99, 100)),
               *(f"{kind}_ms_p{q}" for kind in ("ttft", "tpot") for q in (50, 90, 99)))


#: The keys that name where a model comes from; a model has exactly one.
MODEL_SOURCE_KEYS = ("factory", *SOURCE_KINDS)

#: Parameters that size the inputs a model source generates: the sequence length (the prompt's
#: for ``task: generate``) and a vision model's image side.
GENERATED_SIZE_PARAMS = ("seq_len", "prompt_len", "image_size")

#: The parameter that casts a model and its floating inputs, and the dtypes it takes.
DTYPE_PARAM = "dtype"
CAST_DTYPES = ("float32", "bfloat16", "float16")
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


DEFAULT_DURATION = 5.0


DEFAULT_WARMUP_CALLS = 10


DEFAULT_BENCHMARK_TIMEOUT = 300.0


DEFAULT_PEAK_WINDOW = 1.0


DEFAULT_COMPILE_TIMEOUT = 1800.0


REFERENCE = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")


@dataclass(frozen=True)
class InputTemplate:
    """One input tensor as written in the spec (no batch dimension); a dimension may be a
    ``"$param"`` reference that the planner substitutes."""

    shape: tuple[Union[int, str], ...]
    dtype: str = "float32"
    low: Optional[float] = None
    high: Optional[float] = None
    #: The keyword it is passed by; None: by position.
    name: Optional[str] = None

    def resolve(self, params: Mapping[str, Any]) -> TensorSpec:
        """The concrete ``TensorSpec`` for one combination of the model's parameters; a
        ``dtype`` parameter casts a floating input."""
        dims = tuple(int(params[d[1:]]) if isinstance(d, str) else d for d in self.shape)
        dtype = self.dtype
        if DTYPE_PARAM in params and dtype in FLOAT_DTYPES:
            dtype = str(params[DTYPE_PARAM])
        return TensorSpec(shape=dims, dtype=dtype, low=self.low, high=self.high, name=self.name)


@dataclass(frozen=True)
class ModelSpec:
    """One entry of ``models``: a factory (or a built-in ``source``), its kwargs, its inputs
    and its swept parameters."""

    name: str
    factory: str  # "" for a model from a built-in source
    kwargs: Frozen  # may hold "$param" strings, substituted per combination by the planner
    #: As written; empty when a source generates them (``neuronperf.sources`` describes them).
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
    #: ``hf``, ``timm``, ``torchvision`` or ``file`` instead of ``factory`` (its ``identity`` is
    #: filled in when the sweep is planned).
    source: Optional[ModelSource] = None


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
    #: Logical NeuronCore configs; (None,): the runtime's, whatever it is (not an axis then).
    logical_nc_configs: tuple[Optional[int], ...] = (None,)
    #: The server scenario's request rates (requests per second), or ``"max"``; None: closed loop.
    rates: Union[tuple[float, ...], str, None] = None
    max_queue_delays_ms: tuple[float, ...] = (0.0,)


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
    #: Whether the spec names its compiler; when not, a sweep on Neuron takes the path of the
    #: installed torch-neuronx (``compiler`` then holds the catalog's default).
    compiler_given: bool = field(default=True, compare=False)
    #: ``search`` and ``objectives.maximize``.
    search: SearchSettings = SearchSettings()
    value_pos: Mapping[KeyPath, Position] = field(default_factory=dict, compare=False, hash=False, repr=False)
    key_pos: Mapping[KeyPath, Position] = field(default_factory=dict, compare=False, hash=False, repr=False)


def default_compile_jobs() -> int:
    """Half the CPU cores, between 1 and 4: each compile is multi-threaded and memory-hungry
    itself (a Neuron compile of BERT takes several GB), so more jobs only contend."""
    return max(1, min(4, (os.cpu_count() or 1) // 2))


def substitute(value: Any, params: Mapping[str, Any]) -> Any:
    """Replace every string ``"$name"`` in a JSON-like value by ``params[name]`` (keeping its
    type); ``"$$text"`` stands for the literal string ``"$text"``."""
    if isinstance(value, str):
        ref = REFERENCE.match(value)
        if ref:
            return params[ref.group(1)]
        return value[1:] if value.startswith("$$") else value
    if isinstance(value, dict):
        return {k: substitute(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, params) for v in value]
    return value
