"""The ``search`` key against the rest of the spec: a strategy's own settings only with it, and
``prune`` only with a latency bound to prune by.

Whether the rows will have the ``objectives.maximize`` column depends on the result columns,
which live above the spec stage; the sweep checks it when it loads the plan
(``neuronperf.search.checks``), located like the problems found here.
"""

from __future__ import annotations

from typing import Any

from neuronperf.entries import SEARCH_STRATEGIES
from neuronperf.spec.context import CheckContext


def search_strategy(data: dict) -> Any:
    """The strategy as written (``search: prune`` or ``search: {strategy: prune}``), or None."""
    search = data.get("search")
    if isinstance(search, dict):
        return search.get("strategy")
    return search


def search_pass(ctx: CheckContext, data: dict) -> None:
    search = data.get("search")
    strategy = search_strategy(data)
    if strategy not in SEARCH_STRATEGIES:
        return  # the schema pass has said what is allowed
    if isinstance(search, dict):
        if "min_gain" in search and strategy != "quick":
            ctx.problem(("search", "min_gain"), f"min_gain applies to strategy: quick (the climb's step); {strategy} does not climb", at_key=True)
        if "budget" in search and strategy == "grid":
            ctx.problem(("search", "budget"), "budget applies to strategy: prune or quick; a grid measures every entry", at_key=True)
    objectives = data.get("objectives")
    bounds = objectives.get("slo") if isinstance(objectives, dict) else None
    if strategy == "prune" and not bounds:
        where = ("search", "strategy") if isinstance(search, dict) else ("search",)
        ctx.problem(where, "prune rules entries out by a latency bound, and the spec has none: add one "
                           "(objectives: {slo: {latency_ms_p99: 20}}) or use search: grid")
