"""The search strategies on stand-in measurers: pure functions entry -> row over known surfaces,
no processes. ``measure_all`` plays the sweep driver: it measures what ``decide`` asks for,
wave by wave, in any order, and may be stopped (a kill) and restarted from the rows so far."""

from __future__ import annotations

import random
from typing import Callable, Optional

import pytest

from neuronperf.answers.slo import THROUGHPUT, LatencyBound
from neuronperf.entries import RunEntry, SearchSettings
from neuronperf.plan.expand import plan
from neuronperf.search.replay import NOT_VISITED, Decision, decide
from neuronperf.search.space import Space, below
from neuronperf.search.strategies import failed_bound, feasible, over
from neuronperf.spec.load import parse_spec

pytestmark = pytest.mark.pure

Surface = Callable[[RunEntry], dict]


def entries(batches="[1, 2, 4, 8, 16]", copies="[1, 2]", threads="[1, 2, 4]", params="{work: [1, 2]}",
            exclude: str = "") -> tuple[RunEntry, ...]:
    spec = f"""
version: 1
framework: torch
device_type: cpu
models:
  - name: syn
    factory: "neuronperf.zoo:mlp"
    params: {params}
    kwargs: {{hidden: $work}}
    inputs: [[8]]
sweep:
  batch_sizes: {batches}
  n_models: {copies}
  workers_per_model: {threads}
{exclude}
"""
    return plan(parse_spec(spec)).run_entries


def row(p99: float, throughput: float, status: str = "ok", **more: float) -> dict:
    return {"status": status, "latency_ms_p99": p99, "latency_ms_p50": p99 / 2, "throughput_avg": throughput, **more}


def saturating(entry: RunEntry) -> dict:
    """Calls of 0.5 + 0.25 x batch ms (x work) on a device that takes one call at a time per
    copy: threads queue (latency x threads), copies run in parallel on two cores."""
    c = entry.compile
    call = (0.5 + 0.25 * c.batch_size) * dict(c.params)["work"]
    m, w = entry.n_models, entry.workers_per_model
    latency = call * w * max(1.0, m / 2)
    return row(latency * 1.1, min(m, 2) * c.batch_size * 1000 / call)


def measure_all(all_entries, settings: SearchSettings, bounds, surface: Surface, *, known: Optional[dict] = None,
                stop_after: Optional[int] = None, seed: Optional[int] = None) -> tuple[Decision, dict, list]:
    """Run a search to its end (or until ``stop_after`` measurements): return the last decision,
    the rows and the entries measured, in order. ``seed`` shuffles each wave (Ray's order)."""
    known = dict(known or {})
    measured: list[RunEntry] = []
    space = Space(all_entries)
    while True:
        decision = decide(all_entries, settings, bounds, known, space)
        if decision.finished:
            return decision, known, measured
        wave = list(decision.pending)
        if seed is not None:
            random.Random(seed + len(measured)).shuffle(wave)
        for entry in wave:
            if stop_after is not None and len(measured) >= stop_after:
                return decision, known, measured
            known[entry] = surface(entry)
            measured.append(entry)


def grid_best(all_entries, bounds, surface: Surface, column: str = "throughput_avg", sign: float = 1.0) -> dict:
    """Per question (the work parameter), the grid's best entry under the bounds."""
    best: dict = {}
    for entry in all_entries:
        r = surface(entry)
        if r["status"] != "ok" or not all(b.met_by(r) for b in bounds):
            continue
        work = dict(entry.compile.params).get("work")
        if work not in best or sign * r[column] > sign * surface(best[work])[column]:
            best[work] = entry
    return best


def found(decision: Decision) -> dict:
    return {dict(q.params).get("work"): e for q, e in decision.best.items()}


BOUND = (LatencyBound(99, 6.0),)


# ---- prune ---------------------------------------------------------------------------------


def test_prune_finds_the_grids_exact_best_and_skips_only_what_a_failed_bound_rules_out():
    plan_entries = entries()
    decision, rows, measured = measure_all(plan_entries, SearchSettings("prune"), BOUND, saturating)
    assert found(decision) == grid_best(plan_entries, BOUND, saturating)
    assert len(measured) < len(plan_entries)
    assert set(measured) | set(decision.skipped) == set(plan_entries)
    assert not set(measured) & set(decision.skipped)
    by_id = {e.id: e for e in plan_entries}
    for entry, reason in decision.skipped.items():
        # "p99 8.3 ms > 6 ms at syn-work1-bs4-p1-m1-w2": a measured entry below it that failed.
        text, culprit_id = reason.split(" at ")
        culprit = by_id[culprit_id]
        assert culprit in rows and below(culprit, entry)
        assert rows[culprit]["latency_ms_p99"] > 6.0
        assert text == f"p99 {over(rows[culprit]['latency_ms_p99'], 6.0)} ms > 6 ms"
    # Every infeasible entry it measured is a smallest one: nothing below it failed.
    for entry in measured:
        if rows[entry]["latency_ms_p99"] > 6.0:
            assert not any(below(other, entry) and rows[other]["latency_ms_p99"] > 6.0 for other in measured)


def test_prune_measures_the_same_entries_whatever_order_a_waves_rows_arrive_in():
    plan_entries = entries()
    first = measure_all(plan_entries, SearchSettings("prune"), BOUND, saturating)
    for seed in (1, 2, 3):
        again = measure_all(plan_entries, SearchSettings("prune"), BOUND, saturating, seed=seed)
        assert set(again[2]) == set(first[2])
        assert again[0].skipped == first[0].skipped


def test_prune_on_a_surface_that_breaks_the_assumption_can_miss_the_best_and_says_which_entry_ruled_it_out():
    # Batch 8 is slow (p99 10 ms), batch 16 fast again (5 ms) and the best: latency falls
    # with a bigger batch, which the assumption says does not happen.
    def dip(entry: RunEntry) -> dict:
        b = entry.compile.batch_size
        p99 = {1: 1.0, 2: 2.0, 4: 3.0, 8: 10.0, 16: 5.0}[b]
        return row(p99 * entry.workers_per_model, 100.0 * b)

    plan_entries = entries(copies="1", threads="1", params="{work: 1}")
    decision, rows, _ = measure_all(plan_entries, SearchSettings("prune"), BOUND, dip)
    best16 = next(e for e in plan_entries if e.compile.batch_size == 16)
    assert grid_best(plan_entries, BOUND, dip)[1] == best16
    assert found(decision)[1].compile.batch_size == 4  # the best it could see
    assert decision.skipped[best16] == "p99 10.0 ms > 6 ms at syn-work1-bs8-p1-m1-w1"


def test_prune_with_a_budget_stops_there_and_says_so():
    plan_entries = entries()
    decision, _, measured = measure_all(plan_entries, SearchSettings("prune", budget=5), BOUND, saturating)
    assert len(measured) == 5 and decision.finished and decision.budget_reached
    assert "not measured: search.budget (5 entries) was reached" in decision.skipped.values()


def test_an_entry_that_failed_rules_nothing_out():
    def failing(entry: RunEntry) -> dict:
        if entry.compile.batch_size == 2:
            return {"status": "error", "error": "out of memory"}
        return saturating(entry)

    plan_entries = entries(copies="1", threads="1", params="{work: 1}")
    decision, _, measured = measure_all(plan_entries, SearchSettings("prune"), BOUND, failing)
    assert [e.compile.batch_size for e in measured] == [1, 2, 4, 8, 16][:len(measured)]
    assert any(e.compile.batch_size == 4 for e in measured)


# ---- quick ---------------------------------------------------------------------------------


def unimodal(entry: RunEntry) -> dict:
    """One peak at batch 8, 2 copies, 2 threads: the objective falls off with the distance."""
    c = entry.compile
    distance = abs(c.batch_size.bit_length() - 4) + abs(entry.n_models - 2) + abs(entry.workers_per_model.bit_length() - 2)
    return row(1.0, 1000.0 / (1 + distance))


def test_quick_reaches_the_known_optimum_of_a_unimodal_surface():
    plan_entries = entries(batches="[1, 2, 4, 8, 16, 32]", copies="[1, 2, 3, 4]", threads="[1, 2, 4, 8]", params="{work: 1}")
    decision, rows, measured = measure_all(plan_entries, SearchSettings("quick"), (), unimodal)
    peak = found(decision)[1]
    assert (peak.compile.batch_size, peak.n_models, peak.workers_per_model) == (8, 2, 2)
    assert len(measured) < len(plan_entries) / 3
    assert set(decision.skipped) == set(plan_entries) - set(measured)
    assert set(decision.skipped.values()) == {NOT_VISITED}


def test_quick_stops_when_no_neighbour_gains_more_than_min_gain():
    # Throughput grows 4% per batch step: never enough for 5%, enough for 3%.
    def gentle(entry: RunEntry) -> dict:
        return row(1.0, 100.0 * 1.04 ** entry.compile.batch_size.bit_length())

    plan_entries = entries(copies="1", threads="1", params="{work: 1}")
    stopped, _, measured = measure_all(plan_entries, SearchSettings("quick"), (), gentle)
    # It measured the start's one neighbour, found it 4% better, and stayed: the answer is the
    # best entry it measured.
    assert [e.compile.batch_size for e in measured] == [1, 2]
    assert found(stopped)[1].compile.batch_size == 2
    climbed = measure_all(plan_entries, SearchSettings("quick", min_gain=0.03), (), gentle)[0]
    assert found(climbed)[1].compile.batch_size == 16


def test_quick_respects_the_bound_and_skips_neighbours_a_failed_bound_rules_out():
    plan_entries = entries()
    decision, rows, measured = measure_all(plan_entries, SearchSettings("quick"), BOUND, saturating)
    best = grid_best(plan_entries, BOUND, saturating)
    for work, entry in found(decision).items():
        assert saturating(entry)["latency_ms_p99"] <= 6.0
        assert saturating(entry)["throughput_avg"] >= 0.95 * saturating(best[work])["throughput_avg"]
    ruled = [e for e, why in decision.skipped.items() if why != NOT_VISITED]
    assert ruled and all(e not in measured for e in ruled)


def test_quick_climbs_out_of_an_infeasible_start_towards_the_bound():
    # Every entry with one copy is over the bound; with two copies they meet it.
    def copies_help(entry: RunEntry) -> dict:
        return row(10.0 if entry.n_models == 1 else 2.0, 100.0 * entry.compile.batch_size)

    plan_entries = entries(threads="1", params="{work: 1}")
    decision = measure_all(plan_entries, SearchSettings("quick"), BOUND, copies_help)[0]
    assert found(decision)[1].n_models == 2


def test_quick_minimises_a_negated_objective():
    def costly(entry: RunEntry) -> dict:
        b = entry.compile.batch_size
        return row(1.0, 100.0, cost_per_1m_inf=abs(b - 4) + 1.0)

    plan_entries = entries(copies="1", threads="1", params="{work: 1}")
    decision = measure_all(plan_entries, SearchSettings("quick", maximize="-cost_per_1m_inf"), (), costly)[0]
    assert found(decision)[1].compile.batch_size == 4


def test_neighbours_step_over_excluded_entries():
    plan_entries = entries(batches="[1, 2, 4]", copies="1", threads="[1, 2]", params="{work: 1}",
                           exclude="exclude:\n  - {batch_size: 2, workers_per_model: 1}")
    space = Space(plan_entries)
    start = space.smallest(next(iter(space.questions)))
    assert [n.id for n in space.neighbours(start)] == ["syn-work1-bs4-p1-m1-w1", "syn-work1-bs1-p1-m1-w2"]


# ---- resume and bound changes ---------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["prune", "quick"])
@pytest.mark.parametrize("killed_after", [1, 3, 7, 12])
def test_a_search_stopped_anywhere_continues_from_its_rows_to_the_same_answer(strategy, killed_after):
    plan_entries = entries()
    settings = SearchSettings(strategy)
    whole = measure_all(plan_entries, settings, BOUND, saturating)
    _, rows, first_part = measure_all(plan_entries, settings, BOUND, saturating, stop_after=killed_after)
    resumed = measure_all(plan_entries, settings, BOUND, saturating, known=rows)
    assert first_part + resumed[2] == whole[2]  # the same entries, in the same order
    assert resumed[0].skipped == whole[0].skipped and resumed[0].best == whole[0].best


def test_a_finished_search_decides_from_its_rows_alone():
    plan_entries = entries()
    decision, rows, _ = measure_all(plan_entries, SearchSettings("prune"), BOUND, saturating)
    again = decide(plan_entries, SearchSettings("prune"), BOUND, rows)
    assert again.finished and not again.pending and again.skipped == decision.skipped


@pytest.mark.parametrize("strategy", ["prune", "quick"])
def test_a_new_bound_measures_only_what_it_needs(strategy):
    plan_entries = entries()
    settings = SearchSettings(strategy)
    _, rows, _ = measure_all(plan_entries, settings, BOUND, saturating)
    looser = (LatencyBound(99, 12.0),)
    fresh = measure_all(plan_entries, settings, looser, saturating)
    after, _, measured_now = measure_all(plan_entries, settings, looser, saturating, known=rows)
    assert set(measured_now) == set(fresh[2]) - set(rows)  # nothing measured twice
    assert after.best == fresh[0].best


# ---- the spec ------------------------------------------------------------------------------

SPEC = """\
version: 1
framework: torch
device_type: cpu
models:
  - name: mlp
    factory: "neuronperf.zoo:mlp"
    params: {{hidden: [64, 128]}}
    kwargs: {{hidden: $hidden}}
    inputs: [[16]]
sweep:
  batch_sizes: [1, 8]
{extra}
"""


@pytest.mark.parametrize("extra, line", [
    ("search: quick\nobjectives: {maximize: throughput}",
     "13:24: objectives.maximize: unknown column 'throughput'; did you mean 'throughput_avg'?"),
    ("search: quick\nobjectives: {maximize: -cost_per_1m_inf}",
     "13:24: objectives.maximize: rows have a cost_per_1m_inf only with a price: give cost_per_hour (USD) or instance_type in the spec"),
    ("search: quick\nobjectives: {maximize: accuracy}",
     "13:24: objectives.maximize: model 'mlp' does not evaluate accuracy (evaluate: {dataset: ..., metrics: [accuracy]}), so its rows have no such column"),
    ("search: quick\nobjectives: {maximize: hidden}",
     "13:24: objectives.maximize: hidden is a swept model parameter: each of its values is a question of its own, answered separately; name a measured column such as throughput_avg"),
    ("search: quick\nobjectives: {maximize: throughput_ci_low}",
     "13:24: objectives.maximize: rows have throughput_ci_low only with benchmark.repeat of 2 or more"),
    ("search: quick\nobjectives: {maximize: max_rate_under_slo}",
     "13:24: objectives.maximize: max_rate_under_slo is a column of the server scenario (benchmark.scenario: server), and this spec measures the closed loop; maximize throughput_avg or another column of these rows"),
    ("  rates: [100, 200]\nbenchmark: {scenario: server}\nsearch: quick\nobjectives: {maximize: max_rate_under_slo}",
     "15:24: objectives.maximize: max_rate_under_slo is found by the peak search: set sweep.rates: max (with a bound in objectives.slo), or maximize rate_achieved at the listed rates"),
    ("search: {strategy: prune, min_gain: 0.1}\nobjectives: {slo: {latency_ms_p99: 5}}",
     "12:27: search.min_gain: min_gain applies to strategy: quick (the climb's step); prune does not climb"),
    ("search: quick\nobjectives: {maximize: '-cost per'}",
     "13:24: objectives.maximize: '-cost per' is not a column name (a row column such as throughput_avg, or -column to minimise it)"),
])
def test_search_spec_errors_are_located(cli, tmp_path, extra, line):
    path = tmp_path / "s.yaml"
    path.write_text(SPEC.format(extra=extra))
    for command in ("validate", "plan"):
        result = cli(command, str(path))
        # (an unknown column's line goes on to list the columns rows have)
        assert result.code == 2 and len(result.err.splitlines()) == 1, result.err
        assert result.err.startswith(f"{path}:{line}"), result.err


@pytest.mark.parametrize("extra", [
    "search: quick\nobjectives: {maximize: -latency_ms_p99}",
    "search: quick\ncost_per_hour: 1.5\nobjectives: {maximize: -cost_per_1m_inf}",
    "search: {strategy: quick, min_gain: 0.02, budget: 3}",
    "search: prune\nobjectives: {slo: {latency_ms_p99: 5}}",
    "  rates: max\nbenchmark: {scenario: server}\nsearch: quick\nobjectives: {maximize: max_rate_under_slo, slo: {latency_ms_p99: 10}}",
    "  rates: [100, 200]\nbenchmark: {scenario: server}\nsearch: prune\nobjectives: {maximize: rate_achieved, slo: {latency_ms_p99: 10}}",
])
def test_search_specs_that_are_right(cli, tmp_path, extra):
    path = tmp_path / "s.yaml"
    path.write_text(SPEC.format(extra=extra))
    result = cli("validate", str(path))
    assert result.code == 0, result.err


def test_search_is_not_part_of_an_entrys_identity():
    grid = parse_spec(SPEC.format(extra=""))
    searched = parse_spec(SPEC.format(extra="search: quick\nobjectives: {maximize: -latency_ms_p50}"))
    assert [e.key for e in plan(grid).run_entries] == [e.key for e in plan(searched).run_entries]


def server_entries(rates: str) -> tuple[RunEntry, ...]:
    return plan(parse_spec(SPEC.format(extra=f"  rates: {rates}\nbenchmark: {{scenario: server}}\n"
                                             "objectives: {slo: {latency_ms_p99: 10}}"))).run_entries


def test_each_offered_rate_is_a_question_of_its_own():
    space = Space(server_entries("[100, 200]"))
    assert sorted(q.label for q in space.questions) == [
        "mlp hidden=128 rate=100.0 max_queue_delay_ms=0.0", "mlp hidden=128 rate=200.0 max_queue_delay_ms=0.0",
        "mlp hidden=64 rate=100.0 max_queue_delay_ms=0.0", "mlp hidden=64 rate=200.0 max_queue_delay_ms=0.0"]


def test_a_server_row_at_a_fixed_rate_rules_nothing_out_but_a_failed_peak_search_does():
    bound = [LatencyBound(99, 10.0)]
    fixed = {"status": "ok", "scenario": "server", "latency_ms_p99": 40.0, "probes": None, "valid": False}
    searched = {"status": "ok", "scenario": "server", "latency_ms_p99": 12.0, "probes": 6, "max_rate_under_slo": None}
    # Overloaded at one rate: a bigger batch adds capacity, so it says nothing about bigger entries.
    assert failed_bound(fixed, bound) is None
    # No rate met the bound: even the lowest rate's latency, where nothing queues, was over it.
    assert failed_bound(searched, bound) == (bound[0], 12.0)


def test_the_default_objective_scores_a_server_row_by_the_rate_it_serves():
    searched = {"status": "ok", "scenario": "server", "throughput_avg": 270.0, "max_rate_under_slo": 281.0,
                "probes": 6, "latency_ms_p99": 9.5, "valid": True}
    invalid = {"status": "ok", "scenario": "server", "throughput_avg": 400.0, "rate_target": 500.0,
               "probes": None, "latency_ms_p99": 9.0, "valid": False}
    assert THROUGHPUT.value(searched) == 281.0
    assert feasible(searched, [LatencyBound(99, 10.0)], THROUGHPUT)
    # An invalid row (overloaded, or too much harness lag) is never chosen, whatever its latency.
    assert not feasible(invalid, [LatencyBound(99, 10.0)], THROUGHPUT)


def test_the_logical_neuroncore_config_is_an_axis_no_order_crosses():
    """An entry at LNC 1 and one at LNC 2 are neighbours (quick can move between them), never
    above one another: a copy at another LNC runs on other cores, so a failed bound at one LNC
    rules out nothing at the other."""
    spec = parse_spec("""
version: 1
framework: torch
device_type: neuron
compiler: native-compile
models:
  - {name: mlp, factory: "neuronperf.zoo:mlp", inputs: [[8]]}
sweep:
  batch_sizes: [1, 2]
  logical_nc_configs: [1, 2]
""")
    run_entries = plan(spec).run_entries
    by_id = {e.id: e for e in run_entries}
    space = Space(run_entries)
    assert len({space.coordinates(e) for e in run_entries}) == len(run_entries) == 4
    start = space.smallest(next(iter(space.questions)))
    assert start.id == "mlp-bs1-p1-lnc1-m1-w1"
    assert [n.id for n in space.neighbours(start)] == ["mlp-bs2-p1-lnc1-m1-w1", "mlp-bs1-p1-lnc2-m1-w1"]
    assert below(by_id["mlp-bs1-p1-lnc1-m1-w1"], by_id["mlp-bs2-p1-lnc1-m1-w1"])
    assert not below(by_id["mlp-bs1-p1-lnc1-m1-w1"], by_id["mlp-bs2-p1-lnc2-m1-w1"])
    assert space.below_in_slice(by_id["mlp-bs2-p1-lnc2-m1-w1"]) == [by_id["mlp-bs1-p1-lnc2-m1-w1"]]
