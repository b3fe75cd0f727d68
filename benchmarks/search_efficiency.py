"""How much of a sweep each search measures, and how good an answer it finds, against the grid.

Run from the repository root: ``python benchmarks/search_efficiency.py [--part synthetic|bert|all]``
(about 10 minutes for both parts; ``--duration`` shortens each entry).

For each part, the same spec runs three times, one after the other in one process, each into its
own output_dir: ``search: grid`` (every entry: the truth, which needs no search), then
``search: prune``, then ``search: quick``. For each it reports the fraction of entries measured,
the objective (``throughput_avg`` under the bound ``objectives.slo``) of the best entry it found
per question (model and parameter values) against the grid's best, and the wall time of the whole
``neuronperf run``. Each search is also replayed over the grid's own rows (``decide`` fed the
grid's measurements): the same decisions without the noise of measuring twice, which is what
"prune returns the grid's exact answer when the assumptions hold" is about; the replay also
checks whether the grid's rows hold the monotonic assumption at all.

The parts:

- ``synthetic``: a model that busy-waits ``(a + b x batch) x work`` ms of its own thread's CPU
  time per call (``busy`` below): its threads share the interpreter lock, so a second thread in a
  copy queues behind the first and adds to the tail, and copies run side by side only as far as
  the cores go. Batch x copies x threads x ``work`` (a model parameter: two questions).
- ``bert``: ``neuronperf.zoo:bert`` with 2 layers, batch x copies x threads.

``--scan`` prints, from a grid run alone, the replayed fractions and answers for a range of bounds
(how the default bounds were chosen: about half of each grid over the bound).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve()


def busy(a_ms: float = 0.2, b_ms: float = 0.1, work: float = 1.0) -> Any:
    """A model whose call busy-waits ``(a_ms + b_ms x batch) x work`` ms of the calling thread's
    CPU time (so a call preempted by another process takes longer, as real compute does)."""
    import torch

    class Busy(torch.nn.Module):
        def forward(self, x: Any) -> Any:
            end = time.thread_time() + (a_ms + b_ms * x.shape[0]) * work / 1000.0
            while time.thread_time() < end:
                pass
            return x

    return Busy().eval()


SYNTHETIC = """\
version: 1
name: search-synthetic
framework: torch
device_type: cpu
compiler: eager
output_dir: {output_dir}
models:
  - name: busy
    factory: "{factory}:busy"
    params: {{work: [1, 2]}}
    kwargs: {{a_ms: 0.2, b_ms: 0.1, work: $work}}
    inputs: [[4]]
sweep:
  batch_sizes: [1, 2, 4, 8, 16, 32, 64]
  n_models: [1, 2, 3, 4]
  workers_per_model: [1, 2, 4]
search: {search}
objectives:
  slo: {{latency_ms_p99: {bound}}}
compile: {{jobs: 1}}
benchmark: {{duration: {duration}, warmup: 5, timeout: 60}}
"""

BERT = """\
version: 1
name: search-bert
framework: torch
device_type: cpu
compiler: eager
output_dir: {output_dir}
models:
  - name: bert
    factory: "neuronperf.zoo:bert"
    kwargs: {{num_hidden_layers: 2}}
    inputs:
      - {{shape: [32], dtype: int64, low: 0, high: 30522}}
      - {{shape: [32], dtype: int64, low: 1, high: 2}}
sweep:
  batch_sizes: [1, 2, 4, 8, 16]
  n_models: [1, 2, 3]
  workers_per_model: [1, 2]
search: {search}
objectives:
  slo: {{latency_ms_p99: {bound}}}
compile: {{jobs: 1}}
benchmark: {{duration: {duration}, warmup: 3, timeout: 120}}
"""

#: Each part's spec, its default p99 bound (ms) and benchmark.duration (s).
PARTS = {"synthetic": (SYNTHETIC, 10.0, 0.5), "bert": (BERT, 40.0, 1.0)}
STRATEGIES = ("grid", "prune", "quick")


@dataclass
class Outcome:
    strategy: str
    wall_s: float
    rows: list[dict]

    @property
    def measured(self) -> int:
        return sum(1 for r in self.rows if r.get("status") != "skipped")


def run(template: str, folder: Path, strategy: str, bound: float, duration: float) -> Outcome:
    out = folder / strategy
    spec = folder / f"{strategy}.yaml"
    spec.write_text(template.format(output_dir=out, factory=HERE, search=strategy, bound=bound, duration=duration))
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "neuronperf", "run", "-q", str(spec)], capture_output=True, text=True)
    wall = time.monotonic() - began
    if done.returncode not in (0, 1):
        sys.exit(f"{strategy}: neuronperf run exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return Outcome(strategy, wall, json.loads((out / "results.json").read_text()))


def question(row: dict) -> str:
    return f"{row['model_name']} work={row['work']}" if row.get("work") is not None else str(row["model_name"])


def best(rows: list[dict], bound: float) -> dict[str, Optional[dict]]:
    """Per question, the ok row with the highest throughput whose p99 meets the bound."""
    found: dict[str, Optional[dict]] = {}
    for r in rows:
        found.setdefault(question(r), None)
        if r.get("status") == "ok" and r["latency_ms_p99"] <= bound:
            current = found[question(r)]
            if current is None or r["throughput_avg"] > current["throughput_avg"]:
                found[question(r)] = r
    return found


def replay(spec_path: Path, grid_rows: list[dict], strategy: str, bound: float) -> tuple[int, dict[str, Optional[str]]]:
    """The strategy's decisions fed the grid's rows: entries measured, best entry per question."""
    from neuronperf.answers.slo import LatencyBound
    from neuronperf.entries import SearchSettings
    from neuronperf.plan.expand import plan
    from neuronperf.search.replay import decide
    from neuronperf.spec.load import load_spec

    entries = plan(load_spec(spec_path)).run_entries
    by_id = {r["id"]: r for r in grid_rows}
    rows = {e: by_id[e.id] for e in entries}
    known: dict = {}
    while True:
        decision = decide(entries, SearchSettings(strategy), (LatencyBound(99, bound),), known)
        if decision.finished:
            break
        known.update({e: rows[e] for e in decision.pending})
    answers = {}
    for q, e in decision.best.items():
        answers[q.label] = e.id if e is not None else None
    return len(known), answers


def monotonic_breaks(rows: list[dict]) -> int:
    """Pairs of grid rows where a bigger batch or more threads (same question, copies) has a
    lower p99: the assumption prune relies on, checked on the measurements."""
    n = 0
    for a in rows:
        for b in rows:
            if (a is not b and question(a) == question(b) and a["n_models"] == b["n_models"]
                    and a["batch_size"] <= b["batch_size"] and a["workers_per_model"] <= b["workers_per_model"]
                    and a["status"] == b["status"] == "ok" and b["latency_ms_p99"] < a["latency_ms_p99"] * 0.95):
                n += 1
    return n


def report(part: str, outcomes: dict[str, Outcome], bound: float, folder: Path) -> None:
    grid = outcomes["grid"]
    truth = best(grid.rows, bound)
    total = len(grid.rows)
    over = sum(1 for r in grid.rows if r.get("status") == "ok" and r["latency_ms_p99"] > bound)
    print(f"\n## {part}: {total} entries, p99 <= {bound:g} ms rules out {over} ({over / total:.0%}) in the grid; "
          f"{monotonic_breaks(grid.rows)} pairs of grid rows break the monotonic assumption by more than 5%")
    print("\n| strategy | measured | wall time | question | best entry found | its throughput | of the grid's best |")
    print("|---|---|---|---|---|---|---|")
    for strategy, outcome in outcomes.items():
        found = best(outcome.rows, bound)
        for i, (q, grid_best) in enumerate(truth.items()):
            got = found.get(q)
            ratio = (got["throughput_avg"] / grid_best["throughput_avg"]) if got and grid_best else float("nan")
            first = (f"{outcome.measured}/{total} ({outcome.measured / total:.0%})", f"{outcome.wall_s:.0f} s") if i == 0 else ("", "")
            print(f"| {strategy if i == 0 else ''} | {first[0]} | {first[1]} | {q} | {got['id'] if got else '-'} | "
                  f"{got['throughput_avg']:.0f}/s | {ratio:.1%}{' (the same entry)' if got and grid_best and got['id'] == grid_best['id'] else ''} |"
                  if got else f"| {strategy} | | | {q} | none | | |")
    print("\nReplayed over the grid's own rows (no second measurement):")
    for strategy in ("prune", "quick"):
        measured, answers = replay(folder / "grid.yaml", grid.rows, strategy, bound)
        same = sum(1 for q, entry in answers.items() if truth.get(q) is not None and truth[q]["id"] == entry)
        print(f"- {strategy}: {measured}/{total} ({measured / total:.0%}) measured; the grid's best in {same} of {len(truth)} questions")


def scan(outcome: Outcome, folder: Path, bounds: list[float]) -> None:
    total = len(outcome.rows)
    for bound in bounds:
        over = sum(1 for r in outcome.rows if r.get("status") == "ok" and r["latency_ms_p99"] > bound)
        truth = best(outcome.rows, bound)
        line = [f"p99<={bound:g}: {over / total:.0%} over"]
        for strategy in ("prune", "quick"):
            measured, answers = replay(folder / "grid.yaml", outcome.rows, strategy, bound)
            by_id = {r["id"]: r for r in outcome.rows}
            ratios = [by_id[answers[q]]["throughput_avg"] / t["throughput_avg"] if answers.get(q) and t else 0.0
                      for q, t in truth.items()]
            line.append(f"{strategy} {measured / total:.0%} measured, " + "/".join(f"{r:.1%}" for r in ratios))
        print("; ".join(line))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("synthetic", "bert", "all"), default="all")
    parser.add_argument("--duration", type=float, help="benchmark.duration of each entry in s (default: 0.5 synthetic, 1 bert)")
    parser.add_argument("--bound", type=float, help="the p99 bound in ms (default: the part's own)")
    parser.add_argument("--scan", metavar="MS", type=float, nargs="+",
                        help="run the grid only and replay the searches over its rows at these bounds")
    parser.add_argument("--keep", metavar="DIR", help="keep the specs and output_dirs in DIR")
    parser.add_argument("--grid-from", metavar="DIR", help="with --scan: replay over the grid kept in DIR (a folder "
                        "--keep left, holding grid.yaml and grid/) instead of running one")
    args = parser.parse_args()
    parts = ["synthetic", "bert"] if args.part == "all" else [args.part]
    for part in parts:
        template, default_bound, default_duration = PARTS[part]
        bound = args.bound or default_bound
        duration = args.duration or default_duration
        folder = Path(tempfile.mkdtemp(prefix=f"search-{part}-", dir=args.keep)) if not args.grid_from else Path()
        if args.scan and args.grid_from:
            folder = Path(args.grid_from)
            outcome = Outcome("grid", 0.0, json.loads((folder / "grid" / "results.json").read_text()))
            print(f"## {part}: the grid of {len(outcome.rows)} entries in {folder}")
            scan(outcome, folder, args.scan)
            continue
        if args.scan:
            outcome = run(template, folder, "grid", bound, duration)
            print(f"## {part}: grid of {len(outcome.rows)} entries in {outcome.wall_s:.0f} s ({folder})")
            scan(outcome, folder, args.scan)
            continue
        outcomes = {s: run(template, folder, s, bound, duration) for s in STRATEGIES}
        report(part, outcomes, bound, folder)
        print(f"\n(specs and results in {folder})" if args.keep else "")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
