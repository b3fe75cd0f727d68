"""How long entries take, as the plan says and as measured: the progress display's ETA and the
time a search saved against the grid's estimate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Optional

from neuronperf.entries import RunEntry

#: Seconds to start an entry's worker processes and load its model, beyond its warm-up.
STARTUP_ALLOWANCE_S = 1.5


def planned_seconds(entry: RunEntry) -> float:
    """What the plan says one entry takes: start-up, warm-up seconds and measured duration."""
    return STARTUP_ALLOWANCE_S + entry.benchmark.warmup_s + entry.benchmark.duration


@dataclass(frozen=True)
class Savings:
    """What a search measured of a plan, and the time it saved against measuring every entry.

    The grid's estimate is every planned entry at the mean time a measured entry took (its
    ``elapsed_s`` in the journal: from its start to its row, start-up and repeats included), or
    at the plan's figure when no measured entry recorded one. On the Ray executor entries
    overlap, so these are entry-seconds, not wall time."""

    total: int
    #: Entries not skipped by the search (measured, or not yet when it has not finished).
    measured: int
    skipped: int
    per_entry_s: float
    #: Whether ``per_entry_s`` is the mean of measured entries (else the plan's figure).
    measured_times: bool

    @property
    def grid_s(self) -> float:
        return self.per_entry_s * self.total

    @property
    def saved_s(self) -> float:
        return self.per_entry_s * self.skipped


def savings(entries: Iterable[RunEntry], skipped: int, elapsed: Iterable[Optional[float]]) -> Savings:
    """What a search of ``entries`` saved by skipping ``skipped`` of them, given the ``elapsed``
    seconds the journal recorded for each measured entry (None where it has none)."""
    entries = list(entries)
    times = [t for t in elapsed if t is not None and t > 0]
    planned = max((planned_seconds(e) * e.benchmark.repeat for e in entries), default=0.0)
    return Savings(
        total=len(entries), measured=len(entries) - skipped, skipped=skipped,
        per_entry_s=sum(times) / len(times) if times else planned, measured_times=bool(times),
    )


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``1 h 02 min``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {(seconds % 3600) // 60:02d} min"
