"""Exact simulations of the queues that neuronperf's serving scenario measures: the truths of
``serving_accuracy.py``. They import nothing from neuronperf: a truth must not share code with
what it checks.

Every function takes arrival times in seconds (sorted) and a service time in seconds (a number:
the model takes the same time for every call, whatever the batch) and returns, per request, when
its call started; a request's latency is then ``start + service - arrival``.

- ``md1_starts``: one server, FIFO: Lindley's recursion ``W[n] = max(0, W[n-1] + S - A[n])``,
  computed in closed form as ``W = X - running_min(X, 0)`` with ``X`` the cumulative sum of
  ``S - A`` (exact, vectorised, 10^6 requests in a few milliseconds).
- ``fifo_starts``: ``servers`` servers, one FIFO queue: each request goes to the server that is
  free first (Kiefer-Wolfowitz: the earliest entry of the workload vector).
- ``batcher_starts``: the dynamic batcher: a free server takes the oldest queued request and
  up to ``batch - 1`` more that have arrived when its call starts; when fewer than ``batch`` are
  queued, it waits for the batch to fill, at most ``max_delay`` after the oldest one arrived.
  Batches are formed in FIFO order, each handed to the server free first.

Arrivals: ``poisson_arrivals`` (a stationary stream, for the long-run truths over 10^6 requests)
and ``window_arrivals`` (exactly ``round(rate x duration)`` requests in a window of ``duration``
seconds: a Poisson process conditioned on that count, which neuronperf's schedule is).
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_right
from typing import Callable, Optional

import numpy as np


def poisson_arrivals(rate: float, n: int, seed: int = 0) -> np.ndarray:
    """``n`` arrival times of a Poisson process of ``rate`` per second (the first at its first gap)."""
    return np.cumsum(np.random.default_rng(seed).standard_exponential(n)) / rate


def window_arrivals(rate: float, duration: float, seed: int = 0, arrival: str = "poisson") -> np.ndarray:
    """``round(rate x duration)`` arrival times in ``[0, duration)``: for ``poisson``, the
    normalised partial sums of ``n + 1`` unit exponentials from ``numpy.random.default_rng(seed)``
    (so distributed as ``n`` sorted uniforms: a Poisson process given its count); for
    ``constant``, ``i / rate``. This is the schedule neuronperf documents for its windows, built
    here from that definition alone."""
    n = max(1, round(rate * duration))
    if arrival == "constant":
        return np.arange(n) / rate
    sums = np.cumsum(np.random.default_rng(seed).standard_exponential(n + 1))
    return duration * sums[:-1] / sums[-1]


def md1_starts(arrivals: np.ndarray, service: float) -> np.ndarray:
    """Start times of one FIFO server of constant ``service`` (Lindley's recursion, exact)."""
    t = np.asarray(arrivals, dtype=np.float64)
    steps = np.empty_like(t)
    steps[0] = 0.0
    steps[1:] = service - np.diff(t)
    x = np.cumsum(steps)
    waits = x - np.minimum.accumulate(np.minimum(x, 0.0))
    return t + waits


def fifo_starts(arrivals: np.ndarray, service: float, servers: int,
                services: Optional[np.ndarray] = None) -> np.ndarray:
    """Start times of ``servers`` FIFO servers fed by one queue (exact: each request starts when
    it arrives or when the earliest-free server frees, whichever is later). ``services`` gives
    each request its own service time (for checks against M/M/c)."""
    free = [0.0] * servers
    starts = np.empty(len(arrivals))
    each = services.tolist() if services is not None else None
    for i, t in enumerate(np.asarray(arrivals, dtype=np.float64).tolist()):
        earliest = heapq.heappop(free)
        start = t if t > earliest else earliest
        starts[i] = start
        heapq.heappush(free, start + (each[i] if each is not None else service))
    return starts


def batcher_starts(arrivals: np.ndarray, service: float, servers: int, batch: int,
                   max_delay: float) -> tuple[np.ndarray, np.ndarray]:
    """Start times of each request under the dynamic batcher, and the size of each batch."""
    t = np.asarray(arrivals, dtype=np.float64).tolist()
    n = len(t)
    free = [0.0] * servers
    starts = np.empty(n)
    sizes = []
    head = 0
    while head < n:
        server_free = heapq.heappop(free)
        last = head + batch - 1
        ready = t[head] + max_delay
        if last < n and t[last] < ready:
            ready = t[last]  # the batch fills before the delay runs out
        start = ready if ready > server_free else server_free
        size = bisect_right(t, start, head, min(head + batch, n)) - head
        starts[head:head + size] = start
        sizes.append(size)
        head += size
        heapq.heappush(free, start + service)
    return starts, np.array(sizes)


def latencies(arrivals: np.ndarray, starts: np.ndarray, service: float) -> np.ndarray:
    """Each request's latency: its call's end minus its arrival."""
    return starts + service - np.asarray(arrivals)


def percentile(values: np.ndarray, q: float) -> float:
    """numpy's ``linear`` percentile, as neuronperf's rows use."""
    return float(np.percentile(values, q))


def md1_mean_wait(rate: float, service: float) -> float:
    """M/D/1 mean wait in the queue (Pollaczek-Khinchine): rho / (2 mu (1 - rho))."""
    rho = rate * service
    return rho * service / (2 * (1 - rho))


def mm1_mean_wait(rate: float, service_mean: float) -> float:
    """M/M/1 mean wait in the queue: rho / (mu - lambda)."""
    mu = 1 / service_mean
    return rate / mu / (mu - rate)


def mmc_mean_wait(rate: float, service_mean: float, servers: int) -> float:
    """M/M/c mean wait in the queue: Erlang's C formula over (c mu - lambda)."""
    a = rate * service_mean
    rho = a / servers
    tail = a ** servers / math.factorial(servers) / (1 - rho)
    erlang_c = tail / (sum(a ** k / math.factorial(k) for k in range(servers)) + tail)
    return erlang_c / (servers / service_mean - rate)


def peak_rate(p99_at: Callable[[float], float], bound: float, low: float, high: float,
              tolerance: float = 1e-4) -> float:
    """The highest rate in ``[low, high]`` whose latency percentile ``p99_at(rate)`` meets
    ``bound``, by bisection (``p99_at`` must grow with the rate, as it does over common random
    numbers: the same unit gaps divided by the rate)."""
    if p99_at(low) > bound:
        raise ValueError(f"even {low:g} requests/s miss the bound")
    while high - low > tolerance * low:
        mid = (low + high) / 2
        if p99_at(mid) <= bound:
            low = mid
        else:
            high = mid
    return low


def md1_peak_rate(service: float, bound: float, q: float = 99.0, n: int = 1_000_000, seed: int = 0) -> float:
    """The highest rate at which one server of constant ``service`` keeps the ``q``-th latency
    percentile within ``bound`` (all in seconds), over ``n`` Poisson arrivals."""
    gaps = np.cumsum(np.random.default_rng(seed).standard_exponential(n))

    def p_at(rate: float) -> float:
        t = gaps / rate
        return percentile(latencies(t, md1_starts(t, service), service), q)

    return peak_rate(p_at, bound, low=1.0, high=1.0 / service)
