"""Telemetry: device memory, utilisation, power and energy of one entry, read from outside.

Takes in: the entry's device type, the pids of its copies (the worker processes) and the devices
they were pinned to, the sampling period (``benchmark.telemetry.period_ms``), and, once measured,
the shared window. Gives out: one ``Telemetry`` value per repeat, the figures behind the row's
columns ``device_mem_mb_peak``, ``device_mem_mb_nvml_peak``, ``device_util_pct_avg``,
``power_w_avg``, ``power_w_idle``, ``energy_j_per_inf``, ``energy_source`` and
``telemetry_note`` (``docs/measurement.md`` defines each).

Every reading happens in the supervisor process, on a ``Sampler`` thread, never inside a measured
process. One tracker serves each device type: ``RaplTracker`` (CPU package energy from sysfs
powercap), ``NvmlTracker`` (NVIDIA GPUs through ``nvidia-ml-py``) and ``NeuronMonitorTracker``
(the JSON stream of AWS ``neuron-monitor``). A source that is absent or unreadable is a note, never
an exception, and its columns stay empty: nothing is estimated.
"""

from __future__ import annotations

from neuronperf.trackers.neuron_monitor import NeuronMonitorTracker, parse_report
from neuronperf.trackers.nvml import NvmlTracker
from neuronperf.trackers.rapl import RaplTracker
from neuronperf.trackers.sampler import DEFAULT_PERIOD_MS, IDLE_S, Sampler, summarise, tracker_for
from neuronperf.trackers.values import Sample, Telemetry, Tracker

__all__ = [
    "DEFAULT_PERIOD_MS", "IDLE_S", "NeuronMonitorTracker", "NvmlTracker",
    "RaplTracker", "Sample", "Sampler", "Telemetry", "Tracker", "parse_report", "summarise", "tracker_for",
]
