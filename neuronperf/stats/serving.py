"""The server scenario's figures (``benchmark.scenario: server``), from the arrival schedule and
what each measuring thread recorded per call.

Pure numpy, no clock. The definitions (docs/serving.md says the same in prose):

- **The schedule.** A window at ``rate`` requests per second holds ``n = max(1, round(rate x
  duration), min_calls)`` requests, scheduled at ``start + offset_i`` over ``span = n / rate``
  seconds. ``constant``: ``offset_i = i / rate``. ``poisson``: ``offset_i = span x (E_1 + .. +
  E_i) / (E_1 + .. + E_n+1)``, the partial sums of ``n + 1`` unit exponentials drawn from
  ``numpy.random.default_rng(seed)``, normalised: ``n`` sorted uniform times, which is a Poisson
  process of that rate conditioned on holding ``n`` requests (so the offered rate over the window
  is exactly the target, and the same seed gives the same schedule in every process).
- **A call** serves requests ``first .. first + k - 1`` of the schedule (a dynamic batch, ``1 <=
  k <= batch_size``; the call runs at the compiled batch size whatever ``k`` is). It started at
  ``s`` and ended at ``e``.
- **Latency of a request** ``j`` served by that call: ``e - t_j``, from its *scheduled* arrival,
  never from when it was taken from the queue, so a stall of the model is charged to every
  request scheduled during it (no coordinated omission). Its parts: ``queue = s - t_j`` and
  ``service = e - s`` (``latency = queue + service`` for every request). Percentiles and means are
  over requests, numpy's ``linear`` method, like every percentile of a row.
- ``rate_achieved``: requests served / ``total_s``, where ``total_s`` runs from the window's start
  to the later of its end (``span``) and the last completion. It equals ``rate_target`` (up to
  rounding ``n``) when the entry keeps up, and falls to what it can serve when it does not.
  ``throughput_avg`` is ``rate_achieved`` (a request is one sample); ``throughput_peak`` the
  busiest ``peak_window`` slice of completions; ``total_infs`` counts calls.
- ``batch_fill_avg``: the mean over calls of ``k / batch_size``.
- ``generator_lag_ms_p99``: the 99th percentile over requests of how much later its call started
  than it would have with a harness that loses no time. For each thread's calls in order, with
  ``due`` when the batch was due (its first request's arrival; with a queue delay ``D``, the
  earlier of that arrival + ``D`` and the arrival that filled the batch): the ideal start is
  ``I_m = max(due_m, I_(m-1) + (e_(m-1) - s_(m-1)))`` (the same calls, the same service times, no
  time lost between them) and the lag is ``s_m - I_m``. A stall of the harness (the queue's lock,
  a late wake-up, the thread descheduled between calls) thus counts for every request it delayed.
- ``dropped``: requests refused by a bounded queue (0: the queue is unbounded).
- ``valid`` / ``invalid_reason``: a row is invalid when the entry did not keep up (``keeps_up``:
  it served fewer than all its requests, or ``rate_achieved`` fell below ``KEEP_UP_SHARE`` of the
  target with a backlog left at the window's end), or when the harness's lag is not well below
  the latency it measures (``LAG_SHARE``, ``LAG_FLOOR_MS``).
- Generation (``task: generate``): TTFT and end-to-end latency count from the scheduled arrival
  (``first token - t_j``, ``last token - t_j``); TPOT and inter-token latency are the call's own;
  ``requests_per_s = rate_achieved``; ``goodput_rps`` = requests that met every bound of
  ``objectives.slo`` (``ttft_ms_pN <= L``: its TTFT at most ``L``; ``tpot_ms_pN``: its TPOT;
  ``latency_ms_pN``: its end-to-end latency) / ``total_s``.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Optional

import numpy as np

from neuronperf.entries import Measurement, ServingWindow
from neuronperf.errors import UsageError
from neuronperf.stats.forward import (
    MIN_SAMPLES,
    NS_PER_MS,
    NS_PER_S,
    PERCENTILES,
    EntryStats,
    combine_repeats,
    compute_stats,
    percentile,
)
from neuronperf.stats.generation import GENERATION_FIGURES, empty_generation

ARRIVALS = ("poisson", "constant")
SCENARIOS = ("closed", "server")
#: The columns a server row adds, in order, after the closed loop's. The latency percentiles keep
#: their names and count from the scheduled arrival.
SERVING_COLUMNS = (
    "scenario",
    "rate_target",
    "max_queue_delay_ms",
    "rate_achieved",
    "max_rate_under_slo",
    "queue_ms_p50",
    "queue_ms_p99",
    "service_ms_p50",
    "service_ms_p99",
    "batch_fill_avg",
    "dropped",
    "generator_lag_ms_p99",
    "valid",
    "invalid_reason",
    "probes",
)
#: A generation row of the server scenario adds this one.
GOODPUT_COLUMN = "goodput_rps"
#: The figures among the serving columns (medians over repeats).
SERVING_FIGURES = ("rate_achieved", "queue_ms_p50", "queue_ms_p99", "service_ms_p50", "service_ms_p99",
                   "batch_fill_avg", "generator_lag_ms_p99", GOODPUT_COLUMN)
#: A row keeps up when it serves at least this share of its target rate.
KEEP_UP_SHARE = 0.99
#: The harness's own delay (generator_lag_ms_p99) must stay below this share of latency_ms_p99...
LAG_SHARE = 0.10
#: ...unless it is below this (ms): a sleeping thread's wake-up costs tens of microseconds on any
#: OS, which no harness avoids and no latency bound worth stating notices.
LAG_FLOOR_MS = 0.05


def request_count(rate: float, duration_s: float, min_calls: Optional[int] = None) -> int:
    """How many requests a window of ``duration_s`` at ``rate`` holds (at least ``min_calls``)."""
    return max(1, int(round(rate * duration_s)), min_calls or 0)


def search_minimum(min_calls: Optional[int]) -> int:
    """The fewest requests a peak search's probe serves to pass: ``min_calls``, else
    ``MIN_SAMPLES`` (each probe's window is made long enough to hold them)."""
    return min_calls or MIN_SAMPLES


def schedule_offsets_ns(rate: float, count: int, arrival: str = "poisson", seed: int = 0) -> np.ndarray:
    """Each request's scheduled arrival after the window's start, int64 ns, nondecreasing."""
    if not rate > 0:
        raise UsageError(f"a rate must be positive, got {rate!r}")
    if arrival == "constant":
        offsets = np.arange(count, dtype=np.float64) / rate
    elif arrival == "poisson":
        sums = np.cumsum(np.random.default_rng(seed).standard_exponential(count + 1))
        offsets = (count / rate) * sums[:-1] / sums[-1]
    else:
        raise UsageError(f"arrival must be one of {', '.join(ARRIVALS)}, got {arrival!r}")
    return np.round(offsets * NS_PER_S).astype(np.int64)


def arrivals_ns(window: ServingWindow) -> np.ndarray:
    """Every request's scheduled arrival in ``window``, absolute (``perf_counter_ns``)."""
    return window.start_ns + schedule_offsets_ns(window.rate, window.requests, window.arrival, window.seed)


@dataclass(frozen=True)
class CallRecords:
    """One measuring thread's calls in a server window, int64 arrays with one item per call."""

    first: np.ndarray  # the index of the first request the call served
    count: np.ndarray  # how many requests it served (1..batch_size)
    start_ns: np.ndarray
    end_ns: np.ndarray
    due_ns: np.ndarray  # when its batch was due (see the module docstring)

    def lag_ns(self) -> np.ndarray:
        """Each call's start minus its ideal start (see the module docstring)."""
        if not self.start_ns.size:
            return np.zeros(0, dtype=np.int64)
        # I_m = max(due_m, I_(m-1) + d_(m-1)) is D_m + max over k <= m of (due_k - D_k), where
        # D_m sums the service times of the calls before m: a running maximum, no loop.
        service = self.end_ns - self.start_ns
        before = np.concatenate(([0], np.cumsum(service)[:-1]))
        ideal = before + np.maximum.accumulate(self.due_ns - before)
        return self.start_ns - ideal  # type: ignore[no-any-return]


def call_records(measurement: Measurement) -> list[CallRecords]:
    """Every measuring thread's calls (a closed-loop measurement has none: UsageError)."""
    out = []
    for w in measurement.workers:
        if w.request_first is None or w.request_count is None or w.due_ns is None:
            raise UsageError(f"copy {w.copy_idx} thread {w.thread_idx}: a server measurement without request records")
        start = np.asarray(w.start_ns, dtype=np.int64)
        out.append(CallRecords(np.asarray(w.request_first, dtype=np.int64), np.asarray(w.request_count, dtype=np.int64),
                               start, start + np.asarray(w.latency_ns, dtype=np.int64), np.asarray(w.due_ns, dtype=np.int64)))
    return out


@dataclass(frozen=True)
class RequestTimes:
    """Per served request, in schedule order: its index, scheduled arrival, and its call's start
    and end, and which call (in the order of ``calls``, thread by thread) served it."""

    index: np.ndarray
    arrival_ns: np.ndarray
    start_ns: np.ndarray
    end_ns: np.ndarray
    call: np.ndarray

    @property
    def latency_ns(self) -> np.ndarray:
        return self.end_ns - self.arrival_ns  # type: ignore[no-any-return]


def request_times(threads: Sequence[CallRecords], window: ServingWindow) -> RequestTimes:
    """Each served request's times, from every thread's calls; a request served twice or a call
    outside the schedule is the harness's error (UsageError)."""
    empty = np.zeros(0, dtype=np.int64)
    first = np.concatenate([t.first for t in threads]) if threads else empty
    count = np.concatenate([t.count for t in threads]) if threads else empty
    if count.size and (count.min() < 1 or first.min() < 0 or (first + count).max() > window.requests):
        raise UsageError("a call record names requests outside the window's schedule")
    # Request first + m of a call is at offset (calls before it) + m of the flattened list.
    index = np.repeat(first - (np.cumsum(count) - count), count) + np.arange(int(count.sum()))
    if np.unique(index).size != index.size:
        raise UsageError("a request was served by two calls")
    order = np.argsort(index, kind="stable")
    call = np.repeat(np.arange(count.size), count)[order]
    starts = np.concatenate([t.start_ns for t in threads]) if threads else empty
    ends = np.concatenate([t.end_ns for t in threads]) if threads else empty
    return RequestTimes(index[order], arrivals_ns(window)[index[order]], starts[call], ends[call], call)


def _ms(values: np.ndarray, q: float) -> Optional[float]:
    return percentile(values.astype(np.float64) / NS_PER_MS, q) if values.size else None


def serving_stats(measurement: Measurement, *, batch_size: int, peak_window_s: float = 1.0,
                  cost_per_hour: Optional[float] = None, new_tokens: Optional[int] = None,
                  slo: Sequence[tuple[str, float]] = ()) -> tuple[EntryStats, dict[str, Any]]:
    """One server window's row figures: the ``EntryStats`` (latencies from the scheduled arrival,
    ``throughput_avg = rate_achieved``...) and the serving columns (with the generation columns
    and ``goodput_rps`` for a generation entry)."""
    window = measurement.serving
    if window is None:
        raise UsageError("serving_stats needs a server measurement (one with a schedule)")
    base = compute_stats(measurement, batch_size=batch_size, peak_window_s=peak_window_s)
    threads = call_records(measurement)
    times = request_times(threads, window)
    served = int(times.index.size)
    calls = sum(int(t.count.size) for t in threads)
    last_end = int(times.end_ns.max()) if served else window.start_ns
    total_ns = max(window.span_ns, last_end - window.start_ns)
    rate_achieved = served * NS_PER_S / total_ns
    lag = np.concatenate([np.repeat(t.lag_ns(), t.count) for t in threads]) if calls else np.zeros(0, np.int64)
    fill = np.concatenate([t.count for t in threads]) / batch_size if calls else np.zeros(0)
    latency = times.latency_ns
    # Completions per slice of about peak_window_s over the window (served requests only).
    n_slices = max(1, int(round(total_ns / (peak_window_s * NS_PER_S))))
    per_slice = np.histogram(times.end_ns, bins=n_slices, range=(window.start_ns, window.start_ns + total_ns))[0]
    per_slice = per_slice / (total_ns / n_slices / NS_PER_S)
    call_ms = [float((t.end_ns - t.start_ns).mean()) / NS_PER_MS for t in threads if t.count.size]
    warnings = []
    if served < MIN_SAMPLES:
        warnings.append(
            f"few samples: only {served} requests served, so the tail percentiles are rough; rerun with "
            f"benchmark.min_calls: {MIN_SAMPLES} (a window of at least that many requests) or a longer duration"
        )
    late = [c.copy_idx for c in measurement.copies if c.late_ns > 0]
    if late:
        warnings.append(
            f"late start: copy {', '.join(map(str, late))} learnt of the window up to "
            f"{max(c.late_ns for c in measurement.copies) / 1e6:.1f} ms after it opened; rerun on a less busy machine"
        )
    percentiles: dict[str, Any] = {f"latency_ms_p{q}": _ms(latency, q) for q in PERCENTILES}
    stats = replace(
        base,
        throughput_avg=rate_achieved,
        throughput_peak=float(per_slice.max()) if per_slice.size else rate_achieved,
        throughput_cv=float(per_slice.std(ddof=1) / per_slice.mean()) if per_slice.size >= 2 and per_slice.mean() > 0 else None,
        latency_ms_avg=float(latency.mean()) / NS_PER_MS if served else None,
        e2e_avg_ms=float(latency.mean()) / NS_PER_MS if served else None,
        infer_avg_ms=sum(call_ms) / len(call_ms) if call_ms else None,
        preprocess_avg_ms=None,
        postprocess_avg_ms=None,
        total_infs=calls,
        total_s=total_ns / NS_PER_S,
        cost_per_1m_inf=cost_per_hour * 1e6 / (3600 * rate_achieved) if cost_per_hour is not None and rate_achieved else None,
        warning=" | ".join(warnings) if warnings else None,
        **percentiles,
    )
    columns: dict[str, Any] = {
        "scenario": "server",
        "rate_target": window.rate,
        "max_queue_delay_ms": window.max_queue_delay_ms,
        "rate_achieved": rate_achieved,
        "queue_ms_p50": _ms(times.start_ns - times.arrival_ns, 50),
        "queue_ms_p99": _ms(times.start_ns - times.arrival_ns, 99),
        "service_ms_p50": _ms(times.end_ns - times.start_ns, 50),
        "service_ms_p99": _ms(times.end_ns - times.start_ns, 99),
        "batch_fill_avg": float(fill.mean()) if calls else None,
        "dropped": 0,
        "generator_lag_ms_p99": _ms(lag, 99),
    }
    if new_tokens is not None:
        columns.update(_generation(measurement, times, new_tokens, slo, total_ns, rate_achieved))
    backlog_ms = max(0, last_end - window.start_ns - window.span_ns) / NS_PER_MS
    reason = invalid_reason(window, served=served, rate_achieved=rate_achieved, backlog_ms=backlog_ms,
                            p50_ms=stats.latency_ms_p50, lag_ms=columns["generator_lag_ms_p99"],
                            p99_ms=stats.latency_ms_p99)
    columns["valid"] = reason is None
    columns["invalid_reason"] = reason
    return stats, {**dict.fromkeys(SERVING_COLUMNS), **columns}


def _generation(measurement: Measurement, times: RequestTimes, new_tokens: int, slo: Sequence[tuple[str, float]],
                total_ns: int, rate_achieved: float) -> dict[str, Any]:
    """TTFT, TPOT, ITL and end-to-end times of each served request, from its scheduled arrival."""
    stamps = []
    for w in measurement.workers:
        tokens = np.asarray(w.token_ns if w.token_ns is not None else [], dtype=np.int64)
        calls = int(np.asarray(w.start_ns).size)
        if tokens.size != calls * new_tokens:
            raise UsageError(f"copy {w.copy_idx} thread {w.thread_idx}: {tokens.size} token times for "
                             f"{calls} calls of {new_tokens} tokens")
        stamps.append(tokens.reshape(calls, new_tokens))
    out = empty_generation(new_tokens)
    if not times.index.size:
        return {**out, GOODPUT_COLUMN: None}
    per_call = np.concatenate(stamps)[times.call]  # each served request's token stamps
    ttft = per_call[:, 0] - times.arrival_ns
    e2e = per_call[:, -1] - times.arrival_ns
    tpot = (per_call[:, -1] - per_call[:, 0]) / (new_tokens - 1) if new_tokens > 1 else np.zeros(0)
    itl = np.diff(np.concatenate(stamps), axis=1).ravel() if new_tokens > 1 else np.zeros(0, np.int64)
    for q in (50, 90, 99):
        out[f"ttft_ms_p{q}"] = _ms(ttft, q)
        out[f"tpot_ms_p{q}"] = _ms(tpot, q)
        out[f"itl_ms_p{q}"] = _ms(itl, q)
    out["e2e_ms_p50"], out["e2e_ms_p99"] = _ms(e2e, 50), _ms(e2e, 99)
    out["requests_per_s"] = rate_achieved
    out["output_tokens_per_s"] = rate_achieved * new_tokens
    good = np.ones(times.index.size, dtype=bool)
    for column, limit in slo:
        per_request = {"ttft": ttft, "tpot": tpot, "latency": e2e}.get(column.split("_ms_p")[0])
        if per_request is not None and per_request.size:
            good &= per_request / NS_PER_MS <= limit
    out[GOODPUT_COLUMN] = int(good.sum()) * NS_PER_S / total_ns
    return out


def keeps_up(window: ServingWindow, *, served: int, rate_achieved: float, backlog_ms: float,
             p50_ms: Optional[float]) -> bool:
    """Whether the entry served its window's load: every request served, and either
    ``rate_achieved`` within ``KEEP_UP_SHARE`` of the target or, for a window so short that one
    request's latency is more than 1% of it, the last request done within a median latency plus
    1% of the window after the window's end (no backlog left to drain)."""
    if served < window.requests:
        return False
    return rate_achieved >= KEEP_UP_SHARE * window.rate or backlog_ms <= (p50_ms or 0.0) + 0.01 * window.span_ns / NS_PER_MS


def invalid_reason(window: ServingWindow, *, served: int, rate_achieved: float, backlog_ms: float,
                   p50_ms: Optional[float], lag_ms: Optional[float], p99_ms: Optional[float]) -> Optional[str]:
    """Why a server window's figures do not say what the entry can serve, or None."""
    reasons = []
    if window.stopped:
        reasons.append(window.stopped)
    if not keeps_up(window, served=served, rate_achieved=rate_achieved, backlog_ms=backlog_ms, p50_ms=p50_ms):
        reasons.append(
            f"overloaded: served {rate_achieved:.6g} of {window.rate:.6g} requests/s ({served} of "
            f"{window.requests} requests, the last {backlog_ms:.4g} ms after the window's end); the queue "
            "grew through the window"
        )
    if lag_ms is not None and p99_ms is not None and lag_ms > LAG_FLOOR_MS and lag_ms > LAG_SHARE * p99_ms:
        reasons.append(
            f"generator lag: the harness started calls {lag_ms:.3g} ms late (p99), more than "
            f"{LAG_SHARE:.0%} of the p99 latency it measures ({p99_ms:.3g} ms); the machine is too busy "
            "for this rate, or the model's threads starve the serving threads"
        )
    return "; ".join(reasons) if reasons else None


def combine_serving(per_repeat: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Several repeats' serving columns: the median of each figure, valid only if every repeat
    was, with each invalid repeat's reason."""
    if len(per_repeat) == 1:
        return dict(per_repeat[0])
    out = dict(per_repeat[0])
    for name in (*SERVING_FIGURES, *GENERATION_FIGURES):
        numbers = [r[name] for r in per_repeat if r.get(name) is not None]
        if name in out or numbers:
            out[name] = float(statistics.median(numbers)) if numbers else None
    reasons = [f"repeat {i + 1}: {r['invalid_reason']}" for i, r in enumerate(per_repeat) if r.get("invalid_reason")]
    out["valid"] = not reasons
    out["invalid_reason"] = "; ".join(reasons) if reasons else None
    return out


def serving_row_figures(measurements: Sequence[Measurement], *, batch_size: int, peak_window_s: float,
                        cost_per_hour: Optional[float], new_tokens: Optional[int],
                        slo: Sequence[tuple[str, float]]) -> tuple[EntryStats, dict[str, Any]]:
    """The figures of a server row from its repeats (each one's, then their medians)."""
    per_repeat = [serving_stats(m, batch_size=batch_size, peak_window_s=peak_window_s, cost_per_hour=cost_per_hour,
                                new_tokens=new_tokens, slo=slo) for m in measurements]
    return combine_repeats([s for s, _ in per_repeat]), combine_serving([c for _, c in per_repeat])


def empty_serving(rate: Optional[float], max_queue_delay_ms: float, new_tokens: Optional[int] = None) -> dict[str, Any]:
    """The serving columns of a server entry with no figures (failed, or never measured)."""
    out: dict[str, Any] = dict.fromkeys(SERVING_COLUMNS)
    out.update(scenario="server", rate_target=rate, max_queue_delay_ms=max_queue_delay_ms)
    if new_tokens is not None:
        out[GOODPUT_COLUMN] = None
    return out
