"""Latency bounds (``--slo p99<=20ms``, ``objectives.slo``) and the best configuration under them.

Pure Python over report rows (plain dicts), so that ``neuronperf run`` answers at its end
without importing pandas. The question is asked per model and per value of its swept
parameters (BERT at sequence 128 and at 512 are different questions):

- best: the ``ok`` row with the highest objective (``objectives.maximize``, by default
  ``throughput_avg``; ties: the lower latency at the bound's percentile, then plan order) among
  the rows that meet the bound; a row of the server scenario counts with the rate it serves
  (``served_rate``: its ``max_rate_under_slo`` when it searched for it, else ``rate_achieved``)
  under the default objective, and an invalid one (overloaded, or its harness lag too large)
  never qualifies;
- cheapest: the lowest ``cost_per_1m_inf`` among the same rows, where rows carry a cost;
- closest: when no row meets the bound, the row with the lowest latency at that percentile.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from neuronperf.backends.neuron_sdk import NEURON_COLUMNS
from neuronperf.errors import UsageError
from neuronperf.results.columns import RESULT_COLUMNS
from neuronperf.stats.generation import GENERATION_FIGURES
from neuronperf.stats.serving import GOODPUT_COLUMN, SERVING_COLUMNS

#: The percentiles every row reports (``latency_ms_p<N>``).
REPORTED_PERCENTILES = (0, 50, 90, 95, 99, 100)
#: Columns that are neither fixed columns nor swept parameters (added by repeated measurement).
KNOWN_EXTRA_COLUMNS = (
    "repeats",
    "throughput_ci_low",
    "throughput_ci_high",
    "latency_ms_p50_ci_low",
    "latency_ms_p50_ci_high",
    # A generation row's figures (new_tokens is not one: it is an axis, like a parameter).
    *GENERATION_FIGURES,
    "eval_error",
    # What a Neuron row ran on (the SDK, the logical NeuronCore config, the compiler flags).
    *NEURON_COLUMNS,
    # The server scenario's columns: its axes (rate, queue delay) are candidates within one
    # question, like batch sizes, not questions of their own.
    *SERVING_COLUMNS,
    GOODPUT_COLUMN,
)
_BOUND = re.compile(r"^\s*p(?P<q>\d+)\s*<=\s*(?P<limit>\S.*?)\s*$", re.IGNORECASE)
_LIMIT = re.compile(r"^(?P<number>\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?\s*(?P<unit>ms|s)$", re.IGNORECASE)
Row = Mapping[str, Any]


@dataclass(frozen=True)
class LatencyBound:
    """"The ``percentile``-th latency percentile is at most ``limit_ms`` milliseconds"; with
    ``kind`` "ttft" or "tpot", a generation row's time to first token or per output token."""

    percentile: int
    limit_ms: float
    kind: str = "latency"

    @property
    def column(self) -> str:
        """The row column this bound reads, e.g. ``latency_ms_p99``."""
        return f"{self.kind}_ms_p{self.percentile}"

    def __str__(self) -> str:
        prefix = "" if self.kind == "latency" else f"{self.kind} "
        return f"{prefix}p{self.percentile}<={self.limit_ms:g}ms"

    def latency(self, row: Row) -> Optional[float]:
        return number(row.get(self.column))

    def met_by(self, row: Row) -> bool:
        if self.kind != "latency" and self.column not in row:
            return True  # a TTFT or TPOT bound says nothing of a row without tokens
        value = self.latency(row)
        return value is not None and value <= self.limit_ms


@dataclass(frozen=True)
class Objective:
    """What "best" means: the highest value of a row ``column``, or the lowest (``minimize``;
    written ``-column``, e.g. ``-cost_per_1m_inf``)."""

    column: str = "throughput_avg"
    minimize: bool = False

    @classmethod
    def parse(cls, text: str) -> Objective:
        """``"throughput_avg"`` or ``"-cost_per_1m_inf"`` (``objectives.maximize``)."""
        return cls(text[1:], True) if text.startswith("-") else cls(text, False)

    def __str__(self) -> str:
        return f"-{self.column}" if self.minimize else self.column

    @property
    def label(self) -> str:
        """``highest throughput_avg``, ``lowest cost_per_1m_inf``."""
        return f"{'lowest' if self.minimize else 'highest'} {self.column}"

    def value(self, row: Row) -> Optional[float]:
        """The row's score, higher is better (the column negated when minimising); None when the
        row has no number there."""
        # A server row's throughput is the rate it serves: its max_rate_under_slo when it searched.
        value = served_rate(row) if self.column == "throughput_avg" else number(row.get(self.column))
        return None if value is None else (-value if self.minimize else value)


#: The default objective: the highest throughput.
THROUGHPUT = Objective()


def parse_bound(text: str) -> LatencyBound:
    """``"p99<=20ms"`` -> ``LatencyBound(99, 20.0)``; ``s`` works too (``p50<=0.5s``). A malformed
    bound is a one-line ``UsageError`` that says what is allowed."""
    match = _BOUND.match(text)
    if not match:
        raise UsageError(f"--slo {text!r}: write PERCENTILE<=LIMIT with a unit, e.g. p99<=20ms or p50<=0.5s")
    q = int(match.group("q"))
    if q not in REPORTED_PERCENTILES:
        shown = ", ".join(f"p{p}" for p in REPORTED_PERCENTILES)
        raise UsageError(f"--slo {text!r}: p{q} is not a reported percentile (reported: {shown})")
    raw_limit = match.group("limit")
    limit = _LIMIT.match(raw_limit)
    if not limit:
        raise UsageError(f"--slo {text!r}: {raw_limit!r} is not a latency; write a number with ms or s, e.g. 20ms")
    value = float(raw_limit[: limit.start("unit")].strip())
    if not (math.isfinite(value) and value > 0):
        raise UsageError(f"--slo {text!r}: the limit must be a positive latency")
    unit = limit.group("unit").lower()
    return LatencyBound(q, value * 1000.0 if unit == "s" else value)


def bounds_from_columns(slo: Iterable[tuple[str, float]]) -> tuple[LatencyBound, ...]:
    """The spec's ``objectives.slo`` pairs (``("latency_ms_p99", 20.0)``) as bounds."""
    bounds = []
    for column, limit in slo:
        match = re.fullmatch(r"(latency|ttft|tpot)_ms_p(\d+)", column)
        allowed = REPORTED_PERCENTILES if match and match.group(1) == "latency" else (50, 90, 99)
        if not match or int(match.group(2)) not in allowed:
            raise UsageError(f"objectives.slo: {column!r} is not a reported latency percentile column")
        bounds.append(LatencyBound(int(match.group(2)), float(limit), match.group(1)))
    return tuple(bounds)


def merge_bounds(*groups: Iterable[LatencyBound]) -> tuple[LatencyBound, ...]:
    """All bounds in order, each once."""
    return tuple(dict.fromkeys(b for group in groups for b in group))


def number(value: Any) -> Optional[float]:
    """A finite number, or None (missing, NaN, text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def figure_columns() -> set[str]:
    """Every column that is a figure or a fixed column of a row, not a swept parameter: the
    fixed columns, the known extra ones and the registered accuracy metrics (``evaluate``)."""
    from neuronperf.metrics import list_metrics

    return set(RESULT_COLUMNS) | set(KNOWN_EXTRA_COLUMNS) | set(list_metrics()) | {"topk"}


def param_columns(rows: Sequence[Row]) -> list[str]:
    """The swept parameter columns: every column that is neither fixed nor known extra."""
    fixed = figure_columns()
    seen: dict[str, None] = {}
    for row in rows:
        for name in row:
            if name not in fixed:
                seen.setdefault(name)
    return list(seen)


@dataclass(frozen=True)
class Group:
    """One question: a model at one combination of its swept parameters."""

    model: str
    params: tuple[tuple[str, Any], ...]

    @property
    def label(self) -> str:
        values = " ".join(f"{k}={v}" for k, v in self.params)
        return f"{self.model} {values}" if values else self.model


def group_rows(rows: Sequence[Row]) -> dict[Group, list[Row]]:
    """The rows of each (model, swept parameter values), in order of first appearance."""
    params = param_columns(rows)
    groups: dict[Group, list[Row]] = {}
    for row in rows:
        values = tuple((p, row.get(p)) for p in params if _present(row.get(p)))
        group = Group(str(row.get("model_name") or "model"), values)
        groups.setdefault(group, []).append(row)
    return groups


@dataclass(frozen=True)
class Choice:
    """The answer for one group under one bound (``bounds`` empty: no bound at all)."""

    group: Group
    bounds: tuple[LatencyBound, ...]
    best: Optional[Row]
    cheapest: Optional[Row]
    #: Set only when no row meets the bounds: the row that came closest.
    closest: Optional[Row]
    #: How many measured rows there were to choose from.
    candidates: int
    #: What ``best`` maximises.
    objective: Objective = THROUGHPUT


def measured(rows: Iterable[Row]) -> list[Row]:
    """The rows that can be chosen: ``ok`` and with a throughput."""
    return [r for r in rows if r.get("status") == "ok" and number(r.get("throughput_avg")) is not None]


def is_server(row: Row) -> bool:
    """Whether a row comes from the server scenario (requests arriving at a rate)."""
    return row.get("scenario") == "server"


def served_rate(row: Row) -> Optional[float]:
    """What a row says its configuration can do: a server row's ``max_rate_under_slo`` when it
    searched for it (None when no rate met the bound), else the requests it served per second;
    a closed-loop row's ``throughput_avg``."""
    if is_server(row) and row.get("probes") is not None:
        return number(row.get("max_rate_under_slo"))
    return number(row.get("throughput_avg"))


def qualifies(row: Row, bounds: Sequence[LatencyBound]) -> bool:
    """A row meets every bound, and (server rows) is valid and, when searched, found a rate."""
    if is_server(row) and (row.get("valid") is False or served_rate(row) is None):
        return False
    return all(b.met_by(row) for b in bounds)


def choose(group: Group, rows: Sequence[Row], bounds: Sequence[LatencyBound] = (),
           objective: Objective = THROUGHPUT) -> Choice:
    """The best (by ``objective``), the cheapest and (when nothing qualifies) the closest row of
    ``rows`` under all of ``bounds`` together."""
    candidates = measured(rows)
    meeting = [r for r in candidates if qualifies(r, bounds)]
    tie_column = bounds[0].column if bounds else "latency_ms_p99"
    scored = [r for r in meeting if objective.value(r) is not None]
    best = None
    if scored:
        # max() keeps the first of equal keys, so plan order breaks the last tie.
        best = max(scored, key=lambda r: (objective.value(r), -(number(r.get(tie_column)) or math.inf)))
    priced = [r for r in meeting if number(r.get("cost_per_1m_inf")) is not None]
    cheapest = min(priced, key=lambda r: number(r.get("cost_per_1m_inf")) or 0.0) if priced else None
    closest = None
    if not meeting and bounds:
        closest = _closest(candidates, bounds)
    return Choice(group, tuple(bounds), best, cheapest, closest, len(candidates), objective)


def _closest(rows: Sequence[Row], bounds: Sequence[LatencyBound]) -> Optional[Row]:
    """The row whose worst overshoot (latency / limit over the bounds) is smallest."""
    scored = []
    for row in rows:
        ratios = [(b.latency(row) or math.inf) / b.limit_ms for b in bounds]
        scored.append((max(ratios), row))
    finite = [s for s in scored if math.isfinite(s[0])]
    return min(finite, key=lambda s: s[0])[1] if finite else None


def answers(rows: Sequence[Row], bounds: Sequence[LatencyBound] = (), objective: Objective = THROUGHPUT) -> list[Choice]:
    """For every group: the best configuration overall, then under each bound, then (with two
    or more bounds) under all of them together."""
    asked: list[tuple[LatencyBound, ...]] = [()] + [(b,) for b in bounds]
    if len(bounds) > 1:
        asked.append(tuple(bounds))
    return [choose(group, members, b, objective) for group, members in group_rows(rows).items() for b in asked]


#: The columns an answer can rank rows by, and which way is better. Telemetry columns are
#: among them: ``neuronperf summary --rank-by energy_j_per_inf`` puts the fewest joules per
#: inference first.
RANK_DIRECTIONS: dict[str, str] = {
    "throughput_avg": "higher", "throughput_peak": "higher",
    **{f"latency_ms_p{q}": "lower" for q in REPORTED_PERCENTILES}, "latency_ms_avg": "lower",
    "cost_per_1m_inf": "lower",
    "energy_j_per_inf": "lower", "power_w_avg": "lower",
    "device_mem_mb_peak": "lower", "device_mem_mb_nvml_peak": "lower", "device_util_pct_avg": "higher",
    "output_tokens_per_s": "higher", "requests_per_s": "higher",
}


def check_rank_column(column: str) -> str:
    """``column`` if rows can be ranked by it, else a one-line ``UsageError`` naming the choices."""
    if column not in RANK_DIRECTIONS:
        raise UsageError(f"--rank-by {column!r}: not a column to rank by; choose one of {', '.join(RANK_DIRECTIONS)}")
    return column


def ranked(rows: Sequence[Row], column: str) -> list[Row]:
    """The measured rows that have a value in ``column``, best first (ties keep plan order)."""
    check_rank_column(column)
    sign = -1.0 if RANK_DIRECTIONS[column] == "higher" else 1.0
    valued = [r for r in measured(rows) if number(r.get(column)) is not None]
    return sorted(valued, key=lambda r: sign * (number(r.get(column)) or 0.0))


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))
