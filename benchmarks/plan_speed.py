"""How long planning a 100,000-entry sweep and printing it as JSON takes (the bar: under 2 s).

    python benchmarks/plan_speed.py [--entries N]

Writes a spec with 100 batch sizes x N/1000 model copies x 10 worker counts, then times
``load_spec``, ``plan`` and ``plan_json`` in this process, and ``neuronperf plan --json`` as a
subprocess (which adds interpreter start-up and imports).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

SPEC = """\
version: 1
name: plan-speed
framework: torch
device_type: cpu
models:
  - name: mlp
    factory: "neuronperf.zoo:mlp"
    inputs: [[128]]
sweep:
  batch_sizes: {batch_sizes}
  n_models: {n_models}
  workers_per_model: {workers}
"""


def spec_text(n_entries: int) -> str:
    """A spec whose plan has exactly ``n_entries`` run entries (a multiple of 1000)."""
    if n_entries % 1000:
        raise SystemExit("--entries must be a multiple of 1000")
    return SPEC.format(
        batch_sizes=list(range(1, 101)),
        n_models=list(range(1, n_entries // 1000 + 1)),
        workers=list(range(1, 11)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    args = parser.parse_args()

    from neuronperf.plan.expand import plan
    from neuronperf.plan.render import plan_json
    from neuronperf.spec.load import load_spec

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "plan-speed.yaml")
        with open(path, "w") as f:
            f.write(spec_text(args.entries))
        t0 = time.perf_counter()
        spec = load_spec(path)
        t1 = time.perf_counter()
        the_plan = plan(spec)
        t2 = time.perf_counter()
        text = plan_json(the_plan)
        t3 = time.perf_counter()
        assert len(the_plan.run_entries) == args.entries
        print(f"{args.entries} run entries, {len(text) / 1e6:.1f} MB of JSON")
        print(f"load_spec  {t1 - t0:6.3f} s")
        print(f"plan       {t2 - t1:6.3f} s")
        print(f"plan_json  {t3 - t2:6.3f} s")
        print(f"in-process {t3 - t0:6.3f} s")
        t4 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "neuronperf", "plan", "--json", path],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        print(f"`neuronperf plan --json` (a new process) {time.perf_counter() - t4:6.3f} s")


if __name__ == "__main__":
    main()
