"""Statistics of one measured run entry, computed from its raw samples.

Pure numpy: this module never reads a clock, so every figure is a function of the ``Measurement``
alone and tests can check it against hand-computed values. What each figure means:

- ``total_infs``: the number of model calls completed by all workers (one call handles
  ``batch_size`` inputs); ``total_s``: the shared measured window in seconds.
- ``throughput_avg = total_infs * batch_size / total_s`` (inputs per second).
- ``throughput_peak``: the window is cut into consecutive sub-windows of ``peak_window_s``
  seconds from its start (a partial last one is dropped); each call counts in the sub-window in
  which it *completed* (``start_ns + latency_ns``); the peak is the busiest sub-window's
  throughput. When the window is shorter than one sub-window, the peak is ``throughput_avg``.
- ``throughput_cv``: the coefficient of variation (population standard deviation / mean) of the
  per-sub-window throughputs, as a fraction (0.05 = 5%); unknown with fewer than two sub-windows.
- latency percentiles and mean over every raw sample of every worker, numpy's ``linear`` method.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional

import numpy as np

from neuronperf.entries import Measurement
from neuronperf.errors import UsageError

PERCENTILES = (0, 50, 90, 95, 99, 100)
#: numpy's name for the interpolation between the two closest ranks (also Excel's PERCENTILE.INC).
PERCENTILE_METHOD = "linear"
#: A throughput CV above this is reported as unstable.
CV_WARN_THRESHOLD = 0.10
#: Fewer measured calls than this and p99 is little more than the maximum.
MIN_SAMPLES = 100

_NS_PER_S = 1_000_000_000
_NS_PER_MS = 1_000_000


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


def subwindow_throughputs(
    completions_ns: np.ndarray, start_ns: int, end_ns: int, window_ns: int, batch_size: int
) -> np.ndarray:
    """Throughput (inputs/s) of each whole sub-window of ``window_ns`` from ``start_ns``, counting
    each call where it completed. Empty when the window holds no whole sub-window."""
    n_full = (end_ns - start_ns) // window_ns
    if n_full < 1:
        return np.zeros(0, dtype=np.float64)
    offsets = completions_ns.astype(np.int64) - start_ns
    index = offsets // window_ns
    if n_full * window_ns == end_ns - start_ns:
        # The window closes at its end: a call completing exactly then belongs to the last one.
        index[offsets == n_full * window_ns] = n_full - 1
    inside = (offsets >= 0) & (index < n_full)
    counts = np.bincount(index[inside], minlength=n_full)[:n_full]
    return counts.astype(np.float64) * batch_size * _NS_PER_S / window_ns


def compute_stats(
    measurement: Measurement,
    *,
    batch_size: int,
    peak_window_s: float = 1.0,
    cost_per_hour: Optional[float] = None,
) -> EntryStats:
    """Turn one entry's raw samples into its report figures; a failed entry gets empty figures."""
    if batch_size < 1:
        raise UsageError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not peak_window_s > 0:
        raise UsageError(f"peak_window_s must be a positive number of seconds, got {peak_window_s!r}")
    if measurement.status != "ok":
        return EntryStats()

    latency_ns = _concat([w.latency_ns for w in measurement.workers])
    start_ns = _concat([w.start_ns for w in measurement.workers])
    if latency_ns.shape != start_ns.shape:
        raise UsageError("a measurement has different numbers of start times and latencies")
    n_calls = int(latency_ns.size)
    copies = measurement.copies
    copy_figures: dict[str, Any] = {
        "load_avg_ms": _mean([c.load_ms for c in copies]),
        "warmup_avg_ms": _mean([c.warmup_ms for c in copies]),
        "cpu_avg_percent": _mean([c.cpu_avg_percent for c in copies]),
        "mem_avg_percent": _mean([c.mem_avg_percent for c in copies]),
        "peak_rss_mb": _max_mb([c.peak_rss_bytes for c in copies]),
    }
    if n_calls == 0:
        return EntryStats(
            total_infs=0,
            warning="no measured calls: not one call completed in the measured window; "
            "rerun with a longer duration (benchmark.duration)",
            **copy_figures,
        )

    completions_ns = start_ns + latency_ns
    window_start, window_end = measurement.window_start_ns, measurement.window_end_ns
    if window_end <= window_start:
        # No window recorded: fall back to the span of the samples themselves.
        window_start, window_end = int(start_ns.min()), int(completions_ns.max())
    total_s = (window_end - window_start) / _NS_PER_S
    throughput_avg = n_calls * batch_size / total_s if total_s > 0 else None

    window_ns = max(1, int(round(peak_window_s * _NS_PER_S)))
    per_window = subwindow_throughputs(completions_ns, window_start, window_end, window_ns, batch_size)
    throughput_peak = float(per_window.max()) if per_window.size else throughput_avg
    throughput_cv = None
    if per_window.size >= 2 and per_window.mean() > 0:
        throughput_cv = float(per_window.std() / per_window.mean())

    latency_ms = latency_ns.astype(np.float64) / _NS_PER_MS
    percentiles = {f"latency_ms_p{q}": percentile(latency_ms, q) for q in PERCENTILES}
    latency_avg = float(latency_ms.mean())
    infer_ns = sum(w.infer_ns_total for w in measurement.workers)
    cost = None
    if cost_per_hour is not None and throughput_avg:
        cost = cost_per_hour * 1e6 / (3600 * throughput_avg)

    return EntryStats(
        throughput_avg=throughput_avg,
        throughput_peak=throughput_peak,
        throughput_cv=throughput_cv,
        latency_ms_avg=latency_avg,
        # Each latency sample spans preprocess + model call + postprocess: it is the e2e time.
        e2e_avg_ms=latency_avg,
        # A zero total means the worker did not time the model call apart from the rest.
        infer_avg_ms=infer_ns / n_calls / _NS_PER_MS if infer_ns else None,
        preprocess_avg_ms=sum(w.preprocess_ns_total for w in measurement.workers) / n_calls / _NS_PER_MS,
        postprocess_avg_ms=sum(w.postprocess_ns_total for w in measurement.workers) / n_calls / _NS_PER_MS,
        total_infs=n_calls,
        total_s=total_s,
        cost_per_1m_inf=cost,
        percentile_method=PERCENTILE_METHOD,
        warning=_warning(n_calls, total_s, peak_window_s, per_window.size, throughput_cv),
        **percentiles,
        **copy_figures,
    )


def _warning(
    n_calls: int, total_s: float, peak_window_s: float, n_windows: int, cv: Optional[float]
) -> Optional[str]:
    """What makes these numbers doubtful, each with its remedy; ``None`` when nothing does."""
    problems: list[str] = []
    if cv is not None and cv > CV_WARN_THRESHOLD:
        problems.append(
            f"unstable: throughput varied {cv:.0%} between {peak_window_s:g} s windows "
            "(coefficient of variation); rerun with a longer duration (benchmark.duration) "
            "or on an idle machine"
        )
    if n_windows < 2:
        problems.append(
            f"stability unknown: the {total_s:.3g} s window holds fewer than two {peak_window_s:g} s "
            f"sub-windows; rerun with a duration (benchmark.duration) of at least {2 * peak_window_s:g} s"
        )
    if n_calls < MIN_SAMPLES:
        problems.append(
            f"few samples: only {n_calls} measured calls, so the tail percentiles are rough; "
            f"rerun with a longer duration (benchmark.duration) for at least {MIN_SAMPLES} calls"
        )
    return "; ".join(problems) if problems else None


def _concat(arrays: list) -> np.ndarray:
    if not arrays:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.asarray(a, dtype=np.int64) for a in arrays])


def _mean(values: list) -> Optional[float]:
    known = [float(v) for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _max_mb(values: list) -> Optional[float]:
    known = [int(v) for v in values if v is not None]
    return max(known) / (1024 * 1024) if known else None
