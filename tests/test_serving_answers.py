"""The summary, report and compare on server rows (hand-made rows; no processes)."""

from __future__ import annotations

from typing import Any

import pytest

from neuronperf.answers.compare import Side, compare_entry
from neuronperf.answers.slo import LatencyBound, answers, bounds_from_columns
from neuronperf.answers.summary import render
from neuronperf.measure.rate_search import Probe

P99_10 = LatencyBound(99, 10.0)


def server_row(id_: str, *, rate: float, achieved: float, p99: float, max_rate: Any = None, searched: bool = False,
               valid: bool = True, bs: int = 1, cost: Any = None) -> dict:
    return {
        "id": id_, "key": id_, "model_name": "m", "status": "ok", "batch_size": bs, "n_models": 1,
        "workers_per_model": 1, "pipeline_size": 1, "throughput_avg": achieved, "latency_ms_p50": p99 / 2,
        "latency_ms_p99": p99, "scenario": "server", "rate_target": rate, "rate_achieved": achieved,
        "max_queue_delay_ms": 0.0, "max_rate_under_slo": max_rate, "probes": 7 if searched else None,
        "valid": valid, "invalid_reason": None if valid else "overloaded", "cost_per_1m_inf": cost,
    }


def test_the_best_configuration_serves_the_highest_rate_under_the_bound():
    rows = [
        server_row("a-r200", rate=200, achieved=200, p99=7.0, cost=2.0),
        server_row("a-r400", rate=400, achieved=380, p99=9.0, valid=False),  # overloaded: never chosen
        server_row("a-r300", rate=300, achieved=300, p99=12.0),  # misses the bound
        server_row("b-rmax", rate=281, achieved=281, p99=9.9, max_rate=281.0, searched=True, bs=4, cost=1.5),
        server_row("c-rmax", rate=50, achieved=50, p99=20.0, max_rate=None, searched=True, valid=False),
    ]
    (overall, under) = answers(rows, [P99_10])
    assert overall.best["id"] == "a-r300"  # without a bound: the most served, valid
    assert under.best["id"] == "b-rmax"
    assert under.cheapest["id"] == "b-rmax"
    text = render(rows, [P99_10])
    assert "under p99<=10ms: b-rmax serves up to 281.0 requests/s (p99 9.900 ms there), $1.5 per 1M requests (also the cheapest)" in text
    assert text.splitlines()[0].split() == ["id", "status", "rate_target", "rate_achieved", "max_rate_under_slo",
                                            "latency_ms_p50", "latency_ms_p99", "queue_ms_p99", "service_ms_p99",
                                            "batch_fill_avg", "generator_lag_ms_p99", "valid"]


def test_ttft_and_tpot_bounds_read_generation_rows_and_spare_the_others():
    (ttft, latency) = bounds_from_columns([("ttft_ms_p99", 200.0), ("latency_ms_p99", 50.0)])
    assert (ttft.column, str(ttft)) == ("ttft_ms_p99", "ttft p99<=200ms")
    assert ttft.met_by({"ttft_ms_p99": 150.0}) and not ttft.met_by({"ttft_ms_p99": 250.0})
    assert ttft.met_by({"latency_ms_p99": 5.0})  # a forward row has no TTFT to bound
    assert not latency.met_by({"ttft_ms_p99": 1.0})


def test_report_draws_latency_against_rate_with_the_slo():
    pytest.importorskip("matplotlib")
    from neuronperf.answers.report import rate_figure

    rows = [server_row(f"a-r{r}", rate=r, achieved=r, p99=p) for r, p in ((100, 3.0), (200, 5.0), (300, 14.0))]
    rows.append(server_row("b-rmax", rate=281, achieved=281, p99=9.8, max_rate=281.0, searched=True, bs=4))
    probes = {"b-rmax": [Probe(500, False, 80.0), Probe(250, True, 7.0), Probe(281, True, 9.8), Probe(312, False, 14.0)]}
    fig = rate_figure("m", rows, [P99_10], probes)
    lines = {line.get_gid(): line for line in fig.axes[0].get_lines()}
    assert list(lines["rate bs1 p1 m1 w1 qd0"].get_xdata()) == [100, 200, 300]
    assert list(lines["rate bs4 p1 m1 w1 qd0"].get_xdata()) == [250, 281, 312, 500]
    assert list(lines["slo"].get_ydata()) == [10.0, 10.0]
    assert [c.get_gid() for c in fig.axes[0].collections if c.get_gid()] == ["max bs4 p1 m1 w1 qd0"]


def test_compare_judges_a_search_by_its_max_rate_as_one_number_a_side():
    """A search's max_rate_under_slo is one number per run: a change below 2x is not marked (its
    ratio is shown, with how to test it), one beyond 2x or to no rate at all is."""
    def searched(max_rate):
        return Side(server_row("b-rmax", rate=max_rate or 100, achieved=max_rate or 100, p99=9.9, max_rate=max_rate,
                               searched=True))

    lower = compare_entry(searched(281.0), searched(250.0))
    assert (lower.verdict, lower.method) == ("unknown", "search")
    assert lower.throughput_ratio == pytest.approx(250 / 281) and "281.0 -> 250.0" in lower.note
    assert "sweep.rates: [250, 281] and repeat: 3" in lower.note
    assert (compare_entry(searched(281.0), searched(280.0)).verdict) == "unchanged"
    halved = compare_entry(searched(281.0), searched(120.0))
    assert (halved.verdict, halved.method) == ("regressed", "search") and "beyond 2x" in halved.note
    assert compare_entry(searched(120.0), searched(281.0)).verdict == "improved"
    assert compare_entry(searched(281.0), searched(None)).verdict == "regressed"


def test_compare_judges_a_fixed_rate_by_its_latencies_alone():
    """A fixed rate's throughput is the rate offered: a rate served at half the target is not a
    gross regression of throughput, while a p50 three times higher is (single runs: only a change
    beyond 2x is marked)."""
    old = Side(server_row("a-r200", rate=200, achieved=200, p99=8.0))
    halved = compare_entry(old, Side(server_row("a-r200", rate=200, achieved=100, p99=8.0)))
    assert (halved.verdict, halved.method) == ("unknown", "none")
    assert halved.throughput_ratio == pytest.approx(0.5)
    slower = compare_entry(old, Side(server_row("a-r200", rate=200, achieved=200, p99=24.0)))
    assert (slower.verdict, slower.method) == ("regressed", "gross") and "p50 +200%" in slower.note


def test_compare_does_not_judge_searches_beside_different_loads():
    old = Side({**server_row("b-rmax", rate=281, achieved=281, p99=9.9, max_rate=281.0, searched=True),
                "other_cpu_cores": 0.0})
    new = Side({**server_row("b-rmax", rate=200, achieved=200, p99=9.5, max_rate=200.0, searched=True),
                "other_cpu_cores": 1.0})
    change = compare_entry(old, new)
    assert (change.verdict, change.method) == ("unknown", "load")
