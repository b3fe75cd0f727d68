"""A search inside a sweep (``search: prune | quick``, docs/search.md): the rows it decides by,
the rows of the entries it skips, and what it saved.

The search's decisions follow from rows alone (``neuronperf.search.replay``): the rows of
entries measured before (the journal's, priced like the results files) and those measured by
this run. A row counts once it is final for this run: ``ok``, or a failure that this run
measured or keeps (``--keep-failed``); an earlier failure that this run retries does not count
until it is measured again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional

from neuronperf import results
from neuronperf.answers.slo import bounds_from_columns
from neuronperf.entries import Plan, RunEntry
from neuronperf.search.estimate import Savings, format_seconds, savings
from neuronperf.search.replay import Decision, decide
from neuronperf.search.space import Space
from neuronperf.sweep.outcome import SweepOptions
from neuronperf.sweep.state import SweepState

Row = Mapping[str, Any]


@dataclass(frozen=True)
class SearchReport:
    """What a search did: where it stands, and what it measured of the plan and saved."""

    strategy: str
    decision: Decision
    savings: Savings


class SweepSearch:
    """The search of one sweep: the rows it knows, and its current decision."""

    def __init__(self, plan: Plan, state: SweepState, options: SweepOptions, price: Callable[[Row], Row]):
        self.plan = plan
        self.state = state
        self.space = Space(plan.run_entries)
        self.bounds = bounds_from_columns(plan.slo)
        self.known: dict[RunEntry, Row] = {}
        for entry in plan.run_entries:
            record = state.record_for(entry)
            if record is not None and (record.get("status") == "ok" or not options.retry_failed):
                self.known[entry] = price(record["row"])
        self.decision = self._decide()

    def _decide(self) -> Decision:
        return decide(self.plan.run_entries, self.plan.search, self.bounds, self.known, self.space)

    @property
    def pending(self) -> list[RunEntry]:
        """What to measure next (empty once the search has decided every entry)."""
        return list(self.decision.pending)

    def measured(self, rows: Mapping[RunEntry, Row], wave: Sequence[RunEntry]) -> list[RunEntry]:
        """Take the rows of a measured wave; return the next wave."""
        for entry in wave:
            if entry in rows:
                self.known[entry] = rows[entry]
        self.decision = self._decide()
        return self.pending

    def skipped_rows(self) -> dict[RunEntry, dict]:
        """A row for each entry the search skips and has no row of its own to show."""
        return {entry: skipped_row(entry, self.state.identities[entry], reason)
                for entry, reason in self.decision.skipped.items() if entry not in self.known}

    def report(self) -> SearchReport:
        """What the search did: how many entries it skipped (of those without a row of their
        own), and the time that saved at the mean time of a measured entry."""
        skipped = sum(1 for entry in self.decision.skipped if entry not in self.known)
        elapsed = []
        for entry in self.plan.run_entries:
            record = self.state.record_for(entry)
            if record is not None and entry not in self.decision.skipped:
                elapsed.append(record.get("elapsed_s"))
        return SearchReport(self.plan.search.strategy, self.decision, savings(self.plan.run_entries, skipped, elapsed))


def first_search_wave(plan: Plan) -> list[RunEntry]:
    """What a search measures first when nothing is measured yet."""
    return list(decide(plan.run_entries, plan.search, bounds_from_columns(plan.slo), {}).pending)


def skipped_row(entry: RunEntry, identity: str, reason: str) -> dict:
    """The row of an entry the search does not measure: ``status: skipped`` and why."""
    row = results.row_for_unrun(entry, status="skipped", error=reason, model_name=entry.compile.model.name)
    row["key"] = identity
    return row


def describe(plan: Plan) -> str:
    """One line: the strategy, what it maximises, the bounds, and how it decides."""
    search = plan.search
    bounds = " and ".join(str(b) for b in bounds_from_columns(plan.slo))
    under = f" under {bounds}" if bounds else ""
    if search.strategy == "prune":
        how = ("measures the smallest entries first; an entry over a bound rules out the entries with a bigger "
               "batch size or more threads (same model, parameters, pipeline size and copies)")
    elif search.strategy == "quick":
        how = (f"climbs from the smallest entry to the best neighbour while it gains more than "
               f"{search.min_gain:.0%}")
    else:
        how = "measures every entry"
    budget = f", at most {search.budget} entries" if search.budget is not None and search.strategy != "grid" else ""
    return f"search: {search.strategy}, maximising {search.maximize}{under}: {how}{budget}"


def status_line(report: Optional[SearchReport]) -> Optional[str]:
    """``measured 20 of 48 entries (28 skipped by the prune search); about 1 min 10 s saved
    against the grid's estimate of 2 min 0 s``, or None without a search."""
    if report is None:
        return None
    s = report.savings
    if not report.decision.finished:
        return (f"the {report.strategy} search has not finished: {s.skipped} of {s.total} entries skipped so far "
                "(rerun to go on)")
    line = f"measured {s.measured} of {s.total} entries ({s.skipped} skipped by the {report.strategy} search)"
    if report.decision.budget_reached:
        line += f"; it stopped at search.budget ({len(report.decision.visited)} entries)"
    basis = "" if s.measured_times else ", at the plan's time per entry"
    return line + f"; about {format_seconds(s.saved_s)} saved against the grid's estimate of {format_seconds(s.grid_s)}{basis}"
