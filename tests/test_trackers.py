"""Telemetry sources without a GPU or a Neuron device: a fake powercap tree, a stand-in ``pynvml``
module that records the binding's calls, and a replayed neuron-monitor JSON stream. The real
sources are tried where they exist (on our machines RAPL is absent, and the note says so).

Energy readings here are exact functions of an injected clock, so every figure has an exact truth.
"""

from __future__ import annotations

import glob
import os
import stat
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from neuronperf.trackers import (
    NeuronMonitorTracker,
    NvmlTracker,
    RaplTracker,
    Sample,
    Sampler,
    parse_report,
    summarise,
    tracker_for,
)
from neuronperf.trackers.figures import counter_delta, integrate, span_mean, value_at
from neuronperf.trackers.neuron_monitor import monitor_config
from neuronperf.trackers.rapl import POWERCAP_ROOT

pytestmark = pytest.mark.pure

STREAM = Path(__file__).parent / "data" / "neuron_monitor" / "stream.jsonl"
S = 1_000_000_000  # ns per second
MiB = 1024 * 1024


class Clock:
    """A perf_counter_ns stand-in that moves only when told."""

    def __init__(self, t_ns: int = 0):
        self.t_ns = t_ns

    def __call__(self) -> int:
        return self.t_ns


# ---- the arithmetic ------------------------------------------------------------------------------


def test_counter_interpolates_and_never_extrapolates():
    points = [(0, 0.0), (2 * S, 100.0), (4 * S, 300.0)]
    assert value_at(points, 1 * S) == 50.0
    assert counter_delta(points, 1 * S, 3 * S) == 150.0
    assert value_at(points, 5 * S) is None and counter_delta(points, 0, 5 * S) is None


def test_power_integral_is_exact_for_piecewise_linear_power():
    points = [(0, 10.0), (1 * S, 30.0), (3 * S, 30.0)]
    assert integrate(points, 0, 3 * S) == pytest.approx(20.0 + 60.0)
    assert integrate(points, S // 2, 2 * S) == pytest.approx((20.0 + 30.0) / 2 * 0.5 + 30.0)
    assert integrate(points, 0, 4 * S) is None


def test_span_mean_takes_the_readings_that_describe_the_window():
    readings = [(1 * S, S, 10.0), (2 * S, S, 70.0), (3 * S, S, 80.0), (4 * S, S, 5.0)]
    assert span_mean(readings, int(1.4 * S), int(3.4 * S)) == 75.0  # periods centred at 1.5 and 2.5 s
    assert span_mean(readings, 10 * S, 11 * S) is None


# ---- RAPL ----------------------------------------------------------------------------------------


def _domain(root: Path, folder: str, name: str, energy_uj: int, range_uj: int = 1_000_000_000) -> Path:
    d = root / folder
    d.mkdir(parents=True)
    (d / "name").write_text(name + "\n")
    (d / "energy_uj").write_text(f"{energy_uj}\n")
    (d / "max_energy_range_uj").write_text(f"{range_uj}\n")
    return d


def test_rapl_sums_packages_and_undoes_the_wraparound(tmp_path):
    pkg0 = _domain(tmp_path, "intel-rapl:0", "package-0", 999_000_000)  # 1 J before the wrap
    pkg1 = _domain(tmp_path, "intel-rapl:1", "package-1", 5_000_000)
    _domain(tmp_path, "intel-rapl:0:0", "core", 123)  # part of package 0: not added again
    _domain(tmp_path, "intel-rapl:2", "psys", 7)  # the whole platform: contains the packages
    clock = Clock()
    tracker = RaplTracker(str(tmp_path), clock=clock)
    assert tracker.open() is None and tracker.reads_power()
    first = tracker.poll(frozenset())
    clock.t_ns = 2 * S
    (pkg0 / "energy_uj").write_text("3000000\n")  # wrapped: 1 J to the top, then 3 J
    (pkg1 / "energy_uj").write_text("15000000\n")  # +10 J
    second = tracker.poll(frozenset())
    assert set(first[0].energy_j) == {"package-0", "package-1"}
    gained = {k: second[0].energy_j[k] - first[0].energy_j[k] for k in first[0].energy_j}
    assert gained == pytest.approx({"package-0": 4.0, "package-1": 10.0})
    figures = summarise(tracker, first + second, window=(0, 2 * S), entry_start_ns=0)
    assert figures.energy_source == "rapl"
    assert figures.energy_j == pytest.approx(14.0) and figures.power_w_avg == pytest.approx(7.0)
    assert figures.device_mem_mb_peak is None and figures.device_util_pct_avg is None


def test_rapl_with_an_unreadable_file_is_a_note(tmp_path):
    _domain(tmp_path, "intel-rapl:0", "package-0", 1)
    bad = _domain(tmp_path, "intel-rapl:1", "package-1", 1)
    (bad / "energy_uj").unlink()
    (bad / "energy_uj").mkdir()  # unreadable for root too, unlike a chmod 000 file
    tracker = RaplTracker(str(tmp_path))
    note = tracker.open()
    assert note is not None and note.startswith("no readable powercap files")
    assert "intel-rapl:1/energy_uj" in note and not tracker.reads_power()
    sampler = Sampler(tracker)
    sampler.start()
    sampler.stop()
    assert sampler.telemetry(0, S).note == note and sampler.telemetry(0, S).energy_source is None


def test_rapl_on_this_machine():
    """Where RAPL is absent or root-only unreadable, the note says so; where it is readable,
    it reads."""
    readable = [p for p in glob.glob(os.path.join(POWERCAP_ROOT, "intel-rapl:*", "energy_uj"))
                if os.access(p, os.R_OK)]
    note = RaplTracker().open()
    if readable:
        assert note is None or note.startswith("no readable powercap files")
    else:
        assert note is not None and note.startswith("no readable powercap files")


def test_sampler_thread_measures_idle_and_window_power(tmp_path):
    """A real sampler thread on a source whose energy grows by exactly 40 W of the real clock:
    however the polls fall, the window and idle figures are 40 W."""

    class Linear:
        name = "linear"
        mem_column = None

        def open(self):
            return None

        def reads_power(self):
            return True

        def poll(self, pids):
            t = time.perf_counter_ns()
            return [Sample(t_ns=t, energy_j={"pkg": 40.0 * t / S})]

        def entry_channels(self, samples):
            return None, None

        def notes(self):
            return []

        def close(self):
            pass

    sampler = Sampler(Linear(), period_s=0.01, idle_s=0.2)
    sampler.start()
    sampler.measure_idle()
    sampler.watch([os.getpid()])
    start = time.perf_counter_ns()
    time.sleep(0.1)
    end = time.perf_counter_ns()
    sampler.stop()
    figures = sampler.telemetry(start, end)
    assert figures.power_w_avg == pytest.approx(40.0) and figures.power_w_idle == pytest.approx(40.0)
    assert figures.energy_j == pytest.approx(40.0 * (end - start) / S)
    assert len(sampler.samples) >= 4  # idle bracket, the thread's readings, the last one


# ---- NVML ----------------------------------------------------------------------------------------


def fake_pynvml(clock: Clock, *, energy_counter: bool = True, our_pid: int = 4242) -> types.ModuleType:
    """A stand-in for nvidia-ml-py's ``pynvml``: the binding's names, return types and units,
    two GPUs, each call recorded in ``calls``. GPU 1 runs our copy (1.5 GiB) at 250 W and 80 %;
    GPU 0 runs someone else's process at 100 W."""
    nv = types.ModuleType("pynvml")
    nv.calls = []  # type: ignore[attr-defined]
    nv.NVML_ERROR_NOT_SUPPORTED = 3  # type: ignore[attr-defined]

    class NVMLError(Exception):
        def __init__(self, value: int):
            super().__init__(value)
            self.value = value

        def __str__(self) -> str:
            return {3: "Not Supported"}.get(self.value, f"NVML error {self.value}")

    nv.NVMLError = NVMLError  # type: ignore[attr-defined]
    watts = {0: 100.0, 1: 250.0}

    def record(name: str, result: Any = None):
        def call(*args: Any) -> Any:
            nv.calls.append((name, args))  # type: ignore[attr-defined]
            return result(*args) if callable(result) else result
        setattr(nv, name, call)

    def energy(handle: int) -> int:
        if not energy_counter:
            raise NVMLError(3)
        return int(watts[handle] * clock() / 1e6)  # millijoules since the driver loaded

    def processes(handle: int) -> list:
        proc = types.SimpleNamespace
        return [proc(pid=our_pid, usedGpuMemory=1536 * MiB)] if handle == 1 else [proc(pid=1, usedGpuMemory=MiB)]

    record("nvmlInit")
    record("nvmlShutdown")
    record("nvmlDeviceGetCount", 2)
    record("nvmlDeviceGetHandleByIndex", lambda i: i)
    record("nvmlDeviceGetUUID", lambda h: f"GPU-{h}aaaaaaa-0000".encode())
    record("nvmlDeviceGetTotalEnergyConsumption", energy)
    record("nvmlDeviceGetPowerUsage", lambda h: int(watts[h] * 1000))
    record("nvmlDeviceGetUtilizationRates", lambda h: types.SimpleNamespace(gpu=80 if h == 1 else 5, memory=30))
    record("nvmlDeviceGetComputeRunningProcesses", processes)
    return nv


@pytest.mark.parametrize("counter", [True, False], ids=["energy-counter", "power-only"])
def test_nvml_reads_the_copies_gpu(counter):
    clock = Clock()
    nv = fake_pynvml(clock, energy_counter=counter)
    tracker = NvmlTracker(["1"], module=nv, clock=clock)
    assert tracker.open() is None
    samples = []
    for t in range(6):  # one reading a second
        clock.t_ns = t * S
        samples += tracker.poll(frozenset({4242}))
    tracker.close()
    figures = summarise(tracker, samples, window=(S, 4 * S), entry_start_ns=0)
    assert figures.energy_source == ("nvml" if counter else "nvml-power")
    assert figures.power_w_avg == pytest.approx(250.0)  # GPU 1 alone: the copy's GPU
    assert figures.energy_j == pytest.approx(750.0)
    assert figures.device_util_pct_avg == 80.0
    assert figures.device_mem_mb_nvml_peak == 1536.0 and figures.device_mem_mb_peak is None
    names = [name for name, _ in nv.calls]
    assert names[:2] == ["nvmlInit", "nvmlDeviceGetCount"] and names[-1] == "nvmlShutdown"
    assert {"nvmlDeviceGetHandleByIndex", "nvmlDeviceGetPowerUsage", "nvmlDeviceGetUtilizationRates",
            "nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetTotalEnergyConsumption"} <= set(names)
    if not counter:  # NOT_SUPPORTED is asked once per GPU, at open, and never again
        assert names.count("nvmlDeviceGetTotalEnergyConsumption") == 2


def test_nvml_without_the_copies_processes_says_why():
    clock = Clock()
    tracker = NvmlTracker(["1"], module=fake_pynvml(clock, our_pid=1), clock=clock)  # pid 1 only on GPU 0
    assert tracker.open() is None
    samples = []
    for t in range(3):
        clock.t_ns = t * S
        samples += tracker.poll(frozenset({4242}))
    figures = summarise(tracker, samples, window=(0, 2 * S), entry_start_ns=0)
    # Two GPUs, CUDA's own order: which one the copy used cannot be known, so nothing is guessed.
    assert figures.energy_source is None and figures.power_w_avg is None
    assert "NVML listed none of the copies' processes" in (figures.note or "")
    pci = NvmlTracker(["1"], module=fake_pynvml(clock, our_pid=1), device_order="PCI_BUS_ID", clock=clock)
    pci.open()
    figures = summarise(pci, [*pci.poll(frozenset({4242})), *pci.poll(frozenset({4242}))], window=(0, 0), entry_start_ns=0)
    assert pci.entry_channels([])[0] == frozenset({"gpu1"}) and figures.device_mem_mb_nvml_peak is None


def test_nvml_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    assert "pynvml not installed" in (NvmlTracker().open() or "")
    sampler = Sampler(tracker_for("cuda"))
    sampler.start()
    sampler.stop()
    assert "pynvml not installed" in (sampler.telemetry(0, S).note or "")


# ---- neuron-monitor ------------------------------------------------------------------------------


def test_parse_report_keeps_the_copies_applications_only():
    import json

    report = json.loads(STREAM.read_text().splitlines()[1])
    sample, notes = parse_report(report, frozenset({4242}), t_ns=7)
    assert sample.util_pct == {"nc0": 80.0, "nc1": 60.0}  # nc2 belongs to another application
    assert sample.mem_bytes == {"pid4242": 300 * MiB} and sample.span_ns == S and notes == []
    broken = {"neuron_hardware_info": {"error": "Neuron driver is not loaded"}, "neuron_runtime_data": "?"}
    assert parse_report(broken, frozenset({4242}), 0)[1] == ["neuron-monitor: Neuron driver is not loaded"]


def test_neuron_monitor_replayed_stream():
    ticks = iter(range(1, 100))
    with STREAM.open() as stream:
        tracker = NeuronMonitorTracker(stream=stream, clock=lambda: next(ticks) * S)
        assert tracker.open() is None and not tracker.reads_power()
        tracker.wait_for_stream(5.0)
        samples = tracker.poll(frozenset({4242}))
        tracker.close()
    assert [s.t_ns for s in samples] == [1 * S, 2 * S, 4 * S, 5 * S]  # the blank line took tick 3
    figures = summarise(tracker, samples, window=(int(1.4 * S), int(3.4 * S)), entry_start_ns=0)
    assert figures.energy_source == "neuron-monitor"
    assert figures.device_util_pct_avg == 70.0  # only the report for (1 s, 2 s] is centred inside
    assert figures.device_mem_mb_peak == 300.0 and figures.device_mem_mb_nvml_peak is None
    assert figures.power_w_avg is None and figures.energy_j is None
    assert "neuron-monitor reports no power" in (figures.note or "")


def test_neuron_monitor_process(tmp_path):
    """The real process path: a stand-in executable that prints the recorded stream and waits,
    as neuron-monitor does, until it is terminated."""
    exe = tmp_path / "neuron-monitor"
    exe.write_text(f"#!/bin/sh\ncat '{STREAM}'\nexec sleep 60\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    tracker = NeuronMonitorTracker(0.1, executable=str(exe))
    assert tracker.open() is None
    deadline = time.monotonic() + 10
    samples: list = []
    while len(samples) < 4 and time.monotonic() < deadline:
        samples += tracker.poll(frozenset({4242}))
        time.sleep(0.02)
    tracker.close()
    assert len(samples) == 4 and max(s.mem_bytes["pid4242"] for s in samples) == 300 * MiB
    assert monitor_config(0.1)["period"] == "1s"  # whole seconds, as the user guide writes them


def test_neuron_monitor_not_found(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr("neuronperf.trackers.neuron_monitor.NEURON_MONITOR_FALLBACK", "/nonexistent/neuron-monitor")
    assert (NeuronMonitorTracker().open() or "").startswith("neuron-monitor not found")
