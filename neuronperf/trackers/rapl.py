"""CPU package energy from Linux's powercap interface (RAPL), read through sysfs.

Each CPU package is a folder ``<root>/intel-rapl:<N>`` (AMD processors use the same names) with
``energy_uj``, a counter in microjoules that wraps to 0 after ``max_energy_range_uj``, and
``name`` (``package-0``). Its sub-domains (``intel-rapl:0:0``, cores or DRAM) are parts of the
package and are not added again; a ``psys`` domain (the whole platform, on some laptops) is left
out for the same reason. The figure is machine-wide: every process on the packages counts.

Since 2020 kernels make ``energy_uj`` readable by root only: the tracker then says which file it
could not read, and the energy columns stay empty.
"""

from __future__ import annotations

import glob
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable, Optional

from neuronperf.trackers.values import Sample

POWERCAP_ROOT = "/sys/class/powercap"
_PACKAGE_DIR = re.compile(r"intel-rapl:\d+$")


@dataclass
class _Domain:
    name: str
    energy_path: str
    range_uj: int
    last_raw: Optional[int] = None
    #: Microjoules lost to wraparounds so far.
    wrapped_uj: int = 0


class RaplTracker:
    """CPU package energy (``energy_source: rapl``). ``root`` is the powercap folder, so that
    tests can pass a tree of their own."""

    name = "rapl"
    mem_column: Optional[str] = None

    def __init__(self, root: str = POWERCAP_ROOT, clock: Callable[[], int] = time.perf_counter_ns):
        self.root = root
        self._clock = clock
        self._domains: list[_Domain] = []

    def open(self) -> Optional[str]:
        self._domains = []
        folders = sorted(p for p in glob.glob(os.path.join(self.root, "intel-rapl:*"))
                         if _PACKAGE_DIR.search(os.path.basename(p)))
        for folder in folders:
            name = _read_text(os.path.join(folder, "name"))
            if name is not None and not name.startswith("package"):
                continue  # psys: the platform, which contains the packages
            label = name or os.path.basename(folder)
            energy_path = os.path.join(folder, "energy_uj")
            range_path = os.path.join(folder, "max_energy_range_uj")
            # Every package, or none: one unreadable package would make the sum a guess.
            for path in (energy_path, range_path):
                problem = _unreadable(path)
                if problem is not None:
                    self._domains = []
                    return f"no readable powercap files: {path}: {problem}"
            self._domains.append(_Domain(label, energy_path, int(_read_text(range_path) or 0)))
        if not self._domains:
            return f"no readable powercap files (no RAPL package domain under {self.root})"
        return None

    def reads_power(self) -> bool:
        return bool(self._domains)

    def poll(self, pids: frozenset[int]) -> list[Sample]:
        before = self._clock()
        energy: dict[str, float] = {}
        for d in self._domains:
            with open(d.energy_path, encoding="ascii") as f:  # an error ends this poll only
                raw = int(f.read().strip())
            if d.last_raw is not None and raw < d.last_raw:
                # The counter passed max_energy_range_uj and started again from 0.
                d.wrapped_uj += d.range_uj
            d.last_raw = raw
            energy[d.name] = (raw + d.wrapped_uj) / 1e6
        after = self._clock()
        return [Sample(t_ns=(before + after) // 2, energy_j=energy)]

    def entry_channels(self, samples: Sequence[Sample]) -> tuple[Optional[frozenset[str]], Optional[str]]:
        return None, None  # every package: the CPU is the device of a CPU entry

    def notes(self) -> list[str]:
        return []

    def close(self) -> None:
        pass  # plain file reads: nothing stays open between polls


def _read_text(path: str) -> Optional[str]:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _unreadable(path: str) -> Optional[str]:
    """Why ``path`` cannot be read as an integer, or None when it can."""
    try:
        with open(path, encoding="ascii") as f:
            int(f.read().strip())
    except OSError as e:
        return e.strerror or type(e).__name__
    except (ValueError, UnicodeDecodeError):
        return "not an integer"
    return None
