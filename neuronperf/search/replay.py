"""A search's decisions, derived from the rows measured so far and nothing else.

``decide`` runs every question's strategy from its start, feeding each wave the rows already
known; it stops at the first round whose waves hold entries with no row yet: those are what to
measure next (``pending``). Rows arrive, ``decide`` runs again from the start and gets one round
further. Since a strategy sees only the rows of the waves it asked for, a rerun after a crash
(the journal's rows) asks for exactly the waves the interrupted run asked for, and reaches the
same answer; a finished search is one pass of pure Python over the journal's rows.

The questions advance in rounds, together: round *k* is every question's *k*-th wave, measured
at once (several at a time on the Ray executor). ``search.budget`` counts the entries of the
rounds in order (questions in plan order, each wave in its order); the wave that reaches it is
cut there and the search ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from neuronperf.answers.slo import LatencyBound, Objective
from neuronperf.entries import RunEntry, SearchSettings
from neuronperf.search.space import Question, Space, question_of
from neuronperf.search.strategies import Rows, Waves, feasible, prune, quick, ruled_out

#: The reason of an entry the quick search did not reach (and no bound rules out).
NOT_VISITED = "not visited by the quick search"


@dataclass(frozen=True)
class Decision:
    """Where a search stands, given the rows it was shown."""

    strategy: str
    #: The entries to measure next (one round of waves), in plan order; empty once decided.
    pending: tuple[RunEntry, ...]
    #: The entries the search asked for whose rows it has seen, in the order it asked.
    visited: tuple[RunEntry, ...]
    #: Entry -> why the search does not measure it: a bound that a measured entry below it
    #: failed (at any time), or, once the search has finished, not reached.
    skipped: Mapping[RunEntry, str]
    #: Whether the search has decided every entry (nothing pending).
    finished: bool
    #: Whether ``search.budget`` ended it.
    budget_reached: bool = False
    #: How many rounds of waves it has asked for.
    rounds: int = 0
    #: The best feasible entry of each question among those visited (None: none feasible).
    best: Mapping[Question, Optional[RunEntry]] = field(default_factory=dict)


def strategy_waves(space: Space, question: Question, settings: SearchSettings, bounds: Sequence[LatencyBound],
                   objective: Objective) -> Waves:
    if settings.strategy == "prune":
        return prune(space, question, bounds)
    if settings.strategy == "quick":
        return quick(space, question, bounds, objective, settings.min_gain)
    raise ValueError(f"no search for strategy {settings.strategy!r}")


def decide(entries: Sequence[RunEntry], settings: SearchSettings, bounds: Sequence[LatencyBound],
           known: Mapping[RunEntry, Mapping[str, Any]], space: Optional[Space] = None) -> Decision:
    """Replay the search over ``known`` rows (entry -> row; the entries measured so far, ok or
    not, that count as final) and say what to measure next or, when it has finished, what it
    skipped and why."""
    space = space or Space(entries)
    objective = Objective.parse(settings.maximize)
    running: dict[Question, Waves] = {}
    waves: dict[Question, list[RunEntry]] = {}
    for question in space.questions:
        generator = strategy_waves(space, question, settings, bounds, objective)
        running[question] = generator
        waves[question] = next(generator)
    seen: dict[Question, Rows] = {q: {} for q in space.questions}
    visited: list[RunEntry] = []
    budget = settings.budget
    rounds = 0
    budget_reached = False
    while waves:
        rounds += 1
        if budget is not None:
            waves, budget_reached = _cut(waves, budget - len(visited))
        missing = [e for wave in waves.values() for e in wave if e not in known]
        if missing:
            return Decision(settings.strategy, tuple(sorted(missing, key=space.position.__getitem__)), tuple(visited),
                            _ruled_out(space, seen, bounds), False, False, rounds, _best(seen, bounds, objective))
        following: dict[Question, list[RunEntry]] = {}
        for question, wave in waves.items():
            rows = {e: known[e] for e in wave}
            seen[question].update(rows)
            visited.extend(wave)
            if budget_reached:
                continue
            with contextlib.suppress(StopIteration):  # the strategy has decided
                following[question] = running[question].send(rows)
        waves = following
    skipped = _ruled_out(space, seen, bounds)
    for entry in space.entries:
        if entry not in skipped and entry not in seen[question_of(entry)]:
            if budget_reached:
                skipped[entry] = f"not measured: search.budget ({budget} entries) was reached"
            else:  # (a finished prune rules out every entry it did not measure)
                skipped[entry] = NOT_VISITED if settings.strategy == "quick" else f"not visited by the {settings.strategy} search"
    return Decision(settings.strategy, (), tuple(visited), skipped, True, budget_reached, rounds,
                    _best(seen, bounds, objective))


def _cut(waves: dict[Question, list[RunEntry]], left: int) -> tuple[dict[Question, list[RunEntry]], bool]:
    """The round's waves within ``left`` more entries, and whether the budget ends the search."""
    total = sum(len(w) for w in waves.values())
    if total < left:
        return waves, False
    kept: dict[Question, list[RunEntry]] = {}
    for question, wave in waves.items():
        take = wave[:max(0, left)]
        left -= len(take)
        if take:
            kept[question] = take
    return kept, True


def _ruled_out(space: Space, seen: dict[Question, Rows], bounds: Sequence[LatencyBound]) -> dict[RunEntry, str]:
    found = {}
    for question, members in space.questions.items():
        rows = seen[question]
        for entry in members:
            if entry not in rows:
                why = ruled_out(entry, rows, bounds, space)
                if why is not None:
                    found[entry] = why
    return found


def _best(seen: dict[Question, Rows], bounds: Sequence[LatencyBound], objective: Objective) -> dict[Question, Optional[RunEntry]]:
    best: dict[Question, Optional[RunEntry]] = {}
    for question, rows in seen.items():
        good = [e for e, row in rows.items() if feasible(row, bounds, objective)]
        best[question] = max(good, key=lambda e: objective.value(rows[e]) or 0.0) if good else None
    return best
