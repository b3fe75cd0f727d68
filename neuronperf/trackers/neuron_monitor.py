"""AWS Neuron devices through ``neuron-monitor``'s JSON stream (its user guide documents it).

``neuron-monitor -c CONFIG`` writes one JSON report per line, once per ``period``. The fields
read here, per Neuron application (``neuron_runtime_data[]``, matched to a copy by ``pid``):

- ``report.neuroncore_counters.neuroncores_in_use.<core>.neuroncore_utilization``: the percent
  of the captured period (``neuroncore_counters.period``, seconds) that core was busy;
- ``report.memory_used.neuron_runtime_used_bytes.neuron_device``: the device memory the
  application holds, in bytes (``usage_breakdown`` splits it per NeuronCore);

and ``neuron_hardware_info.error`` (set when the Neuron driver is not loaded). Each line is
stamped with the time it arrived, which is the end of the period it describes. neuron-monitor
documents no power reading: Neuron rows have no power or energy figures.

The config's ``period`` is written in whole seconds, the unit its guide documents, so a Neuron
entry's utilisation rests on reports about 1 s apart whatever ``period_ms`` says.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Callable, Optional

from neuronperf.trackers.values import Sample

#: Where the Neuron tools package installs neuron-monitor when it is not on PATH.
NEURON_MONITOR_FALLBACK = "/opt/aws/neuron/bin/neuron-monitor"
NO_POWER_NOTE = "neuron-monitor reports no power, so power_w_avg, power_w_idle and energy_j_per_inf are empty"


def monitor_config(period_s: float) -> dict:
    """The neuron-monitor configuration: NeuronCore counters and memory of every application
    (filtered by pid when read), nothing system-wide, every ``period_s`` (at least 1 s)."""
    return {
        "period": f"{max(1, math.ceil(period_s))}s",
        "neuron_runtimes": [{"tag_filter": ".*", "metrics": [{"type": "neuroncore_counters"}, {"type": "memory_used"}]}],
        "system_metrics": [],
    }


def parse_report(report: Any, pids: frozenset[int], t_ns: int) -> tuple[Sample, list[str]]:
    """One neuron-monitor report as a sample of the applications whose pid is in ``pids``, and
    the errors it carries. Channels: ``nc<core>`` (utilisation), ``pid<pid>`` (memory)."""
    notes: list[str] = []
    util: dict[str, float] = {}
    mem: dict[str, int] = {}
    present: set[str] = set()
    span_s = 0.0
    hardware_error = _get(report, "neuron_hardware_info", "error")
    if hardware_error:
        notes.append(f"neuron-monitor: {hardware_error}")
    runtimes = _get(report, "neuron_runtime_data")
    for runtime in runtimes if isinstance(runtimes, list) else ():
        pid = _get(runtime, "pid")
        if not isinstance(pid, int) or pid not in pids:
            continue
        present.add(f"pid{pid}")
        if _get(runtime, "error"):
            notes.append(f"neuron-monitor, pid {pid}: {_get(runtime, 'error')}")
        counters = _get(runtime, "report", "neuroncore_counters")
        if _get(counters, "error"):
            notes.append(f"neuron-monitor neuroncore_counters: {_get(counters, 'error')}")
        period = _get(counters, "period")
        if isinstance(period, (int, float)):
            span_s = max(span_s, float(period))
        cores = _get(counters, "neuroncores_in_use")
        for core, data in cores.items() if isinstance(cores, dict) else ():
            value = _get(data, "neuroncore_utilization")
            if isinstance(value, (int, float)):
                util[f"nc{core}"] = float(value)
        used = _get(runtime, "report", "memory_used", "neuron_runtime_used_bytes", "neuron_device")
        if isinstance(used, (int, float)):
            mem[f"pid{pid}"] = int(used)
    sample = Sample(t_ns=t_ns, util_pct=util, mem_bytes=mem, present=frozenset(present), span_ns=int(span_s * 1e9))
    return sample, notes


class NeuronMonitorTracker:
    """NeuronCore utilisation and device memory of the entry's copies
    (``energy_source: neuron-monitor``). With ``stream`` (lines of JSON, a replayed file in
    tests) nothing is started; otherwise ``neuron-monitor`` runs for as long as the tracker is
    open."""

    name = "neuron-monitor"
    mem_column: Optional[str] = "device_mem_mb_peak"

    def __init__(self, period_s: float = 1.0, *, stream: Optional[Iterable[str]] = None,
                 executable: Optional[str] = None, clock: Callable[[], int] = time.perf_counter_ns):
        self.period_s = period_s
        self._stream = stream
        self._executable = executable
        self._clock = clock
        self._process: Optional[subprocess.Popen] = None
        self._config_path: Optional[str] = None
        self._reader: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self._arrived: list[tuple[int, Any]] = []
        self._notes: list[str] = [NO_POWER_NOTE]

    def open(self) -> Optional[str]:
        stream = self._stream
        if stream is None:
            exe = self._executable or shutil.which("neuron-monitor") or (
                NEURON_MONITOR_FALLBACK if os.path.exists(NEURON_MONITOR_FALLBACK) else None)
            if exe is None:
                return "neuron-monitor not found (not on PATH nor in /opt/aws/neuron/bin; it ships with aws-neuronx-tools)"
            fd, self._config_path = tempfile.mkstemp(prefix="neuronperf-monitor-", suffix=".json")
            with os.fdopen(fd, "w") as f:
                json.dump(monitor_config(self.period_s), f)
            try:
                self._process = subprocess.Popen([exe, "-c", self._config_path], stdout=subprocess.PIPE,
                                                 stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True)
            except OSError as e:
                self._remove_config()
                return f"neuron-monitor could not start: {e}"
            assert self._process.stdout is not None
            stream = self._process.stdout
        self._reader = threading.Thread(target=self._read, args=(stream,), name="neuronperf-neuron-monitor", daemon=True)
        self._reader.start()
        return None

    def reads_power(self) -> bool:
        return False

    def poll(self, pids: frozenset[int]) -> list[Sample]:
        with self._lock:
            arrived, self._arrived = self._arrived, []
        samples = []
        for t_ns, report in arrived:
            sample, notes = parse_report(report, pids, t_ns)
            samples.append(sample)
            with self._lock:
                self._notes.extend(n for n in notes if n not in self._notes)
        return samples

    def entry_channels(self, samples: Sequence[Sample]) -> tuple[Optional[frozenset[str]], Optional[str]]:
        if not any(s.present for s in samples):
            return None, "neuron-monitor reported none of the copies' processes, so device memory and utilisation are empty"
        return None, None  # parse_report kept the copies' applications only

    def notes(self) -> list[str]:
        with self._lock:
            return list(self._notes)

    def close(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._reader is not None:
            self._reader.join(timeout=2.0)
            self._reader = None
        self._remove_config()

    def wait_for_stream(self, timeout: float) -> None:
        """Wait until a replayed stream has been read to its end (tests)."""
        if self._reader is not None:
            self._reader.join(timeout)

    def _read(self, stream: Iterable[str]) -> None:
        for line in stream:
            t_ns = self._clock()
            if not line.strip():
                continue
            try:
                report = json.loads(line)
            except ValueError:
                with self._lock:
                    note = "neuron-monitor wrote a line that is not JSON"
                    if note not in self._notes:
                        self._notes.append(note)
                continue
            with self._lock:
                self._arrived.append((t_ns, report))

    def _remove_config(self) -> None:
        if self._config_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._config_path)
            self._config_path = None


def _get(value: Any, *keys: str) -> Any:
    """``value[k1][k2]...``, or None where a level is missing or not an object."""
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


__all__ = ["NEURON_MONITOR_FALLBACK", "NeuronMonitorTracker", "monitor_config", "parse_report"]
