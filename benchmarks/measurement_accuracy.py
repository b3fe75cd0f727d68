"""How accurate the reported latency and throughput are: models of known latency, measured.

Run from the repository root: ``python benchmarks/measurement_accuracy.py [--duration 2]``.

1. Known latency: a model that sleeps for a fixed time per call (releasing the GIL, like a
   device call) at several latencies and copies x threads x batch combinations, measured by the
   real benchmark stage (``measure`` with a ``factory_loader``, worker processes from the
   forkserver) and turned into figures by ``results.report_row``, exactly as users see them.
   For each case: the true latency vs ``latency_ms_p50``, and the expected throughput
   (copies x threads x batch / latency) vs ``throughput_avg``. ``time.sleep`` itself oversleeps
   (timer slack and wake-up: about 0.1 ms on our machine), so a bare in-process loop timing the
   same sleep is printed too: the harness should match it, not the nominal figure. The last column
   checks throughput against the measured latencies (Little's law: concurrency / mean latency).
2. CPU-bound: a small torch MLP measured by the harness and by a bare ``perf_counter_ns`` loop
   in this process, alternating; the ratios of their p50s and of their fastest calls show the
   latency the harness adds (the fastest call is the figure a busy machine disturbs least). torch
   gets its thread count from ``OMP_NUM_THREADS`` (``--torch-threads``, set before torch or the
   forkserver start): ``torch.set_num_threads`` would not do, because it does not reach the
   harness's measuring threads (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

from neuronperf.benchmark_stage import BenchmarkTask, factory_loader, measure
from neuronperf.entries import BenchmarkSettings
from neuronperf.results import RowConfig, report_row

DEFAULT_LATENCIES_MS = (1.0, 5.0, 20.0)
#: (copies, threads per copy, batch size)
DEFAULT_COMBOS = ((1, 1, 1), (1, 4, 1), (2, 2, 4), (4, 2, 8))


class Sleeper:
    """A model whose every call takes ``latency_ms`` without using a CPU (sleep releases the GIL)."""

    def __init__(self, latency_ms: float):
        self.seconds = latency_ms / 1000

    def __call__(self, x: Any) -> Any:
        time.sleep(self.seconds)
        return x


def cpu_mlp() -> Any:
    from neuronperf import zoo

    return zoo.mlp(in_features=256, hidden=512, out_features=10, layers=2)


def cpu_input(batch_size: int) -> Any:
    import torch

    return torch.randn(batch_size, 256)


def harness_row(name: str, loader: Any, inputs: Any, copies: int, threads: int, batch: int, duration: float) -> dict:
    """One entry measured by the benchmark stage, as the report row users get."""
    task = BenchmarkTask(
        name, loader, inputs=inputs, batch_size=batch, n_models=copies, workers_per_model=threads,
        settings=BenchmarkSettings(duration=duration, warmup_calls=5, timeout=duration + 120),
    )
    measurement = measure(task)
    if measurement.status != "ok":
        raise SystemExit(f"{name}: {measurement.status}: {measurement.error}")
    return report_row(RowConfig(id=name, batch_size=batch, n_models=copies, workers_per_model=threads), measurement)


def bare_p50_ms(model: Any, x: Any, seconds: float, min_calls: int = 20) -> tuple:
    """(median latency in ms, calls per second, fastest call in ms) of ``model(x)`` timed by a
    bare loop here."""
    perf = time.perf_counter_ns
    samples: list[int] = []
    started = perf()
    until = started + int(seconds * 1e9)
    while perf() < until or len(samples) < min_calls:
        t0 = perf()
        model(x)
        samples.append(perf() - t0)
    return statistics.median(samples) / 1e6, len(samples) / ((perf() - started) / 1e9), min(samples) / 1e6


def err(measured: float, truth: float) -> float:
    return (measured / truth - 1) * 100


def known_latency(latencies: list[float], combos: list[tuple], duration: float) -> None:
    print(f"\n1. sleep models of known latency ({duration:g} s windows; err = measured / truth - 1)")
    print(
        f"  {'true':>6s} {'m':>2s} {'w':>2s} {'bs':>3s} | {'bare p50':>8s} {'p50':>8s} {'err':>6s} {'vs bare':>7s}"
        f" | {'expected':>8s} {'thr_avg':>8s} {'err':>6s} {'Little':>6s} | {'calls':>6s}"
    )
    for latency in latencies:
        model = Sleeper(latency)
        bare = bare_p50_ms(model, None, min(1.0, 100 * latency / 1000))[0]
        for copies, threads, batch in combos:
            inputs = [0.0] * batch  # the model ignores its input; batch only scales throughput
            row = harness_row(
                f"sleep{latency:g}ms-m{copies}-w{threads}-bs{batch}", factory_loader(Sleeper, latency_ms=latency),
                inputs, copies, threads, batch, duration,
            )
            concurrency = copies * threads
            expected = concurrency * batch / (latency / 1000)
            little = concurrency * batch / (row["latency_ms_avg"] / 1000)
            p50, thr = row["latency_ms_p50"], row["throughput_avg"]
            print(
                f"  {latency:6.1f} {copies:2d} {threads:2d} {batch:3d} | {bare:8.3f} {p50:8.3f} {err(p50, latency):+5.1f}%"
                f" {err(p50, bare):+6.1f}% | {expected:8.0f} {thr:8.0f} {err(thr, expected):+5.1f}%"
                f" {err(thr, little):+5.1f}% | {row['total_infs']:6d}"
            )


def cpu_bound(duration: float, repeat: int, batch: int) -> None:
    import torch  # after main() set OMP_NUM_THREADS

    harness: list[dict] = []
    bare: list[tuple] = []
    model, x = cpu_mlp(), cpu_input(batch)
    with torch.inference_mode():  # what the worker does for torch models
        bare_p50_ms(model, x, 0.2)  # warm-up
    for _ in range(repeat):  # alternate, so that a busy machine affects both alike
        harness.append(harness_row("cpu-mlp", factory_loader(cpu_mlp), cpu_input(batch), 1, 1, batch, duration))
        with torch.inference_mode():
            bare.append(bare_p50_ms(model, x, duration))
    h_p50 = statistics.median(h["latency_ms_p50"] for h in harness)
    h_rate = statistics.median(h["total_infs"] / h["total_s"] for h in harness)
    b_p50, b_rate = statistics.median(b[0] for b in bare), statistics.median(b[1] for b in bare)
    h_p0, b_p0 = min(h["latency_ms_p0"] for h in harness), min(b[2] for b in bare)
    cpu = statistics.median(h["cpu_avg_percent"] for h in harness)
    threads = torch.get_num_threads()
    print(f"\n2. CPU-bound torch MLP (256-512-512-10, batch {batch}, {threads} torch thread(s)),"
          f" median of {repeat} alternating {duration:g} s runs")
    print(f"  {'':8s} {'p50 ms':>8s} {'calls/s':>9s}   p50 of each run")
    each_harness = " ".join(f"{h['latency_ms_p50']:.4f}" for h in harness)
    each_bare = " ".join(f"{b[0]:.4f}" for b in bare)
    print(f"  {'harness':8s} {h_p50:8.4f} {h_rate:9.0f}   {each_harness}")
    print(f"  {'bare':8s} {b_p50:8.4f} {b_rate:9.0f}   {each_bare}")
    print(f"  harness / bare: p50 {h_p50 / b_p50:.3f}x, calls/s {h_rate / b_rate:.3f}x,"
          f" fastest call {h_p0 / b_p0:.3f}x ({h_p0:.4f} vs {b_p0:.4f} ms)   (worker cpu_avg_percent {cpu:.0f})")


def parse_combo(text: str) -> tuple:
    parts = tuple(int(p) for p in text.lower().split("x"))
    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected COPIESxTHREADSxBATCH, e.g. 2x2x4, got {text!r}")
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=2.0, help="measured seconds per entry (default 2)")
    parser.add_argument("--latencies", type=float, nargs="+", default=list(DEFAULT_LATENCIES_MS), metavar="MS",
                        help="true latencies of the sleep model in ms (default 1 5 20)")
    parser.add_argument("--combos", type=parse_combo, nargs="+", default=list(DEFAULT_COMBOS), metavar="MxWxB",
                        help="copies x threads x batch combinations (default 1x1x1 1x4x1 2x2x4 4x2x8)")
    parser.add_argument("--repeat", type=int, default=9, help="alternating runs of the CPU-bound case (default 9)")
    parser.add_argument("--cpu-duration", type=float, default=0.5, help="seconds of each CPU-bound run (default 0.5)")
    parser.add_argument("--cpu-batch", type=int, default=8, help="batch size of the CPU-bound case (default 8)")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="OMP_NUM_THREADS/MKL_NUM_THREADS for the CPU-bound case (default 1)")
    parser.add_argument("--skip-cpu", action="store_true", help="only the sleep models")
    parser.add_argument("--skip-sleep", action="store_true", help="only the CPU-bound case")
    args = parser.parse_args()
    # Before torch is imported here or in the forkserver (which starts with the first entry).
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(args.torch_threads)

    started = time.perf_counter()
    if not args.skip_sleep:
        known_latency(args.latencies, args.combos, args.duration)
    if not args.skip_cpu:
        cpu_bound(args.cpu_duration, args.repeat, args.cpu_batch)
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
