"""Speedup of parallel compile jobs: the same CPU-bound compile set with ``jobs: 1`` and ``jobs: 2``.

Run: ``python benchmarks/compile_parallel.py [--entries 4] [--repeats 2]``

Each compile entry builds, traces and freezes ResNet-50 to TorchScript in its own process (the
compile stage always does). Both settings compile the same entries into fresh folders, side by
side in one run, alternating, so that a busy machine affects both alike; the script prints the
wall time of each and their ratio. The figure to quote is the ratio, not the absolute times.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from neuronperf.compilation.jobs import compile_all
from neuronperf.entries import CompileEntry, ModelRef, TensorSpec, freeze


def entries(n: int) -> list[CompileEntry]:
    # ResNet-50 at a few batch sizes: building, tracing and freezing it keeps a core busy.
    return [
        CompileEntry(
            model=ModelRef("resnet50", "neuronperf.zoo:resnet50", freeze({"num_classes": 1000})),
            params=(),
            inputs=(TensorSpec((3, 224, 224)),),
            batch_size=batch_size,
            pipeline_size=1,
            framework="torch",
            device_type="cpu",
            compiler="torchscript",
        )
        for batch_size in range(1, n + 1)
    ]


def timed_compile(jobs: int, work: list[CompileEntry]) -> float:
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        results = compile_all(work, folder, jobs=jobs)
        elapsed = time.perf_counter() - started
    failed = [r for r in results if not r.ok]
    if failed:
        raise SystemExit(f"compile failed: {failed[0].error}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=4, help="compile entries per run")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each setting")
    args = parser.parse_args()
    work = entries(args.entries)
    times: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.repeats):
        for jobs in (1, 2):
            times[jobs].append(timed_compile(jobs, work))
    one, two = statistics.median(times[1]), statistics.median(times[2])
    print(f"{args.entries} torchscript compiles, median of {args.repeats} runs each")
    print(f"  jobs: 1  {one:6.2f} s   (runs: {', '.join(f'{t:.2f}' for t in times[1])})")
    print(f"  jobs: 2  {two:6.2f} s   (runs: {', '.join(f'{t:.2f}' for t in times[2])})")
    print(f"  speedup of jobs: 2 over jobs: 1: {one / two:.2f}x")


if __name__ == "__main__":
    main()
