"""Does ``neuronperf compare`` cry wolf? A/A pairs on a loaded machine, and planted changes.

Run from the repository root: ``python benchmarks/compare_false_alarms.py`` (about 5 minutes;
``--pairs N``, ``--duration S``). Every run is a real ``neuronperf run`` (a subprocess, fresh
worker processes per repeat) of a one-entry spec: a CPU-bound torch model (a chain of 256x256
matmuls with tanh, batch 8, one torch thread, one copy, one measuring thread, eager), with
``repeat: 3`` and ``duration`` 1 s per repeat. Then ``compare`` (its Python API, the same code
as the command) judges pairs of runs:

1. **A/A**: ``pairs + 1`` runs of the same model, every second one while another process keeps a
   core busy (a Python busy loop, from before the run starts until it ends); run i against run
   i + 1, so each pair has exactly one loaded side. Goal: no ``REGRESSED`` or ``IMPROVED``.
2. **Planted slowdown**: ``pairs`` runs of the model with 10 matmuls instead of 8 (about 20%
   less throughput), each against A/A run i as the baseline. Goal: ``REGRESSED`` in every pair.
3. **Planted tail**: 3 runs in which 5% of the calls (drawn at random in the model) do 1.6 times
   the work, so p99 rises by about half and p50 not at all, each against an unloaded A/A run.
   Goal: ``REGRESSED``, on p99.

Beside the verdicts it prints, from the same raw samples, what the compare did before issue 27
(Welch's test on slices of one run, 1 s or a tenth of the window, p < 0.01 and beyond 5%, on the
first repeat of each side, as a ``repeat: 1`` user got), and the widest single-run ratios of the
A/A pairs, which is what the gross bound for single runs (2x) must stay clear of.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

import numpy as np

HERE = os.path.abspath(__file__)


# ---- the model (imported by the workers through the spec's factory) --------------------------


def chain(steps: int = 8, tail_fraction: float = 0.0, tail_factor: float = 1.0, width: int = 256) -> Any:
    """A CPU-bound model: ``steps`` matmuls of a fixed 256x256 weight, each followed by tanh;
    a ``tail_fraction`` of calls (random) do ``steps x tail_factor`` of them instead."""
    import torch

    class Chain(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            generator = torch.Generator().manual_seed(0)
            self.weight = torch.nn.Parameter(torch.randn(width, width, generator=generator) / width**0.5,
                                             requires_grad=False)
            self.rng = random.Random()

        def forward(self, x: Any) -> Any:
            slow = tail_fraction and self.rng.random() < tail_fraction
            for _ in range(int(round(steps * tail_factor)) if slow else steps):
                x = torch.tanh(x @ self.weight)
            return x

    return Chain().eval()


# ---- runs ----------------------------------------------------------------------------------------


def busy(stop: Any) -> None:
    while not stop.is_set():
        for _ in range(20_000):
            pass


def run(folder: str, duration: float, *, loaded: bool = False, steps: int = 8, tail_fraction: float = 0.0,
        tail_factor: float = 1.0) -> str:
    """One ``neuronperf run`` of the one-entry spec; returns its output_dir."""
    os.makedirs(folder, exist_ok=True)
    spec = os.path.join(folder, "spec.yaml")
    with open(spec, "w") as f:
        f.write(f"""version: 1
name: chain
framework: torch
device_type: cpu
compiler: eager
output_dir: {folder}/out
models:
  - name: chain
    factory: "{HERE}:chain"
    kwargs: {{steps: {steps}, tail_fraction: {tail_fraction}, tail_factor: {tail_factor}}}
    inputs: [{{shape: [256]}}]
sweep: {{batch_sizes: 8}}
compile: {{compiler_args: {{num_threads: 1}}}}
benchmark: {{duration: {duration}, warmup: {{calls: 20}}, timeout: 120, repeat: 3}}
""")
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    loader: Optional[Any] = None
    if loaded:
        loader = ctx.Process(target=busy, args=(stop,), daemon=True)
        loader.start()
    try:
        done = subprocess.run([sys.executable, "-m", "neuronperf", "run", spec, "-q", "--fresh"],
                              capture_output=True, text=True)
    finally:
        if loader is not None:
            stop.set()
            loader.join(10)
    if done.returncode != 0:
        raise SystemExit(f"{folder}: neuronperf run exited {done.returncode}:\n{done.stderr}{done.stdout}")
    return os.path.join(folder, "out")


# ---- judging -------------------------------------------------------------------------------------


def first_repeats(out: str) -> Any:
    from neuronperf.answers.compare import load_side

    (side,) = load_side(out)
    return side.repeats


def per_repeat(out: str) -> dict[str, list[float]]:
    from neuronperf.stats.forward import compute_stats

    figures = [compute_stats(m, batch_size=8) for m in first_repeats(out)]
    return {"throughput": [f.throughput_avg for f in figures], "p50": [f.latency_ms_p50 for f in figures],
            "p99": [f.latency_ms_p99 for f in figures]}


def slices_verdict(old: str, new: str) -> str:
    """The compare before issue 27, on the first repeat of each side: slices of min(1 s,
    window / 10), a throughput (calls completed in the slice) and a median latency each; Welch's
    test; marked when p < 0.01 and the row's ratio is beyond 5%."""
    from neuronperf.answers.compare import welch_p
    from neuronperf.stats.forward import compute_stats

    def slices(m: Any) -> tuple[np.ndarray, np.ndarray]:
        start = np.concatenate([np.asarray(w.start_ns) for w in m.workers])
        lat = np.concatenate([np.asarray(w.latency_ns) for w in m.workers])
        done = start + lat
        lo, hi = m.window_start_ns, m.window_end_ns
        size = int(min(1.0, (hi - lo) / 1e9 / 10) * 1e9)
        n = (hi - lo) // size
        index = (done - lo) // size
        thr = np.array([np.sum(index == i) * 8 / (size / 1e9) for i in range(n)], dtype=float)
        med = np.array([np.median(lat[index == i]) / 1e6 if np.any(index == i) else np.nan for i in range(n)])
        return thr, med

    a, b = first_repeats(old)[0], first_repeats(new)[0]
    (ta, ma), (tb, mb) = slices(a), slices(b)
    fa, fb = compute_stats(a, batch_size=8), compute_stats(b, batch_size=8)
    thr_ratio = fb.throughput_avg / fa.throughput_avg
    p50_ratio = fb.latency_ms_p50 / fa.latency_ms_p50
    p_thr, p_lat = welch_p(ta, tb), welch_p(ma, mb)
    worse = (thr_ratio < 0.95 and (p_thr or 1) < 0.01) or (p50_ratio > 1.05 and (p_lat or 1) < 0.01)
    better = (thr_ratio > 1.05 and (p_thr or 1) < 0.01) or (p50_ratio < 0.95 and (p_lat or 1) < 0.01)
    return "REGRESSED" if worse else "IMPROVED" if better else "unchanged"


def judge(old: str, new: str) -> Any:
    from neuronperf.answers.compare import compare_runs

    (change,) = compare_runs(old, new).changes
    return change


def show(label: str, loaded: str, change: Any, old_way: str) -> None:
    verdict = change.verdict.upper() if change.verdict in ("regressed", "improved") else change.verdict
    print(f"  {label:>6s} {loaded:>7s} | {change.throughput_ratio:6.3f}x {change.p50_ratio:6.3f}x {change.p99_ratio:6.3f}x |"
          f" {verdict:>9s} {change.note or '':<28s} | {old_way}", flush=True)


HEADER = f"  {'pair':>6s} {'loaded':>7s} | {'thr':>7s} {'p50':>7s} {'p99':>7s} | {'verdict':>9s} {'why':<28s} | before (slices)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10, help="A/A pairs and planted slowdowns (default 10)")
    parser.add_argument("--duration", type=float, default=1.0, help="seconds per repeat (default 1)")
    parser.add_argument("--tails", type=int, default=3, help="planted-tail pairs (default 3)")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="np-compare-") as root:
        print(f"1. A/A: {args.pairs} pairs, a busy process beside one side of each", flush=True)
        print(HEADER)
        aa = [run(f"{root}/aa{i}", args.duration, loaded=i % 2 == 1) for i in range(args.pairs + 1)]
        marks = old_marks = 0
        widest: dict[str, float] = {"throughput": 1.0, "p50": 1.0, "p99": 1.0}
        for i in range(args.pairs):
            change = judge(aa[i], aa[i + 1])
            old = slices_verdict(aa[i], aa[i + 1])
            marks += change.verdict in ("regressed", "improved")
            old_marks += old != "unchanged"
            show(f"{i}-{i + 1}", "new" if i % 2 == 0 else "old", change, old)
            a, b = per_repeat(aa[i]), per_repeat(aa[i + 1])
            for name in widest:
                for x in a[name]:
                    for y in b[name]:
                        widest[name] = max(widest[name], x / y, y / x)
        print(f"  marked: {marks} of {args.pairs} (before: {old_marks}); widest single-run ratio of the same "
              f"build: throughput {widest['throughput']:.2f}x, p50 {widest['p50']:.2f}x, p99 {widest['p99']:.2f}x")

        print(f"\n2. planted slowdown: 10 matmuls instead of 8, against A/A run i ({args.pairs} pairs)", flush=True)
        print(HEADER)
        flagged = old_flagged = 0
        for i in range(args.pairs):
            slow = run(f"{root}/slow{i}", args.duration, steps=10)
            change = judge(aa[i], slow)
            old = slices_verdict(aa[i], slow)
            flagged += change.verdict == "regressed"
            old_flagged += old == "REGRESSED"
            show(f"{i}", "old" if i % 2 == 1 else "-", change, old)
        print(f"  flagged: {flagged} of {args.pairs} (before: {old_flagged})")

        print(f"\n3. planted tail: 5% of calls do 1.6x the work ({args.tails} pairs, against unloaded A/A runs)", flush=True)
        print(HEADER)
        tails = 0
        quiet = [out for i, out in enumerate(aa) if i % 2 == 0]
        for i in range(args.tails):
            tail = run(f"{root}/tail{i}", args.duration, tail_fraction=0.05, tail_factor=1.6)
            change = judge(quiet[i % len(quiet)], tail)
            tails += change.verdict == "regressed" and "p99" in (change.note or "")
            show(f"{i}", "-", change, slices_verdict(quiet[i % len(quiet)], tail))
        print(f"  flagged on p99: {tails} of {args.tails}")
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
