"""``neuronperf compare OLD NEW``: did a change make any entry slower?

Entries are matched by identity (the ``key`` column), and those left over by their swept values
(model, parameters, batch size, pipeline size, copies, threads), so two runs of an edited spec or
of another measurement method still pair up. For each pair we report the ratios new/old of
``throughput_avg``, ``latency_ms_p50`` and ``latency_ms_p99``, and mark a change only where the
data can support it, as pyperf and asv do: from independent samples.

- **Independent samples are repeats**, each measured in fresh worker processes
  (``benchmark.repeat``). Slices of one run are not: they share that run's process layout,
  frequency and neighbours, so a test on them leaves the run-to-run variation out and calls any
  steady shift significant. With at least ``MIN_REPEATS`` repeats on both sides, each figure is
  tested on the per-repeat figures (two-sided): Student's t-test (pooled variance) when both
  sides have as many repeats, as pyperf does, Welch's otherwise (see ``repeats_p``); the ratio
  is the ratio of their means: the ratio and the test come from the same numbers.
- **Every figure is recomputed from the raw samples** by this version's method
  (``stats.forward.compute_stats``), on both sides, so rows of different ``method_version``s are
  compared by one method. Without raw samples on both sides (a results file on its own) the
  ratios come from the rows, and rows of different method versions are refused.
- **Multiplicity**: every test of the comparison (three per judged entry) is one family; the
  p-values are adjusted by Holm's step-down method, and a change is significant when its
  adjusted p is below ``ALPHA`` (5%). The chance that the tests mark an unchanged build at all is
  then about 5%, however many entries the sweep has, where each entry's repeats spread alike on
  both sides; with three repeats and one side spreading several times more than the other, no
  t-test keeps its level exactly (see ``repeats_p``: 2.2-7.2x the level for Student's at 4-8x
  spreads, 1.3-2.8x for Welch's). A mark also needs a change beyond the threshold, which an
  unchanged build reaches far more rarely. (0.01 was tried: with three repeats, Welch's test then missed a planted 20%
  slowdown in 4 pairs of 10 on our machine.)
- **A change is marked** ``regressed`` when a figure is significantly worse beyond its threshold:
  throughput lower or p50 higher by more than ``threshold`` (default 5%), or p99 higher by more
  than ``tail_threshold`` (default 20%: tails move with the machine's other work far more than
  medians do); ``improved`` when one is significantly better and none worse; else ``unchanged``.
- **With fewer repeats** the verdict is ``unknown``, with the remedy ("rerun both with
  repeat: 3"), except for a change too large for run-to-run noise to explain: throughput or
  p50 worse (or better) by more than a factor ``GROSS_FACTOR`` (2) is marked from one run, with
  method ``gross``. p99 never is: the tail of one run can double on a busy machine.
- **Runs beside different loads are not compared.** A neighbour that takes a core the model
  needs slows every repeat of its side alike, which no test between repeats can tell from a
  regression. Each row records the CPU other processes used during its windows
  (``other_cpu_cores``) and the CPU nobody used (``idle_cpu_cores``). A side is **crowded**
  when, in any of its repeats, other processes used at least ``CROWDING_OTHER`` cores and less
  than ``CROWDED_IDLE`` was left idle: the machine was full, the entry may have waited for a
  core, and by how much depends on the scheduler, not the build (two sides each beside a
  neighbour that fills the machine slowed by -40% and +74% in our A/A runs). Where either side
  is crowded, or the two sides' other load differs by more than ``LOAD_DIFFERENCE`` cores (a
  neighbour on a free core still shares caches and memory bandwidth), the verdict is
  ``unknown`` (method ``load``), with the remedy, and its tests join no family. A model that
  fills the machine by itself is not crowded: the rule asks for other processes' work too.

Rows of the server scenario are matched by their rate and queue delay too, and their figures are
the server scenario's (``stats.serving``: latencies from each request's scheduled arrival). A
fixed rate's throughput is the rate offered, so its verdict rests on its p50 and p99, tested
between repeats as above (throughput is neither tested nor marked). A searched entry (``rates:
max``) is judged by its ``max_rate_under_slo``: one number per run (its repeats are inside each
probe), which is not an independent sample any more than a single run's throughput is. So, as
for single runs, only a change beyond ``GROSS_FACTOR`` (or a side where no rate met the bounds)
is marked, method ``search``; a smaller one is ``unknown`` with its ratio and the remedy (measure
both at fixed rates near the two peaks with repeats: their latencies are then tested). Sides
beside different loads are not judged, and both rows must share a method version.

Each pair also names what it ran on that changed between the runs: for Neuron rows the path,
the SDK parts' versions and the compiler flags and defaults in effect (``NEURON_COLUMNS``), so
that a change across an SDK upgrade comes with the versions and flags that moved. Those columns
do not take part in matching (an upgrade changes them for every entry), except the logical
NeuronCore config, which is an axis.
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
from neuronperf.stats.forward import METHOD_VERSION, compute_stats
from neuronperf.stats.student import t_two_sided_p

Row = Mapping[str, Any]
DEFAULT_THRESHOLD = 0.05
DEFAULT_TAIL_THRESHOLD = 0.20
#: Family-wise significance level of a comparison (all its tests together, Holm-adjusted).
ALPHA = 0.05
#: Repeats needed on both sides before a change can be tested.
MIN_REPEATS = 3
#: A change of throughput or p50 by more than this factor is marked even from single runs.
GROSS_FACTOR = 2.0
#: Sides whose other processes' CPU (``other_cpu_cores``) differs by more than this many cores
#: were measured on differently loaded machines: not judged.
LOAD_DIFFERENCE = 0.5
#: A side is crowded when, in one of its repeats, other processes used at least CROWDING_OTHER
#: cores and less than CROWDED_IDLE cores were left idle (the machine was full).
CROWDING_OTHER = 0.25
CROWDED_IDLE = 0.25
#: The figures judged: (name, row column, whether higher is better).
FIGURES = (("throughput", "throughput_avg", True), ("p50", "latency_ms_p50", False), ("p99", "latency_ms_p99", False))
_MATCH_AXES = ("model_name", "batch_size", "pipeline_size", "n_models", "workers_per_model", "neuron_lnc")
REMEDY = f"rerun both with repeat: {MIN_REPEATS}"
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
    #: "regressed", "improved", "unchanged" (within the thresholds or not significant) or
    #: "unknown" (too few repeats to judge, no data, or not measured in both runs).
    verdict: str
    #: How it was judged: "repeats" (a t-test on independent repeats), "gross" (fewer
    #: repeats; a change beyond GROSS_FACTOR), "search" (two peak searches' max_rate_under_slo,
    #: marked only beyond GROSS_FACTOR),
    #: "load" (not judged: the sides ran beside different loads) or "none".
    method: str
    #: Holm-adjusted p-values of the three figures (None where not tested).
    throughput_p: Optional[float] = None
    p50_p: Optional[float] = None
    p99_p: Optional[float] = None
    note: Optional[str] = None
    #: The repeats each side's figures came from (its raw samples, or its row).
    old_repeats: int = 0
    new_repeats: int = 0
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
    tail_threshold: float = DEFAULT_TAIL_THRESHOLD

    @property
    def regressions(self) -> tuple[EntryChange, ...]:
        """Every entry marked ``regressed`` (from repeats, or a gross change from single runs)."""
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


@dataclass(frozen=True)
class _Figures:
    """One side's figures of an entry: one value per repeat of each judged figure, all from one
    source (recomputed from raw samples, or the row's own when there are none)."""

    values: Mapping[str, np.ndarray]
    #: "samples" or "row".
    source: str
    #: The mean CPU other processes used during the side's windows, in cores (None: unknown).
    other_load: Optional[float] = None
    #: Why the side ran on a full machine (see ``crowding``), or None.
    crowded: Optional[str] = None

    @property
    def n(self) -> int:
        return min((int(a.size) for a in self.values.values()), default=0)

    def mean(self, name: str) -> Optional[float]:
        a = self.values.get(name)
        return float(a.mean()) if a is not None and a.size else None


def repeat_figures(repeats: Sequence[Measurement], batch_size: int) -> dict[str, np.ndarray]:
    """Each judged figure of every repeat, recomputed by this version's method (a server
    window's by ``stats.serving``: latencies from the scheduled arrival); a repeat without a
    figure (no calls) is left out of that figure."""
    from neuronperf.stats.serving import serving_stats

    per_repeat = [serving_stats(m, batch_size=batch_size)[0] if m.serving is not None
                  else compute_stats(m, batch_size=batch_size) for m in repeats]
    return {
        name: np.asarray([v for v in (getattr(s, column) for s in per_repeat) if v is not None], dtype=np.float64)
        for name, column, _ in FIGURES
    }


def crowding(other_cpu_cores: Optional[float], idle_cpu_cores: Optional[float]) -> Optional[str]:
    """Why a window ran on a full machine (other processes' work, and almost nothing left
    idle), or None: not crowded, or not known (a run from before ``idle_cpu_cores``)."""
    if other_cpu_cores is None or idle_cpu_cores is None:
        return None
    if other_cpu_cores >= CROWDING_OTHER and idle_cpu_cores < CROWDED_IDLE:
        return (f"{other_cpu_cores:.2f} cores of other processes' work and {idle_cpu_cores:.2f} left idle, "
                "so the entry may have waited for a core")
    return None


def _figures(side: Side, batch: int) -> _Figures:
    if side.repeats:
        loads = [m.other_cpu_cores for m in side.repeats if m.other_cpu_cores is not None]
        load = float(np.mean(loads)) if len(loads) == len(side.repeats) else None
        crowded = next((why for why in (crowding(m.other_cpu_cores, m.idle_cpu_cores) for m in side.repeats) if why),
                       None)
        return _Figures(repeat_figures(side.repeats, batch), "samples", load, crowded)
    values = {}
    for name, column, _ in FIGURES:
        v = number(side.row.get(column))
        values[name] = np.asarray([] if v is None else [v], dtype=np.float64)
    other = number(side.row.get("other_cpu_cores"))
    return _Figures(values, "row", other, crowding(other, number(side.row.get("idle_cpu_cores"))))


def student_p(a: np.ndarray, b: np.ndarray) -> Optional[float]:
    """Two-sided p-value of Student's t-test (pooled variance, ``n_a + n_b - 2`` degrees of
    freedom) that ``a`` and ``b`` have the same mean; None with fewer than two values on a side."""
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size < 2 or b.size < 2:
        return None
    df = a.size + b.size - 2
    pooled = ((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / df
    diff = float(a.mean() - b.mean())
    if pooled == 0:
        return 0.0 if diff != 0 else 1.0
    return t_two_sided_p(diff / math.sqrt(pooled * (1.0 / a.size + 1.0 / b.size)), df)


def repeats_p(a: np.ndarray, b: np.ndarray) -> Optional[float]:
    """The test between two sides' repeats: Student's (pooled variance) when both have as many,
    Welch's otherwise. With 3 + 3 repeats, Welch's degrees of freedom fall from 4 towards 2 as
    soon as one side spreads more than the other, and its power with them; Student's keeps 4.
    Neither keeps its level exactly with three repeats once one side spreads several times more
    than the other (Student's less so); ``benchmarks/compare_power.py`` measures both at the
    levels Holm uses, and benchmarks/README.md gives the figures. (Choosing between them by the
    repeats' own spreads was tried: with three repeats those spreads differ by 2x by chance so
    often that it gained almost nothing over Welch's.) With unequal sizes the pooled test's
    level is not kept at all: Welch's there."""
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    return student_p(a, b) if a.size == b.size else welch_p(a, b)


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
    return t_two_sided_p(t, df)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: the adjusted p of the k-th smallest of m p-values is
    ``max over j <= k of min(1, (m - j + 1) x p_(j))``. Rejecting where the adjusted p is below
    alpha keeps the chance of any false rejection in the family at most alpha."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


# ---- the comparison --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pair:
    """A matched entry on its way to a verdict: both sides' figures and the ratios of means."""

    old: Side
    new: Side
    old_figures: Optional[_Figures]
    new_figures: Optional[_Figures]
    ratios: Mapping[str, Optional[float]]

    @property
    def measured(self) -> bool:
        return self.old.row.get("status") == "ok" and self.new.row.get("status") == "ok"

    @property
    def searched(self) -> bool:
        """Both sides are peak searches (``rates: max``): judged by max_rate_under_slo."""
        return self.old.row.get("probes") is not None and self.new.row.get("probes") is not None

    @property
    def judged(self) -> tuple[str, ...]:
        """The figures that can change: a fixed rate's throughput is the rate offered, so a server
        pair is judged by its latencies alone."""
        if is_server(self.old.row) and is_server(self.new.row):
            return tuple(name for name, _, _ in FIGURES if name != "throughput")
        return tuple(name for name, _, _ in FIGURES)

    @property
    def load_mismatch(self) -> Optional[str]:
        """Why the two sides ran on differently loaded machines, or None."""
        if self.old_figures is None or self.new_figures is None:
            return None
        a, b = self.old_figures.other_load, self.new_figures.other_load
        if a is not None and b is not None and abs(a - b) > LOAD_DIFFERENCE:
            return (f"OLD ran beside {a:.2f} cores of other processes' work, NEW beside {b:.2f}: a change may be "
                    "the machine's, not the build's; rerun both on equally quiet machines")
        crowded = [f"{label} ran on a full machine ({figures.crowded})"
                   for label, figures in (("OLD", self.old_figures), ("NEW", self.new_figures)) if figures.crowded]
        if crowded:
            return f"{'; '.join(crowded)}: a change may be the machine's, not the build's; rerun both on equally quiet machines"
        return None

    @property
    def independent(self) -> bool:
        """Both sides have at least MIN_REPEATS repeats' figures from raw samples."""
        return (
            self.measured and not self.searched and self.old_figures is not None and self.new_figures is not None
            and self.old_figures.source == "samples" and self.new_figures.source == "samples"
            and self.old_figures.n >= MIN_REPEATS and self.new_figures.n >= MIN_REPEATS
        )


def context_changes(old: Row, new: Row) -> tuple[tuple[str, Any, Any], ...]:
    """The ``CONTEXT_COLUMNS`` whose values differ between two rows of one entry (a column only
    one side has is left out: a run from before the column existed says nothing about it)."""
    return tuple(
        (column, old.get(column), new.get(column))
        for column in CONTEXT_COLUMNS
        if column in old and column in new and old.get(column) != new.get(column)
    )


def _pair(old: Side, new: Side) -> _Pair:
    batch = int(number(new.row.get("batch_size")) or number(old.row.get("batch_size")) or 1)
    if old.row.get("status") != "ok" or new.row.get("status") != "ok":
        return _Pair(old, new, None, None, {name: None for name, _, _ in FIGURES})
    fo, fn = _figures(old, batch), _figures(new, batch)
    if fo.source != fn.source or (old.row.get("probes") is not None and new.row.get("probes") is not None):
        # One side without samples: both from their rows (checked to share a method version). A
        # search is judged by its rows too (max_rate_under_slo, other_cpu_cores).
        fo, fn = _figures(Side(old.row), batch), _figures(Side(new.row), batch)
    ratios = {}
    for name, _, _ in FIGURES:
        a, b = fn.mean(name), fo.mean(name)
        ratios[name] = a / b if a is not None and b is not None and b > 0 else None
    return _Pair(old, new, fo, fn, ratios)


def _worse(ratio: Optional[float], higher_is_better: bool, threshold: float) -> bool:
    if ratio is None:
        return False
    return ratio < 1.0 - threshold if higher_is_better else ratio > 1.0 + threshold


def _better(ratio: Optional[float], higher_is_better: bool, threshold: float) -> bool:
    if ratio is None:
        return False
    return ratio > 1.0 + threshold if higher_is_better else ratio < 1.0 - threshold


def _gross(ratios: Mapping[str, Optional[float]], judged: Sequence[str]) -> tuple[list[str], list[str]]:
    """Throughput and p50 changes by more than GROSS_FACTOR: (worse, better), as text."""
    worse, better = [], []
    for name, _, higher in FIGURES[:2]:  # not p99: one run's tail can double on a busy machine
        ratio = ratios[name]
        if name not in judged:
            continue
        if ratio is None or ratio <= 0:
            continue
        gain = ratio if higher else 1.0 / ratio  # > 1: better
        if gain < 1.0 / GROSS_FACTOR:
            worse.append(_change_text(name, ratio))
        elif gain > GROSS_FACTOR:
            better.append(_change_text(name, ratio))
    return worse, better


def _change_text(name: str, ratio: float) -> str:
    return f"{name} {(ratio - 1) * 100:+.0f}%"


def _verdict(pair: _Pair, p_adjusted: Mapping[str, Optional[float]], threshold: float,
             tail_threshold: float) -> EntryChange:
    entry_id = str(pair.new.row.get("id") or pair.old.row.get("id"))
    r = pair.ratios
    base: dict[str, Any] = {
        "id": entry_id, "old": pair.old, "new": pair.new,
        "throughput_ratio": r["throughput"], "p50_ratio": r["p50"], "p99_ratio": r["p99"],
        "old_repeats": pair.old_figures.n if pair.old_figures else 0,
        "new_repeats": pair.new_figures.n if pair.new_figures else 0,
        "changed": context_changes(pair.old.row, pair.new.row),
    }
    if pair.measured and pair.searched:
        if pair.load_mismatch:
            return EntryChange(**{**base, "throughput_ratio": None}, verdict="unknown", method="load",
                               note=pair.load_mismatch)
        return _compare_searched(base, pair.old, pair.new, threshold)
    if not pair.measured or r["throughput"] is None:
        statuses = f"{pair.old.row.get('status')} -> {pair.new.row.get('status')}"
        return EntryChange(**base, verdict="unknown", method="none", note=f"not measured in both runs ({statuses})")
    if pair.load_mismatch:
        return EntryChange(**base, verdict="unknown", method="load", note=pair.load_mismatch)
    if pair.independent:
        worse, better = [], []
        for name, _, higher in FIGURES:
            if name not in pair.judged:
                continue
            p, ratio = p_adjusted.get(name), r[name]
            if p is None or p >= ALPHA or ratio is None:
                continue
            limit = tail_threshold if name == "p99" else threshold
            if _worse(ratio, higher, limit):
                worse.append(_change_text(name, ratio))
            elif _better(ratio, higher, limit):
                better.append(_change_text(name, ratio))
        verdict = "regressed" if worse else "improved" if better else "unchanged"
        return EntryChange(
            **base, verdict=verdict, method="repeats", note=", ".join(worse or better) or None,
            throughput_p=p_adjusted.get("throughput"), p50_p=p_adjusted.get("p50"), p99_p=p_adjusted.get("p99"),
        )
    # Fewer repeats than a test needs: only a change no run-to-run noise explains is marked.
    gross_worse, gross_better = _gross(r, pair.judged)
    counts = f"{base['old_repeats']} repeat(s) in OLD, {base['new_repeats']} in NEW"
    if pair.old_figures is not None and pair.old_figures.source == "row":
        counts = "no raw samples on both sides"
    if gross_worse or gross_better:
        return EntryChange(
            **base, verdict="regressed" if gross_worse else "improved", method="gross",
            note=f"{', '.join(gross_worse or gross_better)}: beyond {GROSS_FACTOR:g}x, more than run-to-run "
            f"noise explains ({counts}; {REMEDY} to judge smaller changes)",
        )
    return EntryChange(**base, verdict="unknown", method="none",
                       note=f"not judged: {counts}; {REMEDY}")


def _compare_searched(base: dict[str, Any], old: Side, new: Side, threshold: float) -> EntryChange:
    """Two searches of one entry: their max_rate_under_slo is one number per run, so a change is
    marked only where run-to-run noise cannot explain it (beyond GROSS_FACTOR, or no rate met the
    bounds on one side); a smaller one beyond the threshold is ``unknown``, with the remedy."""
    was, now = number(old.row.get("max_rate_under_slo")), number(new.row.get("max_rate_under_slo"))
    note = f"max_rate_under_slo {was if was is not None else 'none'} -> {now if now is not None else 'none'} requests/s"
    if was is None or now is None:
        verdict = "unknown" if was is None and now is None else ("regressed" if now is None else "improved")
        return EntryChange(**{**base, "throughput_ratio": None}, verdict=verdict, method="search", note=note)
    ratio = now / was if was > 0 else None
    if ratio is not None and (ratio < 1.0 / GROSS_FACTOR or ratio > GROSS_FACTOR):
        return EntryChange(**{**base, "throughput_ratio": ratio}, verdict="regressed" if ratio < 1 else "improved",
                           method="search", note=f"{note}: beyond {GROSS_FACTOR:g}x, more than run-to-run noise explains")
    if _worse(ratio, True, threshold) or _better(ratio, True, threshold):
        rates = ", ".join(f"{r:g}" for r in sorted({was, now}))
        return EntryChange(
            **{**base, "throughput_ratio": ratio}, verdict="unknown", method="search",
            note=f"{note}: one search a side is one number, not judged below {GROSS_FACTOR:g}x; to test it, "
            f"rerun both with sweep.rates: [{rates}] and repeat: {MIN_REPEATS} (their latencies are then tested)",
        )
    return EntryChange(**{**base, "throughput_ratio": ratio}, verdict="unchanged", method="search", note=note)


def _check_methods(pairs: Sequence[tuple[Side, Side]], old_path: str, new_path: str) -> None:
    """Refuse, in one line, rows of different method versions that cannot both be recomputed
    (a search's answer, max_rate_under_slo, is never recomputed: its rows must agree)."""
    for old, new in pairs:
        searched = old.row.get("probes") is not None and new.row.get("probes") is not None
        if old.repeats and new.repeats and not searched:
            continue  # recomputed from raw samples by this version's method on both sides
        a, b = (number(side.row.get("method_version")) for side in (old, new))
        if a != b:
            entry = new.row.get("id") or old.row.get("id")
            if searched:
                raise UsageError(
                    f"{old_path} and {new_path}: {entry} was searched by method {_version(a)} in OLD and "
                    f"{_version(b)} in NEW, whose probes pass by different figures, and a search's "
                    "max_rate_under_slo is not recomputed; rerun OLD with this neuronperf"
                )
            raise UsageError(
                f"{old_path} and {new_path}: {entry} was measured by method {_version(a)} in OLD and "
                f"{_version(b)} in NEW, "
                "whose figures mean different things, and without the raw samples of both runs they cannot "
                "be recomputed by one method; compare the two output_dirs (with their samples/ folders), "
                "or rerun OLD with this neuronperf"
            )


def _version(value: Optional[float]) -> str:
    return "unknown" if value is None else f"{value:g}"


def compare_entry(old: Side, new: Side, threshold: float = DEFAULT_THRESHOLD,
                  tail_threshold: float = DEFAULT_TAIL_THRESHOLD) -> EntryChange:
    """The change of one matched entry judged alone (its three tests are the whole family)."""
    return judge([(old, new)], threshold, tail_threshold)[0]


def judge(pairs: Sequence[tuple[Side, Side]], threshold: float = DEFAULT_THRESHOLD,
          tail_threshold: float = DEFAULT_TAIL_THRESHOLD) -> list[EntryChange]:
    """The verdict of every matched pair, their tests adjusted together (one Holm family)."""
    prepared = [_pair(o, n) for o, n in pairs]
    tests: list[tuple[int, str, float]] = []
    for i, pair in enumerate(prepared):
        if not pair.independent or pair.load_mismatch:
            continue
        assert pair.old_figures is not None and pair.new_figures is not None
        for name in pair.judged:
            p = repeats_p(pair.old_figures.values[name], pair.new_figures.values[name])
            if p is not None:
                tests.append((i, name, p))
    adjusted = holm([p for _, _, p in tests])
    per_pair: list[dict[str, Optional[float]]] = [{} for _ in prepared]
    for (i, name, _), p_adj in zip(tests, adjusted):
        per_pair[i][name] = p_adj
    return [_verdict(pair, per_pair[i], threshold, tail_threshold) for i, pair in enumerate(prepared)]


def compare_runs(old_path: str, new_path: str, threshold: float = DEFAULT_THRESHOLD,
                 tail_threshold: float = DEFAULT_TAIL_THRESHOLD) -> Comparison:
    """Compare two output_dirs or results files."""
    for name, value in (("--threshold", threshold), ("--tail-threshold", tail_threshold)):
        if not (math.isfinite(value) and 0 <= value < 1):
            raise UsageError(f"{name} must be a fraction between 0 and 1 (0.05 = 5%), got {value!r}")
    old, new = load_side(old_path), load_side(new_path)
    pairs, only_old, only_new = match(old, new)
    _check_methods(pairs, old_path, new_path)
    changes = tuple(judge(pairs, threshold, tail_threshold))
    notes = []
    recomputed = sorted({_version(number(s.row.get("method_version"))) for o, n in pairs if o.repeats and n.repeats
                         for s in (o, n)} - {_version(float(METHOD_VERSION))})
    if recomputed:
        notes.append(f"rows of method {', '.join(recomputed)} recomputed from their raw samples by method {METHOD_VERSION}")
    crowded = sum(1 for c in changes if c.method == "load")
    if crowded:
        notes.append(
            f"{crowded} entr{'y' if crowded == 1 else 'ies'} not judged: measured beside different loads or on a full "
            "machine (other_cpu_cores, idle_cpu_cores); rerun both on equally quiet machines"
        )
    unjudged = sum(1 for c in changes if c.verdict == "unknown" and c.note and c.note.startswith("not judged"))
    if unjudged:
        notes.append(
            f"{unjudged} entr{'y' if unjudged == 1 else 'ies'} not judged: a change is tested only between "
            f"repeats in fresh processes, {MIN_REPEATS} or more on both sides; {REMEDY} (benchmark.repeat)"
        )
    return Comparison(threshold, changes, tuple(s.row for s in only_old), tuple(s.row for s in only_new),
                      tuple(notes), tail_threshold)
