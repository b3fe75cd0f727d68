"""The strategies, one question at a time: which entries to measure next, given the rows of
the entries measured so far.

Each strategy is a generator: it yields a *wave* (the entries it wants measured next, all at
once) and is sent back their rows; when it returns, it has decided. It sees nothing but the rows
of the waves it asked for, so replaying it over the journal's rows asks for the same waves in
the same order (``neuronperf.search.replay``): that is how a search resumes.

The pruning rule, under the monotonic assumption (for one model, parameter set, pipeline size
and number of copies, a bigger batch size or more threads does not lower any latency
percentile): an ``ok`` entry whose latency is over a bound rules out every entry that is
bigger on those axes. ``prune`` measures in waves of the smallest entries not yet measured or
ruled out, so an entry is measured exactly when no entry below it failed a bound, whatever
the order in which a wave's rows arrive.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from typing import Any, Optional

from neuronperf.answers.slo import LatencyBound, Objective, is_server, number, qualifies
from neuronperf.entries import RunEntry
from neuronperf.search.space import Question, Space

Row = Mapping[str, Any]
Rows = dict[RunEntry, Row]
#: What a strategy is: yields waves, receives each wave's rows, returns when it has decided.
Waves = Generator[list[RunEntry], Rows, None]


def failed_bound(row: Row, bounds: Sequence[LatencyBound]) -> Optional[tuple[LatencyBound, float]]:
    """The first bound an ``ok`` row is over, with its latency; None if it meets them all (or
    it is not ``ok``, or has no latency there: then it says nothing about other entries).

    A server row at a fixed rate says nothing either: a bigger batch or more threads add
    capacity, so an entry overloaded at that rate may have bigger neighbours that keep up. A
    searched server row (``sweep.rates: max``) over its bound found no rate that met it: its
    latency is the lowest rate's, where queueing is negligible, so the assumption holds."""
    if row.get("status") != "ok":
        return None
    if is_server(row) and row.get("probes") is None:
        return None
    for bound in bounds:
        value = bound.latency(row)
        if value is not None and value > bound.limit_ms:
            return bound, value
    return None


def ruled_out(entry: RunEntry, rows: Mapping[RunEntry, Row], bounds: Sequence[LatencyBound], space: Space) -> Optional[str]:
    """Why the pruning rule skips ``entry`` given the measured ``rows``: the first (in plan
    order) measured entry below it that was over a bound, e.g. ``p99 21.3 ms > 20 ms at
    mlp-bs8-p1-m1-w2``; None if no measured entry rules it out."""
    if not bounds:
        return None
    for other in space.below_in_slice(entry):
        if other not in rows:
            continue
        failed = failed_bound(rows[other], bounds)
        if failed is not None:
            bound, value = failed
            return f"p{bound.percentile} {over(value, bound.limit_ms)} ms > {bound.limit_ms:g} ms at {other.id}"
    return None


def over(value: float, limit: float) -> str:
    """``value`` with one decimal, or as many more as it takes to read as more than ``limit``
    (``20.04`` over a bound of 20 is ``20.04``, not ``20.0``)."""
    for decimals in range(1, 7):
        text = f"{value:.{decimals}f}"
        if float(text) > limit:
            return text
    return repr(value)


def feasible(row: Optional[Row], bounds: Sequence[LatencyBound], objective: Objective) -> bool:
    """A row the search may choose: ``ok``, within every bound, with a value for the objective."""
    return (row is not None and row.get("status") == "ok" and qualifies(row, bounds)
            and objective.value(row) is not None)


def overshoot(row: Optional[Row], bounds: Sequence[LatencyBound]) -> float:
    """How far a row is from meeting the bounds: its worst latency / limit (inf without one)."""
    if row is None or row.get("status") != "ok" or not bounds:
        return float("inf")
    ratios = [(number(row.get(b.column)) or float("inf")) / b.limit_ms for b in bounds]
    return max(ratios)


def prune(space: Space, question: Question, bounds: Sequence[LatencyBound]) -> Waves:
    """Measure the smallest entries not yet measured or ruled out, until none is left."""
    rows: Rows = {}
    members = space.questions[question]
    while True:
        open_ = [e for e in members if e not in rows and ruled_out(e, rows, bounds, space) is None]
        wave = space.minimal(open_)
        if not wave:
            return
        rows.update((yield wave))


def quick(space: Space, question: Question, bounds: Sequence[LatencyBound], objective: Objective, min_gain: float) -> Waves:
    """Start at the smallest entry and climb: measure its neighbours (those the pruning rule
    does not already rule out), move to the best feasible one if it beats the current entry by
    more than ``min_gain``, stop when no neighbour does.

    The neighbourhood is measured in up to three waves, and the climb moves as soon as one of
    them holds a neighbour that gains enough: first the step that continues the last move (one
    more step up the batch sizes, say), then the other steps up (a bigger batch, more copies,
    more threads: where throughput usually grows), then the steps down. Every neighbour is
    measured before the climb stops, but a climb that keeps gaining along one axis pays one
    entry per step.

    While no feasible entry has been found (the start is over a bound, or failed), the climb
    moves to a feasible neighbour if there is one, else to the neighbour closest to the bounds,
    as long as it is closer than where it stands."""
    current = space.smallest(question)
    rows: Rows = dict((yield [current]))
    last: Optional[tuple[int, int]] = None  # the direction of the last move
    while True:
        around = space.neighbours(current)
        ahead = [e for e in around if last is not None and space.direction(current, e) == last]
        step = None
        for tier in ahead, space.neighbours_up(current), around:
            wave = [e for e in tier if e not in rows and ruled_out(e, rows, bounds, space) is None]
            if wave:
                rows.update((yield wave))
            step = _step(current, [e for e in around if e in rows], rows, bounds, objective, min_gain)
            if step is not None:
                break
        if step is None:
            return
        last = space.direction(current, step)
        current = step


def _step(current: RunEntry, measured: list[RunEntry], rows: Rows, bounds: Sequence[LatencyBound],
          objective: Objective, min_gain: float) -> Optional[RunEntry]:
    """The neighbour to move to, or None to stop."""
    good = [e for e in measured if feasible(rows[e], bounds, objective)]
    # max() keeps the first of equal scores: neighbours are listed in a fixed order.
    best = max(good, key=lambda e: objective.value(rows[e]) or 0.0) if good else None
    here = rows[current]
    if feasible(here, bounds, objective):
        if best is None:
            return None
        now, then = objective.value(here) or 0.0, objective.value(rows[best]) or 0.0
        return best if then - now > min_gain * abs(now) else None
    if best is not None:
        return best
    closest = min(measured, key=lambda e: overshoot(rows[e], bounds), default=None)
    if closest is not None and overshoot(rows[closest], bounds) < overshoot(here, bounds):
        return closest
    return None
