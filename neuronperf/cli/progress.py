"""How far a sweep is, and when it will end: counts and an ETA for the progress display.

Pure: the caller passes the clock readings, so the estimate can be tested exactly. Before any
entry has finished, each entry is expected to take what the plan says (its measured duration,
its warm-up seconds and a start-up allowance for the worker processes); after that, the plan's
figure gives way to the mean time the finished entries really took.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

from neuronperf.entries import Plan, RunEntry
from neuronperf.search.estimate import STARTUP_ALLOWANCE_S, format_seconds, planned_seconds

__all__ = ["STARTUP_ALLOWANCE_S", "SweepProgress", "format_seconds", "planned_seconds"]


@dataclass
class SweepProgress:
    """Counts of done / failed / to do, the current entry, and the ETA. Every entry of a sweep
    shares its benchmark settings, so one planned figure (``per_entry_s``) serves them all."""

    total: int
    per_entry_s: float
    done: int = 0
    failed: int = 0
    current: Optional[str] = None
    _started_at: Optional[float] = None
    _actual_done: float = 0.0

    @classmethod
    def for_plan(cls, plan: Plan, to_run: int) -> SweepProgress:
        first = plan.run_entries[0]
        return cls(total=to_run, per_entry_s=planned_seconds(first))

    @property
    def todo(self) -> int:
        return self.total - self.done - self.failed

    def started(self, entry: RunEntry, now: float) -> None:
        self.current = entry.id
        self._started_at = now

    def finished(self, entry: RunEntry, row: Mapping[str, Any], now: float) -> None:
        if row.get("status") == "ok":
            self.done += 1
        else:
            self.failed += 1
        if self._started_at is not None:
            self._actual_done += max(0.0, now - self._started_at)
        self.current = None
        self._started_at = None

    def expected_entry_s(self) -> float:
        """The plan's figure until an entry has finished, then the mean of the finished ones."""
        finished = self.done + self.failed
        return self._actual_done / finished if finished and self._actual_done > 0 else self.per_entry_s

    def eta_s(self, now: float) -> Optional[float]:
        """Seconds until the last entry ends; None when nothing is left."""
        if self.todo <= 0:
            return None
        each = self.expected_entry_s()
        remaining = self.todo * each
        if self._started_at is not None:
            remaining -= min(max(0.0, now - self._started_at), each)
        return max(0.0, remaining)

    def line(self, now: float) -> str:
        """e.g. ``3 done, 1 failed, 4 to do; about 42 s left``."""
        text = f"{self.done} done, {self.failed} failed, {self.todo} to do"
        eta = self.eta_s(now)
        return text + (f"; about {format_seconds(eta)} left" if eta is not None else "")
