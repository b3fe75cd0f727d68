"""The peak search of ``sweep.rates: max``: the highest rate whose measured percentile meets the
latency bound of ``objectives.slo``.

Pure: the next rate is a function of the probes so far (``next_rate``), so a search interrupted
by a crash resumes from the probes it recorded, asking for exactly what it would have asked for.

1. The first probe is at ``start`` (the capacity the warm-up implies: threads x batch size /
   the call's time; no rate above it can be served).
2. Bracket: while every probe passed, double the highest rate; while every probe failed, halve
   the lowest one (stopping at ``floor``, or as soon as a probe shows that no rate can pass:
   ``Probe.hopeless``, when the call alone misses the bound).
3. Bisect between the highest passing rate below the lowest failing one (``low``) and that
   failing rate (``high``) until ``high - low <= precision x low``. The answer is ``low``: a rate
   that was measured and passed, never an interpolation.

A passing probe above a failing one (noise near the knee) is not believed: the bracket's top is
the lowest failing rate, so the answer never rests on a pass above a failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Optional

#: The bisection stops when the bracket is within this share of its low end (``benchmark.rate_precision``).
DEFAULT_PRECISION = 0.02
#: No search probes more rates than this (a bound far from any rate that is reached in ~30 probes
#: by doubling or halving from the warm-up's estimate).
MAX_PROBES = 40


@dataclass(frozen=True)
class Probe:
    """One measured rate: the bound's percentile there (ms; None when nothing was served),
    whether it passed, and why not."""

    rate: float
    passed: bool
    value_ms: Optional[float] = None
    requests: int = 0
    reason: str = ""
    #: The probe stopped before its window ended (overload made the bound unreachable).
    early: bool = False
    #: No lower rate can pass either (the call alone takes longer than the bound allows).
    hopeless: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Probe:
        return cls(rate=float(data["rate"]), passed=bool(data["passed"]),
                   value_ms=None if data.get("value_ms") is None else float(data["value_ms"]),
                   requests=int(data.get("requests", 0)), reason=str(data.get("reason", "")),
                   early=bool(data.get("early", False)), hopeless=bool(data.get("hopeless", False)))


@dataclass(frozen=True)
class Bracket:
    """The rates the probes so far pin the peak between (either end unknown: None)."""

    low: Optional[float]  # the highest rate that passed, below ``high``
    high: Optional[float]  # the lowest rate that failed


def bracket(probes: Sequence[Probe]) -> Bracket:
    failed = [p.rate for p in probes if not p.passed]
    high = min(failed) if failed else None
    passed = [p.rate for p in probes if p.passed and (high is None or p.rate < high)]
    return Bracket(low=max(passed) if passed else None, high=high)


def next_rate(probes: Sequence[Probe], start: float, precision: float = DEFAULT_PRECISION,
              floor: float = 0.0) -> Optional[float]:
    """The rate to probe next, or None when the search is over (see the module docstring)."""
    if not start > 0 or not precision > 0:
        raise ValueError(f"the start ({start!r}) and the precision ({precision!r}) must be positive")
    if not probes:
        return start
    if len(probes) >= MAX_PROBES or any(p.hopeless for p in probes):
        return None
    b = bracket(probes)
    if b.high is None:
        assert b.low is not None
        return 2 * b.low
    if b.low is None:
        lower = b.high / 2
        return lower if lower >= floor else None
    if b.high - b.low <= precision * b.low:
        return None
    return (b.low + b.high) / 2


@dataclass(frozen=True)
class SearchResult:
    """The answer of a finished (or exhausted) search."""

    max_rate: Optional[float]  # the highest passing rate below every failure; None: none passed
    best: Optional[int]  # the index of that probe in the probe list
    reason: str  # why max_rate is empty, or ""


def result(probes: Sequence[Probe]) -> SearchResult:
    """What the probes answer: the bracket's low end, or why there is none."""
    b = bracket(probes)
    if b.low is not None:
        best = max(i for i, p in enumerate(probes) if p.passed and p.rate == b.low)
        return SearchResult(b.low, best, "")
    if not probes:
        return SearchResult(None, None, "no rate was probed")
    lowest = min(range(len(probes)), key=lambda i: (probes[i].rate, i))
    p = probes[lowest]
    value = f"{p.value_ms:.4g} ms" if p.value_ms is not None else "nothing served"
    return SearchResult(None, lowest, f"no rate met the bound: the lowest rate tried, {p.rate:.4g} requests/s, "
                                      f"measured {value} ({p.reason})")
