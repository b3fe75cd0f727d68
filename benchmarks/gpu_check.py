"""The first run on a GPU machine: CUDA timing and NVML telemetry checked against truths that need
no harness. Under 5 minutes on one GPU.

Run from the repository root, with torch (a CUDA build) and nvidia-ml-py installed
(``pip install -e '.[nvml]'``): ``python benchmarks/gpu_check.py [--duration 3]``.

1. **A CUDA sweep** through ``neuronperf run``: the zoo's small CNN (64x64 images), eager, at
   batch 1, 8 and 32 with 1 and 2 copies, telemetry every 100 ms. Every row must be ``ok`` and
   have its telemetry columns filled: ``device_mem_mb_peak`` (the allocator's peak, summed over
   the copies), ``device_mem_mb_nvml_peak``, ``device_util_pct_avg``, ``power_w_avg``,
   ``power_w_idle``, ``energy_j_per_inf`` and ``energy_source: nvml``; and 2 copies must hold
   more device memory than 1.
2. **CUDA events against the host timer**, per call, in this process: each call bracketed by
   ``torch.cuda.Event`` records and by ``perf_counter_ns`` around the call and a synchronize.
   The host time of a call is its event time plus the launch and synchronisation cost, so the
   medians should agree within a few tens of microseconds.
3. **``torch.utils.benchmark.Timer``** on the same model and batch, side by side with the
   harness's p50 of the 1-copy entry (goal: within 5%, as measurement_accuracy.py asks on CPU).

Exit status 1 when a check fails; the figures are printed either way. ``--device cpu`` runs
part 1 on the CPU (RAPL instead of NVML) so that the script itself can be tried anywhere.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BATCHES = (1, 8, 32)
IMAGE = 64
TELEMETRY = ("device_mem_mb_peak", "device_mem_mb_nvml_peak", "device_util_pct_avg", "power_w_avg",
             "power_w_idle", "energy_j_per_inf")

SPEC = """\
version: 1
name: gpu-check
framework: torch
device_type: {device}
compiler: eager
output_dir: {out}
models:
  - name: cnn
    factory: "neuronperf.zoo:small_cnn"
    kwargs: {{image_size: {image}}}
    inputs:
      - {{shape: [3, {image}, {image}], dtype: float32}}
sweep:
  batch_sizes: [{batches}]
  n_models: [1, 2]
  workers_per_model: [1]
benchmark:
  duration: {duration}
  warmup: {{calls: 50}}
  timeout: 120
  telemetry: {{period_ms: 100}}
"""


def sweep(device: str, duration: float, out: Path) -> list[dict[str, Any]]:
    spec = out / "gpu-check.yaml"
    spec.write_text(SPEC.format(device=device, out=out / "run", image=IMAGE, duration=duration,
                                batches=", ".join(map(str, BATCHES))))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "neuronperf", "run", str(spec)], check=False)
    print(f"  neuronperf run: exit {done.returncode} in {time.monotonic() - started:.0f} s")
    return json.loads((out / "run" / "results.json").read_text())


def check_rows(rows: list[dict[str, Any]], device: str) -> list[str]:
    failures = []
    print(f"\n  {'id':22s} {'p50 ms':>8s} {'inf/s':>9s} {'alloc MB':>9s} {'nvml MB':>8s} {'util %':>7s} "
          f"{'W':>7s} {'idle W':>7s} {'mJ/inf':>8s} source")
    for row in rows:
        def fmt(key: str, scale: float = 1.0, spec: str = ".1f", row: dict = row) -> str:
            value = row.get(key)
            return "-" if value in (None, "") else format(float(value) * scale, spec)
        print(f"  {row['id']:22s} {fmt('latency_ms_p50', spec='.3f'):>8s} {fmt('throughput_avg', spec='.0f'):>9s} "
              f"{fmt('device_mem_mb_peak'):>9s} {fmt('device_mem_mb_nvml_peak'):>8s} {fmt('device_util_pct_avg'):>7s} "
              f"{fmt('power_w_avg'):>7s} {fmt('power_w_idle'):>7s} {fmt('energy_j_per_inf', 1000, '.3f'):>8s} "
              f"{row.get('energy_source') or '-'}")
        if row.get("telemetry_note"):
            print(f"  {'':22s} note: {row['telemetry_note']}")
        if row.get("status") != "ok":
            failures.append(f"{row['id']}: status {row.get('status')}: {row.get('error')}")
            continue
        wanted = TELEMETRY if device == "cuda" else ("power_w_avg", "energy_j_per_inf")
        if device == "cpu" and str(row.get("telemetry_note") or "").startswith("no readable powercap files"):
            wanted = ()  # a dry run on a machine without RAPL: the note is the right answer
        empty = [k for k in wanted if row.get(k) in (None, "")]
        if empty:
            failures.append(f"{row['id']}: empty {', '.join(empty)} ({row.get('telemetry_note')})")
        if device == "cuda" and row.get("energy_source") not in ("nvml", "nvml-power"):
            failures.append(f"{row['id']}: energy_source {row.get('energy_source')!r}")
    if device == "cuda":
        by_id = {r["id"]: r for r in rows}
        for b in BATCHES:
            one, two = by_id.get(f"cnn-bs{b}-p1-m1-w1"), by_id.get(f"cnn-bs{b}-p1-m2-w1")
            if one and two and one.get("device_mem_mb_peak") and two.get("device_mem_mb_peak") and \
                    not float(two["device_mem_mb_peak"]) > float(one["device_mem_mb_peak"]):
                failures.append(f"batch {b}: 2 copies hold no more allocator memory than 1")
    return failures


def events_vs_host(calls: int) -> dict[int, tuple[float, float, float]]:
    """Per batch: (median event ms, median host ms, Timer median ms) in this process."""
    import torch
    from torch.utils.benchmark import Timer

    from neuronperf import zoo

    model = zoo.small_cnn(image_size=IMAGE).cuda().eval()
    out = {}
    for b in BATCHES:
        x = torch.randn(b, 3, IMAGE, IMAGE, device="cuda")
        event_ms, host_ms = [], []
        with torch.inference_mode():
            for _ in range(50):
                model(x)
            torch.cuda.synchronize()
            for _ in range(calls):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                t0 = time.perf_counter_ns()
                start.record()
                model(x)
                end.record()
                torch.cuda.synchronize()
                host_ms.append((time.perf_counter_ns() - t0) / 1e6)
                event_ms.append(start.elapsed_time(end))
            # Timer synchronizes CUDA around its timed blocks.
            timer = Timer("model(x)", globals={"model": model, "x": x}).blocked_autorange(min_run_time=2.0)
        out[b] = (statistics.median(event_ms), statistics.median(host_ms), timer.median * 1000)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0, help="measured seconds per entry")
    parser.add_argument("--calls", type=int, default=500, help="calls per batch for the event/host comparison")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    args = parser.parse_args()
    failures: list[str] = []
    started = time.monotonic()
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("no CUDA GPU here: nothing to check (use --device cpu to try the script itself)")
            return 1
        print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        print(f"\n1. CUDA sweep: small CNN {IMAGE}x{IMAGE}, batch {BATCHES}, 1 and 2 copies" if args.device == "cuda"
              else "\n1. the same sweep on the CPU (a dry run of this script)")
        rows = sweep(args.device, args.duration, Path(tmp))
        failures += check_rows(rows, args.device)
    if args.device == "cuda":
        print(f"\n2./3. per call in this process ({args.calls} calls a batch): CUDA events, host timer, Timer, harness")
        p50 = {int(r["batch_size"]): float(r["latency_ms_p50"]) for r in rows
               if r.get("status") == "ok" and int(r["n_models"]) == 1}
        print(f"  {'batch':>5s} {'event ms':>9s} {'host ms':>9s} {'host-event':>10s} {'Timer ms':>9s} {'harness p50':>11s} {'vs Timer':>8s}")
        for b, (event, host, timer) in events_vs_host(args.calls).items():
            harness = p50.get(b)
            versus = f"{(harness / timer - 1) * 100:+.1f}%" if harness else "-"
            print(f"  {b:5d} {event:9.4f} {host:9.4f} {(host - event) * 1000:8.1f}us {timer:9.4f} "
                  f"{harness if harness is not None else float('nan'):11.4f} {versus:>8s}")
            if harness is not None and abs(harness / timer - 1) > 0.05:
                failures.append(f"batch {b}: harness p50 {harness:.4f} ms vs Timer {timer:.4f} ms (over 5%)")
            if host < event:
                failures.append(f"batch {b}: host time {host:.4f} ms below the event time {event:.4f} ms")
    print(f"\ntook {time.monotonic() - started:.0f} s")
    for failure in failures:
        print(f"FAILED: {failure}")
    print("all checks passed" if not failures else f"{len(failures)} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
