"""What a sweep's bookkeeping costs at 10,000 entries (the bar: journal + projections under 5 s).

    python benchmarks/bookkeeping.py [--entries N]

Plans a real spec of N run entries (100 batch sizes x N/100 worker counts) and, for each entry in
turn, does exactly what ``neuronperf run`` does once an entry is measured: append its record to
``journal.jsonl`` (one fsync'd write), set its row in the driver's ``RowTable`` and let the
``ResultsWriter`` decide whether ``results.csv``/``results.json`` are rewritten; then the final
rewrite. Measurement is left out (the rows are those of failed entries, the same columns as
measured ones). It also times reading the 10,000-record journal back, as a resume does. Rewriting
both files after every entry, as before, would cost N rewrites of up to N rows: the last line
prints what one full rewrite costs, times N, for comparison.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

SPEC = """\
version: 1
name: bookkeeping
framework: torch
device_type: cpu
compiler: eager
models:
  - name: mlp
    factory: "neuronperf.zoo:mlp"
    inputs: [[128]]
sweep:
  batch_sizes: {batch_sizes}
  n_models: [1]
  workers_per_model: {workers}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000, help="a multiple of 100")
    args = parser.parse_args()
    if args.entries % 100:
        raise SystemExit("--entries must be a multiple of 100")

    from neuronperf import results
    from neuronperf.plan.expand import plan
    from neuronperf.results.journal import Journal
    from neuronperf.spec.load import load_spec

    with tempfile.TemporaryDirectory(dir=os.getcwd()) as folder:  # the disk a sweep writes to
        spec_path = os.path.join(folder, "bookkeeping.yaml")
        with open(spec_path, "w") as f:
            f.write(SPEC.format(batch_sizes=list(range(1, 101)), workers=list(range(1, args.entries // 100 + 1))))
        entries = plan(load_spec(spec_path)).run_entries
        out = os.path.join(folder, "out")
        os.makedirs(out)

        def row_of(entry, status: str) -> dict:
            row = results.row_for_unrun(entry, status, "compile failed: example", model_name="mlp")
            row["key"] = entry.key
            return row

        started = time.perf_counter()
        journal = Journal(out)
        table = results.RowTable(entries, lambda e: row_of(e, "skipped"))
        writer = results.ResultsWriter(out)
        setup_s = time.perf_counter() - started
        journal_s = projection_s = 0.0
        for entry in entries:
            row = row_of(entry, "error")
            t0 = time.perf_counter()
            journal.record_run(entry.key, entry.id, row)
            t1 = time.perf_counter()
            table[entry] = row
            writer.update(table.ordered)
            projection_s += time.perf_counter() - t1
            journal_s += t1 - t0
        t0 = time.perf_counter()
        writer.flush(table.ordered)
        final_s = time.perf_counter() - t0
        projection_s += final_s
        t0 = time.perf_counter()
        loaded = len(Journal(out).runs())
        load_s = time.perf_counter() - t0

        # The floor on this disk, measured side by side: the same bytes, one bare fsync'd append
        # per line, no neuronperf. What the journal costs above it is neuronperf's own.
        with open(os.path.join(out, "journal.jsonl"), "rb") as f:
            lines = f.read().splitlines(keepends=True)
        bare = os.path.join(folder, "bare.jsonl")
        t0 = time.perf_counter()
        for line in lines:
            fd = os.open(bare, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(fd, line)
            os.fsync(fd)
            os.close(fd)
        floor_s = time.perf_counter() - t0

        n = len(entries)
        total = setup_s + journal_s + projection_s
        size_mb = os.path.getsize(os.path.join(out, "journal.jsonl")) / 1e6
        print(f"{n:,} entries, journal {size_mb:.1f} MB, results.csv "
              f"{os.path.getsize(os.path.join(out, 'results.csv')) / 1e6:.1f} MB")
        print(f"  placeholder rows:      {setup_s:6.2f} s")
        print(f"  journal appends:       {journal_s:6.2f} s  ({journal_s / n * 1e3:.3f} ms each, fsync'd)")
        print(f"  bare fsync'd appends:  {floor_s:6.2f} s  (the disk's floor for the same lines; "
              f"neuronperf adds {max(0.0, journal_s - floor_s):.2f} s)")
        print(f"  projections:           {projection_s:6.2f} s  ({writer.writes} rewrites of results.csv/json)")
        print(f"  total:                 {total:6.2f} s  (bar: 5 s) {'ok' if total < 5 else 'OVER'}")
        print(f"  journal read back:     {load_s:6.2f} s  ({loaded:,} run records, as a resume reads them)")
        print(f"  one full rewrite: {final_s * 1e3:.1f} ms; after every entry that would be about "
              f"{final_s * n / 2:.0f} s")


if __name__ == "__main__":
    main()
