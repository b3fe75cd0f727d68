"""What a sweep is asked to do (``SweepOptions``), who hears of its progress (``Observer``; the
CLI prints), and what it did (``SweepSummary``, whose ``exit_code`` follows design.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from neuronperf.compilation.jobs import CompileResult
from neuronperf.entries import CompileEntry, Plan, RunEntry
from neuronperf.errors import (
    OutputWriteFailed,
)


class Observer:
    """Progress callbacks; the default ignores everything. The CLI subclasses it to print."""

    def planned(self, plan: Plan, reused: int, to_run: int) -> None: ...
    def compile_started(self, entry: CompileEntry) -> None: ...
    def compile_finished(self, result: CompileResult) -> None: ...
    def run_started(self, entry: RunEntry, position: int, total: int) -> None: ...
    def run_finished(self, entry: RunEntry, row: dict) -> None: ...
    def search_round(self, plan: Plan, decision: Any) -> None: ...


@dataclass(frozen=True)
class SweepOptions:
    """How ``run_sweep`` treats what output_dir already holds."""

    fresh: bool = False  # forget everything from earlier runs and start over
    retry_failed: bool = True  # rerun entries whose last attempt failed (else keep their rows)
    allow_env_mismatch: bool = False  # accept results from another machine or toolchain
    compile_only: bool = False  # stop after the compile stage
    cost_per_hour: Optional[float] = None  # overrides the spec's cost_per_hour and the price table
    price_file: Optional[str] = None  # a YAML/JSON file of instance type -> USD per hour
    executor: Optional[str] = None  # overrides the spec's executor ("local", "ray")
    address: Optional[str] = None  # overrides the spec's ray.address


@dataclass
class SweepSummary:
    """What a sweep did; ``exit_code`` follows design.md."""

    plan: Plan
    output_dir: Path
    rows: list = field(default_factory=list)
    reused: int = 0
    ran: int = 0
    compiled: int = 0
    compile_reused: int = 0
    compile_failed: list = field(default_factory=list)
    interrupted: bool = False
    #: Set when a file in output_dir could not be written (a full disk): the sweep stopped
    #: there; what finished is in ``rows`` and, durably, in the journal.
    write_error: Optional[str] = None
    #: Half-built artifacts that stopped runs had left in ``models/``, removed by this run.
    abandoned_removed: list = field(default_factory=list)
    #: What the search measured, skipped and saved (``search: prune | quick``), else None.
    search: Any = None

    @property
    def failed_rows(self) -> list:
        return [r for r in self.rows if r.get("status") in ("error", "timeout")]

    @property
    def not_measured(self) -> int:
        """Rows not measured yet (an interrupted sweep), besides those a search skipped."""
        skipped = sum(1 for r in self.rows if r.get("status") == "skipped")
        return skipped - (self.search.savings.skipped if self.search is not None else 0)

    @property
    def exit_code(self) -> int:
        if self.write_error is not None:
            return OutputWriteFailed.exit_code
        if self.interrupted:
            return 130
        return 1 if self.failed_rows or self.compile_failed else 0
