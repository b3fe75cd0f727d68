"""Does ``neuronperf compare`` cry wolf? A/A pairs on a loaded machine, and planted changes.

Run from the repository root: ``python benchmarks/compare_false_alarms.py`` (about 2 minutes on
our 2-core machine; ``--pairs N``, ``--duration S``). Every run is a real ``neuronperf run`` (a
subprocess, fresh worker processes per repeat) of a one-entry spec: a CPU-bound torch model (a
chain of 8 512x512 matmuls with tanh, batch 32, about 0.7 ms per call on one torch thread; one
copy, one measuring thread, eager), with ``repeat: 3`` and ``duration`` 1 s per repeat. Then ``compare`` (its Python API, the same code
as the command) judges pairs of runs:

1. **A/A**: ``pairs + 1`` runs of the same model, every second one while another process keeps a
   core busy (a Python busy loop, from before the run starts until it ends); run i against run
   i + 1, so each pair has exactly one loaded side; and the unloaded runs against each other.
   Goal: no ``REGRESSED`` or ``IMPROVED``. Then (``--crowded N``, default 4) ``N + 1`` runs on
   a full machine: a busy loop beside every run, and a second one beside every other run (on 2
   cores, three runnable threads: the model gets about two thirds of a core, the loops about 1.3
   cores together), so both sides of each pair are crowded and their other load differs by about
   a third of a core, under the half-core difference rule: what a disturbed run let through
   (0.96 against 1.41 cores). Goal: none marked.
2. **Planted slowdown**: ``pairs`` runs of the model with 10 matmuls instead of 8 (about 20%
   less throughput), each against an unloaded A/A run. Goal: ``REGRESSED`` in every pair.
3. **Planted tail**: ``tails`` runs in which 5% of the calls (drawn at random in the model) do
   1.75 times the work, so p99 rises by about half and p50 not at all, each against an unloaded
   A/A run. Goal: ``REGRESSED``, on p99.

Beside each verdict it prints each side's ``other_cpu_cores`` (the busy loop is one core: the
truth for that figure) and its least ``idle_cpu_cores`` over the repeats, what Welch's test between the repeats says on its own ("test alone":
the verdict the compare would give without its rule that runs beside different loads are not
judged), and, from the same raw samples, what the compare did before issue 27 (Welch's test on
slices of one run, 1 s or a tenth of the window, p < 0.01 and beyond 5%, on the first repeat of
each side, as a ``repeat: 1`` user got). It ends each part with the widest single-run ratios of
the same build, which the gross bound for single runs (2x) must stay clear of.
"""

from __future__ import annotations

import argparse
import contextlib
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
BATCH = 32


# ---- the model (imported by the workers through the spec's factory) --------------------------


def chain(steps: int = 8, tail_fraction: float = 0.0, tail_factor: float = 1.0, width: int = 512) -> Any:
    """A CPU-bound model: ``steps`` matmuls of a fixed ``width x width`` weight, each followed by tanh;
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


def busy(stop: Any, duty: float = 1.0) -> None:
    """Keep a core busy (``duty`` 1), or busy for ``duty`` of every 20 ms and asleep for the rest."""
    while not stop.is_set():
        if duty >= 1.0:
            for _ in range(20_000):
                pass
            continue
        until = time.perf_counter() + 0.02 * duty
        while time.perf_counter() < until:
            pass
        time.sleep(0.02 * (1.0 - duty))


def run(folder: str, duration: float, *, loaded: bool = False, steps: int = 8, tail_fraction: float = 0.0,
        tail_factor: float = 1.0, duties: tuple[float, ...] = ()) -> str:
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
    inputs: [{{shape: [512]}}]
sweep: {{batch_sizes: {BATCH}}}
compile: {{compiler_args: {{num_threads: 1}}}}
benchmark: {{duration: {duration}, warmup: {{calls: 20}}, timeout: 120, repeat: 3}}
""")
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    loaders = [ctx.Process(target=busy, args=(stop, duty), daemon=True) for duty in ((1.0,) if loaded else duties)]
    for loader in loaders:
        loader.start()
    try:
        done = subprocess.run([sys.executable, "-m", "neuronperf", "run", spec, "-q", "--fresh"],
                              capture_output=True, text=True)
    finally:
        stop.set()
        for loader in loaders:
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

    figures = [compute_stats(m, batch_size=BATCH) for m in first_repeats(out)]
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
        thr = np.array([np.sum(index == i) * BATCH / (size / 1e9) for i in range(n)], dtype=float)
        med = np.array([np.median(lat[index == i]) / 1e6 if np.any(index == i) else np.nan for i in range(n)])
        return thr, med

    a, b = first_repeats(old)[0], first_repeats(new)[0]
    (ta, ma), (tb, mb) = slices(a), slices(b)
    fa, fb = compute_stats(a, batch_size=BATCH), compute_stats(b, batch_size=BATCH)
    thr_ratio = fb.throughput_avg / fa.throughput_avg
    p50_ratio = fb.latency_ms_p50 / fa.latency_ms_p50
    p_thr, p_lat = welch_p(ta, tb), welch_p(ma, mb)
    worse = (thr_ratio < 0.95 and (p_thr or 1) < 0.01) or (p50_ratio > 1.05 and (p_lat or 1) < 0.01)
    better = (thr_ratio > 1.05 and (p_thr or 1) < 0.01) or (p50_ratio < 0.95 and (p_lat or 1) < 0.01)
    return "REGRESSED" if worse else "IMPROVED" if better else "unchanged"


def judge(old: str, new: str) -> tuple[Any, Any, Any]:
    """The compare's verdict, the verdict of its test between repeats alone (the sides' loads
    made equal), and the verdict by the difference rule alone (idle_cpu_cores left out: the
    load rule before the crowded rule)."""
    import dataclasses

    from neuronperf.answers import compare

    (change,) = compare.compare_runs(old, new).changes
    sides = [compare.load_side(p)[0] for p in (old, new)]

    def with_loads(other: Optional[float]) -> list[Any]:
        return [dataclasses.replace(s, repeats=tuple(
            dataclasses.replace(m, idle_cpu_cores=None, other_cpu_cores=m.other_cpu_cores if other is None else other)
            for m in s.repeats)) for s in sides]

    alone = compare.compare_entry(*with_loads(0.0))
    difference_only = compare.compare_entry(*with_loads(None))
    return change, alone, difference_only


def loads(change: Any) -> str:
    """Each side's mean other_cpu_cores, and its least idle_cpu_cores over the repeats."""
    def other(side: Any) -> float:
        return float(np.mean([m.other_cpu_cores or 0.0 for m in side.repeats]))

    def idle(side: Any) -> str:
        values = [m.idle_cpu_cores for m in side.repeats if m.idle_cpu_cores is not None]
        return f"{min(values):.2f}" if values else "-"

    return f"{other(change.old):.2f}/{other(change.new):.2f} {idle(change.old):>4s}/{idle(change.new):<4s}"


VERBOSE = False


def verdict_of(change: Any) -> str:
    return change.verdict.upper() if change.verdict in ("regressed", "improved") else change.verdict


def show(label: str, change: Any, alone: Any, old_way: str) -> None:
    print(f"  {label:>6s} {loads(change):>19s} | {change.throughput_ratio:6.3f}x {change.p50_ratio:6.3f}x"
          f" {change.p99_ratio:6.3f}x | {verdict_of(change):>9s} {change.method:7s} | {verdict_of(alone):>9s}"
          f" {alone.note if alone.verdict != 'unchanged' else '':<34s} | {old_way}", flush=True)
    if VERBOSE:
        p = "/".join("-" if v is None else f"{v:.2g}" for v in (alone.throughput_p, alone.p50_p, alone.p99_p))
        for name, side in (("old", change.old), ("new", change.new)):
            figures = [compute(m) for m in side.repeats]
            print(f"           {name}: thr " + " ".join(f"{f.throughput_avg:8.0f}" for f in figures)
                  + " | p50 " + " ".join(f"{f.latency_ms_p50:.3f}" for f in figures)
                  + " | p99 " + " ".join(f"{f.latency_ms_p99:.3f}" for f in figures)
                  + (f"   test alone p(Holm) {p}" if name == "new" else ""))


def compute(m: Any) -> Any:
    from neuronperf.stats.forward import compute_stats

    return compute_stats(m, batch_size=BATCH)


HEADER = (f"  {'pair':>6s} {'other cpu / idle':>19s} | {'thr':>7s} {'p50':>7s} {'p99':>7s} | {'verdict':>9s} {'method':7s} |"
          f" {'test alone':>9s} {'':<34s} | before (slices)")


def widest(pairs: list[tuple[str, str]]) -> str:
    """The widest ratio between single runs (any repeat of one side against any of the other)."""
    out = {"throughput": 1.0, "p50": 1.0, "p99": 1.0}
    for old, new in pairs:
        a, b = per_repeat(old), per_repeat(new)
        for name in out:
            for x in a[name]:
                for y in b[name]:
                    out[name] = max(out[name], x / y, y / x)
    return f"throughput {out['throughput']:.2f}x, p50 {out['p50']:.2f}x, p99 {out['p99']:.2f}x"


def part(title: str, pairs: list[tuple[str, str]], labels: list[str]) -> dict[str, int]:
    print(title, flush=True)
    print(HEADER)
    counts = {"marked": 0, "alone": 0, "before": 0, "regressed": 0, "p99": 0, "difference": 0}
    for label, (old, new) in zip(labels, pairs):
        change, alone, difference_only = judge(old, new)
        counts["difference"] += difference_only.verdict in ("regressed", "improved")
        before = slices_verdict(old, new)
        show(label, change, alone, before)
        counts["marked"] += change.verdict in ("regressed", "improved")
        counts["regressed"] += change.verdict == "regressed"
        counts["p99"] += change.verdict == "regressed" and "p99" in (change.note or "")
        counts["alone"] += alone.verdict in ("regressed", "improved")
        counts["before"] += before != "unchanged"
    print(f"  widest single-run ratio: {widest(pairs)}")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10, help="A/A pairs and planted slowdowns (default 10)")
    parser.add_argument("--duration", type=float, default=1.0, help="seconds per repeat (default 1)")
    parser.add_argument("--tails", type=int, default=3, help="planted-tail pairs (default 3)")
    parser.add_argument("--crowded", type=int, default=4,
                        help="A/A pairs with both sides on a full machine (default 4; 0 skips them)")
    parser.add_argument("--verbose", action="store_true", help="print each repeat's figures and the p-values")
    parser.add_argument("--keep", metavar="DIR", help="make the runs in DIR and keep them (default: a temporary folder)")
    args = parser.parse_args()
    global VERBOSE
    VERBOSE = args.verbose
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        root = os.path.abspath(args.keep) if args.keep else stack.enter_context(tempfile.TemporaryDirectory(prefix="np-compare-"))
        print(f"(runs: {args.pairs + 1} A/A, {args.pairs} slowed, {args.tails} with a tail; "
              f"{args.duration:g} s x 3 repeats each)", flush=True)
        aa = [run(f"{root}/aa{i}", args.duration, loaded=i % 2 == 1) for i in range(args.pairs + 1)]
        quiet = aa[0::2]
        c = part(f"\n1a. A/A, a busy process beside one side of each pair ({args.pairs} pairs)",
                 [(aa[i], aa[i + 1]) for i in range(args.pairs)], [f"{i}-{i + 1}" for i in range(args.pairs)])
        print(f"  marked: {c['marked']} of {args.pairs} (difference rule alone: {c['difference']}; test alone: "
              f"{c['alone']}; before: {c['before']})")
        if args.crowded:
            crowded = [run(f"{root}/crowded{i}", args.duration, duties=(1.0,) if i % 2 == 0 else (1.0, 1.0))
                       for i in range(args.crowded + 1)]
            f = part(f"\n1c. A/A, both sides on a full machine: a busy loop beside every run, a second one "
                     f"beside every other ({args.crowded} pairs)",
                     [(crowded[i], crowded[i + 1]) for i in range(args.crowded)],
                     [f"c{i}-c{i + 1}" for i in range(args.crowded)])
            print(f"  marked: {f['marked']} of {args.crowded} (difference rule alone: {f['difference']}; "
                  f"test alone: {f['alone']}; before: {f['before']})")
        q = part(f"\n1b. A/A, both sides unloaded ({len(quiet) - 1} pairs)",
                 [(quiet[i], quiet[i + 1]) for i in range(len(quiet) - 1)],
                 [f"{2 * i}-{2 * i + 2}" for i in range(len(quiet) - 1)])
        print(f"  marked: {q['marked']} of {len(quiet) - 1} (before: {q['before']})")
        slow = [run(f"{root}/slow{i}", args.duration, steps=10) for i in range(args.pairs)]
        p = part(f"\n2. planted slowdown: 10 matmuls instead of 8, against an unloaded A/A run ({args.pairs} pairs)",
                 [(quiet[i % len(quiet)], slow[i]) for i in range(args.pairs)],
                 [f"{2 * (i % len(quiet))}-s{i}" for i in range(args.pairs)])
        print(f"  REGRESSED: {p['regressed']} of {args.pairs} (before: {p['before']})")
        tails = [run(f"{root}/tail{i}", args.duration, tail_fraction=0.05, tail_factor=1.75) for i in range(args.tails)]
        t = part(f"\n3. planted tail: 5% of calls do 1.75x the work, against an unloaded A/A run ({args.tails} pairs)",
                 [(quiet[i % len(quiet)], tails[i]) for i in range(args.tails)],
                 [f"{2 * (i % len(quiet))}-t{i}" for i in range(args.tails)])
        print(f"  REGRESSED on p99: {t['p99']} of {args.tails} (before: {t['before']} marked)")
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
