"""Which queue reaches the server scenario's figures: neuronperf's virtual queue, or a generator
process feeding a real queue? Both measured side by side in one run, in real processes.

Run from the repository root: ``python benchmarks/serving_generators.py`` (about 1 minute;
``--quick`` for 2 s windows). Each case runs both designs on the same arrival schedule (the
schedule of ``neuronperf.stats.serving``, seed 0), with the model a plain callable:

- ``virtual``: what neuronperf does (``neuronperf.measure.serving.Server``). The schedule is
  computed in each serving process; one shared head index under one lock is the queue; a free
  thread claims the next request, sleeps (spins the last 200 us) until it is due, and calls.
- ``generator``: a generator process sleeps (spinning the last 200 us) until each request's time
  and puts its index into a ``multiprocessing.SimpleQueue``; every serving process takes requests
  from it and calls. Latency still counts from the scheduled arrival (so a late generator is
  charged), and the generator's lag is how late each request entered the queue.

Printed per case and design: the requests served per second, the mean and p99 latency, and the
p99 of the design's own delay (the virtual queue: how late a free thread started a due call,
propagated along its calls, as rows report ``generator_lag_ms_p99``; the generator: how late a
request entered the queue).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import threading
import time
from typing import Any

import numpy as np

from neuronperf.entries import ServingWindow
from neuronperf.measure.serving import (
    SPIN_NS,
    Server,
    SharedQueue,
    arrivals_buffer,
    quiet_timer_slack,
)
from neuronperf.stats.serving import CallRecords, request_count, request_times, schedule_offsets_ns


def _busy(ns: int) -> None:
    end = time.perf_counter_ns() + ns
    while time.perf_counter_ns() < end:
        pass


def _model(service_ns: int) -> Any:
    if not service_ns:
        return lambda: None
    return lambda: _busy(service_ns)


def _wait_until(t: int) -> None:
    now = time.perf_counter_ns()
    if t - now > SPIN_NS:
        time.sleep((t - now - SPIN_NS) / 1e9)
    while time.perf_counter_ns() < t:
        pass


def _virtual_copy(queue: SharedQueue, copy: int, rate: float, n: int, start_ns: int, service_ns: int, out: str) -> None:
    arrivals = arrivals_buffer(start_ns + schedule_offsets_ns(rate, n))
    server = Server(queue, arrivals, 1, 0)
    quiet_timer_slack()
    _wait_until(start_ns - 1_000_000)
    server.serve(_model(service_ns), start_ns + int(n / rate * 1e9) + 2_000_000_000)
    np.save(os.path.join(out, f"copy-{copy}.npy"), server.records())


def _generator(q: Any, copies: int, rate: float, n: int, start_ns: int, out: str) -> None:
    arrivals = arrivals_buffer(start_ns + schedule_offsets_ns(rate, n))
    quiet_timer_slack()
    put, perf = q.put, time.perf_counter_ns
    entered = np.zeros(n, dtype=np.int64)
    for i in range(n):
        _wait_until(arrivals[i])
        put(i)
        entered[i] = perf()
    for _ in range(copies):
        put(None)
    np.save(os.path.join(out, "entered.npy"), entered)


def _generator_copy(q: Any, copy: int, service_ns: int, out: str) -> None:
    call, get, perf = _model(service_ns), q.get, time.perf_counter_ns
    records = []
    while True:
        i = get()
        if i is None:
            break
        t0 = perf()
        call()
        records.append((i, t0, perf()))
    np.save(os.path.join(out, f"copy-{copy}.npy"), np.array(records, dtype=np.int64).reshape(-1, 3))


def run_case(design: str, rate: float, duration: float, copies: int, service_ms: float) -> dict[str, float]:
    ctx = mp.get_context("forkserver")
    n = request_count(rate, duration)
    service_ns = int(service_ms * 1e6)
    with tempfile.TemporaryDirectory(prefix="serving-generators-") as out:
        start_ns = time.perf_counter_ns() + int(1.5e9)
        if design == "virtual":
            queue = SharedQueue(ctx)
            procs = [ctx.Process(target=_virtual_copy, args=(queue, c, rate, n, start_ns, service_ns, out)) for c in range(copies)]
        else:
            q = ctx.SimpleQueue()
            procs = [ctx.Process(target=_generator_copy, args=(q, c, service_ns, out)) for c in range(copies)]
            procs.append(ctx.Process(target=_generator, args=(q, copies, rate, n, start_ns, out)))
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        window = ServingWindow(rate=rate, requests=n, start_ns=start_ns)
        arrivals = start_ns + schedule_offsets_ns(rate, n)
        if design == "virtual":
            threads = []
            for c in range(copies):
                r = np.load(os.path.join(out, f"copy-{c}.npy"))
                threads.append(CallRecords(r[:, 0], r[:, 1], r[:, 2], r[:, 3], r[:, 4]))
            times = request_times(threads, window)
            latency, ends = times.latency_ns, times.end_ns
            lag = np.concatenate([np.repeat(t.lag_ns(), t.count) for t in threads])
        else:
            r = np.concatenate([np.load(os.path.join(out, f"copy-{c}.npy")) for c in range(copies)])
            latency, ends = r[:, 2] - arrivals[r[:, 0]], r[:, 2]
            lag = np.load(os.path.join(out, "entered.npy")) - arrivals
    total = max(n / rate, (int(ends.max()) - start_ns) / 1e9)
    return {"served_per_s": latency.size / total, "mean_ms": float(latency.mean()) / 1e6,
            "p99_ms": float(np.percentile(latency, 99)) / 1e6, "own_delay_p99_ms": float(np.percentile(lag, 99)) / 1e6}


CASES = (  # (rate, copies, service ms)
    (200.0, 1, 2.0),
    (600.0, 2, 2.0),
    (10_000.0, 1, 0.0),
    (20_000.0, 1, 0.0),
    (40_000.0, 1, 0.0),
    (80_000.0, 1, 0.0),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 s windows instead of 5 s")
    args = parser.parse_args()
    duration = 2.0 if args.quick else 5.0
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print(f"{'case':28s} {'design':9s} {'served/s':>10s} {'mean ms':>8s} {'p99 ms':>8s} {'own delay p99 ms':>17s}")
    for rate, copies, service_ms in CASES:
        for design in ("virtual", "generator"):
            r = run_case(design, rate, duration, copies, service_ms)
            case = f"{rate:g}/s, {copies} copy, {service_ms:g} ms"
            print(f"{case:28s} {design:9s} {r['served_per_s']:10.1f} {r['mean_ms']:8.3f} {r['p99_ms']:8.3f} "
                  f"{r['own_delay_p99_ms']:17.4f}", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    threading.current_thread().name = "main"
    main()
