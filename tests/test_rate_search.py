"""The peak search of ``sweep.rates: max`` on stand-in measurers: pure functions rate -> percentile."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Callable

import pytest

from neuronperf.measure.rate_search import MAX_PROBES, Probe, bracket, next_rate, result

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
try:
    import queueing
finally:
    sys.path.pop(0)


def search(p99_at: Callable[[float], float], bound: float, start: float, precision: float = 0.02,
           floor: float = 1.0, hopeless_below: float = 0.0) -> list[Probe]:
    probes: list[Probe] = []
    while (rate := next_rate(probes, start, precision, floor)) is not None:
        value = p99_at(rate)
        probes.append(Probe(rate, passed=value <= bound, value_ms=value, hopeless=value > bound and value < hopeless_below))
    return probes


def md1_p99_ms(rate: float, service_ms: float = 2.0) -> float:
    """M/D/1's p99 latency (a stand-in that never lies: the exact queue, long run)."""
    if rate * service_ms / 1000 >= 1:
        return math.inf
    t = GAPS / rate
    starts = queueing.md1_starts(t, service_ms / 1000)
    return queueing.percentile(queueing.latencies(t, starts, service_ms / 1000), 99) * 1000


GAPS = queueing.poisson_arrivals(1.0, 200_000, seed=0)


@pytest.mark.parametrize("start", [500.0, 120.0, 2000.0])
def test_md1_peak_within_precision_in_at_most_ten_probes_from_the_capacity(start):
    truth = queueing.peak_rate(md1_p99_ms, 10.0, 1.0, 499.0)
    probes = search(md1_p99_ms, 10.0, start=start)
    found = result(probes)
    assert found.max_rate is not None and truth * 0.98 <= found.max_rate <= truth
    if start == 500.0:  # the capacity the warm-up implies (2 ms calls, one thread)
        assert len(probes) <= 10
    # Every probe is accounted for, and the answer is a rate that was measured and passed.
    assert probes[found.best].passed and probes[found.best].rate == found.max_rate


def test_bracket_doubles_then_bisects_until_the_precision():
    probes = search(lambda r: r / 10, bound=100.0, start=100.0, precision=0.05)  # passes up to 1000
    rates = [p.rate for p in probes]
    assert rates[:5] == [100, 200, 400, 800, 1600]  # doubling until the first failure
    assert rates[5] == 1200  # then halving the bracket [800, 1600)
    b = bracket(probes)
    assert b.high - b.low <= 0.05 * b.low and b.low <= 1000 < b.high


def test_halving_stops_at_the_floor_and_the_row_says_the_lowest_rate_tried():
    probes = search(lambda r: 50.0, bound=10.0, start=400.0, floor=30.0)
    assert [p.rate for p in probes] == [400, 200, 100, 50]
    found = result(probes)
    assert found.max_rate is None and "50 requests/s" in found.reason and "50 ms" in found.reason


def test_a_hopeless_probe_ends_the_search():
    probes = search(lambda r: 50.0, bound=10.0, start=400.0, hopeless_below=math.inf)
    assert len(probes) == 1 and result(probes).max_rate is None


def test_a_pass_above_a_failure_is_not_believed():
    probes = [Probe(400, False), Probe(200, True), Probe(300, False), Probe(350, True)]
    assert bracket(probes).low == 200 and bracket(probes).high == 300
    assert next_rate(probes, 400) == 250


def test_resuming_from_recorded_probes_asks_for_the_same_rates():
    full = search(md1_p99_ms, 10.0, start=500.0)
    for cut in range(1, len(full)):
        recorded = [Probe.from_dict(p.to_dict()) for p in full[:cut]]
        assert next_rate(recorded, 500.0) == full[cut].rate


def test_search_is_bounded():
    probes = search(lambda r: 0.0, bound=10.0, start=1.0)  # every rate passes
    assert len(probes) == MAX_PROBES
