"""NVIDIA GPUs through NVML, with the official binding ``nvidia-ml-py`` (import name ``pynvml``).

The calls used, as the binding defines them: ``nvmlInit``/``nvmlShutdown``;
``nvmlDeviceGetCount`` and ``nvmlDeviceGetHandleByIndex`` (every GPU of the machine, in NVML's
PCI order); ``nvmlDeviceGetUUID`` (to match a ``CUDA_VISIBLE_DEVICES`` UUID);
``nvmlDeviceGetTotalEnergyConsumption`` (millijoules since the driver loaded, Volta and later);
``nvmlDeviceGetPowerUsage`` (milliwatts); ``nvmlDeviceGetUtilizationRates`` (``.gpu``: percent
of the last sample period, 1/6 s to 1 s by product, in which a kernel ran);
``nvmlDeviceGetComputeRunningProcesses`` (``.pid``, ``.usedGpuMemory`` in bytes, None where the
driver does not know it). A reading a GPU does not support raises ``NVMLError`` with
``NVML_ERROR_NOT_SUPPORTED`` and is not asked again.

The entry's GPUs are those on which NVML lists one of its copies' processes. Where it lists
none (in a container, NVML may report host pids), they are found from the copies'
``CUDA_VISIBLE_DEVICES`` when that is unambiguous, and the note says why the per-process memory
is empty.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional

from neuronperf.trackers.values import Sample

INSTALL_HINT = "pip install 'neuronperf-sweep[nvml]'"


@dataclass
class _Gpu:
    index: int
    handle: Any
    uuid: Optional[str]
    energy: bool = True  # each reading is dropped for good once the GPU says NOT_SUPPORTED
    power: bool = True
    util: bool = True
    processes: bool = True


class NvmlTracker:
    """GPU energy, power, utilisation and the copies' memory (``energy_source: nvml``, or
    ``nvml-power`` where energy is integrated from power because the GPU has no counter).

    ``visible_devices`` are the copies' ``CUDA_VISIBLE_DEVICES`` values; ``module`` replaces the
    ``pynvml`` import (tests pass a stand-in)."""

    mem_column: Optional[str] = "device_mem_mb_nvml_peak"

    def __init__(self, visible_devices: Sequence[str] = (), *, module: Any = None,
                 device_order: Optional[str] = None, clock: Callable[[], int] = time.perf_counter_ns):
        self.visible_devices = tuple(visible_devices)
        self.device_order = device_order if device_order is not None else os.environ.get("CUDA_DEVICE_ORDER", "")
        self._module = module
        self._clock = clock
        self._nv: Any = None
        self._gpus: list[_Gpu] = []
        self._started = False
        #: The first error of each kind of reading, for the note.
        self.errors: dict[str, str] = {}

    @property
    def name(self) -> str:
        if self._gpus and not any(g.energy for g in self._gpus) and any(g.power for g in self._gpus):
            return "nvml-power"
        return "nvml"

    def open(self) -> Optional[str]:
        nv = self._module
        if nv is None:
            try:
                import pynvml as nv  # type: ignore[import-not-found,no-redef]
            except ImportError:
                return f"pynvml not installed ({INSTALL_HINT})"
        self._nv = nv
        try:
            nv.nvmlInit()
        except nv.NVMLError as e:
            return f"NVML could not start: {e}"
        self._started = True
        try:
            count = int(nv.nvmlDeviceGetCount())
            self._gpus = [_Gpu(i, nv.nvmlDeviceGetHandleByIndex(i), None) for i in range(count)]
        except nv.NVMLError as e:
            return f"NVML could not list the GPUs: {e}"
        for gpu in self._gpus:
            uuid = self._optional(nv.nvmlDeviceGetUUID, gpu.handle)
            gpu.uuid = _text(uuid) if uuid is not None else None
            # Probe once: a GPU without the counter (before Volta) is integrated from power.
            if self._optional(nv.nvmlDeviceGetTotalEnergyConsumption, gpu.handle) is None:
                gpu.energy = False
        if not self._gpus:
            return "NVML found no GPU"
        return None

    def reads_power(self) -> bool:
        return any(g.energy or g.power for g in self._gpus)

    def poll(self, pids: frozenset[int]) -> list[Sample]:
        nv = self._nv
        before = self._clock()
        energy: dict[str, float] = {}
        power: dict[str, float] = {}
        util: dict[str, float] = {}
        mem: dict[str, int] = {}
        present: set[str] = set()
        for gpu in self._gpus:
            channel = f"gpu{gpu.index}"
            if gpu.energy:
                mj = self._read(gpu, "energy", nv.nvmlDeviceGetTotalEnergyConsumption)
                if mj is not None:
                    energy[channel] = float(mj) / 1e3
            if gpu.power:
                mw = self._read(gpu, "power", nv.nvmlDeviceGetPowerUsage)
                if mw is not None:
                    power[channel] = float(mw) / 1e3
            if gpu.util:
                rates = self._read(gpu, "util", nv.nvmlDeviceGetUtilizationRates)
                if rates is not None:
                    util[channel] = float(rates.gpu)
            if gpu.processes and pids:
                procs = self._read(gpu, "processes", nv.nvmlDeviceGetComputeRunningProcesses)
                ours = [p for p in procs or () if int(p.pid) in pids]
                if ours:
                    present.add(channel)
                    known = [int(p.usedGpuMemory) for p in ours if p.usedGpuMemory is not None]
                    if known:
                        mem[channel] = sum(known)
        after = self._clock()
        return [Sample(t_ns=(before + after) // 2, energy_j=energy, power_w=power, util_pct=util,
                       mem_bytes=mem, present=frozenset(present))]

    def entry_channels(self, samples: Sequence[Sample]) -> tuple[Optional[frozenset[str]], Optional[str]]:
        seen = frozenset().union(*(s.present for s in samples)) if samples else frozenset()
        if seen:
            return seen, None
        if not any(g.processes for g in self._gpus):
            unseen = "NVML cannot list processes on these GPUs, so device_mem_mb_nvml_peak is empty"
        else:
            unseen = ("NVML listed none of the copies' processes (in a container it may see host pids), "
                      "so device_mem_mb_nvml_peak is empty")
        chosen = self._by_visible_devices()
        if chosen is None:
            return frozenset(), (f"{unseen}; which GPU the copies used is unknown (set CUDA_DEVICE_ORDER="
                                 "PCI_BUS_ID or pin them by UUID), so the device-wide columns are empty too")
        return chosen, unseen

    def notes(self) -> list[str]:
        return list(self.errors.values())

    def close(self) -> None:
        if self._started:
            self._started = False
            # A failed shutdown leaves nothing that the driver does not release at exit.
            with contextlib.suppress(self._nv.NVMLError):
                self._nv.nvmlShutdown()
        # The GPUs' list stays: what they support still describes the samples taken.

    # ---- helpers ----------------------------------------------------------------------------

    def _by_visible_devices(self) -> Optional[frozenset[str]]:
        """The copies' GPUs from their CUDA_VISIBLE_DEVICES, where that names them for certain:
        UUIDs, or indices when there is one GPU or CUDA counts them in NVML's PCI order."""
        if len(self._gpus) == 1:
            return frozenset({"gpu0"})
        if not self.visible_devices:
            return None
        chosen = set()
        for value in self.visible_devices:
            if value.startswith(("GPU-", "MIG-")):
                match = [g for g in self._gpus if g.uuid and g.uuid.startswith(value)]
                if len(match) != 1:
                    return None
                chosen.add(f"gpu{match[0].index}")
            elif value.isdigit() and self.device_order == "PCI_BUS_ID" and int(value) < len(self._gpus):
                chosen.add(f"gpu{int(value)}")
            else:
                return None
        return frozenset(chosen)

    def _read(self, gpu: _Gpu, kind: str, call: Callable[[Any], Any]) -> Any:
        """``call(gpu.handle)``; None when it fails (NOT_SUPPORTED: never asked again)."""
        try:
            return call(gpu.handle)
        except self._nv.NVMLError as e:
            if getattr(e, "value", None) == self._nv.NVML_ERROR_NOT_SUPPORTED:
                setattr(gpu, kind, False)
            else:
                self.errors.setdefault(kind, f"nvml {kind}: {e}")
            return None

    def _optional(self, call: Callable[[Any], Any], handle: Any) -> Any:
        try:
            return call(handle)
        except self._nv.NVMLError:
            return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
