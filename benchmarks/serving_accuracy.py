"""How right the server scenario's figures are: neuronperf against queueing truth, and against
MLPerf LoadGen on the same models, side by side in one run.

Run from the repository root: ``python benchmarks/serving_accuracy.py`` (about 12 minutes; take
the shared CPU lock). ``--only md1,md2,peak,capacity,batching`` runs some items,
``--no-loadgen`` leaves LoadGen out, ``--quick`` shortens every window (for trying the script,
not for figures). neuronperf runs through ``python -m neuronperf run`` on generated specs (real
worker processes, rows from ``results.json``); LoadGen (``pip install mlcommons-loadgen``, the
``benchmark`` extra) runs in this process with a Python SUT, one worker thread, as its Python
examples do. The truths need no harness: ``queueing.py`` simulates each queue exactly.

1. ``md1``/``md2``: a model that busy-waits 2 ms per call (a constant service time). 200
   requests/s on 1 copy x 1 thread against M/D/1 (Lindley's recursion), 600 requests/s on 2
   copies x 1 thread against M/D/2 (earliest-free server): mean and p99 latency, each against the
   same arrival schedule (seed 0: the schedule neuronperf draws, rebuilt here from its
   definition) and against 10^6 arrivals. Goal: mean within 3%, p99 within 5%. LoadGen's figures
   for M/D/1 beside them (its own schedule, same rate and length).
2. ``peak``: the same model, p99 <= 10 ms: ``sweep.rates: max`` against the M/D/1 peak (bisection
   on the exact queue over 10^6 arrivals: 281.4 requests/s), with at most 10 probes; LoadGen's
   FindPeakPerformance on the same model and windows beside it. Goal: within 3%, and at least as
   close as LoadGen.
3. ``capacity``: a no-op model, 1 copy: the highest rate of a ladder held with rate_achieved >=
   99% of the target and p99 <= 10 ms; the same ladder and test for LoadGen with a no-op SUT.
   Goal: at least 20,000 requests/s, and to match LoadGen.
4. ``batching``: the 2 ms model (2 ms whatever the batch), batch_size 4, max_queue_delay_ms 1,
   1,000 requests/s: rate_achieved >= 99% and p99 within 5% of a discrete-event simulation of
   the same batcher; without batching the same rate is reported as overloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import queueing  # noqa: E402  (a sibling file: the truths)

SERVICE_S = 0.002
BOUND_MS = 10.0
LADDER = (10_000, 20_000, 50_000, 100_000, 150_000, 200_000, 300_000, 400_000)


# ---- neuronperf's side: `neuronperf run` on a generated spec ----------------------------------


def neuronperf_rows(name: str, *, model: str, rates: Any, duration: float, n_models: int = 1,
                    batch_size: int = 1, delay_ms: float = 0.0, slo: Optional[dict] = None, precision: float = 0.02,
                    workdir: str) -> list[dict]:
    """Run one spec through the real CLI; its rows."""
    folder = Path(workdir) / name
    folder.mkdir(parents=True, exist_ok=True)
    factory, kwargs = ("busy_wait", "{ms: 2.0}") if model == "busy" else ("no_op", "{}")
    objectives = f"objectives: {{slo: {json.dumps(slo)}}}" if slo else ""
    precision_line = f", rate_precision: {precision}" if rates == "max" else ""
    spec = folder / "spec.yaml"
    spec.write_text(textwrap.dedent(f"""\
        version: 1
        name: {name}
        framework: torch
        device_type: cpu
        compiler: eager
        output_dir: {folder / 'out'}
        models:
          - name: {model}
            factory: "{HERE / 'serving_models.py'}:{factory}"
            kwargs: {kwargs}
            inputs: [{{shape: [4]}}]
        sweep:
          batch_sizes: [{batch_size}]
          n_models: [{n_models}]
          rates: {json.dumps(rates)}
          max_queue_delays_ms: [{delay_ms}]
        {objectives}
        benchmark: {{scenario: server, duration: {duration}, warmup: {{calls: 50}}, timeout: 900{precision_line}}}
        """))
    done = subprocess.run([sys.executable, "-m", "neuronperf", "run", str(spec), "--quiet"], capture_output=True,
                          text=True, timeout=3600)
    if done.returncode not in (0, 1):
        raise SystemExit(f"neuronperf run {spec} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return json.loads((folder / "out" / "results.json").read_text())  # type: ignore[no-any-return]


# ---- LoadGen's side: a Python SUT in this process ---------------------------------------------


@dataclass(frozen=True)
class LoadGenRun:
    target_qps: float
    completed_qps: float
    mean_ms: float
    p99_ms: float
    valid: bool
    peak_qps: Optional[float]
    seconds: float


def _busy(ns: int) -> None:
    end = time.perf_counter_ns() + ns
    while time.perf_counter_ns() < end:
        pass


def loadgen(target_qps: float, min_duration_s: float, service_s: float, *, peak: bool = False) -> LoadGenRun:
    """One LoadGen Server-scenario test (FindPeakPerformance with ``peak``): a SUT whose one
    worker thread busy-waits ``service_s`` per query (or, for 0, completes each at once)."""
    import queue
    import re
    import threading

    import mlperf_loadgen as lg

    work: Any = queue.SimpleQueue()
    complete, response = lg.QuerySamplesComplete, lg.QuerySampleResponse
    service_ns = int(service_s * 1e9)
    worker = None
    if service_ns:
        def serve() -> None:
            while (samples := work.get()) is not None:
                for s in samples:
                    _busy(service_ns)
                    complete([response(s.id, 0, 0)])

        worker = threading.Thread(target=serve, daemon=True)
        worker.start()
        issue = work.put
    else:
        def issue(samples: Any) -> None:
            complete([response(s.id, 0, 0) for s in samples])
    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(1024, 1024, lambda s: None, lambda s: None)
    settings = lg.TestSettings()
    settings.scenario = lg.TestScenario.Server
    settings.mode = lg.TestMode.FindPeakPerformance if peak else lg.TestMode.PerformanceOnly
    settings.server_target_qps = float(target_qps)
    settings.server_target_latency_ns = int(BOUND_MS * 1e6)
    settings.server_target_latency_percentile = 0.99
    settings.min_duration_ms = int(min_duration_s * 1000)
    settings.min_query_count = 100
    if peak:
        settings.server_find_peak_qps_decimals_of_precision = 0
    with tempfile.TemporaryDirectory(prefix="loadgen-") as out:
        log = lg.LogOutputSettings()
        log.outdir, log.copy_summary_to_stdout = out, False
        log_settings = lg.LogSettings()
        log_settings.log_output = log
        t0 = time.perf_counter()
        lg.StartTestWithLogSettings(sut, qsl, settings, log_settings)
        seconds = time.perf_counter() - t0
        summary = Path(out, "mlperf_log_summary.txt").read_text()
        detail = Path(out, "mlperf_log_detail.txt").read_text()
    if worker is not None:
        work.put(None)
        worker.join()
    lg.DestroyQSL(qsl)
    lg.DestroySUT(sut)

    def number(label: str) -> float:
        found = re.search(rf"{re.escape(label)}\s*:\s*([0-9.eE+-]+)", summary)
        return float(found.group(1)) if found else float("nan")

    found_peak = re.search(r"Found peak performance field: ([0-9.]+)", detail)
    return LoadGenRun(number("target_qps"), number("Completed samples per second"), number("Mean latency (ns)") / 1e6,
                      number("99.00 percentile latency (ns)") / 1e6, "Result is : VALID" in summary,
                      float(found_peak.group(1)) if found_peak else None, seconds)


# ---- the items --------------------------------------------------------------------------------


def pct(value: float, truth: float) -> str:
    return f"{(value / truth - 1) * 100:+.2f}%"


def fixed_rate(label: str, rate: float, servers: int, duration: float, use_loadgen: bool, workdir: str) -> None:
    (row,) = neuronperf_rows(label, model="busy", rates=[rate], duration=duration, n_models=servers, workdir=workdir)
    same = queueing.window_arrivals(rate, duration, seed=0)
    long = queueing.poisson_arrivals(rate, 1_000_000, seed=1)
    truths = {}
    for name, t in (("same schedule", same), ("10^6 arrivals", long)):
        starts = queueing.md1_starts(t, SERVICE_S) if servers == 1 else queueing.fifo_starts(t, SERVICE_S, servers)
        lat = queueing.latencies(t, starts, SERVICE_S) * 1e3
        truths[name] = (float(lat.mean()), queueing.percentile(lat, 99))
    print(f"\n{label}: {rate:g} requests/s, {servers} copy x 1 thread, 2 ms busy-wait, {duration:g} s window "
          f"({'M/D/1' if servers == 1 else f'M/D/{servers}'})")
    print(f"  neuronperf: mean {row['latency_ms_avg']:.4f} ms, p99 {row['latency_ms_p99']:.4f} ms "
          f"(rate_achieved {row['rate_achieved']:.1f}, service p50 {row['service_ms_p50']:.4f} ms, p99 "
          f"{row['service_ms_p99']:.4f} ms, generator_lag_ms_p99 {row['generator_lag_ms_p99']:.4f}, valid {row['valid']})")
    for name, (mean, p99) in truths.items():
        print(f"  truth, {name}: mean {mean:.4f} ms, p99 {p99:.4f} ms; neuronperf mean {pct(row['latency_ms_avg'], mean)}, "
              f"p99 {pct(row['latency_ms_p99'], p99)}")
    mean, p99 = replay(Path(workdir) / label / "out", servers)
    print(f"  diagnosis, the same queue replayed with the calls' measured times (what the machine gave the model): "
          f"mean {mean:.4f} ms, p99 {p99:.4f} ms; neuronperf mean {pct(row['latency_ms_avg'], mean)}, "
          f"p99 {pct(row['latency_ms_p99'], p99)}")
    if use_loadgen and servers == 1:
        lg = loadgen(rate, duration, SERVICE_S)
        mean, p99 = truths["10^6 arrivals"]
        print(f"  LoadGen (its own schedule): mean {lg.mean_ms:.4f} ms ({pct(lg.mean_ms, mean)} against 10^6), "
              f"p99 {lg.p99_ms:.4f} ms ({pct(lg.p99_ms, p99)}), completed {lg.completed_qps:.1f}/s")


def replay(out: Path, servers: int) -> tuple[float, float]:
    """Mean and p99 latency (ms) of the exact FIFO queue fed the run's own arrivals and, as each
    request's service time, its call's measured duration: what a harness that adds nothing
    would report on the calls this machine actually ran. The gap to it is the harness's; the
    gap between it and the constant-time truth is the machine's (a call preempted, a core shared)."""
    from neuronperf.results.samples import load_repeats
    from neuronperf.stats.serving import call_records, request_times

    (folder,) = (out / "samples").iterdir()
    (m,) = load_repeats(str(folder))
    assert m.serving is not None
    times = request_times(call_records(m), m.serving)
    arrivals = (times.arrival_ns - m.serving.start_ns) / 1e9
    services = (times.end_ns - times.start_ns) / 1e9
    starts = queueing.fifo_starts(arrivals, 0.0, servers, services=services)
    lat = (starts + services - arrivals) * 1e3
    return float(lat.mean()), queueing.percentile(lat, 99)


def peak(duration: float, use_loadgen: bool, workdir: str) -> None:
    truth = queueing.md1_peak_rate(SERVICE_S, BOUND_MS / 1e3, n=1_000_000, seed=0)

    def window_p99(rate: float) -> float:  # the same windows neuronperf's probes see (seed 0)
        t = queueing.window_arrivals(rate, duration, seed=0)
        return queueing.percentile(queueing.latencies(t, queueing.md1_starts(t, SERVICE_S), SERVICE_S), 99)

    windows = queueing.peak_rate(window_p99, BOUND_MS / 1e3, 50.0, 499.0)
    t0 = time.perf_counter()
    (row,) = neuronperf_rows("peak", model="busy", rates="max", duration=duration, slo={"latency_ms_p99": BOUND_MS},
                             workdir=workdir)
    took = time.perf_counter() - t0
    found = row["max_rate_under_slo"]
    print(f"\npeak: 2 ms busy-wait, 1 copy x 1 thread, p99 <= {BOUND_MS:g} ms, {duration:g} s probes, rate_precision 0.02")
    print(f"  truth (M/D/1, 10^6 arrivals): {truth:.1f} requests/s; the same {duration:g} s windows (seed 0): {windows:.1f}")
    print(f"  neuronperf: max_rate_under_slo {found:.1f} ({pct(found, truth)} against 10^6, {pct(found, windows)} "
          f"against its windows), {row['probes']} probes, {took:.0f} s; p99 there {row['latency_ms_p99']:.3f} ms")
    if use_loadgen:
        # FindPeakPerformance must start from a rate that passes (else it stops): 200/s, 71% of the peak.
        lg = loadgen(200.0, duration, SERVICE_S, peak=True)
        if lg.peak_qps is None:
            print(f"  LoadGen FindPeakPerformance: no peak found ({lg.seconds:.0f} s)")
        else:
            print(f"  LoadGen FindPeakPerformance: {lg.peak_qps:.1f} requests/s ({pct(lg.peak_qps, truth)} against 10^6), "
                  f"about {lg.seconds / duration:.0f} windows, {lg.seconds:.0f} s")


def capacity(duration: float, use_loadgen: bool, workdir: str) -> None:
    rows = neuronperf_rows("capacity", model="noop", rates=list(LADDER), duration=duration, workdir=workdir)
    print(f"\ncapacity: a no-op model, 1 copy x 1 thread, {duration:g} s per rate; held = rate_achieved >= 99% "
          f"and p99 <= {BOUND_MS:g} ms")
    held_ours, held_lg = 0.0, 0.0
    for rate, row in zip(LADDER, rows):
        ok = row["rate_achieved"] >= 0.99 * rate and row["latency_ms_p99"] <= BOUND_MS
        held_ours = max(held_ours, rate if ok else 0.0)
        line = (f"  {rate:>7,d}/s  neuronperf: achieved {row['rate_achieved']:9.1f}, p99 {row['latency_ms_p99']:8.3f} ms, "
                f"lag p99 {row['generator_lag_ms_p99']:.4f} ms{' held' if ok else ''}")
        if use_loadgen:
            lg = loadgen(rate, duration, 0.0)
            lg_ok = lg.completed_qps >= 0.99 * rate and lg.p99_ms <= BOUND_MS
            held_lg = max(held_lg, rate if lg_ok else 0.0)
            line += f" | LoadGen: completed {lg.completed_qps:9.1f}, p99 {lg.p99_ms:8.3f} ms{' held' if lg_ok else ''}"
        print(line, flush=True)
    print(f"  highest rate held: neuronperf {held_ours:,.0f}/s" + (f", LoadGen {held_lg:,.0f}/s" if use_loadgen else ""))


def batching(duration: float, workdir: str) -> None:
    rate = 1000.0
    (batched,) = neuronperf_rows("batched", model="busy", rates=[rate], duration=duration, batch_size=4, delay_ms=1.0,
                                 workdir=workdir)
    (single,) = neuronperf_rows("unbatched", model="busy", rates=[rate], duration=duration, workdir=workdir)
    print(f"\nbatching: 2 ms per call whatever the batch, batch_size 4, max_queue_delay_ms 1, {rate:g} requests/s, "
          f"{duration:g} s")
    for name, t in (("same schedule", queueing.window_arrivals(rate, duration, seed=0)),
                    ("10^6 arrivals", queueing.poisson_arrivals(rate, 1_000_000, seed=1))):
        starts, sizes = queueing.batcher_starts(t, SERVICE_S, servers=1, batch=4, max_delay=0.001)
        lat = queueing.latencies(t, starts, SERVICE_S) * 1e3
        print(f"  truth, {name}: mean {lat.mean():.4f} ms, p99 {queueing.percentile(lat, 99):.4f} ms, fill "
              f"{sizes.mean() / 4:.3f}; neuronperf p99 {pct(batched['latency_ms_p99'], queueing.percentile(lat, 99))}")
    print(f"  neuronperf: rate_achieved {batched['rate_achieved']:.1f} ({batched['rate_achieved'] / rate:.2%}), "
          f"mean {batched['latency_ms_avg']:.4f} ms, p99 {batched['latency_ms_p99']:.4f} ms, batch_fill_avg "
          f"{batched['batch_fill_avg']:.3f}, valid {batched['valid']}")
    print(f"  without batching: rate_achieved {single['rate_achieved']:.1f}, valid {single['valid']}: {single['invalid_reason']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="md1,md2,peak,capacity,batching")
    parser.add_argument("--no-loadgen", action="store_true")
    parser.add_argument("--quick", action="store_true", help="short windows, to try the script (not for figures)")
    args = parser.parse_args()
    only = set(args.only.split(","))
    use_loadgen = not args.no_loadgen
    scale = 0.2 if args.quick else 1.0
    print(f"load average before: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="serving-accuracy-") as workdir:
        if "md1" in only:
            fixed_rate("md1", 200.0, 1, 20 * scale, use_loadgen, workdir)
        if "md2" in only:
            fixed_rate("md2", 600.0, 2, 20 * scale, use_loadgen, workdir)
        if "peak" in only:
            peak(30 * scale, use_loadgen, workdir)
        if "capacity" in only:
            capacity(max(1.0, 3 * scale), use_loadgen, workdir)
        if "batching" in only:
            batching(10 * scale, workdir)
    print(f"\nload average after: {', '.join(f'{v:.2f}' for v in os.getloadavg())}; {time.perf_counter() - started:.0f} s")
    np.set_printoptions()


if __name__ == "__main__":
    main()
