"""How accurate the reported figures are: each one against a truth that needs no harness.

Run from the repository root: ``python benchmarks/measurement_accuracy.py`` (about 3 minutes;
``--quick`` for shorter windows, ``--only NAME`` for one case). Every entry runs through the real
benchmark core (``measure.entryloop.run_entries`` with forkserver workers) and the rows are computed by
``results.report_row``, exactly as ``neuronperf run`` computes them. For the sleep models the
script also recomputes, from the same raw samples, what method 1 (before ``METHOD_VERSION`` 2)
reported, so the two methods are compared side by side in one run.

Cases and truths:

1. ``jitter``: a model that sleeps a random 400-1000 ms per call, 1 copy x 4 and x 8 threads.
   Truth: Little's law, threads / mean latency of the calls. Goal: ``throughput_avg`` within 2%.
2. ``steady``: models that sleep exactly 100 ms and 700 ms, 1 copy x 4 threads. Truth: threads
   / latency for ``throughput_peak``; no stability warning. Goal: peak within 3%, no warning.
3. ``fast``: a 20 us busy-wait model on 1 and 2 threads. Truth: a bare ``perf_counter_ns`` loop
   in this process on the same number of threads. Goal: p50 within 5%.
4. ``cnn``: the zoo's small CNN (batch 1, 2 torch threads). Truth: ``torch.utils.benchmark.Timer``
   (``blocked_autorange``, median) on the same 2 threads, in this process. Goal: p50 within 3%.
5. ``sleep``: fixed sleeps of 1, 5 and 20 ms at 2 copies x 2 threads x batch 4: p50 against a bare
   loop timing the same sleep, throughput against Little's law.
6. ``shared``: two CPU-bound copies pinned to one core, copy 1 doing twice the work per call, with
   ``min_calls`` so that copy 0 reaches its share first and stops while copy 1 runs on alone
   (uncontended, twice as fast) for its own. Truth: the same two loops run by two bare processes
   pinned to that core at once, each counting its calls: the throughput of the configured load.
   Method 3 (the common span) against method 2 (each thread's own rate, summed) on the same
   samples. Within the harness a copy cannot *start* late without load (every thread keeps
   calling until the window opens): a copy that learns of the window late still loaded the core.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import threading
import time
from typing import Any

import numpy as np

from neuronperf.entries import BenchmarkSettings, Measurement
from neuronperf.executors import get_executor
from neuronperf.measure.entryloop import Job, Sink, run_entries
from neuronperf.measure.task import BenchmarkTask, factory_loader
from neuronperf.results.rows import RowConfig


class Sleeper:
    """Sleeps ``latency_ms`` per call, or a uniform random time in [low_ms, high_ms]; sleeping
    releases the GIL and uses no CPU, like a device call."""

    def __init__(self, latency_ms: float = 0.0, low_ms: float = 0.0, high_ms: float = 0.0):
        self.fixed = latency_ms / 1000
        self.low, self.high = low_ms / 1000, high_ms / 1000
        self.rng = random.Random()  # unseeded: every copy and repeat draws its own latencies

    def __call__(self, x: Any) -> Any:
        time.sleep(self.fixed if self.fixed else self.rng.uniform(self.low, self.high))
        return x


class Spinner:
    """Busy-waits ``latency_us`` per call (a CPU-bound model of exactly known cost)."""

    def __init__(self, latency_us: float):
        self.ns = int(latency_us * 1000)

    def __call__(self, x: Any) -> Any:
        until = time.perf_counter_ns() + self.ns
        while time.perf_counter_ns() < until:
            pass
        return x


class Work:
    """A fixed amount of pure-Python work per call, ``loops`` iterations (``loops_copy1`` in copy
    1, which ``on_core_0`` tells it): CPU-bound, its pace set by the share of the core it gets."""

    def __init__(self, loops: int, loops_copy1: int):
        self.loops = loops_copy1 if os.environ.get("NP_BENCH_COPY") == "1" else loops

    def __call__(self, x: Any) -> Any:
        for _ in range(self.loops):
            pass
        return x


def on_core_0(copy_idx: int, config: dict) -> None:
    """``env_setup_fn``: pin the copy to core 0 (its threads start later and inherit it)."""
    os.environ["NP_BENCH_COPY"] = str(copy_idx)
    os.sched_setaffinity(0, {0})


def _bare_work(loops: int, seconds: float, start_at: float, out: Any) -> None:
    os.sched_setaffinity(0, {0})
    model = Work(loops, loops)
    while time.time() < start_at:
        pass
    calls, until = 0, time.time() + seconds
    t0 = time.perf_counter()
    while time.time() < until:
        model(0)
        calls += 1
    out.put((loops, calls / (time.perf_counter() - t0)))


def small_cnn() -> Any:
    from neuronperf import zoo

    return zoo.small_cnn()


def measure(name: str, loader: Any, inputs: Any, threads: int, duration: float, *, copies: int = 1,
            batch: int = 1, warmup: int = 5, backend: Any = None, env_setup_fn: Any = None,
            min_calls: Any = None) -> tuple[dict, Measurement]:
    task = BenchmarkTask(name, loader, inputs=inputs, batch_size=batch, n_models=copies, workers_per_model=threads,
                         device_backend=backend, env_setup_fn=env_setup_fn,
                         settings=BenchmarkSettings(duration=duration, warmup_calls=warmup, timeout=duration + 300,
                                                    min_calls=min_calls))
    config = RowConfig(id=name, batch_size=batch, n_models=copies, workers_per_model=threads)
    sink = Sink()
    with get_executor() as executor:
        run_entries([Job(config=config, task=task)], executor, sink)
    result = sink.results[0]
    if result.row["status"] != "ok":
        raise SystemExit(f"{name}: {result.row['status']}: {result.row['error']}")
    return result.row, result.measurements[0]


def method1(m: Measurement, batch: int) -> tuple[float, float, float]:
    """What method 1 reported from the same samples: throughput = calls / (last return - window
    start); peak and CV over whole 1 s slices from the window start, each call counted whole in
    the slice where it completed, CV with ddof=0."""
    starts = np.concatenate([np.asarray(w.start_ns) for w in m.workers])
    ends = starts + np.concatenate([np.asarray(w.latency_ns) for w in m.workers])
    span = int(ends.max()) - m.window_start_ns
    throughput = starts.size * batch / (span / 1e9)
    n = span // 1_000_000_000
    counts = np.bincount(((ends - m.window_start_ns) // 1_000_000_000)[ends - m.window_start_ns < n * 1_000_000_000],
                         minlength=int(n))[: int(n)] * batch
    peak = float(counts.max()) if n else throughput
    cv = float(counts.std() / counts.mean()) if n >= 2 and counts.mean() else float("nan")
    return throughput, peak, cv


def err(measured: float, truth: float) -> str:
    return f"{(measured / truth - 1) * 100:+.2f}%"


def all_latencies_s(m: Measurement) -> np.ndarray:
    return np.concatenate([np.asarray(w.latency_ns) for w in m.workers]) / 1e9


def case_jitter(duration: float) -> None:
    print(f"\n1. jittery model, 400-1000 ms per call ({duration:g} s windows); truth: Little's law = threads / mean latency")
    print(f"  {'threads':>7s} | {'truth':>7s} | {'method 3':>8s} {'err':>7s} | {'method 1':>8s} {'err':>7s} | calls")
    for threads in (4, 8):
        row, m = measure(f"jitter-w{threads}", factory_loader(Sleeper, low_ms=400, high_ms=1000), 0, threads, duration,
                         warmup=1)
        truth = threads / all_latencies_s(m).mean()
        old = method1(m, 1)[0]
        print(f"  {threads:7d} | {truth:7.3f} | {row['throughput_avg']:8.3f} {err(row['throughput_avg'], truth):>7s} |"
              f" {old:8.3f} {err(old, truth):>7s} | {row['total_infs']}")


def case_steady(duration: float) -> None:
    print(f"\n2. steady models, 1 copy x 4 threads ({duration:g} s windows); truth: peak = 4 / latency, no stability warning")
    print(f"  {'latency':>7s} | {'truth':>7s} | {'m3 peak':>8s} {'err':>7s} {'m3 cv':>6s} {'warning':>8s} |"
          f" {'m1 peak':>8s} {'err':>7s} {'m1 cv':>6s}")
    for ms in (100.0, 700.0):
        row, m = measure(f"steady-{ms:g}ms", factory_loader(Sleeper, latency_ms=ms), 0, 4, duration, warmup=1)
        truth = 4 / (statistics.median(all_latencies_s(m)))
        _, old_peak, old_cv = method1(m, 1)
        stability = "unstable" in (row["warning"] or "") or "too few" in (row["warning"] or "")
        cv = row["throughput_cv"]
        print(f"  {ms:5.0f}ms | {truth:7.3f} | {row['throughput_peak']:8.3f} {err(row['throughput_peak'], truth):>7s}"
              f" {cv * 100 if cv is not None else float('nan'):5.1f}% {'yes' if stability else 'none':>8s} |"
              f" {old_peak:8.3f} {err(old_peak, truth):>7s} {old_cv * 100:5.1f}%")


def bare_threads_p50_us(model: Any, threads: int, seconds: float) -> float:
    """p50 of ``model(0)`` timed by bare loops on ``threads`` threads of this process at once."""
    samples: list[list[int]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads)

    def loop(out: list[int]) -> None:
        perf = time.perf_counter_ns
        for _ in range(200):
            model(0)
        barrier.wait()
        until = perf() + int(seconds * 1e9)
        while perf() < until:
            t0 = perf()
            model(0)
            out.append(perf() - t0)

    pool = [threading.Thread(target=loop, args=(s,)) for s in samples]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return float(np.median(np.concatenate([np.asarray(s) for s in samples]))) / 1000


def case_fast(duration: float, repeat: int) -> None:
    print(f"\n3. a 20 us busy-wait model; truth: a bare loop on the same threads (median of {repeat} alternating runs)")
    print(f"  {'threads':>7s} | {'bare p50':>9s} | {'harness p50':>11s} {'err':>7s}")
    for threads in (1, 2):
        bare, harness = [], []
        for _ in range(repeat):
            harness.append(measure(f"spin20us-w{threads}", factory_loader(Spinner, latency_us=20), 0, threads, duration,
                                   warmup=200)[0]["latency_ms_p50"] * 1000)
            bare.append(bare_threads_p50_us(Spinner(20), threads, duration))
        b, h = statistics.median(bare), statistics.median(harness)
        print(f"  {threads:7d} | {b:7.2f}us | {h:9.2f}us {err(h, b):>7s}")


def case_cnn(duration: float, repeat: int) -> None:
    import torch
    from torch.utils.benchmark import Timer

    print(f"\n4. small CNN, batch 1, 2 torch threads; truth: torch.utils.benchmark.Timer (median of {repeat} alternating runs)")
    model, x = small_cnn(), torch.randn(1, 3, 32, 32)
    timer_ms, harness_ms = [], []
    for _ in range(repeat):
        row, _ = measure("cnn", factory_loader(small_cnn), torch.randn(1, 3, 32, 32), 1, duration, warmup=300,
                         backend="torch")
        harness_ms.append(row["latency_ms_p50"])
        with torch.inference_mode():
            t = Timer("model(x)", globals={"model": model, "x": x}, num_threads=2).blocked_autorange(min_run_time=duration)
        timer_ms.append(t.median * 1000)
    tm, hm = statistics.median(timer_ms), statistics.median(harness_ms)
    print(f"  Timer {tm:.4f} ms | harness p50 {hm:.4f} ms {err(hm, tm)}   (each run: "
          + ", ".join(f"{h:.4f}/{t:.4f}" for h, t in zip(harness_ms, timer_ms)) + ")")


def case_sleep(duration: float) -> None:
    print(f"\n5. fixed sleeps at 2 copies x 2 threads x batch 4 ({duration:g} s windows)")
    print(f"  {'true':>6s} | {'bare p50':>8s} {'p50':>8s} {'vs bare':>8s} | {'Little':>8s} {'thr_avg':>8s} {'err':>7s}")
    for ms in (1.0, 5.0, 20.0):
        model = Sleeper(ms)
        perf = time.perf_counter_ns
        lat = []
        for _ in range(max(20, int(500 / ms))):
            t0 = perf()
            model(0)
            lat.append(perf() - t0)
        bare = statistics.median(lat) / 1e6
        row, _ = measure(f"sleep{ms:g}ms", factory_loader(Sleeper, latency_ms=ms), [0.0] * 4, 2, duration, copies=2,
                         batch=4)
        little = 2 * 2 * 4 / (row["latency_ms_avg"] / 1000)
        print(f"  {ms:6.1f} | {bare:8.3f} {row['latency_ms_p50']:8.3f} {err(row['latency_ms_p50'], bare):>8s} |"
              f" {little:8.0f} {row['throughput_avg']:8.0f} {err(row['throughput_avg'], little):>7s}")


def case_shared(seconds: float) -> None:
    import multiprocessing

    loops, minimum = 40_000, 1000  # about 1 ms per call alone for copy 0; 1000 calls per thread
    print(f"\n6. two CPU-bound copies on core 0, copy 1 twice the work, min_calls {2 * minimum} (copy 0 stops first);"
          " truth: two bare processes on core 0 at once")
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    start_at = time.time() + 1.0
    bare = [ctx.Process(target=_bare_work, args=(n, seconds, start_at, queue)) for n in (loops, 2 * loops)]
    for p in bare:
        p.start()
    rates = dict(queue.get() for _ in bare)
    for p in bare:
        p.join()
    truth = rates[loops] + rates[2 * loops]
    row, m = measure("shared", factory_loader(Work, loops=loops, loops_copy1=2 * loops), 0, 1, 1.0, copies=2,
                     env_setup_fn=on_core_0, min_calls=2 * minimum, warmup=20)
    spans = [(int(w.start_ns[-1]) + int(w.latency_ns[-1]) - int(w.start_ns[0])) / 1e9 for w in m.workers]
    own = sum(len(w.start_ns) / s for w, s in zip(m.workers, spans))  # method 2: each thread's own rate
    print(f"  bare at once: {rates[loops]:.0f} + {rates[2 * loops]:.0f} = {truth:.0f} calls/s | spans "
          + " / ".join(f"{s:.2f} s" for s in spans))
    print(f"  method 3 (common span) {row['throughput_avg']:8.1f} {err(row['throughput_avg'], truth):>7s} |"
          f" method 2 (own rates) {own:8.1f} {err(own, truth):>7s}")


CASES = ("jitter", "steady", "fast", "cnn", "sleep", "shared")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter windows and fewer repeats")
    parser.add_argument("--only", choices=CASES, action="append", help="run only these cases")
    args = parser.parse_args()
    cases = args.only or list(CASES)
    long_s, short_s, repeat = (6.0, 1.0, 3) if args.quick else (10.0, 2.0, 5)
    os.environ.pop("OMP_NUM_THREADS", None)
    started = time.perf_counter()
    if "jitter" in cases:
        case_jitter(long_s)
    if "steady" in cases:
        case_steady(long_s / 2)
    if "fast" in cases:
        case_fast(short_s, repeat)
    if "cnn" in cases:
        case_cnn(short_s, repeat)
    if "sleep" in cases:
        case_sleep(short_s)
    if "shared" in cases:
        case_shared(short_s * 2)
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
