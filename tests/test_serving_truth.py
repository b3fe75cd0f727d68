"""The truths of benchmarks/serving_accuracy.py against closed forms and against each other."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
try:
    import queueing as q
finally:
    sys.path.pop(0)


def test_md1_mean_wait_is_pollaczek_khinchine():
    service, rate = 0.002, 250.0  # rho = 0.5
    t = q.poisson_arrivals(rate, 1_000_000, seed=1)
    waits = q.md1_starts(t, service) - t
    assert waits.mean() == pytest.approx(q.md1_mean_wait(rate, service), rel=0.02)
    assert waits.min() == 0.0


def test_lindley_in_closed_form_equals_the_server_recursion():
    t = q.poisson_arrivals(400.0, 20_000, seed=2)
    np.testing.assert_allclose(q.md1_starts(t, 0.002), q.fifo_starts(t, 0.002, servers=1), rtol=0, atol=1e-12)


@pytest.mark.parametrize("servers", [1, 2])
def test_fifo_servers_match_erlang_c_with_exponential_services(servers):
    rate, mean = 0.7 * servers / 0.002, 0.002
    t = q.poisson_arrivals(rate, 300_000, seed=3)
    services = np.random.default_rng(4).exponential(mean, len(t))
    waits = q.fifo_starts(t, 0.0, servers, services=services) - t
    expected = q.mm1_mean_wait(rate, mean) if servers == 1 else q.mmc_mean_wait(rate, mean, servers)
    assert waits.mean() == pytest.approx(expected, rel=0.03)


def test_batcher_without_batching_is_the_fifo_queue():
    t = q.poisson_arrivals(800.0, 20_000, seed=5)
    starts, sizes = q.batcher_starts(t, 0.002, servers=2, batch=1, max_delay=0.0)
    np.testing.assert_array_equal(starts, q.fifo_starts(t, 0.002, servers=2))
    assert set(sizes.tolist()) == {1}


def test_batcher_by_hand():
    # 0 and 0.1 fill a batch of 2 at 0.1; 0.5 waits for the server (free at 1.1) and goes alone,
    # the next request being far; 3.0 waits its whole delay (0.3) for a partner that never comes.
    starts, sizes = q.batcher_starts(np.array([0.0, 0.1, 0.5, 3.0]), 1.0, servers=1, batch=2, max_delay=0.3)
    np.testing.assert_allclose(starts, [0.1, 0.1, 1.1, 3.3])
    assert sizes.tolist() == [2, 1, 1]


def test_window_arrivals():
    t = q.window_arrivals(200.0, 5.0, seed=0)
    assert len(t) == 1000 and t[0] > 0 and t[-1] < 5.0 and np.all(np.diff(t) > 0)
    np.testing.assert_allclose(q.window_arrivals(4.0, 1.0, arrival="constant"), [0, 0.25, 0.5, 0.75])


def test_md1_peak_rate_for_the_issue_case():
    # The issue: 2 ms constant service, p99 <= 10 ms, one server: 281.4 requests/s.
    assert q.md1_peak_rate(0.002, 0.010, n=400_000) == pytest.approx(281.4, rel=0.015)
