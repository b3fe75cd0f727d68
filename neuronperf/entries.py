"""The frozen values that flow between pipeline stages.

``plan`` produces ``CompileEntry`` and ``RunEntry`` values; ``compile`` turns compile entries into
artifacts; ``benchmark`` turns run entries into ``Measurement`` values; ``results`` turns those
into report rows. Every value here is immutable and hashable, so it can be a dict key, a set
member or the identity of a journal record.

This module imports nothing beyond the standard library: every stage may depend on it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Optional

#: A JSON value made hashable: dicts become sorted tuples of (key, value) pairs wrapped in
#: ``FrozenDict``; lists become tuples. ``thaw`` turns it back into plain JSON.
Frozen = Any

STATUSES = ("ok", "error", "timeout", "skipped")
#: ``benchmark.telemetry.period_ms`` when the spec does not say.
DEFAULT_TELEMETRY_PERIOD_MS = 100.0


class FrozenDict(tuple):  # type: ignore[type-arg]
    """A dict frozen as a sorted tuple of pairs; distinct from a list frozen as a tuple."""

    __slots__ = ()


def freeze(value: Any) -> Frozen:
    """Return a hashable deep copy of a JSON-like value (dicts, lists, scalars)."""
    if isinstance(value, dict):
        return FrozenDict(sorted((str(k), freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Frozen) -> Any:
    """Inverse of ``freeze``: plain dicts and lists again."""
    if isinstance(value, FrozenDict):
        return {k: thaw(v) for k, v in value}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


def stable_hash(data: Any, length: int = 16) -> str:
    """A content hash that is identical across runs, processes and machines."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


@dataclass(frozen=True)
class TensorSpec:
    """One input tensor of a model call, WITHOUT the batch dimension."""

    shape: tuple[int, ...]
    dtype: str = "float32"  # numpy-style name: float32, float16, bfloat16, int64, int32, bool
    #: Generated values are uniform in [low, high) (integers) or normal (floats) when unset.
    low: Optional[float] = None
    high: Optional[float] = None
    #: The keyword the tensor is passed by (``model(input_ids=...)``); None: by position.
    name: Optional[str] = None

    def to_dict(self) -> dict:
        # "name" only when set, so that the keys of unnamed inputs stay what they always were.
        named = {"name": self.name} if self.name is not None else {}
        return {**named, "shape": list(self.shape), "dtype": self.dtype, "low": self.low, "high": self.high}


#: The spec keys of the built-in model sources beside ``factory`` (``ModelSource.kind``).
SOURCE_KINDS = ("hf", "timm", "torchvision", "file")


@dataclass(frozen=True)
class ModelSource:
    """A model from a built-in source (spec keys ``hf``, ``timm``, ``torchvision``, ``file``)
    rather than a factory: ``kind`` is the key and ``value`` what the spec wrote for it."""

    kind: str
    value: str
    hf_task: Optional[str] = None
    #: ``hf_kwargs`` (to ``from_pretrained``) or a timm/torchvision constructor's ``kwargs``.
    kwargs: Frozen = FrozenDict()
    pretrained: bool = False
    #: What makes the model's results what they are, found by ``neuronperf.sources`` when the
    #: sweep is planned (a checkpoint's or artifact's content digest, a hub id and revision, an
    #: architecture): the source's part of every entry key. Empty until then.
    identity: Frozen = FrozenDict()
    #: The spec's folder, which relative paths resolve against; not part of any identity.
    base_dir: str = field(default=".", compare=False)

    @property
    def label(self) -> str:
        """How messages name it: ``hf './distilbert-rand'``, ``timm 'resnet18'``."""
        return f"{self.kind} {self.value!r}"

    def kwargs_dict(self) -> dict:
        return dict(thaw(self.kwargs) or {})

    def to_dict(self) -> dict:
        """The source as the spec wrote it (paths as written), for plans and messages."""
        out: dict[str, Any] = {self.kind: self.value}
        if self.hf_task is not None:
            out["hf_task"] = self.hf_task
        if self.kwargs:
            out["hf_kwargs" if self.kind == "hf" else "kwargs"] = self.kwargs_dict()
        if self.pretrained:
            out["pretrained"] = True
        return out


@dataclass(frozen=True)
class ModelRef:
    """How to build a model: a factory reference and its keyword arguments, or a built-in
    ``source`` (then ``factory`` is empty)."""

    name: str
    #: "package.module:callable", or "path/to/file.py:callable" (relative to ``base_dir``).
    factory: str
    kwargs: Frozen = FrozenDict()
    #: The folder that a file-relative factory resolves against (the spec's folder). Not part
    #: of any identity hash: moving a checkout must not invalidate its results.
    base_dir: str = field(default=".", compare=False)
    source: Optional[ModelSource] = None

    def to_dict(self) -> dict:
        if self.source is not None:
            # The source's identity, not its path: a checkpoint folder moved elsewhere keeps its
            # results, one whose files changed is measured again.
            return {"name": self.name, "source": thaw(self.source.identity)}
        return {"name": self.name, "factory": self.factory, "kwargs": thaw(self.kwargs)}

    @property
    def label(self) -> str:
        """How messages name where the model comes from."""
        return self.source.label if self.source is not None else f"factory {self.factory!r}"


@dataclass(frozen=True)
class BenchmarkSettings:
    """How one run entry is measured (spec key ``benchmark``)."""

    duration: float = 5.0  # measured seconds per entry
    max_infers: Optional[int] = None  # stop early after this many measured calls (all workers)
    #: Measure past ``duration`` until this many calls (all workers), within the timeout: slow
    #: models then get enough calls for their tail percentiles without a long duration for all.
    min_calls: Optional[int] = None
    warmup_calls: int = 10  # per worker thread, before measuring
    warmup_s: float = 0.0  # and at least this long, per worker thread
    timeout: float = 300.0  # hard limit per entry: start, load, warm-up and measurement
    peak_window_s: float = 1.0  # slice length for throughput_peak and the stability figure
    repeat: int = 1  # measurements of the entry, each in a fresh set of worker processes
    #: The order entries are measured in: "planned", or "shuffled" (by ``seed``) so that drift of
    #: the machine does not line up with a swept axis. Neither changes an entry's result.
    order: str = "planned"
    #: Seeds the shuffled order, and in the server scenario each window's arrival schedule.
    seed: int = 0
    #: How often the supervisor samples device telemetry (``benchmark.telemetry.period_ms``);
    #: None: telemetry off (``telemetry: false``).
    telemetry_period_ms: Optional[float] = DEFAULT_TELEMETRY_PERIOD_MS
    #: "closed" (each thread calls again as soon as its call returns) or "server" (requests
    #: arrive at a rate into one queue; each run entry then has a ``ServingSettings``).
    scenario: str = "closed"
    #: The server scenario's arrivals, "poisson" or "constant".
    arrival: str = "poisson"
    #: The peak search (``sweep.rates: max``) stops when its bracket is within this share of its rate.
    rate_precision: float = 0.02
    #: Measure entries with more measuring threads than the machine's cores can carry (see
    #: ``measure.contract.oversubscribed``) instead of making them rows that say why. It decides
    #: only whether an entry is measured, so it is not part of the entry's identity.
    allow_oversubscription: bool = False

    def to_dict(self) -> dict:
        serving = (
            {"scenario": self.scenario, "arrival": self.arrival, "rate_precision": self.rate_precision}
            if self.scenario != "closed" else {}
        )
        out = {**self.identity_dict(), "timeout": self.timeout, "order": self.order, "seed": self.seed,
               "telemetry_period_ms": self.telemetry_period_ms, **serving}
        if self.allow_oversubscription:  # absent at its default: plans written before it read the same
            out["allow_oversubscription"] = True
        return out

    def identity_dict(self) -> dict:
        """The settings that can change a measurement (a timeout only decides whether it ends)."""
        return {
            "duration": self.duration,
            "max_infers": self.max_infers,
            # Absent when unset, so that plans written before min_calls existed keep their keys.
            **({"min_calls": self.min_calls} if self.min_calls is not None else {}),
            "warmup_calls": self.warmup_calls,
            "warmup_s": self.warmup_s,
            "peak_window_s": self.peak_window_s,
            # Absent at its default, so that plans written before repeats existed keep their keys.
            **({"repeat": self.repeat} if self.repeat != 1 else {}),
            # Likewise: entries measured before telemetry existed resume unless it is changed.
            **({"telemetry_period_ms": self.telemetry_period_ms}
               if self.telemetry_period_ms != DEFAULT_TELEMETRY_PERIOD_MS else {}),
        }


@dataclass(frozen=True)
class ServingSettings:
    """How a run entry of the server scenario is loaded: requests (one sample each) arrive at
    ``rate`` per second into one queue that every measuring thread of every copy serves, a call
    taking up to ``batch_size`` of them and waiting at most ``max_queue_delay_ms`` for its batch
    to fill. ``rate`` None is ``sweep.rates: max``: the highest rate whose figures meet every bound
    of ``slo`` (each ``(column, limit)``, e.g. ``("latency_ms_p99", 10.0)``)."""

    rate: Optional[float]
    max_queue_delay_ms: float = 0.0
    arrival: str = "poisson"
    seed: int = 0
    rate_precision: float = 0.02
    #: The bounds a peak search must meet, and that a generation request's goodput counts.
    slo: tuple[tuple[str, float], ...] = ()

    @property
    def search(self) -> bool:
        """Whether this entry searches for its peak rate (``sweep.rates: max``)."""
        return self.rate is None

    def id_suffix(self) -> str:
        """``-r200-qd0``, or ``-rmax-qd1``: the rate and the queue delay in entry ids."""
        rate = "max" if self.rate is None else _id_value(self.rate)
        return f"-r{rate}-qd{_id_value(self.max_queue_delay_ms)}"

    def identity_dict(self) -> dict:
        """Everything that changes what the entry measures (the bounds only where they do)."""
        return {
            "rate": "max" if self.rate is None else self.rate,
            "max_queue_delay_ms": self.max_queue_delay_ms,
            "arrival": self.arrival,
            "seed": self.seed,
            **({"rate_precision": self.rate_precision} if self.rate is None else {}),
            **({"slo": [list(b) for b in self.slo]} if self.slo else {}),
        }


@dataclass(frozen=True)
class ServingWindow:
    """The arrival schedule of one measured server window: ``requests`` requests at ``rate``
    per second from ``start_ns`` (``time.perf_counter_ns``), drawn by ``arrival`` and ``seed``
    (``neuronperf.stats.serving.schedule_offsets_ns`` computes them)."""

    rate: float
    requests: int
    arrival: str = "poisson"
    seed: int = 0
    start_ns: int = 0
    batch_size: int = 1
    max_queue_delay_ms: float = 0.0
    #: Why serving stopped before every request was served ("" when it did not).
    stopped: str = ""

    @property
    def span_ns(self) -> int:
        """The window's length: ``requests / rate``."""
        return int(round(self.requests / self.rate * 1e9))

    def to_dict(self) -> dict:
        return {"rate": self.rate, "requests": self.requests, "arrival": self.arrival, "seed": self.seed,
                "start_ns": self.start_ns, "batch_size": self.batch_size,
                "max_queue_delay_ms": self.max_queue_delay_ms, "stopped": self.stopped}

    @classmethod
    def from_dict(cls, data: dict) -> ServingWindow:
        return cls(rate=float(data["rate"]), requests=int(data["requests"]), arrival=str(data["arrival"]),
                   seed=int(data["seed"]), start_ns=int(data["start_ns"]), batch_size=int(data["batch_size"]),
                   max_queue_delay_ms=float(data["max_queue_delay_ms"]), stopped=str(data.get("stopped", "")))


@dataclass(frozen=True)
class CompileEntry:
    """One artifact to build: a model at one input shape, batch size and pipeline size."""

    model: ModelRef
    #: Swept model parameters, e.g. (("seq_len", 128),); already substituted into inputs/kwargs.
    params: tuple[tuple[str, Any], ...]
    inputs: tuple[TensorSpec, ...]
    batch_size: int
    pipeline_size: int
    framework: str
    device_type: str
    compiler: str
    compiler_args: Frozen = FrozenDict()
    #: Position of this entry's example input in the plan's input list (model index ``input_idx``).
    input_idx: int = field(default=0, compare=False)
    #: Hard limit in seconds for this compile.
    timeout: float = field(default=1800.0, compare=False)
    #: What one timed call is: "forward", or "generate" (one request of ``new_tokens`` tokens).
    task: str = "forward"
    new_tokens: Optional[int] = None
    #: Logical NeuronCore config (Trn2/Trn3, ``sweep.logical_nc_configs``): the compiler's
    #: ``--logical-nc-config`` and the copies' ``NEURON_LOGICAL_NC_CONFIG``. None: the runtime's.
    lnc: Optional[int] = None

    @property
    def id(self) -> str:
        """Readable and unique within a plan, e.g. ``bert-seq_len128-bs8-p1`` (``-lnc2`` after
        it when the sweep sets the logical NeuronCore config)."""
        parts = [self.model.name]
        parts += [f"{k}{_id_value(v)}" for k, v in self.params]
        parts += [f"bs{self.batch_size}", f"p{self.pipeline_size}"]
        if self.lnc is not None:
            parts.append(f"lnc{self.lnc}")
        return "-".join(parts)

    def to_dict(self) -> dict:
        return {
            "model": self.model.to_dict(),
            "params": dict(self.params),
            "inputs": [t.to_dict() for t in self.inputs],
            "batch_size": self.batch_size,
            "pipeline_size": self.pipeline_size,
            "framework": self.framework,
            "device_type": self.device_type,
            "compiler": self.compiler,
            "compiler_args": thaw(self.compiler_args),
            # Only for generation, so that forward entries keep the keys they always had.
            **({"task": self.task, "new_tokens": self.new_tokens} if self.task != "forward" else {}),
            # Only when the sweep sets it, so that entries planned before LNC existed keep their keys.
            **({"lnc": self.lnc} if self.lnc is not None else {}),
        }

    @property
    def key(self) -> str:
        """Content hash of everything that changes the artifact (the compiler version is added
        by the compile stage, which is the only stage that may import the framework)."""
        return stable_hash(self.to_dict())


@dataclass(frozen=True)
class RunEntry:
    """One measurement: an artifact x ``n_models`` copies x ``workers_per_model`` threads."""

    compile: CompileEntry
    n_models: int
    workers_per_model: int
    benchmark: BenchmarkSettings = BenchmarkSettings()
    #: The server scenario's load (None: the closed loop).
    serving: Optional[ServingSettings] = None

    @property
    def id(self) -> str:
        """e.g. ``bert-seq_len128-bs8-p1-m2-w2``; a server entry adds its rate and queue delay,
        ``bert-seq_len128-bs8-p1-m2-w2-r200-qd0``."""
        suffix = self.serving.id_suffix() if self.serving is not None else ""
        return f"{self.compile.id}-m{self.n_models}-w{self.workers_per_model}{suffix}"

    def to_dict(self) -> dict:
        return {
            "compile": self.compile.to_dict(),
            "n_models": self.n_models,
            "workers_per_model": self.workers_per_model,
            "benchmark": self.benchmark.identity_dict(),
            # Only in the server scenario, so that closed-loop entries keep the keys they had.
            **({"serving": self.serving.identity_dict()} if self.serving is not None else {}),
        }

    @property
    def key(self) -> str:
        """Content hash of everything in the plan that changes this entry's result."""
        return stable_hash(self.to_dict())


@dataclass(frozen=True)
class RaySettings:
    """The spec's ``ray`` section: how the Ray executor reaches and uses its cluster."""

    #: A running cluster (``host:port``, ``ray://host:port``, ``auto``); None: a local Ray
    #: instance is started for the run.
    address: Optional[str] = None
    #: CPU entries ask Ray for this many cores per measuring thread, and each thread's
    #: framework uses that many.
    cpus_per_thread: int = 1
    #: How often a task lost with its node (or its Ray worker) is run again.
    max_retries: int = 1
    #: Artifacts larger than this (MiB) are not shipped to the nodes.
    max_artifact_mb: float = 2048.0


#: ``search``'s strategies: every entry (grid), the entries a latency bound does not rule out
#: (prune), or a hill climb from the smallest configuration (quick).
SEARCH_STRATEGIES = ("grid", "prune", "quick")


@dataclass(frozen=True)
class SearchSettings:
    """The spec's ``search`` and ``objectives.maximize``: which entries a sweep measures, and
    what the best one maximises. None of it is part of an entry's identity: a search measures
    the same entries as a grid would, it only measures fewer of them."""

    strategy: str = "grid"
    #: ``quick`` moves to a neighbour only if it improves the objective by more than this
    #: fraction of the current value.
    min_gain: float = 0.05
    #: At most this many entries are measured by the search (None: no limit).
    budget: Optional[int] = None
    #: The row column to maximise; a leading ``-`` minimises it (``-cost_per_1m_inf``).
    maximize: str = "throughput_avg"


@dataclass(frozen=True)
class Plan:
    """The output of the plan stage: ordered, frozen, duplicate-free entries."""

    name: str
    output_dir: str
    compile_entries: tuple[CompileEntry, ...]
    run_entries: tuple[RunEntry, ...]
    #: How many run entries each exclude rule dropped, e.g. (("exclude[1]", 6),).
    excluded: tuple[tuple[str, int], ...] = ()
    #: The spec's latency objectives, (("latency_ms_p99", 20.0),): what the summary answers.
    slo: tuple[tuple[str, float], ...] = ()
    #: The spec's ``instance_type`` and ``cost_per_hour`` (USD), for ``cost_per_1m_inf``.
    instance_type: Optional[str] = None
    cost_per_hour: Optional[float] = None
    #: Where the run entries are measured (``executor``), and the Ray settings.
    executor: str = "local"
    ray: RaySettings = RaySettings()
    #: Which entries are measured (``search``) and the objective (``objectives.maximize``).
    search: SearchSettings = SearchSettings()

    @property
    def n_excluded(self) -> int:
        return sum(n for _, n in self.excluded)


# ---- what the benchmark stage returns -------------------------------------------------------


@dataclass(frozen=True, eq=False)
class WorkerSamples:
    """Raw timings of one worker thread's measured calls (``time.perf_counter_ns``, which is
    CLOCK_MONOTONIC on Linux and so comparable across the processes of one machine).

    The timings are int64 numpy arrays when they come from workers (16 bytes per call, never a
    Python int per call); any sequence of ints is accepted."""

    copy_idx: int
    thread_idx: int
    start_ns: Any  # when each measured call began
    latency_ns: Any  # end-to-end duration of each call (preprocess+infer+postprocess)
    infer_ns_total: int = 0  # sum of the model-call part only
    preprocess_ns_total: int = 0
    postprocess_ns_total: int = 0
    #: A generation task's token stamps: when each token of each request existed, ``new_tokens``
    #: per request, in request order (None for a forward task).
    token_ns: Any = None
    #: The most calls this thread was allowed (its share of ``max_infers``); None: no limit. A
    #: thread with a quota of 0 measured nothing because it was given nothing to do.
    quota: Optional[int] = None
    #: The server scenario, per call: the first request it served (its index in the window's
    #: schedule), how many it served, and when its batch was due (None in the closed loop).
    request_first: Any = None
    request_count: Any = None
    due_ns: Any = None


@dataclass(frozen=True)
class CopyStats:
    """One model copy (one worker process)."""

    copy_idx: int
    pid: int
    load_ms: float  # time to load the artifact into a callable
    warmup_ms: float  # mean duration of one of this copy's warm-up calls
    #: The copy's CPU time (every thread of its process) from when it received the window until
    #: its last measuring thread stopped, over that wall time, x 100 (100: one core busy).
    cpu_avg_percent: Optional[float] = None
    #: The largest resident memory of the copy's process seen during the window, less its timing
    #: buffers (``buffer_bytes``): what the model, its framework and the interpreter hold.
    peak_rss_bytes: Optional[int] = None
    #: The mean of those resident memory samples, less ``buffer_bytes``, / the machine's RAM x 100.
    mem_avg_percent: Optional[float] = None
    #: How late the copy learnt when the window opens, in ns after it opened (0: in time). A late
    #: copy's threads began measuring after the others: the row says so.
    late_ns: int = 0
    #: How many warm-up calls the copy made (all its threads), to weigh ``warmup_ms``.
    warmup_calls: Optional[int] = None
    #: The harness's own timing buffers in the copy (int64 per call and per token; in the server
    #: scenario its call records and arrival schedule), allocated and written before the window
    #: opened; left out of the memory figures above.
    buffer_bytes: Optional[int] = None
    #: The device memory allocator's peak in the copy since it started (CUDA:
    #: ``torch.cuda.max_memory_allocated``), read by the copy after its window; None elsewhere.
    device_mem_peak_bytes: Optional[int] = None


@dataclass(frozen=True)
class Telemetry:
    """One repeat's device telemetry (``neuronperf.trackers``), before it becomes row columns.
    ``energy_j`` covers the measured window; the row divides it by the inferences made in that
    window (``energy_j_per_inf``). Empty figures are None, and ``note`` says why."""

    energy_source: Optional[str] = None
    device_mem_mb_peak: Optional[float] = None
    device_mem_mb_nvml_peak: Optional[float] = None
    device_util_pct_avg: Optional[float] = None
    power_w_avg: Optional[float] = None
    power_w_idle: Optional[float] = None
    energy_j: Optional[float] = None
    note: Optional[str] = None

    def to_dict(self) -> dict:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


@dataclass(frozen=True)
class Measurement:
    """What one run entry produced. On failure, ``status``/``error`` say why and the rest may
    be empty."""

    status: str  # one of STATUSES
    error: Optional[str] = None
    window_start_ns: int = 0  # the measured window, shared by every worker
    window_end_ns: int = 0
    workers: tuple[WorkerSamples, ...] = ()
    copies: tuple[CopyStats, ...] = ()
    #: The CPU other processes used during the window, in cores (the supervisor's ``OtherLoad``);
    #: None where unknown. Runs measured beside different loads are not comparable.
    other_cpu_cores: Optional[float] = None
    #: The CPU nobody used during the window (idle and iowait), in cores; None where unknown.
    #: Near 0 beside other processes' work: the machine was full, and the entry may have waited.
    idle_cpu_cores: Optional[float] = None
    #: The device telemetry of the entry (None when ``benchmark.telemetry`` is off).
    telemetry: Optional[Telemetry] = None
    #: The server scenario's schedule (None: a closed-loop measurement).
    serving: Optional[ServingWindow] = None


def _id_value(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).replace(" ", "")
