"""Start-up cost: the wall time of a one-entry BERT job, neuronperf against a bare script (and
optimum-benchmark when it is installed), and the overhead of each extra entry of a sweep.

Run from the repository root: ``python benchmarks/startup.py [--duration 10]`` (about 2 minutes).
The model is a random-weight BERT-base built from its config (transformers, no hub), batch 1,
sequence 128, on the CPU, measured for ``--duration`` seconds after 5 warm-up calls.

1. One entry, side by side in one run (alternating, ``--repeat`` times, medians):
   - ``bare``: a fresh ``python`` that imports torch and transformers, builds the model, warms
     up and times calls for the same seconds in a bare loop; no isolation at all.
   - ``neuronperf``: ``neuronperf run`` of a one-entry spec (eager, a ``file.py:Bert`` factory,
     the copy in its own worker process), ``--fresh``.
   - ``optimum-benchmark`` (only with ``--optimum-python PY``, the interpreter of a venv where
     optimum-benchmark and ``transformers<5`` are installed): its inline launcher (no isolation)
     on the same model saved to a local folder.
   - ``neuronperf (other)`` (only with ``--compare-to CHECKOUT``): the same run from another
     checkout, e.g. a worktree of the commit before a change, for before/after in one run.
   Printed: wall, p50, and the ratio of neuronperf's wall to the others'.
2. A sweep of 6 entries of that model (batch sizes 1..6, ``--sweep-duration`` seconds each):
   overhead per extra entry = (wall of 6 entries - wall of 1 entry - 5 x (window + warm-up +
   load)) / 5, i.e. what an entry costs beyond its model's construction (``load_avg_ms``), its
   warm-up and its measured window.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

MODEL = '''
import torch
from transformers import BertConfig, BertModel


class Bert(torch.nn.Module):
    """BERT-base with random weights, returning the last hidden state."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.model = BertModel(BertConfig())

    def forward(self, input_ids):
        return self.model(input_ids=input_ids).last_hidden_state
'''

BARE = '''
import sys, time
start = time.perf_counter()
import torch
sys.path.insert(0, sys.argv[1])
from bert_model import Bert
duration = float(sys.argv[2])
torch.set_num_threads(torch.get_num_threads())
model = Bert().eval()
x = torch.randint(0, 30000, (1, 128))
with torch.inference_mode():
    for _ in range(5):
        model(x)
    lat = []
    perf = time.perf_counter_ns
    until = perf() + int(duration * 1e9)
    while perf() < until:
        t0 = perf()
        model(x)
        lat.append(perf() - t0)
lat.sort()
print(lat[len(lat) // 2] / 1e6)
'''

OPTIMUM = '''
import sys
from optimum_benchmark import Benchmark, BenchmarkConfig, InferenceConfig, InlineConfig, PyTorchConfig

if __name__ == "__main__":
    config = BenchmarkConfig(
        name="bert",
        launcher=InlineConfig(),
        scenario=InferenceConfig(latency=True, memory=False, duration=int(float(sys.argv[2])), warmup_runs=5,
                                 input_shapes={"batch_size": 1, "sequence_length": 128}),
        backend=PyTorchConfig(model=sys.argv[1], device="cpu", task="feature-extraction"),
    )
    report = Benchmark.launch(config)
    print(report.forward.latency.p50 * 1000)
'''


def spec(folder: Path, duration: float, batch_sizes: str, name: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""
        version: 1
        name: {name}
        framework: torch
        device_type: cpu
        compiler: eager
        output_dir: {folder / name}
        models:
          - name: bert
            factory: "bert_model.py:Bert"
            inputs: [{{shape: [128], dtype: int64, low: 0, high: 30000}}]
        sweep: {{batch_sizes: {batch_sizes}}}
        benchmark: {{duration: {duration}, warmup: 5, timeout: 600}}
    """))
    return path


def timed(cmd: list[str], **kw: object) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wall, done.stdout


def neuronperf_run(spec_path: Path, checkout: str = "") -> tuple[float, list[dict]]:
    """``neuronperf run --fresh`` of ``spec_path``, from this checkout or another one."""
    env = dict(os.environ, PYTHONPATH=checkout) if checkout else None
    # Run from the spec's folder: `python -m` puts the working directory first on sys.path, and a
    # checkout there would shadow the one asked for.
    wall, _ = timed([sys.executable, "-m", "neuronperf", "run", str(spec_path), "--fresh", "--quiet"], env=env,
                    cwd=str(spec_path.parent))
    rows = json.loads((spec_path.parent / spec_path.stem / "results.json").read_text())
    return wall, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds of the one-entry job")
    parser.add_argument("--sweep-duration", type=float, default=2.0, help="measured seconds per sweep entry")
    parser.add_argument("--repeat", type=int, default=2, help="alternating runs of the one-entry job")
    parser.add_argument("--optimum-python", help="python of a venv with optimum-benchmark (transformers<5)")
    parser.add_argument("--compare-to", metavar="CHECKOUT",
                        help="also time neuronperf from another checkout (e.g. a worktree of an older commit)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="neuronperf-startup-") as tmp:
        folder = Path(tmp)
        (folder / "bert_model.py").write_text(MODEL)
        one = spec(folder, args.duration, "[1]", "one")
        walls: dict[str, list[float]] = {"bare": [], "neuronperf": [], "neuronperf (other)": [], "optimum-benchmark": []}
        p50s: dict[str, list[float]] = {k: [] for k in walls}
        saved = None
        if args.optimum_python:
            saved = folder / "bert-saved"
            subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(folder)!r}); "
                            f"from bert_model import Bert; Bert().model.save_pretrained({str(saved)!r})"], check=True)
        for _ in range(args.repeat):
            wall, out = timed([sys.executable, "-c", BARE, str(folder), str(args.duration)])
            walls["bare"].append(wall)
            p50s["bare"].append(float(out.strip().splitlines()[-1]))
            wall, rows = neuronperf_run(one)
            walls["neuronperf"].append(wall)
            p50s["neuronperf"].append(rows[0]["latency_ms_p50"])
            load_ms = rows[0]["load_avg_ms"]
            if args.compare_to:
                wall, rows = neuronperf_run(one, os.path.abspath(args.compare_to))
                walls["neuronperf (other)"].append(wall)
                p50s["neuronperf (other)"].append(rows[0]["latency_ms_p50"])
            if saved is not None:
                wall, out = timed([args.optimum_python, "-c", OPTIMUM, str(saved), str(args.duration)])
                walls["optimum-benchmark"].append(wall)
                p50s["optimum-benchmark"].append(float(out.strip().splitlines()[-1]))
        print(f"\n1. one BERT-base entry, batch 1, sequence 128, {args.duration:g} s measured (medians of {args.repeat})")
        print(f"  {'tool':<20s} {'wall':>8s} {'p50':>10s} {'neuronperf / tool':>18s}")
        np_wall = statistics.median(walls["neuronperf"])
        for tool, values in walls.items():
            if values:
                w, p = statistics.median(values), statistics.median(p50s[tool])
                print(f"  {tool:<20s} {w:7.1f}s {p:8.1f}ms {np_wall / w:17.2f}x")
        print(f"  (neuronperf load_avg_ms, the model's construction in the worker: {load_ms:.0f} ms)")

        six = spec(folder, args.sweep_duration, "[1, 2, 3, 4, 5, 6]", "six")
        single = spec(folder, args.sweep_duration, "[1]", "single")
        wall1, rows1 = neuronperf_run(single)
        wall6, rows6 = neuronperf_run(six)

        def inside(row: dict) -> float:
            return row["total_s"] + 5 * row["warmup_avg_ms"] / 1000 + row["load_avg_ms"] / 1000

        extra = (wall6 - wall1 - sum(inside(r) for r in rows6[1:])) / 5
        loads = ", ".join(f"{r['load_avg_ms']:.0f}" for r in rows6)
        print(f"\n2. a sweep of 6 entries, {args.sweep_duration:g} s each: wall {wall6:.1f} s, one entry {wall1:.1f} s")
        print(f"  overhead per extra entry beyond window + warm-up + construction: {extra:.2f} s")
        print(f"  load_avg_ms of the entries (construction): {loads}")


if __name__ == "__main__":
    os.environ.pop("OMP_NUM_THREADS", None)
    main()
