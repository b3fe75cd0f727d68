"""How accurate the generation figures are: neuronperf's TTFT and TPOT against a bare loop.

Run from the repository root: ``python benchmarks/generation_accuracy.py`` (about 25 s per round
and case on 2 cores, 5 rounds by default; ``--quick`` for shorter windows). For each case a GPT-2
built from its config (random weights, ``neuronperf.zoo.gpt2``) generates exactly ``new_tokens``
greedy tokens per request:

- harness: ``neuronperf run`` of a one-entry ``task: generate`` spec (the real CLI, worker
  process, token clock), its row's ``ttft_ms_p50`` and ``tpot_ms_p50``;
- truth: a bare loop in this process that needs no harness: the same model, the same generate
  arguments, the same number of torch threads (``TORCH_THREADS``, in both), timing each
  request with ``perf_counter_ns`` and a streamer of its own that stamps each token.

Harness and bare loop alternate, ``--rounds`` times each, which goes first swapping every round;
each round's harness figure is divided by the bare loop's of the same round (side by side, so the
machine's drift from round to round, 5-10% on a shared 2-core machine, cancels), and the median
of those ratios is the difference reported. Goal: both within 5%.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np

CASES = (
    # (prompt_len, new_tokens, batch_size)
    (32, 32, 1),
    (128, 16, 4),
)
#: torch's intra-op threads, in the worker (compiler_args num_threads) and in the bare loop alike.
#: One: with two OpenMP threads on a 2-core machine, whatever else runs (the parent polling its
#: worker, the OS) stalls a spinning team and both sides swing by 10-20% from round to round.
TORCH_THREADS = 1
MODEL = {"n_layer": 4, "n_embd": 256, "n_head": 4, "vocab_size": 50257, "n_positions": 1024}


class Stamps:
    """A streamer (transformers' put/end contract) stamping every token after the prompt."""

    def __init__(self) -> None:
        self.times: list[int] = []
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if self.prompt_seen:
            self.times.append(time.perf_counter_ns())
        self.prompt_seen = True

    def end(self) -> None:
        pass


def bare_loop(prompt_len: int, new_tokens: int, batch: int, seconds: float, warmup: int) -> tuple[float, float]:
    """Median TTFT and TPOT (ms) of back-to-back requests for ``seconds``, in this process."""
    import torch

    from neuronperf import zoo

    torch.set_num_threads(TORCH_THREADS)
    model = zoo.gpt2(**MODEL)
    ids = torch.from_numpy(np.random.default_rng(0).integers(0, MODEL["vocab_size"], size=(batch, prompt_len)))
    options = {"attention_mask": torch.ones_like(ids), "max_new_tokens": new_tokens, "min_new_tokens": new_tokens,
               "do_sample": False, "num_beams": 1, "use_cache": True, "pad_token_id": model.config.eos_token_id}
    ttft, tpot = [], []
    with torch.inference_mode():
        for _ in range(warmup):
            model.generate(ids, streamer=Stamps(), **options)
        until = time.perf_counter() + seconds
        while time.perf_counter() < until:
            stamps = Stamps()
            t0 = time.perf_counter_ns()
            model.generate(ids, streamer=stamps, **options)
            assert len(stamps.times) == new_tokens
            ttft.append((stamps.times[0] - t0) / 1e6)
            tpot.append((stamps.times[-1] - stamps.times[0]) / (new_tokens - 1) / 1e6)
    return statistics.median(ttft), statistics.median(tpot)


def harness(folder: Path, prompt_len: int, new_tokens: int, batch: int, seconds: float, warmup: int) -> tuple[float, float]:
    """The row's TTFT and TPOT p50 from ``neuronperf run`` of a one-entry spec."""
    spec = folder / "gen.yaml"
    spec.write_text(textwrap.dedent(f"""\
        version: 1
        framework: torch
        device_type: cpu
        compiler: eager
        compile: {{compiler_args: {{num_threads: {TORCH_THREADS}}}}}
        output_dir: {folder / 'out'}
        models:
          - name: gpt2
            factory: "neuronperf.zoo:gpt2"
            kwargs: {json.dumps(MODEL)}
            task: generate
            generate: {{new_tokens: {new_tokens}}}
            inputs: [{{shape: [{prompt_len}], dtype: int64, low: 0, high: {MODEL['vocab_size']}}}]
        sweep: {{batch_sizes: [{batch}]}}
        benchmark: {{duration: {seconds}, warmup: {{calls: {warmup}}}, timeout: 300}}
        """))
    subprocess.run([sys.executable, "-m", "neuronperf", "run", "--fresh", "-q", str(spec)], check=True,
                   stdout=subprocess.DEVNULL)
    (row,) = json.loads((folder / "out" / "results.json").read_text())
    assert row["status"] == "ok", row["error"]
    return row["ttft_ms_p50"], row["tpot_ms_p50"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter windows (noisier)")
    parser.add_argument("--rounds", type=int, default=5, help="alternations of harness and bare loop per case")
    args = parser.parse_args()
    seconds, warmup = (3.0, 2) if args.quick else (8.0, 3)
    print(f"GPT-2 {MODEL}, CPU, {len(os.sched_getaffinity(0))} cores, {seconds:g} s windows, {args.rounds} rounds")
    print(f"{'prompt':>6s} {'new':>4s} {'batch':>5s} | {'bare TTFT':>9s} {'harness':>8s} {'diff':>7s} | "
          f"{'bare TPOT':>9s} {'harness':>8s} {'diff':>7s}   (medians of rounds; diff: median ratio - 1)")
    worst = 0.0
    with tempfile.TemporaryDirectory(prefix="neuronperf-genbench-") as tmp:
        for prompt_len, new_tokens, batch in CASES:
            bare_rounds: list[tuple[float, float]] = []
            harness_rounds: list[tuple[float, float]] = []
            case = (prompt_len, new_tokens, batch, seconds, warmup)
            sides = ((harness_rounds, functools.partial(harness, Path(tmp), *case)),
                     (bare_rounds, functools.partial(bare_loop, *case)))
            for i in range(args.rounds):
                # Which side goes first swaps every round, so that a drift within a round (the
                # machine warming, a neighbour starting) falls on both sides equally often.
                for figures, measure_side in sides if i % 2 == 0 else sides[::-1]:
                    figures.append(measure_side())
            b_ttft = statistics.median(r[0] for r in bare_rounds)
            b_tpot = statistics.median(r[1] for r in bare_rounds)
            h_ttft = statistics.median(r[0] for r in harness_rounds)
            h_tpot = statistics.median(r[1] for r in harness_rounds)
            d_ttft = statistics.median(h[0] / b[0] for h, b in zip(harness_rounds, bare_rounds)) - 1
            d_tpot = statistics.median(h[1] / b[1] for h, b in zip(harness_rounds, bare_rounds)) - 1
            worst = max(worst, abs(d_ttft), abs(d_tpot))
            print(f"{prompt_len:>6d} {new_tokens:>4d} {batch:>5d} | {b_ttft:>7.2f}ms {h_ttft:>6.2f}ms {d_ttft:>+7.2%} | "
                  f"{b_tpot:>7.3f}ms {h_tpot:>6.3f}ms {d_tpot:>+7.2%}", flush=True)
    print(f"worst difference: {worst:.2%} (goal: within 5%) -> {'met' if worst <= 0.05 else 'NOT met'}")


if __name__ == "__main__":
    main()
