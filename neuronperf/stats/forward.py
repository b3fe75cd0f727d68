"""Statistics of one measured run entry, computed from its raw samples: the definition of
every figure in a row (docs/measurement.md says the same in prose).

Pure numpy: this module never reads a clock, so every figure is a function of the
``Measurement`` alone and tests can check it against hand-computed values.

Method version 3. For each measuring thread ``i`` of every copy, ``n_i`` is the number of
calls it timed, ``s_i`` the start of its first and ``e_i`` the end of its last (a thread's calls
run back to back: it keeps calling before the window, so ``s_i`` is where its previous, unmeasured
call ended). The *common span* runs from ``max_i s_i`` (every thread is measuring) to
``min_i e_i`` (none has stopped): the time in which the entry ran as configured, every thread
loading the machine.

- ``throughput_avg = batch_size x (sum_i C_i(min e) - C_i(max s)) / (min e - max s)``, where
  ``C_i(t)`` is thread ``i``'s calls completed by ``t``, a call in progress counting by the
  fraction of its duration already elapsed (time-weighted credit). For a steady thread that is
  exactly ``1 / latency`` whatever its phase, so a steady entry reads Little's law exactly; calls
  a thread makes after another one stopped (``max_infers``, ``min_calls``, a copy that ends
  first) ran with less contention on a shared device or core and are left out, so they cannot
  inflate the figure. Threads that never measured at once (no common span) fall back to the sum
  of each thread's own rate ``n_i / (e_i - s_i)``, and the row says so.
- ``total_infs = sum_i n_i``; ``total_s``: the shared window, from its start to the last return.
- Slices: the common span is cut into ``round(span / peak_window_s)`` equal slices, each about
  ``peak_window_s`` long (none when the span is shorter than half of it), with the same
  time-weighted credit, so a steady model gives the same figure in every slice, however slow its
  calls, and ``throughput_avg`` is the mean of the slices. ``throughput_peak`` is the busiest
  slice (``throughput_avg`` when there is no whole slice); ``throughput_cv`` the coefficient of
  variation of the slices (standard deviation with ddof=1 / mean), unknown with fewer than two.
- Stability is judged only where the slices can show it: a CV above ``CV_WARN_THRESHOLD`` is
  "unstable" when the slices hold at least ``MIN_CALLS_PER_SLICE`` calls and the call-to-call
  spread of latencies alone (interquartile range / 1.349 / median, over the square root of the
  calls per slice: what a steady model's slices vary by) would move a slice by less than half
  the threshold; otherwise the row says "too few calls per slice to judge stability".
- Latency percentiles and mean over every timed call of every thread, numpy's ``linear`` method.
- ``other_cpu_cores``: the CPU that processes other than the entry's used during its window, in
  cores (measured by the supervisor, see ``measure.supervisor.OtherLoad``); ``idle_cpu_cores``
  the CPU nobody used during the same span (idle and iowait), in cores. With repeats, means.
- Per copy (``CopyStats``, measured by the worker and the supervisor, see ``entries``):
  ``warmup_avg_ms`` is the mean warm-up call over every warm-up call of every copy;
  ``load_avg_ms``, ``cpu_avg_percent`` and ``mem_avg_percent`` are means over the copies,
  ``peak_rss_mb`` the largest copy's.
- Generation (``task: generate``; each call is one request of ``batch_size`` prompts, each
  prompt one request in the figures, and generates exactly ``new_tokens`` = N tokens). For a
  request starting at ``s`` whose tokens existed at ``t_1 .. t_N`` (stamped by the model as each
  decoding step's tokens reached the host): ``ttft = t_1 - s`` (time to first token, prefill
  included), ``tpot = (t_N - t_1) / (N - 1)`` (time per output token after the first; unknown for
  N = 1), ``e2e = t_N - s``, so ``ttft + tpot x (N - 1) = e2e`` exactly; the inter-token
  latencies are every gap ``t_k - t_(k-1)``. ``ttft_ms_p*``, ``tpot_ms_p*``, ``e2e_ms_p*`` are
  percentiles over requests, ``itl_ms_p*`` over gaps (``linear``, as above). ``requests_per_s`` is
  ``throughput_avg`` (prompts per second, every worker together) and ``output_tokens_per_s =
  requests_per_s x N``.
- Repeats (``benchmark.repeat: N``): every figure of the row is the MEAN of the N repeats'
  figures (``total_infs`` rounded), and ``throughput_ci_low/high`` and
  ``latency_ms_p50_ci_low/high`` are the 95% Student-t confidence interval of that same mean,
  with the exact t quantile for N - 1 degrees of freedom.
- ``cost_per_1m_inf = cost_per_hour x 10^6 / (3600 x throughput_avg)`` of the row's (combined)
  ``throughput_avg``; ``cost_per_1m_inf`` below is the one place that says so.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Optional

import numpy as np

from neuronperf.entries import CopyStats, Measurement, Telemetry
from neuronperf.errors import UsageError
from neuronperf.stats.student import t_quantile

#: The version of the definitions above. It is part of every entry's identity, so results of
#: an older method are measured again on a rerun instead of being mixed with new ones.
#: 3: throughput over the common span; repeats combined by their mean; per-copy CPU over the
#: copy's own window; memory without the harness's timing buffers; warm-up over every call.
METHOD_VERSION = 3


PERCENTILES = (0, 50, 90, 95, 99, 100)


#: numpy's name for the interpolation between the two closest ranks (also Excel's PERCENTILE.INC).
PERCENTILE_METHOD = "linear"


#: A throughput CV above this is reported as unstable (where the slices can show it).
CV_WARN_THRESHOLD = 0.10


#: Slices holding fewer calls than this on average cannot show instability.
MIN_CALLS_PER_SLICE = 20


#: Fewer measured calls than this and p99 is little more than the maximum.
MIN_SAMPLES = 100


NS_PER_S = 1_000_000_000


NS_PER_MS = 1_000_000


#: The confidence level of every interval in a row.
CONFIDENCE = 0.95


@dataclass(frozen=True)
class EntryStats:
    """The numbers of one run entry; ``None`` where a figure is unknown (failed entries, or no
    source data). Field names are the report keys."""

    throughput_avg: Optional[float] = None
    throughput_peak: Optional[float] = None
    throughput_cv: Optional[float] = None
    latency_ms_p0: Optional[float] = None
    latency_ms_p50: Optional[float] = None
    latency_ms_p90: Optional[float] = None
    latency_ms_p95: Optional[float] = None
    latency_ms_p99: Optional[float] = None
    latency_ms_p100: Optional[float] = None
    latency_ms_avg: Optional[float] = None
    load_avg_ms: Optional[float] = None
    warmup_avg_ms: Optional[float] = None
    e2e_avg_ms: Optional[float] = None
    infer_avg_ms: Optional[float] = None
    preprocess_avg_ms: Optional[float] = None
    postprocess_avg_ms: Optional[float] = None
    cpu_avg_percent: Optional[float] = None
    mem_avg_percent: Optional[float] = None
    peak_rss_mb: Optional[float] = None
    total_infs: Optional[int] = None
    total_s: Optional[float] = None
    cost_per_1m_inf: Optional[float] = None
    percentile_method: Optional[str] = None
    repeats: Optional[int] = None
    throughput_ci_low: Optional[float] = None
    throughput_ci_high: Optional[float] = None
    latency_ms_p50_ci_low: Optional[float] = None
    latency_ms_p50_ci_high: Optional[float] = None
    other_cpu_cores: Optional[float] = None
    idle_cpu_cores: Optional[float] = None
    # Device telemetry (docs/measurement.md, "Telemetry"); empty when it is off or unreadable.
    device_mem_mb_peak: Optional[float] = None
    device_mem_mb_nvml_peak: Optional[float] = None
    device_util_pct_avg: Optional[float] = None
    power_w_avg: Optional[float] = None
    power_w_idle: Optional[float] = None
    energy_j_per_inf: Optional[float] = None
    energy_source: Optional[str] = None
    telemetry_note: Optional[str] = None
    warning: Optional[str] = None

    def to_dict(self) -> dict:
        return asdict(self)


def percentile(values: np.ndarray, q: float) -> float:
    """The ``q``-th percentile of ``values`` by ``PERCENTILE_METHOD`` (numpy >= 1.21)."""
    # The keyword is passed from a dict because numpy < 1.22 calls it ``interpolation``.
    for keyword in ("method", "interpolation"):
        options: dict[str, Any] = {keyword: PERCENTILE_METHOD}
        try:
            return float(np.percentile(values, q, **options))
        except TypeError:
            continue
    raise UsageError("this numpy supports neither percentile(method=) nor percentile(interpolation=)")


@dataclass(frozen=True)
class ThreadSpan:
    """One measuring thread's timed calls: when each started and ended (ns)."""

    start: np.ndarray  # int64 start of each call
    end: np.ndarray  # int64 end of each call
    #: The most calls it was allowed (``max_infers``' share); None: no limit.
    quota: Optional[int] = None

    @property
    def calls(self) -> int:
        return int(self.start.size)


def measuring_threads(measurement: Measurement) -> list[ThreadSpan]:
    """Every measuring thread of every copy that timed at least one call."""
    out = []
    for w in measurement.workers:
        start = np.asarray(w.start_ns, dtype=np.int64)
        latency = np.asarray(w.latency_ns, dtype=np.int64)
        if start.shape != latency.shape:
            raise UsageError("a measurement has different numbers of start times and latencies")
        out.append(ThreadSpan(start, start + latency, w.quota))
    return out


def common_span(threads: Sequence[ThreadSpan]) -> Optional[tuple[int, int]]:
    """``(max_i s_i, min_i e_i)`` over threads that timed a call: when every thread was
    measuring; None when they never all measured at once."""
    measured = [t for t in threads if t.calls]
    if not measured:
        return None
    first = max(int(t.start[0]) for t in measured)
    last = min(int(t.end[-1]) for t in measured)
    return (first, last) if last > first else None


def throughput(threads: Sequence[ThreadSpan], batch_size: int) -> float:
    """``throughput_avg``: inputs per second over the common span, with time-weighted credit (see
    the module docstring); the sum of each thread's own rate when there is no common span."""
    measured = [t for t in threads if t.calls]
    span = common_span(measured)
    if span is None:
        return batch_size * sum(thread_rate(t.start, t.end) for t in measured)
    first, last = span
    bounds = np.array([first, last], dtype=np.int64)
    credit = sum(float(np.diff(credit_until(t.start, t.end, bounds))[0]) for t in measured)
    return batch_size * credit * NS_PER_S / (last - first)


def thread_rate(start_ns: np.ndarray, end_ns: np.ndarray) -> float:
    """Calls per second of one thread over the time it was measuring: n / (last end - first start)."""
    if start_ns.size == 0:
        return 0.0
    span = int(end_ns[-1]) - int(start_ns[0])
    return start_ns.size * NS_PER_S / span if span > 0 else 0.0


def credit_until(start_ns: np.ndarray, end_ns: np.ndarray, t: np.ndarray) -> np.ndarray:
    """For each time in ``t``: how many of one thread's sequential calls had completed by then,
    a call in progress counting by the fraction of its duration already elapsed."""
    finished = np.searchsorted(end_ns, t, side="right")  # calls whose end <= t
    credit = finished.astype(np.float64)
    current = np.minimum(finished, start_ns.size - 1)
    if start_ns.size:
        s, e = start_ns[current], end_ns[current]
        inside = (finished < start_ns.size) & (t > s)
        duration = np.maximum(e - s, 1)
        credit += np.where(inside, (t - s) / duration, 0.0)
    return credit


def slice_throughputs(measurement: Measurement, batch_size: int, slice_s: float) -> np.ndarray:
    """Throughput (inputs/s) of each slice of about ``slice_s`` seconds, with time-weighted
    credit, over the span where every thread was measuring (see the module docstring). Empty when
    the span is shorter than half a slice."""
    threads = [t for t in measuring_threads(measurement) if t.calls]
    return _slices(threads, batch_size, max(1, int(round(slice_s * NS_PER_S))))


def _slices(threads: list[ThreadSpan], batch_size: int, slice_ns: int) -> np.ndarray:
    span = common_span(threads)
    if span is None:
        return np.zeros(0)
    first, last = span
    # Equal slices that cover the span exactly, each as close to slice_ns as a whole number
    # of them allows (a 1.99 s span holds two slices of 0.995 s, not one of 1 s and a rest).
    n = int(round((last - first) / slice_ns))
    if n < 1:
        return np.zeros(0)
    length = (last - first) / n
    bounds = first + np.round(length * np.arange(n + 1)).astype(np.int64)
    credit = sum(np.diff(credit_until(t.start, t.end, bounds)) for t in threads if t.calls)
    return np.asarray(credit, dtype=np.float64) * batch_size * NS_PER_S / length


def t_interval(values: Sequence[Optional[float]], confidence: float = CONFIDENCE) -> tuple[Optional[float], Optional[float]]:
    """The Student-t confidence interval of the mean of ``values`` (95% by default), with the
    exact quantile for ``n - 1`` degrees of freedom; (None, None) for fewer than two values."""
    known = [float(v) for v in values if v is not None]
    if len(known) < 2:
        return None, None
    mean = statistics.fmean(known)
    sd = statistics.stdev(known)
    half = t_quantile(0.5 + confidence / 2, len(known) - 1) * sd / math.sqrt(len(known))
    return mean - half, mean + half


def cost_per_1m_inf(cost_per_hour: Optional[float], throughput_avg: Optional[float]) -> Optional[float]:
    """USD per million inferences, ``cost_per_hour x 10^6 / (3600 x throughput_avg)``: the one
    definition, used by the sweep's rows and the Python API alike. None without a price or a
    positive throughput; a price of 0 costs 0."""
    if cost_per_hour is None or throughput_avg is None:
        return None
    if not (math.isfinite(throughput_avg) and throughput_avg > 0):
        return None
    return float(cost_per_hour) * 1e6 / (3600.0 * float(throughput_avg))


def copy_figures(copies: Sequence[CopyStats]) -> dict[str, Any]:
    """The row's per-copy figures: load, warm-up, CPU and memory (see the module docstring)."""
    return {
        "load_avg_ms": _mean([c.load_ms for c in copies]),
        "warmup_avg_ms": _warmup_mean(copies),
        "cpu_avg_percent": _mean([c.cpu_avg_percent for c in copies]),
        "mem_avg_percent": _mean([c.mem_avg_percent for c in copies]),
        "peak_rss_mb": _max_mb([c.peak_rss_bytes for c in copies]),
    }


def _warmup_mean(copies: Sequence[CopyStats]) -> Optional[float]:
    """The mean warm-up call over every copy's warm-up calls (each copy's mean weighted by its
    number of calls); the plain mean of the copies' means where a count is unknown (older rows)."""
    if copies and all(c.warmup_calls is not None for c in copies):
        calls = sum(int(c.warmup_calls or 0) for c in copies)
        if calls == 0:
            return 0.0
        return sum(c.warmup_ms * int(c.warmup_calls or 0) for c in copies) / calls
    return _mean([c.warmup_ms for c in copies])


def compute_stats(
    measurement: Measurement,
    *,
    batch_size: int,
    peak_window_s: float = 1.0,
) -> EntryStats:
    """Turn one repeat's raw samples into its report figures; a failed entry gets empty figures.
    (``cost_per_1m_inf`` is priced from the combined row: see ``cost_per_1m_inf``.)"""
    if batch_size < 1:
        raise UsageError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not peak_window_s > 0:
        raise UsageError(f"peak_window_s must be a positive number of seconds, got {peak_window_s!r}")
    if measurement.status != "ok":
        return EntryStats()

    threads = measuring_threads(measurement)
    measured = [t for t in threads if t.calls]
    n_calls = sum(t.calls for t in threads)
    copies = measurement.copies
    per_copy = {**copy_figures(copies), **telemetry_figures(measurement.telemetry, n_calls * batch_size)}
    if n_calls == 0:
        return EntryStats(
            total_infs=0, repeats=1, other_cpu_cores=measurement.other_cpu_cores,
            idle_cpu_cores=measurement.idle_cpu_cores,
            warning="no measured calls: not one call completed in the measured window; "
            "rerun with a longer duration (benchmark.duration)",
            **per_copy,
        )

    window_start, window_end = measurement.window_start_ns, measurement.window_end_ns
    if window_end <= window_start:
        # No window recorded: fall back to the span of the samples themselves.
        window_start = min(int(t.start[0]) for t in measured)
        window_end = max(int(t.end[-1]) for t in measured)
    total_s = (window_end - window_start) / NS_PER_S
    throughput_avg = throughput(measured, batch_size)

    per_slice = _slices(measured, batch_size, max(1, int(round(peak_window_s * NS_PER_S))))
    throughput_peak = float(per_slice.max()) if per_slice.size else throughput_avg
    throughput_cv = None
    if per_slice.size >= 2 and per_slice.mean() > 0:
        throughput_cv = float(per_slice.std(ddof=1) / per_slice.mean())

    latency_ns = np.concatenate([t.end - t.start for t in threads])
    latency_ms = latency_ns.astype(np.float64) / NS_PER_MS
    percentiles: dict[str, Any] = {f"latency_ms_p{q}": percentile(latency_ms, q) for q in PERCENTILES}
    latency_avg = float(latency_ms.mean())
    # The call-to-call spread of a steady model, robust to the rare stall that instability is
    # made of: the interquartile range as a normal's standard deviation, over the median.
    q25, q75, median = (percentile(latency_ms, q) for q in (25, 75, 50))
    latency_cv = (q75 - q25) / 1.349 / median if median > 0 else 0.0
    calls_per_slice = float(per_slice.mean()) * peak_window_s / batch_size if per_slice.size else 0.0
    infer_ns = sum(w.infer_ns_total for w in measurement.workers)

    idle = [t for t in threads if not t.calls]
    problems = _problems(
        n_calls=n_calls, total_s=total_s, peak_window_s=peak_window_s, n_slices=int(per_slice.size),
        cv=throughput_cv, calls_per_slice=calls_per_slice, latency_cv=latency_cv,
        idle_threads=sum(1 for t in idle if t.quota != 0),
        unquoted_threads=sum(1 for t in idle if t.quota == 0), n_threads=len(threads),
        max_infers=sum(t.quota for t in threads if t.quota is not None) if any(t.quota is not None for t in threads) else None,
        overlapping=len(measured) < 2 or common_span(measured) is not None,
        late_ns=max((c.late_ns for c in copies), default=0),
        late_copies=[c.copy_idx for c in copies if c.late_ns > 0],
    )
    return EntryStats(
        throughput_avg=throughput_avg,
        throughput_peak=throughput_peak,
        throughput_cv=throughput_cv,
        latency_ms_avg=latency_avg,
        # Each latency sample spans preprocess + model call + postprocess: it is the e2e time.
        e2e_avg_ms=latency_avg,
        # A zero total means the worker did not time the model call apart from the rest.
        infer_avg_ms=infer_ns / n_calls / NS_PER_MS if infer_ns else None,
        preprocess_avg_ms=sum(w.preprocess_ns_total for w in measurement.workers) / n_calls / NS_PER_MS,
        postprocess_avg_ms=sum(w.postprocess_ns_total for w in measurement.workers) / n_calls / NS_PER_MS,
        total_infs=n_calls,
        total_s=total_s,
        percentile_method=PERCENTILE_METHOD,
        repeats=1,
        other_cpu_cores=measurement.other_cpu_cores,
        idle_cpu_cores=measurement.idle_cpu_cores,
        warning=" | ".join(problems) if problems else None,
        **percentiles,
        **per_copy,
    )


def telemetry_figures(telemetry: Optional[Telemetry], inferences: int) -> dict[str, Any]:
    """A repeat's telemetry columns: the sampled figures as they are, and the window's energy
    over the inferences made in it (``total_infs x batch_size``)."""
    if telemetry is None:
        return {}
    per_inf = telemetry.energy_j / inferences if telemetry.energy_j is not None and inferences > 0 else None
    return {
        "device_mem_mb_peak": telemetry.device_mem_mb_peak,
        "device_mem_mb_nvml_peak": telemetry.device_mem_mb_nvml_peak,
        "device_util_pct_avg": telemetry.device_util_pct_avg,
        "power_w_avg": telemetry.power_w_avg,
        "power_w_idle": telemetry.power_w_idle,
        "energy_j_per_inf": per_inf,
        "energy_source": telemetry.energy_source,
        "telemetry_note": telemetry.note,
    }


def combine_repeats(per_repeat: Sequence[EntryStats]) -> EntryStats:
    """The row of an entry measured several times: the MEAN of each figure over the repeats, the
    95% Student-t confidence intervals of that mean for throughput_avg and latency_ms_p50, and
    every repeat's warnings."""
    if not per_repeat:
        raise UsageError("combine_repeats needs at least one repeat")
    if len(per_repeat) == 1:
        return per_repeat[0]
    values: dict[str, Any] = {}
    for f in fields(EntryStats):
        column = [getattr(s, f.name) for s in per_repeat]
        numbers = [v for v in column if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if f.name in ("warning", "percentile_method", "repeats") or f.name.endswith(("_ci_low", "_ci_high")) or not numbers:
            continue
        mean = statistics.fmean(numbers)
        values[f.name] = int(round(mean)) if f.name == "total_infs" else float(mean)
    low, high = t_interval([s.throughput_avg for s in per_repeat])
    p50_low, p50_high = t_interval([s.latency_ms_p50 for s in per_repeat])
    warnings = []
    for i, s in enumerate(per_repeat):
        for part in (s.warning or "").split(" | ") if s.warning else ():
            text = f"repeat {i + 1}: {part}"
            warnings.append(text)
    return replace(
        per_repeat[0], **values, repeats=len(per_repeat),
        throughput_ci_low=low, throughput_ci_high=high,
        latency_ms_p50_ci_low=p50_low, latency_ms_p50_ci_high=p50_high,
        warning=" | ".join(warnings) if warnings else None,
    )


def _problems(
    *, n_calls: int, total_s: float, peak_window_s: float, n_slices: int, cv: Optional[float],
    calls_per_slice: float, latency_cv: float, idle_threads: int, unquoted_threads: int, n_threads: int,
    max_infers: Optional[int], overlapping: bool, late_ns: int, late_copies: list[int],
) -> list[str]:
    """What makes these numbers doubtful, each as "label: what; remedy" (a row joins them with
    " | "); empty when nothing does."""
    problems: list[str] = []
    if cv is not None and cv > CV_WARN_THRESHOLD:
        # The spread a stationary process shows from call-to-call jitter alone, per slice.
        noise = latency_cv / math.sqrt(calls_per_slice) if calls_per_slice > 0 else math.inf
        if calls_per_slice >= MIN_CALLS_PER_SLICE and noise < CV_WARN_THRESHOLD / 2:
            problems.append(
                f"unstable: throughput varied {cv:.0%} between {peak_window_s:g} s slices "
                "(coefficient of variation); rerun with a longer duration (benchmark.duration) "
                "or on an idle machine"
            )
        else:
            problems.append(
                f"too few calls per slice to judge stability: {calls_per_slice:.1f} calls per "
                f"{peak_window_s:g} s slice; a longer benchmark.peak_window shows it"
            )
    if n_slices < 2:
        problems.append(
            f"stability unknown: the {total_s:.3g} s window holds fewer than two {peak_window_s:g} s "
            "slices in which every thread measured; rerun with a longer duration (benchmark.duration)"
        )
    if n_calls < MIN_SAMPLES:
        problems.append(
            f"few samples: only {n_calls} measured calls, so the tail percentiles are rough; "
            f"rerun with benchmark.min_calls: {MIN_SAMPLES} (measures past the duration until then) "
            "or a longer duration"
        )
    if idle_threads:
        problems.append(
            f"idle threads: {idle_threads} thread(s) measured no call (a call longer than the "
            "window); rerun with a longer duration (benchmark.duration)"
        )
    if unquoted_threads:
        problems.append(
            f"threads without calls: benchmark.max_infers ({max_infers}) gave {unquoted_threads} of the "
            f"{n_threads} measuring threads no call to make, so fewer threads measured than configured; "
            f"set max_infers to at least {n_threads}"
        )
    if not overlapping:
        problems.append(
            "threads apart: the measuring threads never all measured at once (a copy stopped before "
            "another began), so throughput_avg is the sum of each thread's own rate, not a rate "
            "under the configured load; rerun with a longer duration or without max_infers"
        )
    if late_copies:
        which = ", ".join(str(i) for i in late_copies)
        problems.append(
            f"late start: copy {which} learnt of the window up to {late_ns / 1e6:.1f} ms after it "
            "opened, so the copies did not all measure at once at first; rerun on a less busy machine"
        )
    return problems


def short_warning(warning: Optional[str]) -> Optional[str]:
    """The labels of a row's warning ("unstable, few samples"), for one console line; the row
    keeps the whole text."""
    if not warning:
        return None
    labels: list[str] = []
    for part in warning.split(" | "):
        if part.startswith("repeat ") and ":" in part:
            part = part.split(":", 1)[1]
        label = part.split(":", 1)[0].strip()
        if label and label not in labels:
            labels.append(label)
    return ", ".join(labels)


def _mean(values: list) -> Optional[float]:
    known = [float(v) for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _max_mb(values: list) -> Optional[float]:
    known = [int(v) for v in values if v is not None]
    return max(known) / (1024 * 1024) if known else None
