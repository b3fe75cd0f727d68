"""What ``neuronperf status`` and ``neuronperf plan --search`` show: each planned entry's state
in output_dir, why, and where a search stands, read without running or writing anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from neuronperf.answers import prices
from neuronperf.entries import Plan, RunEntry
from neuronperf.results.lock import lock_holder
from neuronperf.search.replay import Decision
from neuronperf.sweep.outcome import SweepOptions
from neuronperf.sweep.searching import SweepSearch
from neuronperf.sweep.state import SweepState, backend_for, load_plan

#: The states of an entry: measured (done, failed), to measure (todo), and with a search,
#: left out by it (skipped) or measured only if the search reaches it (undecided).
STATES = ("done", "failed", "todo", "skipped", "undecided")


@dataclass(frozen=True)
class StatusReport:
    """Each planned run entry's state, why (a measured entry that must run again, an entry the
    search skips), the folder that was read, who holds it now, and the search's decision."""

    plan: Plan
    output_dir: Path
    states: dict  # RunEntry -> one of STATES
    reasons: dict  # RunEntry -> why it runs again, or why the search skips it
    holder: Optional[str]  # "pid N" while a run holds output_dir, else None
    #: Where the search stands (``neuronperf.search.replay.Decision``), None for a grid.
    search: Optional[Decision] = None

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for v in self.states.values() if v == s) for s in STATES}


def sweep_report(spec_path: str) -> StatusReport:
    """The ``StatusReport`` of a spec's output_dir, without running or writing anything."""
    _, plan = load_plan(spec_path)
    backend = backend_for(plan)
    output_dir = Path(plan.output_dir).resolve()
    state = SweepState(plan, output_dir, backend)
    states = {e: state.status_of(e) for e in plan.run_entries}
    reasons = {e: why for e in plan.run_entries if (why := state.why_todo(e))}
    decision = None
    if plan.search.strategy != "grid":
        pricing = prices.resolve_pricing(plan.instance_type, plan.cost_per_hour, None)
        search = SweepSearch(plan, state, SweepOptions(), lambda row: prices.apply_pricing(row, pricing))
        decision = search.decision
        pending = set(decision.pending)
        for entry in plan.run_entries:
            if entry in search.known:
                continue
            if entry in decision.skipped:
                states[entry], reasons[entry] = "skipped", decision.skipped[entry]
            elif entry not in pending:
                states[entry] = "undecided"
                reasons.setdefault(entry, "measured if the search reaches it")
    return StatusReport(plan, output_dir, states, reasons, lock_holder(str(output_dir)), decision)


def sweep_status(spec_path: str) -> tuple[Plan, dict[RunEntry, str]]:
    """Each planned run entry's state in output_dir, without running."""
    report = sweep_report(spec_path)
    return report.plan, report.states
