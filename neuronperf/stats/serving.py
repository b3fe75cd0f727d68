"""The serving scenario's figures (``benchmark.scenario: server``), from raw call records.

Pure numpy, no clock: every figure is a function of the arrival schedule and of what each
measuring thread recorded per call. The definitions (docs/serving.md says the same in prose):

- **The schedule.** A window at ``rate`` requests per second holds ``n = max(1, round(rate x
  duration), min_calls)`` requests, scheduled at ``start + offset_i`` over ``span = n / rate``
  seconds. ``constant``: ``offset_i = i / rate``. ``poisson``: ``offset_i = span x E_1..i /
  E_1..n+1``, the partial sums of ``n + 1`` unit exponentials drawn from
  ``numpy.random.default_rng(seed)``, normalised: ``n`` sorted uniform times, which is a Poisson
  process of that rate conditioned on holding ``n`` requests (so the offered rate over the
  window is exactly the target, and the same seed gives the same schedule everywhere).
- **A call** serves requests ``first .. first + k - 1`` of the schedule (a dynamic batch; ``k <=
  batch_size``; the call is made at the compiled batch size whatever ``k`` is). It started at
  ``s`` and ended at ``e``.
- **Latency of a request** ``j`` served by that call: ``e - t_j``, from its *scheduled* arrival,
  never from when it was dequeued (coordinated omission cannot hide a stall: a request scheduled
  while the model was stuck is charged the wait). ``queue = s - t_j``, ``service = e - s``, so
  ``latency = queue + service`` for every request. Percentiles over requests (``linear``).
- ``rate_achieved``: requests served / (from the window's start to the later of its end and the
  last completion). Equal to ``rate_target`` (up to rounding ``n``) when the entry keeps up.
- ``batch_fill_avg``: the mean over calls of ``k / batch_size``.
- ``generator_lag_ms_p99``: the 99th percentile over requests of how much later its call started
  than it would have with a harness that loses no time. For each thread's calls in order, with
  ``due`` when the batch was due (its first request's arrival; with a queue delay ``D``, the
  earlier of that arrival + ``D`` and the arrival that filled the batch): the ideal start is
  ``I_m = max(due_m, I_(m-1) + (e_(m-1) - s_(m-1)))`` (the same calls, the same service times, no
  time lost between them) and the lag is ``s_m - I_m``. A stall of the harness (a lock, a late
  wake-up, the thread descheduled between calls) thus counts for every request it delayed, not
  once. It must stay well below the latency it measures (``LAG_SHARE``).
- ``dropped``: requests refused by a bounded queue (always 0: the queue is unbounded).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

ARRIVALS = ("poisson", "constant")
SCENARIOS = ("closed", "server")
#: The columns a server row adds (besides the latency percentiles, which keep their names and
#: count from the scheduled arrival), in file order.
SERVING_COLUMNS = (
    "rate_target",
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
#: A row keeps up when it serves at least this share of its target rate.
KEEP_UP_SHARE = 0.99
#: The harness's own delay (generator_lag_ms_p99) must stay below this share of latency_ms_p99...
LAG_SHARE = 0.10
#: ...unless it is below this (ms): a sleeping thread's wake-up costs tens of microseconds on
#: any OS, which no harness avoids and no latency bound worth stating is sensitive to.
LAG_FLOOR_MS = 0.05

_NS_PER_S = 1_000_000_000
_NS_PER_MS = 1_000_000


def request_count(rate: float, duration_s: float, min_calls: Optional[int] = None) -> int:
    """How many requests a window of ``duration_s`` at ``rate`` holds (at least ``min_calls``)."""
    return max(1, int(round(rate * duration_s)), min_calls or 0)


def schedule_offsets_ns(rate: float, count: int, arrival: str = "poisson", seed: int = 0) -> np.ndarray:
    """Each request's scheduled arrival after the window's start, int64 ns, nondecreasing."""
    if not rate > 0:
        raise ValueError(f"rate must be positive, got {rate!r}")
    if arrival == "constant":
        offsets = np.arange(count, dtype=np.float64) / rate
    elif arrival == "poisson":
        sums = np.cumsum(np.random.default_rng(seed).standard_exponential(count + 1))
        offsets = (count / rate) * sums[:-1] / sums[-1]
    else:
        raise ValueError(f"arrival must be one of {', '.join(ARRIVALS)}, got {arrival!r}")
    return np.round(offsets * _NS_PER_S).astype(np.int64)


@dataclass(frozen=True)
class ServingWindow:
    """The schedule of one measured window: ``requests`` requests at ``rate`` per second from
    ``start_ns`` (``time.perf_counter_ns``), by ``arrival`` and ``seed``."""

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
        return int(round(self.requests / self.rate * _NS_PER_S))

    def arrivals_ns(self) -> np.ndarray:
        """Every request's scheduled arrival, absolute."""
        return self.start_ns + schedule_offsets_ns(self.rate, self.requests, self.arrival, self.seed)

    def to_dict(self) -> dict[str, Any]:
        return {"rate": self.rate, "requests": self.requests, "arrival": self.arrival, "seed": self.seed,
                "start_ns": self.start_ns, "batch_size": self.batch_size,
                "max_queue_delay_ms": self.max_queue_delay_ms, "stopped": self.stopped}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServingWindow:
        return cls(rate=float(data["rate"]), requests=int(data["requests"]), arrival=str(data["arrival"]),
                   seed=int(data["seed"]), start_ns=int(data["start_ns"]), batch_size=int(data["batch_size"]),
                   max_queue_delay_ms=float(data["max_queue_delay_ms"]), stopped=str(data.get("stopped", "")))


@dataclass(frozen=True)
class CallRecords:
    """One measuring thread's calls in a server window: int64 arrays, one item per call."""

    first: np.ndarray  # index of the first request the call served
    count: np.ndarray  # how many requests it served (1..batch_size)
    start_ns: np.ndarray
    end_ns: np.ndarray
    due_ns: np.ndarray  # when the call's batch was due (see the module docstring)

    def lag_ns(self) -> np.ndarray:
        """Each call's start minus its ideal start (see the module docstring), int64 ns."""
        if not self.start_ns.size:
            return np.zeros(0, dtype=np.int64)
        # I_m = max(due_m, I_(m-1) + d_(m-1)) is D_m + max_(k<=m)(due_k - D_k), with D_m the
        # service time of the calls before m: a running maximum, no loop.
        service = self.end_ns - self.start_ns
        before = np.concatenate(([0], np.cumsum(service)[:-1]))
        ideal = before + np.maximum.accumulate(self.due_ns - before)
        return self.start_ns - ideal


@dataclass(frozen=True)
class RequestTimes:
    """Per served request (in schedule order): scheduled arrival, its call's start and end."""

    arrival_ns: np.ndarray
    start_ns: np.ndarray
    end_ns: np.ndarray

    @property
    def latency_ns(self) -> np.ndarray:
        return self.end_ns - self.arrival_ns


def request_times(threads: Sequence[CallRecords], window: ServingWindow) -> RequestTimes:
    """Each served request's arrival, start and end, from every thread's calls. A request
    served twice or a call outside the schedule is an error of the harness, raised."""
    first = np.concatenate([t.first for t in threads]) if threads else np.zeros(0, np.int64)
    count = np.concatenate([t.count for t in threads]) if threads else np.zeros(0, np.int64)
    starts = np.concatenate([t.start_ns for t in threads]) if threads else np.zeros(0, np.int64)
    ends = np.concatenate([t.end_ns for t in threads]) if threads else np.zeros(0, np.int64)
    if count.size and (count.min() < 1 or first.min() < 0 or (first + count).max() > window.requests):
        raise ValueError("a call record names requests outside the window's schedule")
    # Request j of a call that served first..first+k-1 gets that call's start and end.
    index = np.repeat(first - np.cumsum(count) + count, count) + np.arange(int(count.sum()))
    if np.unique(index).size != index.size:
        raise ValueError("a request was served by two calls")
    order = np.argsort(index, kind="stable")
    arrivals = window.arrivals_ns()[index[order]]
    return RequestTimes(arrivals, np.repeat(starts, count)[order], np.repeat(ends, count)[order])


def _p(values: np.ndarray, q: float) -> Optional[float]:
    return float(np.percentile(values, q)) if values.size else None


def serving_figures(threads: Sequence[CallRecords], window: ServingWindow, *,
                    percentiles: Sequence[int] = (0, 50, 90, 95, 99, 100)) -> dict[str, Any]:
    """The row figures of one server window: ``latency_ms_p*`` and ``latency_ms_avg`` (from the
    scheduled arrival), the serving columns, ``total_infs`` (calls) and ``total_s`` (the window
    up to the last completion); ``valid`` and ``invalid_reason`` say whether the entry kept up
    and the harness stayed out of the way."""
    times = request_times(threads, window)
    served = int(times.arrival_ns.size)
    calls = sum(int(t.count.size) for t in threads)
    last_end = int(times.end_ns.max()) if served else window.start_ns
    total_ns = max(window.span_ns, last_end - window.start_ns)
    latency = times.latency_ns / _NS_PER_MS
    queue = (times.start_ns - times.arrival_ns) / _NS_PER_MS
    service = (times.end_ns - times.start_ns) / _NS_PER_MS
    lag = np.concatenate([np.repeat(t.lag_ns(), t.count) for t in threads]) / _NS_PER_MS if calls else np.zeros(0)
    fill = np.concatenate([t.count for t in threads]) / window.batch_size if calls else np.zeros(0)
    figures: dict[str, Any] = {f"latency_ms_p{q}": _p(latency, q) for q in percentiles}
    figures.update(
        latency_ms_avg=float(latency.mean()) if served else None,
        rate_target=window.rate,
        rate_achieved=served * _NS_PER_S / total_ns,
        queue_ms_p50=_p(queue, 50),
        queue_ms_p99=_p(queue, 99),
        service_ms_p50=_p(service, 50),
        service_ms_p99=_p(service, 99),
        batch_fill_avg=float(fill.mean()) if calls else None,
        dropped=0,
        generator_lag_ms_p99=_p(lag, 99),
        total_infs=calls,
        total_s=total_ns / _NS_PER_S,
        served=served,
    )
    figures["invalid_reason"] = invalid_reason(figures, window)
    figures["valid"] = figures["invalid_reason"] is None
    return figures


def invalid_reason(figures: dict[str, Any], window: ServingWindow) -> Optional[str]:
    """Why a server window's figures do not answer "can it serve this rate", or None."""
    reasons = []
    if window.stopped:
        reasons.append(window.stopped)
    served, achieved = figures["served"], figures["rate_achieved"]
    if served < window.requests or achieved < KEEP_UP_SHARE * window.rate:
        reasons.append(
            f"overloaded: served {achieved:.6g} of {window.rate:.6g} requests/s"
            f" ({served} of {window.requests} requests)"
        )
    lag, p99 = figures["generator_lag_ms_p99"], figures.get("latency_ms_p99")
    if lag is not None and p99 is not None and lag > LAG_FLOOR_MS and lag > LAG_SHARE * p99:
        reasons.append(
            f"generator lag: the harness started calls up to {lag:.3g} ms late (p99), more than "
            f"{LAG_SHARE:.0%} of the p99 latency it measures ({p99:.3g} ms); the machine is too busy "
            "for this rate, or the model's threads starve the serving threads"
        )
    return "; ".join(reasons) if reasons else None
