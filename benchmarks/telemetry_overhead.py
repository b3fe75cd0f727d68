"""Does telemetry sampling slow the measured calls? The per-call bar with telemetry on.

Run from the repository root: ``python benchmarks/telemetry_overhead.py [--rounds 5]``.

Side by side in one run, round after round (the order rotates every round), a no-op model's
median call latency (what a row's percentiles are made of) and its calls per second:

- ``bare``: a bare Python loop in this process timing each call with ``perf_counter_ns``;
- ``off``: the no-op model measured by neuronperf (one copy, one thread), telemetry off;
- ``on``: the same with ``benchmark.telemetry`` on: the supervisor's sampler thread polls the
  source at 100 ms (the default) and at 10 ms (ten times the work), and measures idle power
  for 2 s before the copy starts.

This machine may have no telemetry source (no GPU, RAPL absent or root-only): the sampler then
reads a powercap tree this script writes in a temporary folder (two real file reads per
package per poll, what RAPL costs), so that the sampler does real work. The bar: with
telemetry on, the no-op call measured through neuronperf is within 5% of the bare loop's
(``bare median / on median >= 0.95``), and telemetry costs the harness nothing measurable
(``on / off`` calls per second >= 0.95). The calls per second of ``off`` against ``bare`` are
printed too: a 100-200 ns call shows the harness's own per-call bookkeeping, telemetry or not.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

from neuronperf.entries import BenchmarkSettings
from neuronperf.measure import supervisor
from neuronperf.measure.task import BenchmarkTask, factory_loader
from neuronperf.trackers import RaplTracker, Sample, Tracker, tracker_for


class NoOp:
    def __call__(self, x: Any) -> Any:
        return x


def fake_powercap(root: Path, packages: int = 2) -> str:
    """A powercap tree like a two-socket machine's; its counters do not move (a reading costs
    the same whatever the value)."""
    for i in range(packages):
        d = root / f"intel-rapl:{i}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "name").write_text(f"package-{i}\n")
        (d / "energy_uj").write_text(f"{1000 * (i + 1)}\n")
        (d / "max_energy_range_uj").write_text("262143328850\n")
    return str(root)


Figures = tuple[float, float]  # (median latency in ns, calls per second)


class CountingRapl(RaplTracker):
    """The RAPL reader, counting its readings."""

    def __init__(self, root: str):
        super().__init__(root)
        self.readings = 0

    def poll(self, pids: frozenset[int]) -> list[Sample]:
        self.readings += 1
        return super().poll(pids)


def harness_run(duration: float, period_ms: Optional[float], tracker: Optional[Tracker] = None) -> Figures:
    """The no-op model measured by the harness, with ``benchmark.telemetry`` at ``period_ms``
    (None: off) reading ``tracker``."""
    task = BenchmarkTask("noop", factory_loader(NoOp), inputs=1,
                         settings=BenchmarkSettings(duration=duration, warmup_calls=100, telemetry_period_ms=period_ms))
    with tempfile.TemporaryDirectory() as samples:
        result = supervisor.measure(task, samples, tracker=tracker)
    if result.status != "ok":
        raise SystemExit(f"entry failed: {result.error}")
    latencies = [int(lat) for w in result.workers for lat in w.latency_ns]
    return statistics.median(latencies), len(latencies) / duration


def bare_run(duration: float) -> Figures:
    model, x = NoOp(), 1
    perf = time.perf_counter_ns
    latencies: list[int] = []
    until = perf() + int(duration * 1e9)
    while perf() < until:
        t0 = perf()
        model(x)
        latencies.append(perf() - t0)
    return statistics.median(latencies), len(latencies) / duration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=2.0, help="seconds of each measurement")
    args = parser.parse_args()

    real = tracker_for("cpu")
    assert real is not None
    note = real.open()
    real.close()
    print(f"this machine's CPU telemetry source: {'RAPL, readable' if note is None else note}")

    with tempfile.TemporaryDirectory() as tmp:
        root = fake_powercap(Path(tmp) / "powercap")
        polls: dict[str, list[int]] = {"on 100 ms": [], "on 10 ms": []}

        def with_telemetry(label: str, period_ms: float) -> Callable[[], Figures]:
            def run() -> Figures:
                tracker = CountingRapl(root)
                figures = harness_run(args.duration, period_ms, tracker)
                polls[label].append(tracker.readings)
                return figures
            return run

        variants: dict[str, Callable[[], Figures]] = {
            "bare": lambda: bare_run(args.duration),
            "off": lambda: harness_run(args.duration, None),
            "on 100 ms": with_telemetry("on 100 ms", 100),
            "on 10 ms": with_telemetry("on 10 ms", 10),
        }
        names = list(variants)
        runs: dict[str, list[Figures]] = {n: [] for n in names}
        harness_run(0.2, None)  # start the forkserver before anything is compared
        for r in range(args.rounds):
            order = names[r % len(names):] + names[: r % len(names)]
            for name in order:
                runs[name].append(variants[name]())
            print(f"round {r + 1}: " + ", ".join(f"{n} {runs[n][-1][0]:.0f} ns {runs[n][-1][1]:,.0f}/s" for n in names))

    latency = {n: statistics.median(f[0] for f in runs[n]) for n in names}
    rate = {n: statistics.median(f[1] for f in runs[n]) for n in names}
    print(f"\nno-op model, 1 copy x 1 thread, {args.duration:g} s windows, medians of {args.rounds} rounds:")
    print(f"  {'':10s} {'p50 ns':>7s} {'bare/this':>9s} {'calls/s':>12s} {'this/bare':>9s} {'this/off':>8s}")
    for n in names:
        extra = f"   ({statistics.median(polls[n]):.0f} readings per entry)" if n in polls else ""
        print(f"  {n:10s} {latency[n]:7.0f} {latency['bare'] / latency[n]:9.3f} {rate[n]:12,.0f} "
              f"{rate[n] / rate['bare']:9.3f} {rate[n] / rate['off']:8.3f}{extra}")
    on = ("on 100 ms", "on 10 ms")
    worst_latency = min(latency["bare"] / latency[n] for n in on)
    worst_cost = min(rate[n] / rate["off"] for n in on)
    met = worst_latency >= 0.95 and worst_cost >= 0.95
    print(f"bar (telemetry on: p50 within 5% of bare, calls/s >= 0.95 x off): {'met' if met else 'NOT met'} "
          f"(worst bare/on p50 {worst_latency:.3f}, worst on/off calls/s {worst_cost:.3f})")


if __name__ == "__main__":
    main()
