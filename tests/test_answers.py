"""Answers from rows, without running anything: --slo bounds, the best configuration, the
summary table (golden), prices, the ETA, results as a DataFrame, and the spec keys (the
compare's statistics are in test_compare.py)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from neuronperf.answers import prices, slo, summary
from neuronperf.cli.progress import SweepProgress, format_seconds
from neuronperf.errors import SpecError, UsageError
from neuronperf.plan.expand import plan
from neuronperf.spec.load import parse_spec

pytestmark = pytest.mark.pure

GOLDEN = Path(__file__).parent / "data" / "golden"


def row(id_, thr, p50, p99, *, bs=1, m=1, w=1, status="ok", seq=None, model="bert", cost=None):
    r = {
        "model_name": model, "id": id_, "status": status, "throughput_avg": thr, "latency_ms_p50": p50,
        "latency_ms_p99": p99, "batch_size": bs, "n_models": m, "workers_per_model": w, "pipeline_size": 1,
        "model_filename": f"models/{id_}.pt", "cost_per_1m_inf": cost,
    }
    if seq is not None:
        r["seq_len"] = seq
    return r


# Two questions (seq_len 128 and 512); numbers chosen so that each bound picks another entry.
ROWS = [
    row("bert-seq_len128-bs1-p1-m1-w1", 100.0, 9.0, 10.0, seq=128),
    row("bert-seq_len128-bs4-p1-m1-w1", 300.0, 12.0, 15.0, bs=4, seq=128),
    row("bert-seq_len128-bs8-p1-m1-w1", 420.0, 17.0, 25.0, bs=8, seq=128),
    row("bert-seq_len128-bs8-p1-m1-w2", 440.0, 30.0, 45.0, bs=8, w=2, seq=128),
    row("bert-seq_len128-bs16-p1-m1-w1", None, None, None, bs=16, seq=128, status="error"),
    row("bert-seq_len512-bs1-p1-m1-w1", 40.0, 22.0, 30.0, seq=512),
    row("bert-seq_len512-bs4-p1-m1-w1", 90.0, 40.0, 55.0, bs=4, seq=512),
    row("bert-seq_len512-bs8-p1-m1-w1", None, None, None, bs=8, seq=512, status="skipped"),
]


# ---- --slo -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("p99<=20ms", slo.LatencyBound(99, 20.0)),
    ("p50<=0.5s", slo.LatencyBound(50, 500.0)),
    (" p90 <= 7.5 ms ", slo.LatencyBound(90, 7.5)),
    ("P100<=1S", slo.LatencyBound(100, 1000.0)),
])
def test_bounds_parse(text, expected):
    assert slo.parse_bound(text) == expected


@pytest.mark.parametrize("text, message", [
    ("p99<20", "--slo 'p99<20': write PERCENTILE<=LIMIT with a unit, e.g. p99<=20ms or p50<=0.5s"),
    ("p42<=1ms", "--slo 'p42<=1ms': p42 is not a reported percentile (reported: p0, p50, p90, p95, p99, p100)"),
    ("p99<=fast", "--slo 'p99<=fast': 'fast' is not a latency; write a number with ms or s, e.g. 20ms"),
    ("p99<=20", "--slo 'p99<=20': '20' is not a latency; write a number with ms or s, e.g. 20ms"),
    ("p99<=0ms", "--slo 'p99<=0ms': the limit must be a positive latency"),
])
def test_bad_bounds_are_one_line(text, message):
    with pytest.raises(UsageError) as info:
        slo.parse_bound(text)
    assert str(info.value) == message


@pytest.mark.parametrize("text", ["p99<20", "p42<=1ms", "p99<=fast"])
def test_bad_slo_on_the_command_line_exits_2_with_one_line(cli, tmp_path, text):
    (tmp_path / "results.json").write_text(json.dumps(ROWS))
    result = cli("summary", str(tmp_path), "--slo", text)
    assert result.code == 2
    assert result.out == ""
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err


# ---- the best configuration, by hand ---------------------------------------------------------


def test_best_configuration_matches_a_hand_computation():
    groups = slo.group_rows(ROWS)
    assert [g.label for g in groups] == ["bert seq_len=128", "bert seq_len=512"]
    seq128, seq512 = groups.values()
    label128, label512 = groups
    # seq 128, no bound: the highest throughput of the four measured rows is 440 (bs8 w2).
    assert slo.choose(label128, seq128).best["id"] == "bert-seq_len128-bs8-p1-m1-w2"
    # p99 <= 20 ms: bs1 (10), bs4 (15) qualify; bs8 (25) and bs8-w2 (45) do not -> bs4 at 300.
    assert slo.choose(label128, seq128, [slo.LatencyBound(99, 20.0)]).best["id"] == "bert-seq_len128-bs4-p1-m1-w1"
    # p99 <= 25 ms is inclusive: bs8 w1 (p99 exactly 25) at 420 wins.
    assert slo.choose(label128, seq128, [slo.LatencyBound(99, 25.0)]).best["id"] == "bert-seq_len128-bs8-p1-m1-w1"
    # p50 <= 10 and p99 <= 20 together: only bs1 (9, 10).
    both = [slo.LatencyBound(50, 10.0), slo.LatencyBound(99, 20.0)]
    assert slo.choose(label128, seq128, both).best["id"] == "bert-seq_len128-bs1-p1-m1-w1"
    # seq 512 under p99 <= 20: nothing qualifies; closest is bs1 (30 / 20 = 1.5 vs 55 / 20).
    choice = slo.choose(label512, seq512, [slo.LatencyBound(99, 20.0)])
    assert choice.best is None
    assert choice.closest["id"] == "bert-seq_len512-bs1-p1-m1-w1"
    assert choice.candidates == 2  # the skipped entry is not a candidate


def test_cheapest_under_the_bound_is_the_lowest_cost_per_1m_inf():
    rows = [
        row("a-bs1", 100.0, 5.0, 8.0, cost=2.0),
        row("a-bs2", 150.0, 6.0, 9.0, bs=2, cost=2.5),  # another instance type: dearer per call
        row("a-bs4", 300.0, 9.0, 30.0, bs=4, cost=0.5),  # cheapest but over the bound
    ]
    group = next(iter(slo.group_rows(rows)))
    choice = slo.choose(group, rows, [slo.LatencyBound(99, 10.0)])
    assert choice.best["id"] == "a-bs2"
    assert choice.cheapest["id"] == "a-bs1"


def test_the_summary_table_and_answers_match_the_golden_file():
    bounds = [slo.LatencyBound(99, 20.0), slo.LatencyBound(50, 10.0)]
    pricing = prices.Pricing("inf2.xlarge", 0.7582, "built-in table")
    rows = [prices.apply_pricing(r, pricing) for r in ROWS]
    text = summary.render(rows, bounds, pricing)
    golden = (GOLDEN / "summary.txt").read_text()
    assert text + "\n" == golden


# ---- prices ----------------------------------------------------------------------------------


def test_prices_come_from_the_flag_then_the_file_then_the_table(tmp_path, monkeypatch):
    monkeypatch.delenv(prices.PRICES_ENV, raising=False)
    assert prices.resolve_pricing("inf2.xlarge").cost_per_hour == prices.BUILTIN_PRICES["inf2.xlarge"]
    own = tmp_path / "prices.yaml"
    own.write_text("inf2.xlarge: 0.5\nmy-box: 1.25\n")
    assert prices.resolve_pricing("inf2.xlarge", price_file=str(own)) == prices.Pricing("inf2.xlarge", 0.5, str(own))
    monkeypatch.setenv(prices.PRICES_ENV, str(own))
    assert prices.resolve_pricing("my-box").cost_per_hour == 1.25
    assert prices.resolve_pricing("my-box", 3.0).cost_per_hour == 3.0
    unknown = prices.resolve_pricing("c5.large")
    assert unknown.cost_per_hour is None and "set cost_per_hour" in (unknown.note or "")
    row_ = prices.apply_pricing({"throughput_avg": 1000.0}, prices.Pricing("x", 3.6, "spec"))
    assert row_["cost_per_1m_inf"] == pytest.approx(3.6 * 1e6 / (3600 * 1000.0))
    assert row_["instance_type"] == "x"


def test_a_bad_price_file_is_one_line(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("inf2.xlarge: cheap\n")
    with pytest.raises(UsageError, match=r"p.yaml: inf2.xlarge: 'cheap' is not a price per hour of at least 0"):
        prices.load_price_file(str(bad))


# ---- progress --------------------------------------------------------------------------------


class _Entry:
    def __init__(self, id_):
        self.id = id_


def test_eta_uses_the_plan_until_entries_finish_then_their_mean():
    progress = SweepProgress(total=4, per_entry_s=6.5)
    assert progress.eta_s(0.0) == 26.0
    progress.started(_Entry("a"), 0.0)
    assert progress.eta_s(2.0) == 24.0  # 4 x 6.5 minus the 2 s already spent on the first
    progress.finished(_Entry("a"), {"status": "ok"}, 10.0)
    assert progress.line(10.0) == "1 done, 0 failed, 3 to do; about 30 s left"
    progress.started(_Entry("b"), 10.0)
    progress.finished(_Entry("b"), {"status": "error"}, 20.0)
    assert (progress.done, progress.failed, progress.todo) == (1, 1, 2)
    assert progress.eta_s(20.0) == 20.0
    assert format_seconds(3725) == "1 h 02 min"


# ---- results as a DataFrame ------------------------------------------------------------------


def test_load_reads_neuronperf_csv_with_na(tmp_path):
    import pandas as pd

    from neuronperf import results

    path = tmp_path / "model.results-20260101-120000.csv"
    path.write_text(textwrap.dedent("""\
        model_name,n_models,workers_per_model,pipeline_size,batch_size,throughput_avg,latency_ms_p50,latency_ms_p99,total_infs,cost_per_1m_inf
        m.pt,1,2,1,4,1000.5,1.5,2.5,400,N/A
        m.pt,2,2,1,4,N/A,N/A,N/A,N/A,N/A
        """))
    df = results.load(str(path))
    assert list(df["id"]) == ["m.pt-bs4-p1-m1-w2", "m.pt-bs4-p1-m2-w2"]
    assert df["batch_size"].dtype == "int64"
    assert df["throughput_avg"].dtype == "float64" and np.isnan(df["throughput_avg"][1])
    assert df["cost_per_1m_inf"].isna().all()
    assert str(df["total_infs"].dtype) == "Int64"
    assert isinstance(df["status"].dtype, pd.CategoricalDtype)
    assert df["status"][0] == "ok" and df["status"].isna()[1]


def test_load_of_a_folder_without_results_is_one_line(tmp_path):
    from neuronperf import results

    with pytest.raises(UsageError, match="holds no results"):
        results.load(str(tmp_path))


def test_load_keeps_swept_params_as_columns(tmp_path):
    from neuronperf import results

    (tmp_path / "results.json").write_text(json.dumps(ROWS))
    df = results.load(str(tmp_path))
    assert len(df) == len(ROWS)
    assert list(df["seq_len"]) == [128] * 5 + [512] * 3
    assert df["seq_len"].dtype == "int64"


# ---- spec keys -------------------------------------------------------------------------------

SPEC = """
version: 1
framework: torch
device_type: cpu
instance_type: inf2.xlarge
cost_per_hour: 0.9
objectives: {{slo: {{latency_ms_p99: 20, latency_ms_p50: 5}}}}
models:
  - {{name: mlp, factory: "neuronperf.zoo:mlp", inputs: [[16]]}}
sweep:
  pipeline_sizes: [1, 2]
  n_models: {n_models}
"""


def test_objectives_prices_and_n_models_max_are_planned():
    spec = parse_spec(SPEC.format(n_models="[1, max]").replace("pipeline_sizes: [1, 2]", "pipeline_sizes: [1]"))
    assert spec.slo == (("latency_ms_p99", 20.0), ("latency_ms_p50", 5.0))
    assert (spec.instance_type, spec.cost_per_hour) == ("inf2.xlarge", 0.9)
    assert spec.sweep.n_models == (1, "max")
    the_plan = plan(spec, device_count=lambda: 4)
    assert [e.n_models for e in the_plan.run_entries] == [1, 4]
    assert the_plan.slo == spec.slo
    # max that comes to a value already listed is planned once.
    assert [e.n_models for e in plan(spec, device_count=lambda: 1).run_entries] == [1]


def test_a_price_of_zero_is_accepted_and_a_negative_one_is_located():
    text = SPEC.format(n_models="[1]").replace("pipeline_sizes: [1, 2]", "pipeline_sizes: [1]")
    free = parse_spec(text.replace("cost_per_hour: 0.9", "cost_per_hour: 0"))
    assert free.cost_per_hour == 0.0 and plan(free, device_count=lambda: 1).cost_per_hour == 0.0
    pricing = prices.resolve_pricing("inf2.xlarge", 0.0)  # 0 wins over the table's price
    assert (pricing.cost_per_hour, pricing.source) == (0.0, "spec")
    assert prices.apply_pricing({"throughput_avg": 50.0}, pricing)["cost_per_1m_inf"] == 0.0
    with pytest.raises(SpecError, match=r"cost_per_hour: .*-1"):
        parse_spec(text.replace("cost_per_hour: 0.9", "cost_per_hour: -1"))


def test_n_models_max_divides_the_devices_by_the_pipeline_size():
    text = SPEC.format(n_models="max").replace("device_type: cpu", "device_type: neuron")
    spec = parse_spec(text)
    entries = plan(spec, device_count=lambda: 8).run_entries
    assert [(e.compile.pipeline_size, e.n_models) for e in entries] == [(1, 8), (2, 4)]
    with pytest.raises(SpecError, match="n_models: max needs this machine's device count"):
        plan(spec)


@pytest.mark.parametrize("n_models, message", [
    ("[1, lots]", "sweep.n_models[1]: expected a positive integer, 'max' or a list of them, got the string 'lots'"),
    ("[max, max]", "sweep.n_models[1]: duplicate value 'max' (already at sweep.n_models[0])"),
])
def test_bad_n_models(n_models, message):
    with pytest.raises(SpecError) as info:
        parse_spec(SPEC.format(n_models=n_models))
    assert message in str(info.value)


def test_a_bad_objective_is_located():
    text = SPEC.format(n_models=1).replace("latency_ms_p50: 5", "latency_ms_p42: 5")
    with pytest.raises(SpecError) as info:
        parse_spec(text, source="s.yaml")
    assert "s.yaml:7:40: " in str(info.value)
    assert "objectives.slo.latency_ms_p42: 'latency_ms_p42' is not a reported latency percentile" in str(info.value)
