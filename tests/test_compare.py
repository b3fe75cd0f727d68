"""``compare``'s statistics on injected raw samples: Student's t against printed tables, Welch's
test and Holm's adjustment by hand, and the verdicts (independent repeats only, the gross bound
for single runs, p99 judged, a family of entries, method versions)."""

from __future__ import annotations

import json
import math
from typing import Optional

import numpy as np
import pytest

from neuronperf.answers.compare import (
    ALPHA,
    GROSS_FACTOR,
    Side,
    compare_entry,
    compare_runs,
    holm,
    judge,
    repeats_p,
    student_p,
    welch_p,
)
from neuronperf.entries import Measurement, WorkerSamples
from neuronperf.errors import UsageError
from neuronperf.stats.forward import METHOD_VERSION, compute_stats, t_interval
from neuronperf.stats.student import betainc, t_quantile, t_two_sided_p

pytestmark = pytest.mark.pure

MS = 1_000_000

# Printed tables of Student's t (any statistics textbook): the 0.975 and 0.995 quantiles.
T_TABLE = {
    1: (12.7062, 63.6567), 2: (4.3027, 9.9248), 3: (3.1824, 5.8409), 4: (2.7764, 4.6041),
    5: (2.5706, 4.0321), 10: (2.2281, 3.1693), 20: (2.0860, 2.8453), 30: (2.0423, 2.7500),
    31: (2.0395, 2.7440), 40: (2.0211, 2.7045), 60: (2.0003, 2.6603), 120: (1.9799, 2.6174),
}


@pytest.mark.parametrize("df", sorted(T_TABLE))
def test_t_quantiles_match_the_printed_table_for_any_df(df):
    q975, q995 = T_TABLE[df]
    assert t_quantile(0.975, df) == pytest.approx(q975, abs=6e-5)
    assert t_quantile(0.995, df) == pytest.approx(q995, abs=6e-5)
    # The tail at the quantile is what the quantile promises: the two are one function.
    assert t_two_sided_p(t_quantile(0.975, df), df) == pytest.approx(0.05, rel=1e-9)


def test_t_tends_to_the_normal_and_handles_fractional_df():
    assert t_quantile(0.975, 1e7) == pytest.approx(1.959964, abs=1e-5)
    assert t_quantile(0.025, 7) == -t_quantile(0.975, 7)
    assert t_quantile(0.975, 4) > t_quantile(0.975, 4.5) > t_quantile(0.975, 5)  # Welch's df
    # P(|T| >= 1) for df = 1 is 1/2 (the Cauchy distribution): exact.
    assert t_two_sided_p(1.0, 1) == pytest.approx(0.5, rel=1e-12)
    # I_x(a, 1) = x^a and I_x(1, b) = 1 - (1 - x)^b, by integration.
    assert betainc(2.5, 1.0, 0.3) == pytest.approx(0.3**2.5, rel=1e-12)
    assert betainc(1.0, 3.5, 0.3) == pytest.approx(1 - 0.7**3.5, rel=1e-12)


def test_confidence_intervals_use_the_exact_quantile_past_30_repeats():
    values = [float(v) for v in range(40)]  # 40 values: df 39, not the normal's 1.96
    low, high = t_interval(values)
    sd = float(np.std(values, ddof=1))
    assert (high - low) / 2 == pytest.approx(t_quantile(0.975, 39) * sd / math.sqrt(40), rel=1e-12)
    assert (high - low) / 2 > 1.96 * sd / math.sqrt(40) * 1.03  # 3% wider than the normal's
    low3, high3 = t_interval([10.0, 12.0, 14.0])
    assert (low3, high3) == pytest.approx((12.0 - 4.302653 * 2 / math.sqrt(3), 12.0 + 4.302653 * 2 / math.sqrt(3)))


def test_welch_by_hand():
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 4.0, 6.0, 8.0])
    # means 2.5 and 5, variances 5/3 and 20/3: t = -2.5 / sqrt(25/12), Welch-Satterthwaite df:
    t = -2.5 / math.sqrt(25 / 12)
    df = (25 / 12) ** 2 / ((5 / 12) ** 2 / 3 + (20 / 12) ** 2 / 3)
    assert df == pytest.approx(4.4118, abs=1e-4)
    assert welch_p(a, b) == pytest.approx(t_two_sided_p(t, df), rel=1e-12)
    assert welch_p(np.array([1.0]), np.array([1.0, 2.0])) is None
    assert welch_p(np.array([3.0, 3.0]), np.array([3.0, 3.0])) == 1.0


def test_welch_rejects_at_its_level_under_the_null():
    rng = np.random.default_rng(0)
    p = [welch_p(rng.normal(100, 1, 3), rng.normal(100, 3, 3)) for _ in range(4000)]
    assert 0.005 < np.mean(np.array(p) < 0.05) < 0.07  # about 5%: the test keeps its level
    assert welch_p(rng.normal(100, 1, 10), rng.normal(95, 1, 10)) < 1e-6


def test_student_by_hand_and_which_test_decides():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.0])
    # means 2 and 4, variances 1 and 4: pooled (2 x 1 + 2 x 4) / 4 = 2.5, df 4.
    t = -2.0 / math.sqrt(2.5 * (1 / 3 + 1 / 3))
    assert student_p(a, b) == pytest.approx(t_two_sided_p(t, 4), rel=1e-12)
    assert student_p(np.array([1.0]), b) is None and student_p(a[:2] * 0 + 3, a[:2] * 0 + 3) == 1.0
    # As many repeats a side: Student's, whose 4 degrees of freedom stay where Welch's fall to
    # about 2 (one side spreads ten times more); different numbers: Welch's.
    old, new = np.array([100.0, 100.1, 99.9]), np.array([88.0, 87.0, 89.0])
    assert repeats_p(old, new) == student_p(old, new) < welch_p(old, new)
    assert repeats_p(old, np.append(new, 88.0)) == welch_p(old, np.append(new, 88.0))


def test_student_keeps_its_level_with_equal_spreads():
    rng = np.random.default_rng(0)
    p = [student_p(rng.normal(100, 2, 3), rng.normal(100, 2, 3)) for _ in range(4000)]
    assert 0.03 < np.mean(np.array(p) < 0.05) < 0.07  # about 5%


def test_holm_by_hand():
    # sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 -> max(0.06, 0.04)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([]) == []
    assert holm([0.6, 0.9]) == [1.0, 1.0]


# ---- verdicts from injected repeats --------------------------------------------------------------


def repeat(latency_ms: float, *, calls: int = 400, slow_every: int = 0, slow_factor: float = 1.0,
           other: float = 0.0, idle: Optional[float] = None) -> Measurement:
    """One repeat: one thread calling back to back, every call ``latency_ms`` long except every
    ``slow_every``-th, which is ``slow_factor`` times longer (a tail that moves p99 only)."""
    lat = []
    for i in range(calls):
        factor = slow_factor if slow_every and i % slow_every == 0 else 1.0
        lat.append(int(latency_ms * factor * MS))
    starts = np.concatenate([[0], np.cumsum(lat[:-1])]).astype(np.int64)
    w = WorkerSamples(0, 0, start_ns=starts, latency_ns=np.asarray(lat, dtype=np.int64))
    return Measurement("ok", window_start_ns=0, window_end_ns=int(starts[-1] + lat[-1]), workers=(w,),
                       other_cpu_cores=other, idle_cpu_cores=idle)


def side(*latencies_ms: float, **kw) -> Side:
    repeats = tuple(repeat(ms, **kw) for ms in latencies_ms)
    return Side({"id": "m-bs1-p1-m1-w1", "status": "ok", "batch_size": 1, "repeats": len(repeats),
                 "method_version": METHOD_VERSION, "throughput_avg": 1.0}, repeats)


def test_a_slowdown_between_independent_repeats_is_marked():
    change = compare_entry(side(10.0, 10.1, 9.9), side(12.0, 12.1, 11.9))
    assert change.verdict == "regressed" and change.method == "repeats"
    assert change.throughput_ratio == pytest.approx(10.0 / 12.0, rel=1e-3)
    assert change.throughput_p is not None and change.throughput_p < ALPHA
    assert "throughput -17%" in (change.note or "") and "p50 +20%" in (change.note or "")
    faster = compare_entry(side(12.0, 12.1, 11.9), side(10.0, 10.1, 9.9))
    assert faster.verdict == "improved"


def test_noise_and_small_changes_are_unchanged():
    assert compare_entry(side(10.0, 10.4, 9.7), side(10.2, 9.8, 10.1)).verdict == "unchanged"
    # Significant (the repeats agree to 0.1%) but within the 5% threshold.
    within = compare_entry(side(10.0, 10.01, 9.99), side(10.3, 10.31, 10.29))
    assert within.verdict == "unchanged" and within.throughput_p is not None and within.throughput_p < ALPHA
    # Beyond 5% but not significant: the repeats of a side disagree by more than the change.
    noisy = compare_entry(side(10.0, 14.0, 8.0), side(11.5, 9.0, 13.5))
    assert noisy.verdict == "unchanged"


def test_a_tail_regression_with_a_flat_median_is_marked():
    # Every 30th call 1.6x longer moves p99 by +60% and the median not at all.
    old = side(10.0, 10.0, 10.0)
    new = side(10.0, 10.0, 10.0, slow_every=30, slow_factor=1.6)
    change = compare_entry(old, new)
    assert change.p50_ratio == pytest.approx(1.0)
    assert change.p99_ratio == pytest.approx(1.6, rel=1e-3)
    assert change.verdict == "regressed" and "p99 +60%" in (change.note or "")
    # A tail change within the tail threshold (20%) is not marked.
    mild = compare_entry(old, side(10.0, 10.0, 10.0, slow_every=30, slow_factor=1.15))
    assert mild.verdict == "unchanged"


def test_fewer_than_three_repeats_are_unknown_with_the_remedy():
    for old, new in ((side(10.0), side(12.0)), (side(10.0, 10.1), side(12.0, 12.1)), (side(10.0, 10.1, 9.9), side(12.0))):
        change = compare_entry(old, new)
        assert change.verdict == "unknown" and change.method == "none"
        assert "rerun both with repeat: 3" in (change.note or "")
        assert change.throughput_ratio is not None  # the ratios are still shown


def test_a_change_beyond_the_gross_bound_is_marked_from_single_runs():
    slower = compare_entry(side(10.0), side(10.0 * GROSS_FACTOR * 1.1))
    assert slower.verdict == "regressed" and slower.method == "gross"
    assert "beyond 2x" in (slower.note or "") and "rerun both with repeat: 3" in (slower.note or "")
    assert compare_entry(side(10.0 * GROSS_FACTOR * 1.1), side(10.0)).verdict == "improved"
    # Just inside the bound: unknown, not marked.
    assert compare_entry(side(10.0), side(10.0 * GROSS_FACTOR * 0.95)).verdict == "unknown"
    # The tail alone never crosses the gross bound from one run.
    tail = compare_entry(side(10.0), side(10.0, slow_every=20, slow_factor=5.0))
    assert tail.p99_ratio > GROSS_FACTOR and tail.verdict == "unknown"


def test_holm_holds_the_family_across_entries():
    # A 6.5% slowdown whose repeats agree well: marked when it is judged alone (a family of its
    # three tests), not among 40 unchanged entries, where Holm asks far more of its p.
    weak = (side(10.0, 10.1, 9.9), side(10.7, 10.8, 10.6))
    alone = compare_entry(*weak)
    assert alone.verdict == "regressed"
    unchanged = [(side(10.0, 10.1, 9.9), side(10.05, 9.95, 10.0 + i / 1000)) for i in range(40)]
    many = judge([weak, *unchanged])
    assert [c.verdict for c in many] == ["unchanged"] * 41
    # Its adjusted p is Holm's over all 123 tests, by hand.
    raw = []
    for old, new in [weak, *unchanged]:
        for column in ("throughput_avg", "latency_ms_p50", "latency_ms_p99"):
            a = np.array([getattr(compute_stats(m, batch_size=1), column) for m in old.repeats])
            b = np.array([getattr(compute_stats(m, batch_size=1), column) for m in new.repeats])
            raw.append(student_p(a, b))  # three repeats a side: Student's
    assert many[0].throughput_p == pytest.approx(holm(raw)[0])
    assert many[0].throughput_p > ALPHA > alone.throughput_p


def test_runs_beside_different_loads_are_not_judged():
    # NEW ran while another process kept a core busy, and every repeat was slower for it.
    change = compare_entry(side(10.0, 10.1, 9.9), side(12.0, 12.1, 11.9, other=1.0))
    assert change.verdict == "unknown" and change.method == "load"
    assert "OLD ran beside 0.00 cores of other processes' work, NEW beside 1.00" in (change.note or "")
    assert change.throughput_p is None  # not tested: its tests join no family
    # The same load on both sides (a steady neighbour, or two quiet machines) is comparable.
    same = compare_entry(side(10.0, 10.1, 9.9, other=1.0), side(12.0, 12.1, 11.9, other=1.2))
    assert same.verdict == "regressed"
    # Single runs beyond the gross bound, beside different loads: not judged either.
    assert compare_entry(side(10.0), side(25.0, other=1.0)).method == "load"


def test_runs_on_a_full_machine_are_not_judged():
    # Both sides beside a neighbour, under half a core apart, but NEW's machine had no core left
    # idle: its entry waited for a core by as much as the scheduler chose. Not judged.
    full = compare_entry(side(10.0, 10.1, 9.9, other=1.0, idle=0.9), side(12.0, 12.1, 11.9, other=1.4, idle=0.05))
    assert full.verdict == "unknown" and full.method == "load"
    assert "NEW ran on a full machine (1.40 cores of other processes' work and 0.05 left idle" in (full.note or "")
    assert full.throughput_p is None
    both = compare_entry(side(10.0, other=1.0, idle=0.0), side(12.0, other=1.3, idle=0.0))
    assert "OLD ran on a full machine (1.00 cores" in both.note and "; NEW ran on a full machine (1.30 cores" in both.note
    # One crowded repeat is enough: its side's figures hold a window the scheduler shaped.
    one = side(10.0, 10.1, 9.9, other=0.3, idle=1.0)
    crowded = side(10.0, 10.1, 9.9, other=0.3, idle=1.0)
    crowded = Side(crowded.row, crowded.repeats[:2] + (repeat(9.9, other=0.3, idle=0.1),))
    assert compare_entry(one, crowded).method == "load"
    # A model that fills the machine by itself (no other work) is not crowded, and a neighbour
    # that leaves cores idle is not either: both are judged.
    own = compare_entry(side(10.0, 10.1, 9.9, other=0.02, idle=0.0), side(12.0, 12.1, 11.9, other=0.03, idle=0.01))
    assert own.verdict == "regressed"
    roomy = compare_entry(side(10.0, 10.1, 9.9, other=0.6, idle=1.2), side(12.0, 12.1, 11.9, other=0.7, idle=1.1))
    assert roomy.verdict == "regressed"
    # Rows alone (no raw samples) carry the same two columns.
    row = {"id": "m", "status": "ok", "batch_size": 1, "method_version": METHOD_VERSION, "throughput_avg": 100.0,
           "latency_ms_p50": 10.0, "latency_ms_p99": 12.0}
    was = Side({**row, "other_cpu_cores": 0.0, "idle_cpu_cores": 1.0})
    now = Side({**row, "throughput_avg": 40.0, "latency_ms_p50": 25.0, "other_cpu_cores": 0.4, "idle_cpu_cores": 0.1})
    assert compare_entry(was, now).method == "load"
    # A run from before idle_cpu_cores existed: only the difference rule applies.
    assert compare_entry(was, Side({**row, "throughput_avg": 40.0, "latency_ms_p50": 25.0,
                                    "other_cpu_cores": 0.4})).method == "gross"


def write_results(folder, method_version, throughput):
    folder.mkdir()
    row = {"id": "m-bs1-p1-m1-w1", "key": "k1", "status": "ok", "model_name": "m", "batch_size": 1,
           "pipeline_size": 1, "n_models": 1, "workers_per_model": 1, "throughput_avg": throughput,
           "latency_ms_p50": 1000 / throughput, "latency_ms_p99": 1200 / throughput, "repeats": 1,
           "method_version": method_version}
    (folder / "results.json").write_text(json.dumps([row]))
    return folder


def test_rows_of_other_method_versions_without_samples_are_refused_in_one_line(tmp_path, cli):
    old = write_results(tmp_path / "old", METHOD_VERSION - 1, 100.0)
    new = write_results(tmp_path / "new", METHOD_VERSION, 100.0)
    with pytest.raises(UsageError, match=f"measured by method {METHOD_VERSION - 1} in OLD and {METHOD_VERSION} in NEW"):
        compare_runs(str(old), str(new))
    result = cli("compare", str(old), str(new))
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    assert "rerun OLD" in result.err


def test_rows_without_samples_are_not_judged_but_a_gross_change_is(tmp_path, cli):
    old = write_results(tmp_path / "old", METHOD_VERSION, 100.0)
    same = write_results(tmp_path / "same", METHOD_VERSION, 90.0)
    halved = write_results(tmp_path / "halved", METHOD_VERSION, 40.0)
    result = cli("compare", str(old), str(same), "--fail-on-regression")
    assert result.code == 0, result.out
    assert "not judged: no raw samples on both sides; rerun both with repeat: 3" in result.out
    assert "0.900x" in result.out
    gross = cli("compare", str(old), str(halved), "--fail-on-regression")
    assert gross.code == 1 and "REGRESSED" in gross.out and "gross" in gross.out


def test_a_comparison_says_how_many_entries_its_loads_left_unjudged(tmp_path):
    old = write_results(tmp_path / "old", METHOD_VERSION, 100.0)
    new = write_results(tmp_path / "new", METHOD_VERSION, 100.0)
    rows = json.loads((new / "results.json").read_text())
    rows[0]["other_cpu_cores"] = 1.3
    rows[0]["idle_cpu_cores"] = 0.0
    (new / "results.json").write_text(json.dumps(rows))
    comparison = compare_runs(str(old), str(new))
    assert [c.method for c in comparison.changes] == ["load"]
    assert any(n.startswith("1 entry not judged: measured beside different loads or on a full machine")
               for n in comparison.notes)
