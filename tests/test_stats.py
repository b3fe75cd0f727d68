"""Statistics from injected raw samples, checked against values computed by hand."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuronperf.entries import CopyStats, Measurement, WorkerSamples
from neuronperf.errors import UsageError
from neuronperf.stats import MIN_SAMPLES, compute_stats, subwindow_throughputs

pytestmark = pytest.mark.pure

MS = 1_000_000
S = 1_000_000_000


def worker(completions_ns, latency_ns=MS, copy_idx=0, thread_idx=0, **totals):
    """A worker whose calls each took ``latency_ns`` and completed at ``completions_ns``."""
    return WorkerSamples(
        copy_idx=copy_idx,
        thread_idx=thread_idx,
        start_ns=tuple(int(c - latency_ns) for c in completions_ns),
        latency_ns=tuple(int(latency_ns) for _ in completions_ns),
        **totals,
    )


def test_percentiles_and_average_are_exact():
    latencies = [5 * MS, 1 * MS, 4 * MS, 2 * MS, 3 * MS]
    samples = WorkerSamples(0, 0, start_ns=(S, 2 * S, 3 * S, 4 * S, 4 * S), latency_ns=tuple(latencies))
    m = Measurement("ok", window_start_ns=0, window_end_ns=5 * S, workers=(samples,))
    s = compute_stats(m, batch_size=4, peak_window_s=1.0)
    # linear interpolation between ranks: p90 sits at rank 0.9 * 4 = 3.6, between 4 and 5 ms.
    assert s.latency_ms_p0 == 1.0
    assert s.latency_ms_p50 == 3.0
    assert s.latency_ms_p90 == pytest.approx(4.6)
    assert s.latency_ms_p95 == pytest.approx(4.8)
    assert s.latency_ms_p99 == pytest.approx(4.96)
    assert s.latency_ms_p100 == 5.0
    assert s.latency_ms_avg == 3.0 and s.e2e_avg_ms == 3.0
    assert s.percentile_method == "linear"
    # 5 calls x batch 4 over exactly 5 s.
    assert s.total_infs == 5 and s.total_s == 5.0
    assert s.throughput_avg == 4.0


def test_throughput_uses_the_exact_window_not_the_sample_span():
    # 10 calls finishing within the first 0.1 s of a 2.5 s window.
    w = worker([i * 10 * MS for i in range(1, 11)])
    m = Measurement("ok", window_start_ns=0, window_end_ns=2_500_000_000, workers=(w,))
    s = compute_stats(m, batch_size=1)
    assert s.total_s == 2.5
    assert s.throughput_avg == pytest.approx(10 / 2.5)


def test_peak_is_the_busiest_subwindow_and_cv_flags_instability():
    # 5 calls complete in [0,1) s, 10 in [1,2) s, 15 in [2,3) s; batch 2.
    completions = (
        [int(0.1 * S) + i * MS for i in range(5)]
        + [int(1.1 * S) + i * MS for i in range(10)]
        + [int(2.1 * S) + i * MS for i in range(15)]
    )
    m = Measurement("ok", window_start_ns=0, window_end_ns=3 * S, workers=(worker(completions),))
    s = compute_stats(m, batch_size=2, peak_window_s=1.0)
    assert s.throughput_avg == pytest.approx(30 * 2 / 3)  # 20 inputs/s
    assert s.throughput_peak == pytest.approx(30.0)  # 15 calls x 2 in the last second
    # per-second throughputs 10, 20, 30: population std sqrt(200/3), mean 20.
    assert s.throughput_cv == pytest.approx(math.sqrt(200 / 3) / 20)
    assert s.warning is not None
    assert "unstable: throughput varied 41% between 1 s windows" in s.warning
    assert "rerun with a longer duration (benchmark.duration) or on an idle machine" in s.warning


def test_calls_are_placed_by_completion_time():
    # Started in the first second, completed in the second one: counts for the second.
    w = WorkerSamples(0, 0, start_ns=(int(0.9 * S),), latency_ns=(int(0.2 * S),))
    s = compute_stats(Measurement("ok", window_start_ns=0, window_end_ns=2 * S, workers=(w,)), batch_size=1)
    assert s.throughput_peak == 1.0
    assert s.throughput_cv == 1.0  # per-second throughputs 0 and 1: std 0.5, mean 0.5


def test_completion_exactly_at_the_end_belongs_to_the_last_subwindow_and_partial_is_dropped():
    import numpy as np

    completions = np.array([0, S - 1, S, 2 * S, int(2.5 * S)])
    # Window 2 s: whole sub-windows [0,1) and [1,2]; the call at 2.5 s is outside.
    assert list(subwindow_throughputs(completions, 0, 2 * S, S, 1)) == [2.0, 2.0]
    # Window 2.7 s: the partial [2, 2.7) sub-window is dropped from peak and CV.
    assert list(subwindow_throughputs(completions, 0, int(2.7 * S), S, 1)) == [2.0, 1.0]


def test_window_shorter_than_one_subwindow_peak_equals_average():
    w = worker([i * 40 * MS for i in range(1, 11)])  # 10 calls in 0.4 s
    m = Measurement("ok", window_start_ns=0, window_end_ns=500 * MS, workers=(w,))
    s = compute_stats(m, batch_size=3, peak_window_s=1.0)
    assert s.throughput_avg == pytest.approx(10 * 3 / 0.5)
    assert s.throughput_peak == s.throughput_avg
    assert s.throughput_cv is None
    assert "stability unknown" in s.warning and "at least 2 s" in s.warning


def test_stable_run_with_enough_samples_has_no_warning():
    completions = [k * S + (i + 1) * 10 * MS for k in range(3) for i in range(50)]
    m = Measurement("ok", window_start_ns=0, window_end_ns=3 * S, workers=(worker(completions),))
    s = compute_stats(m, batch_size=1)
    assert s.total_infs == 150 >= MIN_SAMPLES
    assert s.throughput_cv == 0.0
    assert s.throughput_peak == s.throughput_avg == 50.0
    assert s.warning is None


def test_few_samples_warn_with_remedy():
    m = Measurement("ok", window_start_ns=0, window_end_ns=2 * S, workers=(worker([S // 2, 3 * S // 2]),))
    s = compute_stats(m, batch_size=1)
    assert "few samples: only 2 measured calls" in s.warning
    assert "benchmark.duration" in s.warning


def test_samples_of_every_worker_and_copy_are_pooled():
    a = worker([100 * MS, 200 * MS], latency_ns=2 * MS, copy_idx=0, infer_ns_total=3 * MS)
    b = worker([300 * MS, 400 * MS], latency_ns=4 * MS, copy_idx=1, thread_idx=1, infer_ns_total=5 * MS,
               preprocess_ns_total=2 * MS, postprocess_ns_total=1 * MS)
    copies = (
        CopyStats(0, pid=10, load_ms=100.0, warmup_ms=4.0, cpu_avg_percent=80.0, peak_rss_bytes=100 * 2**20, mem_avg_percent=1.0),
        CopyStats(1, pid=11, load_ms=300.0, warmup_ms=6.0, cpu_avg_percent=120.0, peak_rss_bytes=300 * 2**20, mem_avg_percent=3.0),
    )
    m = Measurement("ok", window_start_ns=0, window_end_ns=S, workers=(a, b), copies=copies)
    s = compute_stats(m, batch_size=8, cost_per_hour=3.6)
    assert s.total_infs == 4
    assert s.latency_ms_avg == 3.0 and s.latency_ms_p0 == 2.0 and s.latency_ms_p100 == 4.0
    assert s.infer_avg_ms == 2.0  # (3 + 5) ms over 4 calls
    assert s.preprocess_avg_ms == 0.5 and s.postprocess_avg_ms == 0.25
    assert s.load_avg_ms == 200.0 and s.warmup_avg_ms == 5.0
    assert s.cpu_avg_percent == 100.0 and s.mem_avg_percent == 2.0  # mean per process
    assert s.peak_rss_mb == 300.0  # the largest single process
    assert s.throughput_avg == 32.0
    assert s.cost_per_1m_inf == pytest.approx(3.6 * 1e6 / (3600 * 32.0))


def test_infer_time_not_recorded_is_unknown_and_cost_needs_a_price():
    m = Measurement("ok", window_start_ns=0, window_end_ns=S, workers=(worker([S // 2]),))
    s = compute_stats(m, batch_size=1)
    assert s.infer_avg_ms is None and s.cost_per_1m_inf is None
    assert s.preprocess_avg_ms == 0.0


def test_failed_measurement_has_empty_figures():
    m = Measurement("error", error="boom", window_start_ns=0, window_end_ns=S, workers=(worker([S // 2]),))
    s = compute_stats(m, batch_size=1)
    assert all(v is None for v in s.to_dict().values())


def test_ok_measurement_without_calls_says_so():
    m = Measurement("ok", window_start_ns=0, window_end_ns=S)
    s = compute_stats(m, batch_size=1)
    assert s.total_infs == 0 and s.throughput_avg is None
    assert s.warning.startswith("no measured calls")


def test_missing_window_falls_back_to_the_sample_span():
    w = WorkerSamples(0, 0, start_ns=(S, S + 500 * MS), latency_ns=(500 * MS, 500 * MS))
    s = compute_stats(Measurement("ok", workers=(w,)), batch_size=1)
    assert s.total_s == 1.0 and s.throughput_avg == 2.0


def test_bad_arguments_are_usage_errors():
    m = Measurement("ok", window_start_ns=0, window_end_ns=S, workers=(worker([1]),))
    with pytest.raises(UsageError, match="peak_window_s"):
        compute_stats(m, batch_size=1, peak_window_s=0)
    with pytest.raises(UsageError, match="batch_size"):
        compute_stats(m, batch_size=0)
    broken = WorkerSamples(0, 0, start_ns=(1, 2), latency_ns=(1,))
    with pytest.raises(UsageError, match="start times"):
        compute_stats(Measurement("ok", window_end_ns=S, workers=(broken,)), batch_size=1)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=10**9), min_size=1, max_size=200))
def test_percentiles_are_ordered_and_bounded(latencies):
    w = WorkerSamples(0, 0, start_ns=tuple(0 for _ in latencies), latency_ns=tuple(latencies))
    s = compute_stats(Measurement("ok", window_start_ns=0, window_end_ns=2 * S, workers=(w,)), batch_size=1)
    ordered = [s.latency_ms_p0, s.latency_ms_p50, s.latency_ms_p90, s.latency_ms_p95, s.latency_ms_p99, s.latency_ms_p100]
    assert ordered == sorted(ordered)
    assert s.latency_ms_p0 == min(latencies) / MS and s.latency_ms_p100 == max(latencies) / MS
    assert s.throughput_avg == pytest.approx(len(latencies) / 2)
