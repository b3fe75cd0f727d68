"""The server scenario's figures on hand-made records, and the peak search on a stand-in measurer:
an exact M/D/1 queue in place of worker processes, its probes recorded and resumed."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import numpy as np
import pytest

from neuronperf.entries import (
    BenchmarkSettings,
    CopyStats,
    Measurement,
    ServingSettings,
    ServingWindow,
    WorkerSamples,
)
from neuronperf.measure import peak
from neuronperf.measure.rate_search import result
from neuronperf.measure.task import BenchmarkTask, factory_loader
from neuronperf.results.samples import copy_samples_path, write_copy_samples
from neuronperf.stats.serving import (
    CallRecords,
    arrivals_ns,
    schedule_offsets_ns,
    serving_stats,
)

MS = 1_000_000


def measurement(window: ServingWindow, calls: list[tuple[int, int, int, int, int]]) -> Measurement:
    """One thread's calls: (first request, requests, start, end, due), ns."""
    a = np.array(calls, dtype=np.int64).reshape(-1, 5)
    worker = WorkerSamples(copy_idx=0, thread_idx=0, start_ns=a[:, 2], latency_ns=a[:, 3] - a[:, 2],
                           request_first=a[:, 0], request_count=a[:, 1], due_ns=a[:, 4])
    return Measurement(status="ok", window_start_ns=window.start_ns, window_end_ns=int(a[:, 3].max()),
                       workers=(worker,), copies=(CopyStats(0, 1, 1.0, 1.0),), serving=window)


def test_schedule():
    constant = schedule_offsets_ns(4.0, 4, "constant")
    assert constant.tolist() == [0, 250 * MS, 500 * MS, 750 * MS]
    poisson = schedule_offsets_ns(200.0, 1000, "poisson", seed=3)
    assert poisson.tolist() == schedule_offsets_ns(200.0, 1000, "poisson", seed=3).tolist()  # the same everywhere
    assert poisson[0] > 0 and poisson[-1] < 5_000 * MS and np.all(np.diff(poisson) >= 0)


def test_latency_counts_from_the_scheduled_arrival_and_splits_into_queue_and_service():
    # Constant arrivals every 5 ms; a 25 ms call serving up to 2 requests; one server.
    window = ServingWindow(rate=200.0, requests=4, arrival="constant", start_ns=0, batch_size=2)
    assert arrivals_ns(window).tolist() == [0, 5 * MS, 10 * MS, 15 * MS]
    calls = [(0, 1, 0, 25, 0), (1, 2, 26, 51, 25), (3, 1, 51, 76, 15)]  # ms: first, k, start, end, due
    m = measurement(window, [(f, k, s * MS, e * MS, d * MS) for f, k, s, e, d in calls])
    stats, columns = serving_stats(m, batch_size=2)
    latencies = [25, 51 - 5, 51 - 10, 76 - 15]  # each from its own scheduled arrival
    assert stats.latency_ms_p100 == max(latencies) and stats.latency_ms_avg == pytest.approx(np.mean(latencies))
    assert columns["queue_ms_p50"] == pytest.approx(np.percentile([0, 21, 16, 36], 50))
    assert columns["service_ms_p50"] == 25.0
    assert columns["batch_fill_avg"] == pytest.approx((1 + 2 + 1) / 3 / 2)
    # The second call was due when the first ended (25 ms) and started at 26: 1 ms of harness lag,
    # which delayed its two requests, and the third call too (due at 15, ideally started at 50).
    assert CallRecords(*(np.asarray(x) for x in zip(*calls))).lag_ns().tolist() == [0, 1, 1]
    assert columns["generator_lag_ms_p99"] == pytest.approx(1.0)
    # 4 requests over 76 ms, the last one 56 ms after the 20 ms window: it did not keep up.
    assert columns["rate_achieved"] == pytest.approx(4 / 0.076)
    assert columns["valid"] is False and columns["invalid_reason"].startswith("overloaded: served")
    assert stats.throughput_avg == columns["rate_achieved"] and stats.total_infs == 3


def test_a_request_served_twice_is_an_error():
    window = ServingWindow(rate=100.0, requests=2, arrival="constant")
    with pytest.raises(Exception, match="served by two calls"):
        serving_stats(measurement(window, [(0, 2, 0, 1, 0), (1, 1, 2, 3, 2)]), batch_size=2)


# ---- the peak search on a stand-in measurer ---------------------------------------------------


SERVICE_MS, BOUND_MS = 2.0, 10.0


class QueueStandIn:
    """Measures a probe as an exact M/D/1 queue of 2 ms calls would: the same schedule a worker
    would serve, Lindley's recursion for the starts, the copy file a worker would write."""

    def __init__(self, fail_after: int = -1):
        self.rates: list[float] = []
        self.fail_after = fail_after

    def __call__(self, task: BenchmarkTask, folder: str) -> Measurement:
        if len(self.rates) == self.fail_after:
            raise KeyboardInterrupt("killed")
        rate = task.probe_rate or 1000.0 / SERVICE_MS  # the first probe: the warm-up's capacity
        self.rates.append(rate)
        n = max(round(rate * task.settings.duration), 100)
        window = ServingWindow(rate=rate, requests=n, arrival="poisson", seed=0, start_ns=0)
        t = arrivals_ns(window)
        service = int(SERVICE_MS * MS)
        starts = np.empty_like(t)
        free = 0
        for i, a in enumerate(t.tolist()):
            starts[i] = max(a, free)
            free = int(starts[i]) + service
        os.makedirs(folder, exist_ok=True)
        ones = np.ones(n, dtype=np.int64)
        write_copy_samples(copy_samples_path(folder, 0), [starts], [ones * service], None, [(np.arange(n), ones, t)])
        return measurement(window, list(zip(range(n), [1] * n, starts.tolist(), (starts + service).tolist(), t.tolist())))


def search_task() -> BenchmarkTask:
    return BenchmarkTask(
        entry_id="stand-in", loader=factory_loader(dict), inputs=(0,),
        settings=BenchmarkSettings(duration=20.0, timeout=300.0),
        serving=ServingSettings(rate=None, slo=(("latency_ms_p99", BOUND_MS),)),
    )


def test_peak_search_brackets_bisects_and_records_every_probe(tmp_path):
    stand_in = QueueStandIn()
    best, probes = peak.search_peak(search_task(), str(tmp_path), stand_in)
    answer = result(probes)
    # Doubling/halving from the capacity (500/s), then bisection to 2%: at most 10 probes.
    assert [round(p.rate, 1) for p in probes[:3]] == [500.0, 250.0, 375.0] and len(probes) <= 10
    b_low, b_high = answer.max_rate, min(p.rate for p in probes if not p.passed)
    assert b_high - b_low <= 0.02 * b_low
    assert 281.4 * 0.9 < answer.max_rate < 281.4 * 1.1  # M/D/1's peak, within these windows' noise
    lines = (tmp_path / peak.PROBES_FILE).read_text().splitlines()
    assert [json.loads(line)["rate"] for line in lines] == stand_in.rates
    assert best[0].serving.rate == answer.max_rate and (tmp_path / "repeat-0" / "copy-0.npz").exists()


def test_a_search_killed_midway_resumes_without_repeating_a_probe(tmp_path):
    whole, _ = peak.search_peak(search_task(), str(tmp_path / "whole"), QueueStandIn())
    folder = str(tmp_path / "killed")
    with pytest.raises(KeyboardInterrupt):
        peak.search_peak(search_task(), folder, QueueStandIn(fail_after=3))
    with open(os.path.join(folder, peak.PROBES_FILE), "a") as f:
        f.write('{"rate": 3')  # a line torn by the crash: that probe is measured again
    peak.keep_recorded(folder)
    assert sorted(os.listdir(folder)) == ["probe-0", "probe-1", "probe-2", peak.PROBES_FILE]
    again = QueueStandIn()
    best, probes = peak.search_peak(search_task(), folder, again)
    assert [p.rate for p in probes[:3]] == [500.0, 250.0, 375.0] and 375.0 not in again.rates
    assert again.rates == [p.rate for p in probes[3:]]
    assert best[0].serving.rate == whole[0].serving.rate


def test_a_bound_no_rate_meets_ends_with_the_lowest_rate_tried(tmp_path):
    task = search_task()
    task = replace(task, serving=replace(task.serving, slo=(("latency_ms_p99", 1.0),)))  # under one 2 ms call
    best, probes = peak.search_peak(task, str(tmp_path), QueueStandIn())
    assert len(probes) == 1 and probes[0].hopeless
    extra = peak.probes_extra(probes)
    assert extra["max_rate_under_slo"] is None and extra["valid"] is False
    assert "the lowest rate tried, 500 requests/s" in extra["invalid_reason"]


def test_a_generation_request_counts_its_first_token_from_its_scheduled_arrival():
    # A request every 100 ms; each call makes 3 tokens, 10 ms apart; the second starts 50 ms late.
    window = ServingWindow(rate=10.0, requests=3, arrival="constant", start_ns=0)
    m = measurement(window, [(0, 1, 0, 30 * MS, 0), (1, 1, 150 * MS, 180 * MS, 100 * MS), (2, 1, 200 * MS, 230 * MS, 200 * MS)])
    tokens = np.array([s + k * 10 * MS for s in (0, 150 * MS, 200 * MS) for k in (1, 2, 3)], dtype=np.int64)
    m = replace(m, workers=(replace(m.workers[0], token_ns=tokens),))
    _, columns = serving_stats(m, batch_size=1, new_tokens=3, slo=(("ttft_ms_p99", 50.0), ("tpot_ms_p99", 20.0)))
    assert columns["ttft_ms_p99"] == pytest.approx(np.percentile([10, 60, 10], 99))  # 150 + 10 - 100 = 60 ms
    assert columns["tpot_ms_p50"] == pytest.approx(10.0) and columns["e2e_ms_p99"] == pytest.approx(np.percentile([30, 80, 30], 99))
    # Two of three requests met both bounds, over the 300 ms window.
    assert columns["goodput_rps"] == pytest.approx(2 / 0.3) and columns["requests_per_s"] == pytest.approx(3 / 0.3)
