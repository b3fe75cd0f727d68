"""How much the benchmark harness itself costs: worker start-up and per-call overhead.

Run from the repository root: ``python benchmarks/harness_overhead.py [--repeat 3]``.

1. Worker start-up, ``spawn`` vs ``forkserver``: (a) a bare worker process that imports torch
   and exits; (b) a whole entry (start, load a small torch model, 1 warm-up call, a 0.2 s window,
   collect, tear down) minus its measured window.
2. Per-call overhead: a no-op model's median measured latency (timed by the worker loop) next to
   the median of a bare Python loop timing the same call with ``perf_counter_ns``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
from typing import Any, Callable

from neuronperf.entries import BenchmarkSettings
from neuronperf.measure import supervisor
from neuronperf.measure.supervisor import worker_context
from neuronperf.measure.task import BenchmarkTask, factory_loader


class NoOp:
    def __call__(self, x: Any) -> Any:
        return x


def tiny_torch_model() -> Any:
    import torch

    return torch.nn.Linear(16, 4).eval()


def torch_input() -> Any:
    import torch

    return torch.zeros(1, 16)


def import_torch_and_exit() -> None:
    import torch  # noqa: F401


def bare_start_s(method: str) -> float:
    """Seconds from Process.start() to the exit of a process that imported torch."""
    ctx = worker_context(method)
    started = time.perf_counter()
    process = ctx.Process(target=import_torch_and_exit)
    process.start()
    process.join()
    return time.perf_counter() - started


def entry_overhead_s(method: str, duration: float = 0.2) -> float:
    """Wall seconds of a whole small torch entry, minus its measured window."""
    task = BenchmarkTask(
        "overhead", factory_loader(tiny_torch_model), inputs=torch_input(),
        settings=BenchmarkSettings(duration=duration, warmup_calls=1, timeout=120),
    )
    started = time.perf_counter()
    result = measure(task, start_method=method)
    elapsed = time.perf_counter() - started
    if result.status != "ok":
        raise SystemExit(f"entry failed: {result.error}")
    return elapsed - duration


def measure(task: BenchmarkTask, start_method: Any = None) -> Any:
    with tempfile.TemporaryDirectory() as samples:
        return supervisor.measure(task, samples, start_method=start_method)


def median_of(fn: Callable[[], float], repeat: int) -> float:
    return statistics.median(fn() for _ in range(repeat))


def harness_call_ns(duration: float) -> tuple:
    """(median latency in ns, calls per second) of a no-op model measured by the harness."""
    result = measure(BenchmarkTask(
        "noop", factory_loader(NoOp), inputs=1, settings=BenchmarkSettings(duration=duration, warmup_calls=100),
    ))
    if result.status != "ok":
        raise SystemExit(f"entry failed: {result.error}")
    measured: list[int] = [int(lat) for w in result.workers for lat in w.latency_ns]
    return statistics.median(measured), len(measured) / duration


def bare_call_ns(duration: float) -> tuple:
    """(median latency in ns, calls per second) of the same call timed by a bare loop."""
    model, x = NoOp(), 1
    perf = time.perf_counter_ns
    bare: list[int] = []
    until = perf() + int(duration * 1e9)
    while perf() < until:
        t0 = perf()
        model(x)
        bare.append(perf() - t0)
    return statistics.median(bare), len(bare) / duration


def per_call_overhead(duration: float, repeat: int) -> None:
    harness = [harness_call_ns(duration) for _ in range(repeat)]
    bare = [bare_call_ns(duration) for _ in range(repeat)]
    m, m_rate = statistics.median(h[0] for h in harness), statistics.median(h[1] for h in harness)
    b, b_rate = statistics.median(h[0] for h in bare), statistics.median(h[1] for h in bare)
    print(f"\nper-call overhead (no-op model, 1 copy x 1 thread, median of {repeat} runs of {duration:g} s)")
    print(f"  harness: median {m:6.0f} ns per call   ({m_rate:12,.0f} calls/s measured)")
    print(f"  bare   : median {b:6.0f} ns per call   ({b_rate:12,.0f} calls/s)")
    print(f"  harness overhead: {m - b:+.0f} ns per call")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (the median is printed)")
    parser.add_argument("--duration", type=float, default=1.0, help="seconds of the no-op measurement")
    args = parser.parse_args()

    print(f"start methods available: {', '.join(multiprocessing.get_all_start_methods())}")
    first = time.perf_counter()
    bare_start_s("forkserver")
    print(f"forkserver first start (one time per parent process, preloads torch): {time.perf_counter() - first:.2f} s")

    print(f"\nworker start-up (median of {args.repeat})")
    print(f"  {'':32s} {'spawn':>9s} {'forkserver':>11s} {'ratio':>7s}")
    for label, fn in (("bare worker that imports torch", bare_start_s), ("whole small torch entry - window", entry_overhead_s)):
        spawn = median_of(lambda fn=fn: fn("spawn"), args.repeat)
        fork = median_of(lambda fn=fn: fn("forkserver"), args.repeat)
        print(f"  {label:32s} {spawn:8.3f}s {fork:10.3f}s {spawn / fork:6.1f}x")

    per_call_overhead(args.duration, args.repeat)


if __name__ == "__main__":
    main()
