"""``neuronperf compare OLD NEW``: did a change make any entry slower?

Entries are matched by identity (the ``key`` column), and those left over by their swept values
(model, parameters, batch size, pipeline size, copies, threads), so two runs of an edited spec or
of another measurement method still pair up. For each pair we report the ratios new/old of
``throughput_avg``, ``latency_ms_p50`` and ``latency_ms_p99``, and mark a change only when it is
both larger than the threshold (default 5%) and statistically significant:

- when both rows have ``repeats >= 2``, Welch's t-test on the per-repeat throughputs and p50s;
- otherwise on batch means of the raw samples: the measured window is cut into slices of
  ``min(1 s, window / 10)`` and each slice gives one throughput and one median latency. Calls a
  few milliseconds apart are strongly correlated (a slow second slows every call in it); slice
  means are close to independent, so a t-test on them does not overstate its confidence the way
  a test on single calls would;
- without raw samples (a results file on its own), significance is unknown and nothing is marked.

A regression is a significant throughput drop or p50 rise beyond the threshold.

Each pair also names what it ran on that changed between the runs: for Neuron rows the path,
the SDK parts' versions and the compiler flags and defaults in effect (``NEURON_COLUMNS``), so
that a change across an SDK upgrade comes with the versions and flags that moved. Those columns
do not take part in matching (an upgrade changes them for every entry), except the logical
NeuronCore config, which is an axis.

Rows of the server scenario are matched by their rate and queue delay too. A fixed rate's
throughput is the rate offered, so its verdict rests on its latencies (from the scheduled
arrival; slices by completion). A searched entry (``rates: max``) is judged by its
``max_rate_under_slo``: one number per run, without a significance test, so a change beyond the
threshold is marked (the search's own resolution is ``rate_precision``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from neuronperf.answers.slo import figure_columns, is_server, number
from neuronperf.backends.neuron_sdk import NEURON_COLUMNS
from neuronperf.entries import Measurement
from neuronperf.errors import JournalError, UsageError
from neuronperf.stats.forward import compute_stats, slice_throughputs

Row = Mapping[str, Any]
DEFAULT_THRESHOLD = 0.05
#: Two-sided significance level.
ALPHA = 0.01
#: The longest slice, and how many slices a short window is cut into at least.
SLICE_S, MIN_SLICES = 1.0, 10
_MATCH_AXES = ("model_name", "batch_size", "pipeline_size", "n_models", "workers_per_model", "neuron_lnc")
#: Columns that say what a row ran on: named when they differ, never used to match.
CONTEXT_COLUMNS = tuple(c for c in NEURON_COLUMNS if c != "neuron_lnc")


def load_raw_samples(path: str) -> tuple[Measurement, ...]:
    """The raw samples of one entry, one ``Measurement`` per repeat. (The one place that reads
    samples files, so that a change of their format touches one line.)"""
    from neuronperf.results.samples import load_repeats

    return load_repeats(path)


@dataclass(frozen=True)
class Side:
    """One run's view of an entry: its row and, when found, its raw samples per repeat."""

    row: Row
    repeats: tuple[Measurement, ...] = ()


@dataclass(frozen=True)
class EntryChange:
    """One matched entry: ratios new/old, and the verdict."""

    id: str
    old: Side
    new: Side
    throughput_ratio: Optional[float]
    p50_ratio: Optional[float]
    p99_ratio: Optional[float]
    #: "regressed", "improved", "unchanged" (within the threshold or not significant) or
    #: "unknown" (no data to test, or an entry that did not finish in one of the runs).
    verdict: str
    #: How significance was judged: "repeats", "slices" or "none".
    method: str
    throughput_p: Optional[float] = None
    p50_p: Optional[float] = None
    note: Optional[str] = None
    #: What the entry ran on that changed: (column, old value, new value), e.g.
    #: ("neuronx_cc_version", "2.21.33363.0", "2.22.12471.0").
    changed: tuple[tuple[str, Any, Any], ...] = ()


@dataclass(frozen=True)
class Comparison:
    threshold: float
    changes: tuple[EntryChange, ...]
    only_old: tuple[Row, ...] = ()
    only_new: tuple[Row, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def regressions(self) -> tuple[EntryChange, ...]:
        return tuple(c for c in self.changes if c.verdict == "regressed")


# ---- loading ---------------------------------------------------------------------------------


def load_side(path: str) -> list[Side]:
    """The rows of an output_dir or results file, each with its raw samples where the journal
    names them."""
    from neuronperf.results.frame import frame_of, locate, read_records, records

    source = locate(path)
    rows = records(frame_of(read_records(source.path)))
    if not rows:
        raise UsageError(f"{path}: holds no result rows")
    samples = samples_files(source.output_dir) if source.output_dir else {}
    sides = []
    for row in rows:
        relpath = samples.get(str(row.get("key")))
        repeats: tuple[Measurement, ...] = ()
        if relpath and source.output_dir and row.get("status") == "ok":
            try:
                repeats = load_raw_samples(os.path.join(source.output_dir, relpath))
            except JournalError:
                repeats = ()  # a missing or unreadable samples file: judged without samples
        sides.append(Side(row, repeats))
    return sides


def samples_files(output_dir: str) -> dict[str, str]:
    """Each journaled entry's samples folder (relative to ``output_dir``), by its row key."""
    from neuronperf.results.journal import Journal

    journal = Journal(output_dir)
    if not journal.exists():
        return {}
    found = {}
    for record in journal.runs().values():
        row = record.get("row") or {}
        if record.get("samples_file"):
            found[str(row.get("key") or record.get("key"))] = record["samples_file"]
    return found


# ---- matching --------------------------------------------------------------------------------


def _values_key(row: Row, fixed: set[str]) -> tuple[Any, ...]:
    params = tuple(sorted((k, str(v)) for k, v in row.items() if k not in fixed and k not in _MATCH_AXES and v is not None))
    # A searched entry's rate_target is where its search ended: its axis is "max".
    rate = "max" if row.get("probes") is not None else row.get("rate_target")
    load = (str(row.get("scenario")), str(rate), str(row.get("max_queue_delay_ms")))
    return tuple(str(row.get(a)) for a in _MATCH_AXES) + load + params


def match(old: Sequence[Side], new: Sequence[Side]) -> tuple[list[tuple[Side, Side]], list[Side], list[Side]]:
    """Pairs (by key, then by swept values), and the sides found in only one run."""
    pairs: list[tuple[Side, Side]] = []
    old_left = list(old)
    by_key = {s.row.get("key"): s for s in old_left if s.row.get("key")}
    new_left = []
    for side in new:
        partner = by_key.pop(side.row.get("key"), None) if side.row.get("key") else None
        if partner is not None:
            pairs.append((partner, side))
            old_left.remove(partner)
        else:
            new_left.append(side)
    fixed = figure_columns()
    by_values: dict[tuple[Any, ...], list[Side]] = {}
    for side in old_left:
        by_values.setdefault(_values_key(side.row, fixed), []).append(side)
    only_new = []
    for side in new_left:
        candidates = by_values.get(_values_key(side.row, fixed))
        if candidates:
            partner = candidates.pop(0)
            pairs.append((partner, side))
            old_left.remove(partner)
        else:
            only_new.append(side)
    return pairs, old_left, only_new


# ---- statistics ------------------------------------------------------------------------------


def slice_figures(measurement: Measurement, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-slice throughputs (inputs/s, the time-weighted slices of ``stats``) and median
    latencies (ms; a call counts in the slice in which it completed) of one measurement. Slices
    without a call have no median (NaN)."""

    if measurement.serving is not None:
        return _serving_slices(measurement)
    starts = [np.asarray(w.start_ns, dtype=np.int64) for w in measurement.workers]
    lats = [np.asarray(w.latency_ns, dtype=np.int64) for w in measurement.workers]
    if not starts or sum(a.size for a in starts) == 0:
        return np.zeros(0), np.zeros(0)
    start = np.concatenate(starts)
    latency = np.concatenate(lats)
    done = start + latency
    lo, hi = measurement.window_start_ns, measurement.window_end_ns
    if hi <= lo:
        lo, hi = int(start.min()), int(done.max())
    window_s = (hi - lo) / 1e9
    slice_ns = int(min(SLICE_S, window_s / MIN_SLICES) * 1e9)
    n = int((hi - lo) // slice_ns) if slice_ns > 0 else 0
    if n < 2:
        return np.zeros(0), np.zeros(0)
    index = (done - lo) // slice_ns
    inside = (index >= 0) & (index < n)
    throughputs = slice_throughputs(measurement, batch_size, slice_ns / 1e9)
    medians = np.full(n, np.nan)
    for i in range(n):
        chosen = latency[inside][index[inside] == i]
        if chosen.size:
            medians[i] = float(np.median(chosen)) / 1e6
    return throughputs.astype(np.float64), medians


def _serving_slices(measurement: Measurement) -> tuple[np.ndarray, np.ndarray]:
    """A server window's slices: requests completed per second, and the median latency (from the
    scheduled arrival) of the requests completed in each."""
    from neuronperf.stats.serving import call_records, request_times

    assert measurement.serving is not None
    times = request_times(call_records(measurement), measurement.serving)
    if not times.index.size:
        return np.zeros(0), np.zeros(0)
    lo, hi = measurement.serving.start_ns, max(int(times.end_ns.max()), measurement.serving.start_ns + measurement.serving.span_ns)
    slice_ns = int(min(SLICE_S, (hi - lo) / 1e9 / MIN_SLICES) * 1e9)
    n = int((hi - lo) // slice_ns) if slice_ns > 0 else 0
    if n < 2:
        return np.zeros(0), np.zeros(0)
    index = (times.end_ns - lo) // slice_ns
    rates, medians = np.zeros(n), np.full(n, np.nan)
    for i in range(n):
        chosen = times.latency_ns[index == i]
        rates[i] = chosen.size / (slice_ns / 1e9)
        if chosen.size:
            medians[i] = float(np.median(chosen)) / 1e6
    return rates, medians


def repeat_figures(repeats: Sequence[Measurement], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """One throughput and one median latency per repeat, as each repeat's row figures."""
    from neuronperf.stats.serving import serving_stats

    throughputs, medians = [], []
    for m in repeats:
        figures = serving_stats(m, batch_size=batch_size)[0] if m.serving is not None else compute_stats(m, batch_size=batch_size)
        if figures.throughput_avg is None or figures.latency_ms_p50 is None:
            continue
        throughputs.append(figures.throughput_avg)
        medians.append(figures.latency_ms_p50)
    return np.asarray(throughputs), np.asarray(medians)


def welch_p(a: np.ndarray, b: np.ndarray) -> Optional[float]:
    """Two-sided p-value of Welch's t-test that ``a`` and ``b`` have the same mean; None with
    fewer than two values on a side."""
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size < 2 or b.size < 2:
        return None
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    diff = float(a.mean() - b.mean())
    if va + vb == 0:
        return 0.0 if diff != 0 else 1.0
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    return _student_two_sided(abs(t), df)


def _student_two_sided(t: float, df: float) -> float:
    """P(|T| >= t) for Student's t with ``df`` degrees of freedom: I_x(df/2, 1/2), x = df/(df+t^2)."""
    return _betainc(df / 2.0, 0.5, df / (df + t * t))


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function, by its continued fraction (modified Lentz)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _betainc(b, a, 1.0 - x)  # the fraction converges fast on this side only
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-12:
            break
    return math.exp(log_front) * h / a


# ---- the comparison --------------------------------------------------------------------------


def _ratio(new: Any, old: Any) -> Optional[float]:
    a, b = number(new), number(old)
    return a / b if a is not None and b is not None and b > 0 else None


def context_changes(old: Row, new: Row) -> tuple[tuple[str, Any, Any], ...]:
    """The ``CONTEXT_COLUMNS`` whose values differ between two rows of one entry (a column only
    one side has is left out: a run from before the column existed says nothing about it)."""
    return tuple(
        (column, old.get(column), new.get(column))
        for column in CONTEXT_COLUMNS
        if column in old and column in new and old.get(column) != new.get(column)
    )


def compare_entry(old: Side, new: Side, threshold: float = DEFAULT_THRESHOLD) -> EntryChange:
    """The change of one matched entry."""
    entry_id = str(new.row.get("id") or old.row.get("id"))
    ratios = {
        name: _ratio(new.row.get(column), old.row.get(column))
        for name, column in (("throughput", "throughput_avg"), ("p50", "latency_ms_p50"), ("p99", "latency_ms_p99"))
    }
    base: dict[str, Any] = {"id": entry_id, "old": old, "new": new, "throughput_ratio": ratios["throughput"], "p50_ratio": ratios["p50"], "p99_ratio": ratios["p99"],
                            "changed": context_changes(old.row, new.row)}
    if old.row.get("status") != "ok" or new.row.get("status") != "ok" or ratios["throughput"] is None:
        statuses = f"{old.row.get('status')} -> {new.row.get('status')}"
        return EntryChange(**base, verdict="unknown", method="none", note=f"not measured in both runs ({statuses})")
    if old.row.get("probes") is not None and new.row.get("probes") is not None:
        return _compare_searched(base, old, new, threshold)
    batch = int(number(new.row.get("batch_size")) or 1)
    both_repeated = (number(old.row.get("repeats")) or 1) >= 2 and (number(new.row.get("repeats")) or 1) >= 2
    if both_repeated and len(old.repeats) >= 2 and len(new.repeats) >= 2:
        method = "repeats"
        (t_old, m_old), (t_new, m_new) = repeat_figures(old.repeats, batch), repeat_figures(new.repeats, batch)
    elif old.repeats and new.repeats:
        method = "slices"
        t_old, m_old = _pooled_slices(old.repeats, batch)
        t_new, m_new = _pooled_slices(new.repeats, batch)
    else:
        return EntryChange(**base, verdict="unknown", method="none", note="no raw samples on both sides: significance unknown")
    p_thr, p_lat = welch_p(t_old, t_new), welch_p(m_old, m_new)
    if is_server(new.row) and is_server(old.row):
        p_thr = None  # a fixed rate's throughput is the rate offered: only its latency can change
    slower = _beyond(ratios["throughput"], threshold, lower=True) and _significant(p_thr)
    laggier = _beyond(ratios["p50"], threshold, lower=False) and _significant(p_lat)
    faster = _beyond(ratios["throughput"], threshold, lower=False) and _significant(p_thr)
    quicker = _beyond(ratios["p50"], threshold, lower=True) and _significant(p_lat)
    if slower or laggier:
        verdict = "regressed"
    elif faster or quicker:
        verdict = "improved"
    else:
        verdict = "unchanged"
    note = None
    if p_thr is None and not is_server(new.row) or p_lat is None and is_server(new.row):
        note = "too few slices to test; rerun with a longer duration"
        verdict = "unknown" if verdict == "unchanged" else verdict
    return EntryChange(**base, verdict=verdict, method=method, throughput_p=p_thr, p50_p=p_lat, note=note)


def _compare_searched(base: dict[str, Any], old: Side, new: Side, threshold: float) -> EntryChange:
    """Two searches of one entry: did its max_rate_under_slo move beyond the threshold?"""
    was, now = number(old.row.get("max_rate_under_slo")), number(new.row.get("max_rate_under_slo"))
    note = f"max_rate_under_slo {was if was is not None else 'none'} -> {now if now is not None else 'none'} requests/s"
    if was is None or now is None:
        verdict = "unknown" if was is None and now is None else ("regressed" if now is None else "improved")
        return EntryChange(**{**base, "throughput_ratio": None}, verdict=verdict, method="search", note=note)
    ratio = now / was if was > 0 else None
    verdict = ("regressed" if _beyond(ratio, threshold, lower=True) else
               "improved" if _beyond(ratio, threshold, lower=False) else "unchanged")
    return EntryChange(**{**base, "throughput_ratio": ratio}, verdict=verdict, method="search", note=note)


def _pooled_slices(repeats: Sequence[Measurement], batch: int) -> tuple[np.ndarray, np.ndarray]:
    parts = [slice_figures(m, batch) for m in repeats]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _beyond(ratio: Optional[float], threshold: float, lower: bool) -> bool:
    if ratio is None:
        return False
    return ratio < 1.0 - threshold if lower else ratio > 1.0 + threshold


def _significant(p: Optional[float]) -> bool:
    return p is not None and p < ALPHA


def compare_runs(old_path: str, new_path: str, threshold: float = DEFAULT_THRESHOLD) -> Comparison:
    """Compare two output_dirs or results files."""
    if not (math.isfinite(threshold) and 0 <= threshold < 1):
        raise UsageError(f"--threshold must be a fraction between 0 and 1 (0.05 = 5%), got {threshold!r}")
    old, new = load_side(old_path), load_side(new_path)
    pairs, only_old, only_new = match(old, new)
    changes = tuple(compare_entry(o, n, threshold) for o, n in pairs)
    return Comparison(threshold, changes, tuple(s.row for s in only_old), tuple(s.row for s in only_new))
