"""Statistics (method 2) from injected raw samples, checked against values computed by hand."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuronperf.entries import CopyStats, Measurement, WorkerSamples
from neuronperf.errors import UsageError
from neuronperf.stats.forward import (
    METHOD_VERSION,
    MIN_SAMPLES,
    EntryStats,
    combine_repeats,
    compute_stats,
    cost_per_1m_inf,
    credit_until,
    short_warning,
    slice_throughputs,
    t_interval,
)

pytestmark = pytest.mark.pure

MS = 1_000_000
S = 1_000_000_000


def back_to_back(first_start_ns, latencies_ns, copy_idx=0, thread_idx=0, gap_ns=0, **totals):
    """A thread whose calls run back to back from ``first_start_ns`` with these latencies."""
    starts, t = [], int(first_start_ns)
    for lat in latencies_ns:
        starts.append(t)
        t += int(lat) + gap_ns
    return WorkerSamples(copy_idx, thread_idx, start_ns=tuple(starts), latency_ns=tuple(int(x) for x in latencies_ns), **totals)


def window_of(workers):
    return max(w.start_ns[-1] + w.latency_ns[-1] for w in workers)


def test_method_version_is_three():
    assert METHOD_VERSION == 3


def test_percentiles_and_average_are_exact():
    latencies = [5 * MS, 1 * MS, 4 * MS, 2 * MS, 3 * MS]
    w = back_to_back(0, latencies)
    m = Measurement("ok", window_start_ns=0, window_end_ns=15 * MS, workers=(w,))
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
    # 5 calls x batch 4 in the 15 ms the thread measured.
    assert s.total_infs == 5 and s.total_s == 0.015
    assert s.throughput_avg == pytest.approx(5 * 4 / 0.015)


def test_throughput_is_the_sum_of_each_threads_own_rate():
    # Two threads out of phase: one started measuring at 0, the other 300 ms later (its previous,
    # unmeasured call ended then). Each does 700 ms calls; the window ends 3 s after its start.
    a = back_to_back(0, [700 * MS] * 5)  # 0 .. 3.5 s
    b = back_to_back(300 * MS, [700 * MS] * 4)  # 0.3 .. 3.1 s
    m = Measurement("ok", window_start_ns=0, window_end_ns=window_of([a, b]), workers=(a, b))
    s = compute_stats(m, batch_size=2)
    # Little's law: 2 threads / 0.7 s x batch 2, whatever their phase.
    assert s.throughput_avg == pytest.approx(2 * 2 / 0.7)
    # The old estimator (every call / the window to the last return) understates it.
    assert s.throughput_avg > 9 * 2 / 3.5


def test_out_of_phase_jittery_threads_agree_with_littles_law():
    # 8 threads of 400-1000 ms calls, out of phase, 60 calls each: the common span leaves out at
    # most a call at each end of each thread, and time-weighted credit is unbiased within it.
    rng = random.Random(7)
    workers = []
    for t in range(8):
        lats = [rng.randint(400, 1000) * MS for _ in range(60)]
        workers.append(back_to_back(rng.randint(0, 1000) * MS, lats, thread_idx=t))
    m = Measurement("ok", window_start_ns=0, window_end_ns=window_of(workers), workers=tuple(workers))
    s = compute_stats(m, batch_size=1)
    little = sum(len(w.start_ns) / (sum(w.latency_ns) / S) for w in workers)
    assert s.throughput_avg == pytest.approx(little, rel=0.02)
    # And exactly the mean of its slices, which cut the same span.
    assert s.throughput_avg == pytest.approx(float(np.mean(slice_throughputs(m, 1, 1.0))), rel=1e-9)


def test_threads_that_stop_early_do_not_count_the_others_running_alone():
    # Two threads share one core: while both run, each call takes 20 ms; thread a stops after
    # 50 calls (1 s: min_calls or max_infers), and b, alone on the core, runs 50 more at 10 ms.
    a = back_to_back(0, [20 * MS] * 50)
    b = back_to_back(0, [20 * MS] * 50 + [10 * MS] * 50, thread_idx=1)
    m = Measurement("ok", window_start_ns=0, window_end_ns=window_of([a, b]), workers=(a, b))
    s = compute_stats(m, batch_size=1)
    assert s.throughput_avg == pytest.approx(2 / 0.020)  # the rate of the configured load: 100/s
    # Each thread's own rate, summed, would read 50/1 s + 100/1.5 s = 116.7/s.
    assert s.warning is None or "threads apart" not in s.warning


def test_threads_that_never_measured_at_once_fall_back_and_say_so():
    a = back_to_back(0, [10 * MS] * 10)  # 0 .. 100 ms
    b = back_to_back(200 * MS, [20 * MS] * 10, thread_idx=1)  # 200 .. 400 ms
    m = Measurement("ok", window_start_ns=0, window_end_ns=window_of([a, b]), workers=(a, b))
    s = compute_stats(m, batch_size=1)
    assert s.throughput_avg == pytest.approx(10 / 0.1 + 10 / 0.2)
    assert "threads apart" in (s.warning or "")


def test_a_thread_without_a_quota_is_not_blamed_on_a_long_call():
    a = back_to_back(0, [10 * MS] * 3)
    a = WorkerSamples(0, 0, a.start_ns, a.latency_ns, quota=3)
    idle = WorkerSamples(0, 1, (), (), quota=0)
    s = compute_stats(Measurement("ok", window_start_ns=0, window_end_ns=30 * MS, workers=(a, idle)), batch_size=1)
    assert "idle threads" not in (s.warning or "")
    assert "max_infers (3) gave 1 of the 2 measuring threads no call to make" in (s.warning or "")
    assert "set max_infers to at least 2" in (s.warning or "")
    slow = WorkerSamples(0, 1, (), (), quota=5)  # had calls to make, and made none: a long call
    s = compute_stats(Measurement("ok", window_start_ns=0, window_end_ns=30 * MS, workers=(a, slow)), batch_size=1)
    assert "idle threads: 1 thread(s) measured no call" in (s.warning or "")


def test_credit_is_time_weighted():
    starts = np.array([0, 10], dtype=np.int64)
    ends = np.array([10, 30], dtype=np.int64)
    # at 5: half of the first call; at 10: the first; at 20: the first and half the second.
    assert list(credit_until(starts, ends, np.array([0, 5, 10, 20, 30, 40]))) == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]


def test_slices_of_a_steady_slow_model_are_exact_and_stable():
    # 4 threads x 700 ms calls, out of phase, a 3 s window: whole calls per 1 s slice would say
    # 8 or 4; time-weighted credit says 4 / 0.7 in every slice.
    workers = [back_to_back(p * MS, [700 * MS] * 5, thread_idx=i) for i, p in enumerate((0, 150, 400, 650))]
    m = Measurement("ok", window_start_ns=0, window_end_ns=window_of(workers), workers=tuple(workers))
    slices = slice_throughputs(m, batch_size=1, slice_s=1.0)
    assert len(slices) >= 2
    assert np.allclose(slices, 4 / 0.7)
    s = compute_stats(m, batch_size=1)
    assert s.throughput_peak == pytest.approx(4 / 0.7)
    assert s.throughput_cv == pytest.approx(0.0, abs=1e-9)
    assert s.warning is None or "unstable" not in s.warning and "too few" not in s.warning


def test_slices_cover_the_span_where_every_thread_measured():
    a = back_to_back(0, [100 * MS] * 30)  # 0 .. 3 s
    b = back_to_back(500 * MS, [100 * MS] * 30)  # 0.5 .. 3.5 s
    m = Measurement("ok", window_start_ns=0, window_end_ns=window_of([a, b]), workers=(a, b))
    # the common span is 0.5 .. 3 s: 2.5 s -> round(2.5) = 2 slices of 1.25 s, 20 calls/s each.
    slices = slice_throughputs(m, batch_size=1, slice_s=1.0)
    assert len(slices) == 2 and np.allclose(slices, 20.0)


def test_peak_and_cv_with_ddof_1_flag_a_real_slowdown():
    # One thread: 10 ms calls for 1 s, then 20 ms calls for 1 s, then 10 ms calls for 1 s.
    lats = [10 * MS] * 100 + [20 * MS] * 50 + [10 * MS] * 100
    w = back_to_back(0, lats)
    m = Measurement("ok", window_start_ns=0, window_end_ns=window_of([w]), workers=(w,))
    s = compute_stats(m, batch_size=2)
    slices = [200.0, 100.0, 200.0]  # inputs/s per 1 s slice
    assert s.throughput_peak == pytest.approx(200.0)
    mean = sum(slices) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in slices) / 2)
    assert s.throughput_cv == pytest.approx(sd / mean)
    assert "unstable: throughput varied 35% between 1 s slices" in s.warning
    assert "or on an idle machine" in s.warning


def test_few_calls_per_slice_are_not_called_unstable():
    # Jittery slow calls: 1 thread, 400-1000 ms, 10 s: slices hold one or two calls.
    rng = random.Random(3)
    w = back_to_back(0, [rng.choice([400, 1000]) * MS for _ in range(15)])
    m = Measurement("ok", window_start_ns=0, window_end_ns=window_of([w]), workers=(w,))
    s = compute_stats(m, batch_size=1)
    assert s.throughput_cv is not None and s.throughput_cv > 0.10
    assert "too few calls per slice to judge stability" in s.warning
    assert "unstable" not in s.warning


def test_window_shorter_than_half_a_slice_peak_equals_average():
    w = back_to_back(0, [40 * MS] * 10)  # 10 calls in 0.4 s
    m = Measurement("ok", window_start_ns=0, window_end_ns=400 * MS, workers=(w,))
    s = compute_stats(m, batch_size=3, peak_window_s=1.0)
    assert s.throughput_avg == pytest.approx(10 * 3 / 0.4)
    assert s.throughput_peak == s.throughput_avg
    assert s.throughput_cv is None
    assert "stability unknown" in s.warning and "benchmark.duration" in s.warning


def test_stable_run_with_enough_samples_has_no_warning():
    w = back_to_back(0, [10 * MS] * 300, gap_ns=0)
    m = Measurement("ok", window_start_ns=0, window_end_ns=3 * S, workers=(w,))
    s = compute_stats(m, batch_size=1)
    assert s.total_infs == 300 >= MIN_SAMPLES
    assert s.throughput_cv == pytest.approx(0.0, abs=1e-12)
    assert s.throughput_peak == pytest.approx(100.0) and s.throughput_avg == pytest.approx(100.0)
    assert s.warning is None


def test_few_samples_warn_with_remedy():
    w = back_to_back(0, [S // 2, S // 2])
    m = Measurement("ok", window_start_ns=0, window_end_ns=S, workers=(w,))
    s = compute_stats(m, batch_size=1)
    assert "few samples: only 2 measured calls" in s.warning
    assert "benchmark.duration" in s.warning


def test_a_late_copy_and_an_idle_thread_are_named():
    a = back_to_back(0, [10 * MS] * 200)
    idle = WorkerSamples(1, 0, start_ns=(), latency_ns=())
    copies = (CopyStats(0, pid=1, load_ms=1, warmup_ms=1), CopyStats(1, pid=2, load_ms=1, warmup_ms=1, late_ns=12 * MS))
    m = Measurement("ok", window_start_ns=0, window_end_ns=2 * S, workers=(a, idle), copies=copies)
    s = compute_stats(m, batch_size=1)
    assert "late start: copy 1 learnt of the window up to 12.0 ms after it opened" in s.warning
    assert "idle threads: 1 thread(s) measured no call" in s.warning
    assert short_warning(s.warning) == "idle threads, late start"


def test_samples_of_every_worker_and_copy_are_pooled():
    a = back_to_back(0, [2 * MS, 2 * MS], copy_idx=0, infer_ns_total=3 * MS)
    b = back_to_back(0, [4 * MS, 4 * MS], copy_idx=1, thread_idx=1, infer_ns_total=5 * MS,
                     preprocess_ns_total=2 * MS, postprocess_ns_total=1 * MS)
    copies = (
        CopyStats(0, pid=10, load_ms=100.0, warmup_ms=4.0, cpu_avg_percent=80.0, peak_rss_bytes=100 * 2**20,
                  mem_avg_percent=1.0, warmup_calls=10),
        CopyStats(1, pid=11, load_ms=300.0, warmup_ms=6.0, cpu_avg_percent=120.0, peak_rss_bytes=300 * 2**20,
                  mem_avg_percent=3.0, warmup_calls=30),
    )
    m = Measurement("ok", window_start_ns=0, window_end_ns=8 * MS, workers=(a, b), copies=copies)
    s = compute_stats(m, batch_size=8)
    assert s.total_infs == 4
    assert s.latency_ms_avg == 3.0 and s.latency_ms_p0 == 2.0 and s.latency_ms_p100 == 4.0
    assert s.infer_avg_ms == 2.0  # (3 + 5) ms over 4 calls
    assert s.preprocess_avg_ms == 0.5 and s.postprocess_avg_ms == 0.25
    # The mean warm-up call over all 40 calls: (10 x 4 + 30 x 6) / 40, not the copies' mean (5).
    assert s.load_avg_ms == 200.0 and s.warmup_avg_ms == 5.5
    assert s.cpu_avg_percent == 100.0 and s.mem_avg_percent == 2.0  # mean per process
    assert s.peak_rss_mb == 300.0  # the largest single process
    assert s.throughput_avg == pytest.approx(8 * (2 / 0.004 + 2 / 0.008))
    # Copies whose warm-up counts are unknown (rows of method 2) are averaged as they were.
    old = [replace(c, warmup_calls=None) for c in copies]
    assert compute_stats(replace(m, copies=tuple(old)), batch_size=8).warmup_avg_ms == 5.0


def test_cost_has_one_definition_and_a_price_of_zero_is_a_price():
    assert cost_per_1m_inf(3.6, 1000.0) == pytest.approx(3.6 * 1e6 / (3600 * 1000.0))
    assert cost_per_1m_inf(0.0, 1000.0) == 0.0
    assert cost_per_1m_inf(None, 1000.0) is None and cost_per_1m_inf(3.6, None) is None
    assert cost_per_1m_inf(3.6, 0.0) is None


def test_infer_time_not_recorded_is_unknown_and_cost_is_priced_later():
    m = Measurement("ok", window_start_ns=0, window_end_ns=S, workers=(back_to_back(0, [S // 2]),))
    s = compute_stats(m, batch_size=1)
    assert s.infer_avg_ms is None and s.cost_per_1m_inf is None
    assert s.preprocess_avg_ms == 0.0


def test_failed_measurement_has_empty_figures():
    m = Measurement("error", error="boom", window_start_ns=0, window_end_ns=S, workers=(back_to_back(0, [S // 2]),))
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
    m = Measurement("ok", window_start_ns=0, window_end_ns=S, workers=(back_to_back(0, [1]),))
    with pytest.raises(UsageError, match="peak_window_s"):
        compute_stats(m, batch_size=1, peak_window_s=0)
    with pytest.raises(UsageError, match="batch_size"):
        compute_stats(m, batch_size=0)
    broken = WorkerSamples(0, 0, start_ns=(1, 2), latency_ns=(1,))
    with pytest.raises(UsageError, match="start times"):
        compute_stats(Measurement("ok", window_end_ns=S, workers=(broken,)), batch_size=1)


def test_t_interval_by_hand():
    low, high = t_interval([10.0, 12.0, 14.0])
    half = 4.302653 * 2.0 / math.sqrt(3)  # t(0.975, 2) x sd / sqrt(n)
    assert low == pytest.approx(12.0 - half) and high == pytest.approx(12.0 + half)
    assert t_interval([5.0]) == (None, None)


def test_repeats_report_means_inside_their_own_confidence_intervals():
    runs = [EntryStats(throughput_avg=t, latency_ms_p50=p, total_infs=n, repeats=1, warning=w)
            for t, p, n, w in ((100.0, 2.0, 10, None), (130.0, 2.2, 12, "few samples: x; y"), (91.0, 1.9, 11, None))]
    s = combine_repeats(runs)
    assert s.repeats == 3
    # The figure is the mean, the statistic whose interval the row reports beside it.
    assert s.throughput_avg == pytest.approx(107.0) and s.latency_ms_p50 == pytest.approx(2.0333333)
    assert s.total_infs == 11
    assert s.throughput_ci_low < s.throughput_avg < s.throughput_ci_high
    assert (s.throughput_ci_low + s.throughput_ci_high) / 2 == pytest.approx(s.throughput_avg)
    assert (s.throughput_ci_low, s.throughput_ci_high) == pytest.approx(t_interval([100.0, 130.0, 91.0]))
    assert (s.latency_ms_p50_ci_low, s.latency_ms_p50_ci_high) == pytest.approx(t_interval([2.0, 2.2, 1.9]))
    assert s.warning == "repeat 2: few samples: x; y"
    assert short_warning(s.warning) == "few samples"


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=10**9), min_size=1, max_size=200))
def test_percentiles_are_ordered_and_bounded(latencies):
    w = back_to_back(0, latencies)
    s = compute_stats(Measurement("ok", window_start_ns=0, window_end_ns=window_of([w]), workers=(w,)), batch_size=1)
    ordered = [s.latency_ms_p0, s.latency_ms_p50, s.latency_ms_p90, s.latency_ms_p95, s.latency_ms_p99, s.latency_ms_p100]
    assert ordered == sorted(ordered)
    assert s.latency_ms_p0 == min(latencies) / MS and s.latency_ms_p100 == max(latencies) / MS
    assert s.throughput_avg == pytest.approx(len(latencies) / (sum(latencies) / S))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**9), st.integers(1, 10**8), st.integers(1, 30)), min_size=1, max_size=6))
def test_steady_threads_read_littles_law_exactly_for_any_phase(threads):
    workers = tuple(back_to_back(p, [lat] * n, thread_idx=i) for i, (p, lat, n) in enumerate(threads))
    m = Measurement("ok", window_start_ns=0, window_end_ns=window_of(workers), workers=workers)
    s = compute_stats(m, batch_size=1)
    assert s.throughput_avg == pytest.approx(sum(S / lat for _, lat, _ in threads), rel=1e-6)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**9), st.lists(st.integers(1, 10**8), min_size=1, max_size=30)),
                min_size=1, max_size=6))
def test_estimator_is_bounded_by_each_threads_fastest_and_slowest_call(threads):
    workers = tuple(back_to_back(p, lats, thread_idx=i) for i, (p, lats) in enumerate(threads))
    m = Measurement("ok", window_start_ns=0, window_end_ns=window_of(workers), workers=workers)
    s = compute_stats(m, batch_size=1)
    low = sum(S / max(lats) for _, lats in threads)
    high = sum(S / min(lats) for _, lats in threads)
    assert low * (1 - 1e-9) <= s.throughput_avg <= high * (1 + 1e-9)
    slices = slice_throughputs(m, batch_size=1, slice_s=0.1)
    assert np.all(slices >= 0)
