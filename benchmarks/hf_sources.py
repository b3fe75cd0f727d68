"""Is an ``hf:`` model's p50 right? neuronperf against ``torch.utils.benchmark.Timer`` and
optimum-benchmark's inline launcher, on the same local checkpoint and shapes, in one run.

Run from the repository root, under the CPU lock (about 6 minutes with 3 rounds):

    flock /tmp/np-cpu.lock python benchmarks/hf_sources.py [--rounds 3] [--duration 5]

The model is a random-weight DistilBERT-sized checkpoint (``configs/make_distilbert_rand.py``,
written to a temporary folder, or ``--checkpoint DIR``), ``hf_task: text-classification``, at
sequence length 64 and 128 x batch 1 and 8, on the CPU, eager (the model's own forward, the
definition all three share: one forward pass). Each round, in an order that rotates:

- ``neuronperf``: ``neuronperf run --fresh`` of a spec with ``hf:`` and no ``inputs:`` or factory
  (one copy, one thread: the worker gives the thread every core); ``latency_ms_p50`` per entry.
- ``Timer``: a fresh ``python`` per shape (as neuronperf's worker and optimum-benchmark's load
  are fresh per shape) that loads the same folder with ``neuronperf.sources`` (the same Auto
  class, the same eval mode), makes the same tensors (``neuronperf.sources.inputs.make_arrays``,
  seed 0, the generated names and ranges) and calls ``model(**inputs)`` under
  ``torch.inference_mode`` in ``Timer.blocked_autorange(min_run_time=duration)``; its median.
- ``optimum-benchmark``: its inline launcher (``InferenceConfig(latency=True)``, 5 warm-up
  runs, ``duration``) on the same folder and shapes; ``report.forward.latency.p50``. It
  generates ``input_ids`` in ``[0, vocab_size)`` and an all-ones mask, as neuronperf does; its
  ``max_position_embeddings: 0`` input shape stops it adding ``position_ids``, which DistilBERT's
  forward does not take. optimum-benchmark 0.6 does not import beside transformers 5
  (``cannot import name 'SpecialTokensMixin'``), so run this script with the python of a venv
  holding ``transformers<5`` and optimum-benchmark (``--python``, or this interpreter when it
  imports optimum_benchmark); all three sides then run that venv's torch and transformers.

Printed: each side's p50 per shape (median over rounds), and neuronperf's difference from each.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEQ_LENS = (64, 128)
BATCH_SIZES = (1, 8)

SPEC = """\
version: 1
name: distilbert-hf
framework: torch
device_type: cpu
compiler: eager
output_dir: {output_dir}
models:
  - name: distilbert
    hf: {checkpoint}
    hf_task: text-classification
    params: {{seq_len: [{seq_lens}]}}
sweep: {{batch_sizes: [{batch_sizes}]}}
benchmark: {{duration: {duration}, warmup: 5, timeout: 600}}
"""

TIMER = """
import json, sys
import torch
from torch.utils.benchmark import Timer
from neuronperf.entries import TensorSpec
from neuronperf.sources.inputs import make_arrays
from neuronperf.sources.models import build, describe, make_source

checkpoint, duration, shapes = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3])
source = make_source("hf", checkpoint, hf_task="text-classification")
model = build(source)
tensors = describe(source, ["seq_len"]).inputs
medians = {}
for seq_len, batch in shapes:
    specs = [TensorSpec((seq_len,), t["dtype"], t["low"], t["high"]) for t in tensors]
    inputs = {t["name"]: torch.from_numpy(a) for t, a in zip(tensors, make_arrays(specs, batch, seed=0))}
    with torch.inference_mode():
        for _ in range(5):
            model(**inputs)
        m = Timer("model(**inputs)", globals={"model": model, "inputs": inputs},
                  num_threads=torch.get_num_threads()).blocked_autorange(min_run_time=duration)
    medians[f"{seq_len}x{batch}"] = m.median * 1000
print(json.dumps(medians))
"""

OPTIMUM = """
import json, logging, sys
logging.disable(logging.WARNING)
from optimum_benchmark import Benchmark, BenchmarkConfig, InferenceConfig, InlineConfig, PyTorchConfig

if __name__ == "__main__":
    checkpoint, duration, shapes = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3])
    p50 = {}
    for seq_len, batch in shapes:
        config = BenchmarkConfig(
            name="distilbert",
            launcher=InlineConfig(),
            scenario=InferenceConfig(latency=True, memory=False, duration=int(duration), warmup_runs=5,
                                     input_shapes={"batch_size": batch, "sequence_length": seq_len,
                                                   "max_position_embeddings": 0}),
            backend=PyTorchConfig(model=checkpoint, device="cpu", task="text-classification"),
        )
        p50[f"{seq_len}x{batch}"] = Benchmark.launch(config).forward.latency.p50 * 1000
    print(json.dumps(p50))
"""


def run(cmd: list[str], **kw: object) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return str(done.stdout)


def last_json(text: str) -> dict:
    return dict(json.loads(text.strip().splitlines()[-1]))


def neuronperf_p50s(python: str, spec_path: Path) -> dict[str, float]:
    run([python, "-m", "neuronperf", "run", str(spec_path), "--fresh", "--quiet"], cwd=str(spec_path.parent))
    rows = json.loads((spec_path.parent / "out" / "results.json").read_text())
    bad = [r for r in rows if r["status"] != "ok"]
    if bad:
        raise SystemExit(f"neuronperf rows failed: {[(r['id'], r['error']) for r in bad]}")
    return {f"{r['seq_len']}x{r['batch_size']}": float(r["latency_ms_p50"]) for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each side once per round, order rotating")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per shape and side")
    parser.add_argument("--checkpoint", help="a checkpoint folder (default: made by configs/make_distilbert_rand.py)")
    parser.add_argument("--python", default=sys.executable,
                        help="the interpreter of every side (a venv with transformers<5 and optimum-benchmark)")
    args = parser.parse_args()
    shapes = [(s, b) for s in SEQ_LENS for b in BATCH_SIZES]
    has_optimum = subprocess.run([args.python, "-c", "import optimum_benchmark"], capture_output=True).returncode == 0
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env.update(HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    versions = run([args.python, "-c", "import torch, transformers; print(torch.__version__, transformers.__version__)"], env=env)
    print(f"python {args.python}: torch {versions.split()[0]}, transformers {versions.split()[1]}; "
          f"optimum-benchmark {'present' if has_optimum else 'NOT importable: skipped'}")

    with tempfile.TemporaryDirectory(prefix="neuronperf-hf-") as tmp:
        folder = Path(tmp)
        checkpoint = os.path.abspath(args.checkpoint) if args.checkpoint else str(folder / "distilbert-rand")
        if not args.checkpoint:
            run([args.python, str(ROOT / "configs" / "make_distilbert_rand.py"), "--out", checkpoint], env=env)
        spec_path = folder / "spec.yaml"
        spec_path.write_text(SPEC.format(output_dir=folder / "out", checkpoint=checkpoint, duration=args.duration,
                                         seq_lens=", ".join(map(str, SEQ_LENS)), batch_sizes=", ".join(map(str, BATCH_SIZES))))
        sides = {
            "neuronperf": lambda: neuronperf_p50s(args.python, spec_path),
            "Timer": lambda: {k: v for shape in shapes for k, v in last_json(
                run([args.python, "-c", TIMER, checkpoint, str(args.duration), json.dumps([shape])], env=env)).items()},
        }
        if has_optimum:
            sides["optimum-benchmark"] = lambda: last_json(run(
                [args.python, "-c", OPTIMUM, checkpoint, str(args.duration), json.dumps(shapes)], env=env, cwd=tmp))
        names = list(sides)
        results: dict[str, dict[str, list[float]]] = {n: {f"{s}x{b}": [] for s, b in shapes} for n in names}
        for round_index in range(args.rounds):
            order = names[round_index % len(names):] + names[:round_index % len(names)]
            for name in order:
                for shape, p50 in sides[name]().items():
                    results[name][shape].append(p50)
            print(f"round {round_index + 1}: " + "; ".join(
                f"{n} " + " ".join(f"{results[n][k][-1]:.2f}" for k in results[n]) for n in names), flush=True)

    print(textwrap.dedent(f"""
        DistilBERT-sized, text-classification, eager, CPU; p50 in ms, medians of {args.rounds} rounds of {args.duration:g} s"""))
    header = f"{'seq x batch':>12s}" + "".join(f"{n:>20s}" for n in names) + "".join(f"{'vs ' + n:>22s}" for n in names[1:])
    print(header)
    for s, b in shapes:
        key = f"{s}x{b}"
        medians = {n: statistics.median(results[n][key]) for n in names}
        line = f"{key:>12s}" + "".join(f"{medians[n]:20.2f}" for n in names)
        line += "".join(f"{100 * (medians['neuronperf'] / medians[n] - 1):+21.1f}%" for n in names[1:])
        print(line)


if __name__ == "__main__":
    main()
