"""Each per-copy figure is what docs/measurement.md defines, in real worker processes: CPU over
the copy's own window, memory without the harness's timing buffers, the warm-up over every
warm-up call, each thread's quota, and the CPU of other processes during the window (issue 27)."""

from __future__ import annotations

import models_for_tests as m
import pytest
from measuring import measure

from neuronperf.entries import BenchmarkSettings
from neuronperf.measure.task import BenchmarkTask, factory_loader
from neuronperf.stats.forward import compute_stats

pytestmark = pytest.mark.slow


def test_cpu_is_each_copys_own_over_its_own_window():
    """Copy 1 does 5 times the work per call of copy 0; max_infers gives each 100 calls, so copy 0
    stops long before copy 1, both well inside a 3 s window. The work of a call is fixed, and the
    fastest of 100 calls ran it without being preempted, so its wall time is that work's CPU time:
    each copy's CPU over its own window is about calls x fastest call / its span, near 100% on an
    idle machine, less on a busy one, and the truth moves with it. (Divided by a wall time shared
    by both copies, copy 0 read about a fifth of it.)"""
    task = BenchmarkTask(
        "spin", factory_loader(m.SpinPerCopy, loops=20_000, loops_copy1=100_000), inputs=(1,), n_models=2,
        env_setup_fn=m.copy_env_setup,
        settings=BenchmarkSettings(duration=3.0, max_infers=200, warmup_calls=3, timeout=60.0),
    )
    result = measure(task)
    assert result.status == "ok", result.error
    assert [len(w.start_ns) for w in result.workers] == [100, 100]
    assert [w.quota for w in result.workers] == [100, 100]
    fastest = [min(int(x) for x in w.latency_ns) for w in result.workers]
    spans = [int(w.start_ns[-1]) + int(w.latency_ns[-1]) - int(w.start_ns[0]) for w in result.workers]
    assert spans[1] > 2 * spans[0]  # they did stop at very different times
    for copy, least, span in zip(result.copies, fastest, spans):
        assert copy.cpu_avg_percent is not None
        truth = 100 * 100 * least / span
        # One thread at work: at most one core. The copy's window also holds the start margin's
        # keep-warm calls and the moments between calls, hence the 20% below.
        assert 0.8 * truth < copy.cpu_avg_percent < 105, (copy, truth)
        assert copy.warmup_calls == 3  # the Ready message's count reaches the copy's figures


def test_memory_figures_leave_out_the_timing_buffers():
    """A no-op model called for 2 s on 2 threads fills the largest timing buffers there are (64 MB
    per thread, allocated before the window); called for 0.02 s, a small part of that. The model is the
    same, and so is its memory once the buffers are left out."""
    def run(duration: float):
        task = BenchmarkTask("noop", factory_loader(m.NoOpModel), inputs=(1,), workers_per_model=2,
                             settings=BenchmarkSettings(duration=duration, warmup_calls=200, timeout=60.0))
        result = measure(task)
        assert result.status == "ok", result.error
        return result.copies[0]

    long, short = run(2.0), run(0.02)
    assert long.buffer_bytes is not None and short.buffer_bytes is not None
    assert long.buffer_bytes > 64 * 2**20 > 4 * short.buffer_bytes  # what the harness holds differs...
    assert long.peak_rss_bytes is not None and short.peak_rss_bytes is not None
    assert abs(long.peak_rss_bytes - short.peak_rss_bytes) < 16 * 2**20  # ...the model's memory does not
    row_long = compute_stats_of(long)
    assert row_long == pytest.approx(long.peak_rss_bytes / 2**20)


def compute_stats_of(copy) -> float:
    from neuronperf.entries import Measurement

    stats = compute_stats(Measurement("ok", copies=(copy,)), batch_size=1)
    assert stats.peak_rss_mb is not None
    return stats.peak_rss_mb


def test_other_processes_cpu_is_told_apart_from_the_entrys():
    """A sleeping model uses no CPU; a busy loop beside it uses one core. The row tells that core
    from the entry's own CPU (which a spinning model adds, and which must not count)."""
    from measuring import BusyProcess

    def other(factory, **kw) -> float:
        task = BenchmarkTask("x", factory_loader(factory, **kw), inputs=(1,),
                             settings=BenchmarkSettings(duration=1.0, warmup_calls=2, timeout=60.0))
        result = measure(task)
        assert result.status == "ok", result.error
        assert result.other_cpu_cores is not None
        return result.other_cpu_cores

    quiet = other(m.SleepModel, ms=5)
    spinning = other(m.SpinPerCopy, loops=20_000)
    with BusyProcess():
        loaded = other(m.SleepModel, ms=5)
    assert spinning < quiet + 0.5  # the entry's own core is not "other"
    assert quiet + 0.7 < loaded < quiet + 1.3  # the busy loop's one core
