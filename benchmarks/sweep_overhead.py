"""The fixed cost the sweep runner adds around the measured windows of ``neuronperf run``.

Run from the repository root: ``python benchmarks/sweep_overhead.py [--entries 8] [--duration 0.5]``.

Writes a spec (in a temporary folder) with N run entries of a tiny eager MLP and a short
``benchmark.duration`` D, runs ``python -m neuronperf run`` as a subprocess and compares its wall
time with the sum of the measured windows (``total_s`` in results.csv): the overhead per entry and
the ratio wall / measured. The progress lines the run prints are time-stamped as they arrive, to
split the overhead into start-up (interpreter, spec, plan, compile stage: until the first entry
starts), the first entry (which also starts the forkserver), each later entry (worker start,
load, warm-up, collecting samples, journal and results files) and the tail (from the last entry
to the process's exit); "pipe EOF later" is how much longer a reader of its output (``| tee``, a
CI log) waits, because the forkserver holds the inherited pipe until it exits too. Wall time is
measured to the process's exit.
Then the same command again (a resume with nothing to do), ``neuronperf plan`` on the spec, and
``neuronperf --version`` (interpreter start-up and the CLI's imports, the floor of any command).

Workers start from the default start method (the forkserver): ``neuronperf run`` has no option
to choose another, so spawn is not compared here; ``benchmarks/harness_overhead.py`` compares the
two for one entry.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

SPEC = """\
version: 1
name: sweep-overhead
framework: torch
device_type: cpu
compiler: {compiler}
output_dir: {output_dir}
models:
  - name: tiny
    factory: "neuronperf.zoo:mlp"
    kwargs: {{in_features: 16, hidden: 16, out_features: 4, layers: 1}}
    inputs:
      - {{shape: [16], dtype: float32}}
sweep:
  batch_sizes: {batch_sizes}
  n_models: {copies}
  workers_per_model: 1
compile:
  jobs: 1
benchmark:
  duration: {duration}
  warmup: {{calls: 10}}
  timeout: 120
"""

STARTED = re.compile(r"^\s*\[(\d+)/(\d+)\] (\S+) \.\.\.$")
FINISHED = re.compile(r"^\s*(\S+): ")


@dataclass
class SweepRun:
    wall_s: float
    measured_s: list[float]  # total_s of each entry, in plan order
    first_start_s: float  # from launch to the first entry's progress line
    entry_s: list[float] = field(default_factory=list)  # from one entry's end line to the next's
    tail_s: float = 0.0  # from the last entry's end line to the process's exit
    eof_after_exit_s: float = 0.0  # until the last holder of its output pipe (the forkserver) closed it
    exit_code: int = 0

    @property
    def overhead_s(self) -> float:
        return self.wall_s - sum(self.measured_s)


def write_spec(folder: str, entries: int, copies: int, duration: float, compiler: str) -> str:
    path = os.path.join(folder, "sweep.yaml")
    with open(path, "w") as f:
        f.write(SPEC.format(
            compiler=compiler, output_dir=os.path.join(folder, "out"), batch_sizes=list(range(1, entries + 1)),
            copies=copies, duration=duration,
        ))
    return path


def neuronperf(*args: str) -> list[str]:
    return [sys.executable, "-m", "neuronperf", *args]


def timed(command: list[str], ok_codes: tuple = (0,)) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode not in ok_codes:
        raise SystemExit(f"{' '.join(command[2:])} exited with {done.returncode}:\n{done.stdout}{done.stderr}")
    return elapsed


def run_sweep(spec: str) -> SweepRun:
    """``neuronperf run SPEC``, its progress lines time-stamped on arrival."""
    started = time.perf_counter()
    process = subprocess.Popen(neuronperf("run", spec), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    # The process exits before its output pipe closes: the forkserver inherited it and leaves
    # only when it notices that its parent is gone. Stamp both moments.
    exited: list[float] = []

    def wait_for_exit() -> None:
        process.wait()
        exited.append(time.perf_counter() - started)

    waiter = threading.Thread(target=wait_for_exit)
    waiter.start()
    ids: set[str] = set()
    first_start = None
    ends: list[float] = []
    output: list[str] = []
    for line in process.stdout:
        now = time.perf_counter() - started
        output.append(line)
        start = STARTED.match(line)
        if start:
            ids.add(start.group(3))
            first_start = now if first_start is None else first_start
            continue
        finish = FINISHED.match(line)
        if finish and finish.group(1) in ids:
            ends.append(now)
    eof = time.perf_counter() - started
    waiter.join()
    code = process.returncode
    wall = exited[0]
    with open(os.path.join(os.path.dirname(spec), "out", "results.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    if first_start is None or any(row["status"] != "ok" for row in rows):
        raise SystemExit(f"neuronperf run exited with {code}:\n{''.join(output)}")
    measured = [float(row["total_s"]) for row in rows]
    edges = [first_start, *ends]
    return SweepRun(
        wall_s=wall, measured_s=measured, first_start_s=first_start,
        entry_s=[b - a for a, b in zip(edges, edges[1:])], tail_s=wall - ends[-1], eof_after_exit_s=max(0.0, eof - wall),
        exit_code=code,
    )


def one_round(args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="sweep-overhead-") as folder:
        spec = write_spec(folder, args.entries, args.copies, args.duration, args.compiler)
        sweep = run_sweep(spec)
        if sweep.exit_code != 0:  # the timings stand, but design.md wants 0 when every entry is ok
            print(f"  note: `neuronperf run` exited with {sweep.exit_code} although every entry is ok")
        resume = timed(neuronperf("run", spec), ok_codes=(0, sweep.exit_code))
        plan = timed(neuronperf("plan", spec))
    version = timed(neuronperf("--version"))
    n = len(sweep.measured_s)
    later = [e - m for e, m in zip(sweep.entry_s[1:], sweep.measured_s[1:])]
    return {
        "wall": sweep.wall_s,
        "measured": sum(sweep.measured_s),
        "overhead/entry": sweep.overhead_s / n,
        "wall/measured": sweep.wall_s / sum(sweep.measured_s),
        "start-up": sweep.first_start_s,
        "1st entry - D": sweep.entry_s[0] - sweep.measured_s[0],
        "later entry - D": statistics.median(later) if later else float("nan"),
        "tail": sweep.tail_s,
        "pipe EOF later": sweep.eof_after_exit_s,
        "resume": resume,
        "plan": plan,
        "--version": version,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=8, help="run entries in the spec (default 8)")
    parser.add_argument("--duration", type=float, default=0.5, help="benchmark.duration D in seconds (default 0.5)")
    parser.add_argument("--copies", type=int, default=1, help="n_models of every entry (default 1)")
    parser.add_argument("--compiler", choices=("eager", "torchscript"), default="eager",
                        help="compiler of the tiny model (default eager: no compile work)")
    parser.add_argument("--repeat", type=int, default=2, help="rounds; each is printed, then the median (default 2)")
    args = parser.parse_args()

    print(f"{args.entries} entries x {args.copies} copies of a tiny {args.compiler} MLP, duration {args.duration:g} s, "
          "workers from the default start method (forkserver; not selectable in `neuronperf run`)")
    rounds = [one_round(args) for _ in range(args.repeat)]
    labels = [f"round {i + 1}" for i in range(len(rounds))] + (["median"] if len(rounds) > 1 else [])
    print(f"\n  {'seconds':16s}" + "".join(f"{label:>10s}" for label in labels))
    for key in rounds[0]:
        values = [r[key] for r in rounds]
        if len(rounds) > 1:
            values.append(statistics.median(values))
        unit = "x" if key == "wall/measured" else ""
        print(f"  {key:16s}" + "".join(f"{v:9.3f}{unit or ' '}" for v in values))


if __name__ == "__main__":
    main()
