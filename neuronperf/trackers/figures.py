"""The arithmetic of telemetry: counters, integrals and averages over a time interval.

Pure functions of ``(t_ns, value)`` points, so that every definition in docs/measurement.md has
one implementation and tests need no device. A figure that the points cannot support (no reading
before the interval's start or after its end) is None, never an extrapolation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

Point = tuple[int, float]


def value_at(points: Sequence[Point], t_ns: int) -> Optional[float]:
    """A cumulative counter's value at ``t_ns``, linearly interpolated between the readings on
    either side of it; None outside the readings (a counter is never extrapolated)."""
    if not points or t_ns < points[0][0] or t_ns > points[-1][0]:
        return None
    for (t0, v0), (t1, v1) in zip(points, points[1:]):
        if t0 <= t_ns <= t1:
            if t1 == t0:
                return v1
            return v0 + (v1 - v0) * (t_ns - t0) / (t1 - t0)
    return points[-1][1]  # a single reading exactly at t_ns


def counter_delta(points: Sequence[Point], start_ns: int, end_ns: int) -> Optional[float]:
    """How much a cumulative counter grew from ``start_ns`` to ``end_ns``."""
    a, b = value_at(points, start_ns), value_at(points, end_ns)
    if a is None or b is None:
        return None
    return b - a


def integrate(points: Sequence[Point], start_ns: int, end_ns: int) -> Optional[float]:
    """The integral of a sampled rate (watts) over ``[start_ns, end_ns]`` in joules: trapezoids
    between the readings, the rate interpolated at both ends; None unless readings bracket the
    interval."""
    if end_ns < start_ns or value_at(points, start_ns) is None or value_at(points, end_ns) is None:
        return None
    inside = [(t, v) for t, v in points if start_ns < t < end_ns]
    edges = [(start_ns, value_at(points, start_ns)), *inside, (end_ns, value_at(points, end_ns))]
    total = 0.0
    for (t0, v0), (t1, v1) in zip(edges, edges[1:]):
        assert v0 is not None and v1 is not None
        total += (v0 + v1) / 2 * (t1 - t0) / 1e9
    return total


def span_mean(points: Sequence[tuple[int, int, float]], start_ns: int, end_ns: int) -> Optional[float]:
    """The mean of ``(t_ns, span_ns, value)`` readings whose interval ``(t - span, t]`` has its
    middle inside ``[start_ns, end_ns]``: the readings that describe the interval."""
    values = [v for t, span, v in points if start_ns <= t - span // 2 <= end_ns]
    return sum(values) / len(values) if values else None


def join_notes(notes: Sequence[Optional[str]]) -> Optional[str]:
    """Distinct notes in order, joined with "; "; None when there is none."""
    seen: list[str] = []
    for note in notes:
        if note and note not in seen:
            seen.append(note)
    return "; ".join(seen) if seen else None
