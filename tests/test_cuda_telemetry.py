"""NVML telemetry on a real GPU (``nox -s cuda``; skipped without one, and without nvidia-ml-py).

The truth for each figure needs no harness: this process keeps the GPU busy with its own kernels
and holds a known allocation, so the GPU's utilisation is high, NVML lists this process with at
least that much memory, and the energy counter grows at a positive power.
"""

from __future__ import annotations

import os
import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pynvml")

from neuronperf.trackers import NvmlTracker, Sampler  # noqa: E402

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_nvml_sees_this_process_busy_on_its_gpu():
    device = torch.device("cuda", 0)
    held = torch.empty(256 * 1024 * 1024, dtype=torch.uint8, device=device)  # 256 MiB, known
    a = torch.randn(2048, 2048, device=device)
    torch.cuda.synchronize()
    sampler = Sampler(NvmlTracker([os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]]), 0.05, idle_s=0.5)
    sampler.start()
    sampler.measure_idle()
    sampler.watch([os.getpid()])
    start = time.perf_counter_ns()
    until = time.monotonic() + 2.0
    while time.monotonic() < until:
        a = (a @ a).clamp_(-1, 1)
        torch.cuda.synchronize()
    end = time.perf_counter_ns()
    sampler.stop()
    figures = sampler.telemetry(start, end)
    del held
    assert figures.energy_source in ("nvml", "nvml-power"), figures.note
    assert figures.device_util_pct_avg is not None and figures.device_util_pct_avg > 50
    assert figures.power_w_avg is not None and figures.power_w_avg > 0
    assert figures.power_w_idle is not None and figures.power_w_idle > 0
    if figures.device_mem_mb_nvml_peak is not None:  # None where NVML sees host pids (containers)
        assert figures.device_mem_mb_nvml_peak >= 256


def test_a_cuda_sweep_fills_the_telemetry_columns(cli, tmp_path):
    """`neuronperf run` on the GPU: the allocator peak, summed over the copies, grows with them;
    NVML's columns are filled."""
    import json

    spec = tmp_path / "cuda.yaml"
    spec.write_text(f"""\
version: 1
framework: torch
device_type: cuda
compiler: eager
output_dir: {tmp_path / "run"}
models:
  - name: cnn
    factory: "neuronperf.zoo:small_cnn"
    inputs: [{{shape: [3, 32, 32]}}]
sweep: {{batch_sizes: [8], n_models: [1, 2]}}
benchmark: {{duration: 1, warmup: {{calls: 20}}, timeout: 120, telemetry: {{period_ms: 50}}}}
""")
    result = cli("run", str(spec))
    assert result.code == 0, result.out + result.err
    rows = {r["n_models"]: r for r in json.loads((tmp_path / "run" / "results.json").read_text())}
    for r in rows.values():
        assert r["energy_source"] in ("nvml", "nvml-power"), r["telemetry_note"]
        assert r["power_w_avg"] > 0 and r["energy_j_per_inf"] > 0 and r["device_util_pct_avg"] is not None
    assert 0 < rows[1]["device_mem_mb_peak"] < rows[2]["device_mem_mb_peak"]
