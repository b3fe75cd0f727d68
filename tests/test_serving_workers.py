"""The server scenario in real worker processes: latency from the scheduled arrival, a stall that
every request scheduled during it shows, one queue shared by every copy."""

from __future__ import annotations

import numpy as np
import pytest
from measuring import measure
from models_for_tests import SleepModel, StallOnceModel

from neuronperf.entries import BenchmarkSettings, ServingSettings
from neuronperf.measure.task import BenchmarkTask, factory_loader
from neuronperf.results.rows import RowConfig, report_row
from neuronperf.stats.serving import arrivals_ns, call_records, request_times

pytestmark = pytest.mark.slow

MS = 1_000_000


def server_task(factory, *, rate: float, duration: float, n_models: int = 1, **kwargs) -> BenchmarkTask:
    return BenchmarkTask(
        entry_id="serving", loader=factory_loader(factory, **kwargs), inputs=(0,), n_models=n_models,
        settings=BenchmarkSettings(duration=duration, warmup_calls=3, timeout=60),
        serving=ServingSettings(rate=rate, arrival="constant"),
    )


def test_a_late_request_is_charged_its_wait():
    # 50 ms calls, a request every 25 ms: request j cannot start before 50 j ms, so its latency is
    # at least 50 + 25 j ms from its scheduled arrival (a closed loop would report 50 ms each).
    m = measure(server_task(SleepModel, ms=50.0, rate=40.0, duration=0.25))
    assert m.status == "ok", m.error
    times = request_times(call_records(m), m.serving)
    assert times.index.tolist() == list(range(10))
    latency_ms = times.latency_ns / MS
    assert np.all(latency_ms >= 50 + 25 * np.arange(10))
    assert np.array_equal(times.latency_ns, (times.start_ns - times.arrival_ns) + (times.end_ns - times.start_ns))
    row = report_row(RowConfig("serving", batch_size=1, serving=server_task(SleepModel, rate=40.0, duration=1).serving), m)
    assert row["latency_ms_p100"] >= 275 and row["rate_target"] == 40.0 and row["dropped"] == 0
    assert row["valid"] is False and "overloaded" in row["invalid_reason"]


def test_coordinated_omission_cannot_hide_a_stall():
    # A request every 20 ms, 2 ms calls; the 5th call of the window stalls 200 ms.
    m = measure(server_task(StallOnceModel, ms=2.0, stall_ms=200.0, nth=5, rate=50.0, duration=1.0))
    assert m.status == "ok", m.error
    times = request_times(call_records(m), m.serving)
    assert times.index.size == m.serving.requests == 50  # every request served, none dropped
    service = times.end_ns - times.start_ns
    stalled = np.flatnonzero(service >= 200 * MS)
    assert stalled.size == 1
    stall_start, stall_end = int(times.start_ns[stalled[0]]), int(times.end_ns[stalled[0]])
    during = (times.arrival_ns > stall_start) & (times.arrival_ns < stall_end)
    assert during.sum() >= 9  # 200 ms of 20 ms gaps
    # Each of them waited for the stall to end: charged from its scheduled arrival.
    assert np.all(times.start_ns[during] >= stall_end)
    assert np.all(times.latency_ns[during] >= stall_end - times.arrival_ns[during])
    assert np.percentile(times.latency_ns, 90) / MS >= 20  # the tail shows it


def test_every_copy_serves_one_shared_queue():
    # 20 ms calls, a request every 15 ms: one server would fall 5 ms further behind with every
    # request (the 40th waiting 195 ms or more); two copies sharing the queue keep up.
    m = measure(server_task(SleepModel, ms=20.0, rate=1000 / 15, duration=40 * 0.015, n_models=2))
    assert m.status == "ok", m.error
    records = call_records(m)
    served = [int(r.count.sum()) for r in records]
    assert sum(served) == m.serving.requests == 40 and min(served) >= 10  # both copies took requests
    times = request_times(records, m.serving)
    assert times.index.tolist() == list(range(40))  # each exactly once
    assert np.percentile(times.start_ns - times.arrival_ns, 99) / MS < 100
    assert np.array_equal(times.arrival_ns, arrivals_ns(m.serving)[times.index])
