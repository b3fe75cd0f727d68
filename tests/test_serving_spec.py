"""The server scenario's spec keys and plan: axes, ids, identities, and every mistake located."""

from __future__ import annotations

from pathlib import Path

import pytest

from neuronperf.errors import SpecError
from neuronperf.plan.expand import plan
from neuronperf.plan.keys import run_keys
from neuronperf.plan.render import plan_dict
from neuronperf.spec.load import load_spec, parse_spec

pytestmark = pytest.mark.pure

BASE = """\
version: 1
framework: torch
device_type: cpu
models:
  - name: mlp
    factory: "neuronperf.zoo:mlp"
    inputs: [[128]]
"""


def test_rates_and_queue_delays_are_axes_the_rate_fastest():
    p = plan(parse_spec(BASE + """\
sweep: {batch_sizes: [1, 4], rates: [100, 200.5], max_queue_delays_ms: [0, 1]}
exclude: [{batch_size: 1, max_queue_delay_ms: 1}]
benchmark: {scenario: server, arrival: constant, seed: 7}
""", source="s.yaml"))
    assert [e.id for e in p.run_entries] == [
        "mlp-bs1-p1-m1-w1-r100-qd0", "mlp-bs1-p1-m1-w1-r200.5-qd0",
        "mlp-bs4-p1-m1-w1-r100-qd0", "mlp-bs4-p1-m1-w1-r200.5-qd0",
        "mlp-bs4-p1-m1-w1-r100-qd1", "mlp-bs4-p1-m1-w1-r200.5-qd1",
    ]
    assert p.excluded == (("exclude[0]", 2),)
    serving = p.run_entries[-1].serving
    assert (serving.rate, serving.max_queue_delay_ms, serving.arrival, serving.seed) == (200.5, 1.0, "constant", 7)
    assert serving.slo == ()  # a fixed forward rate does not depend on objectives.slo
    keys = [e.key for e in p.run_entries]
    assert len(set(keys)) == len(keys) and run_keys(p.run_entries) == keys
    assert plan_dict(p)["run_entries"][1] | {"key": None} == {
        "id": "mlp-bs1-p1-m1-w1-r200.5-qd0", "key": None, "compile_id": "mlp-bs1-p1", "compile_key": plan_dict(p)["run_entries"][1]["compile_key"],
        "model": "mlp", "params": {}, "batch_size": 1, "pipeline_size": 1, "n_models": 1, "workers_per_model": 1,
        "rate": 200.5, "max_queue_delay_ms": 0.0,
    }


def test_rates_max_carries_its_bounds_into_the_identity():
    text = BASE + "sweep: {rates: max}\nobjectives: {slo: {latency_ms_p99: 20}}\nbenchmark: {scenario: server}\n"
    (entry,) = plan(parse_spec(text, source="s.yaml")).run_entries
    assert entry.id == "mlp-bs1-p1-m1-w1-rmax-qd0"
    assert entry.serving.search and entry.serving.slo == (("latency_ms_p99", 20.0),)
    (tighter,) = plan(parse_spec(text.replace("20}", "10}"), source="s.yaml")).run_entries
    assert tighter.key != entry.key  # another bound is another search


def test_closed_loop_entries_keep_their_ids_and_keys():
    # The key of this entry before the server scenario existed (neuronperf at the layout move).
    (entry,) = plan(load_spec(Path(__file__).parent / "data" / "specs" / "valid" / "minimal.yaml")).run_entries
    assert (entry.id, entry.key, entry.serving) == ("mlp-bs1-p1-m1-w1", "d7586ba3879a194a", None)
    assert "serving" not in entry.to_dict() and "scenario" not in entry.benchmark.to_dict()


@pytest.mark.parametrize("extra, expected", [
    ("sweep: {rates: [100, 0, -5]}\nbenchmark: {scenario: server}\n",
     ["s.yaml:8:22: sweep.rates[1]: 0 must be greater than 0", "s.yaml:8:25: sweep.rates[2]: -5 must be greater than 0"]),
    ("sweep: {rates: max}\nbenchmark: {scenario: server}\n",
     ["s.yaml:8:16: sweep.rates: max needs a latency bound to search under: objectives.slo with latency_ms_pN "
      "(or ttft_ms_pN for task: generate), e.g. objectives: {slo: {latency_ms_p99: 20}}"]),
    ("sweep: {max_queue_delays_ms: [1]}\n",
     ["s.yaml:8:9: sweep.max_queue_delays_ms: requires benchmark.scenario: server (requests arriving at a rate); "
      "this spec's scenario is 'closed'"]),
    ("sweep: {rates: [10]}\nbenchmark: {arrival: constant}\n",
     ["s.yaml:8:9: sweep.rates: requires benchmark.scenario: server (requests arriving at a rate); this spec's scenario is 'closed'",
      "s.yaml:9:13: benchmark.arrival: applies only to benchmark.scenario: server"]),
    ("benchmark: {scenario: server}\n",
     ["s.yaml:8:23: benchmark.scenario: server needs sweep.rates: the request rates to measure (requests per second, "
      "e.g. [100, 200, 400]), or max with a latency bound in objectives.slo"]),
    ("sweep: {rates: [10, 10]}\nbenchmark: {scenario: server, max_infers: 100}\n",
     ["s.yaml:8:21: sweep.rates[1]: duplicate value 10 (already at sweep.rates[0])",
      "s.yaml:9:31: benchmark.max_infers: does not apply to scenario: server: rate x duration sets a window's requests "
      "(min_calls raises them)"]),
    ("sweep: {rates: fast}\nbenchmark: {scenario: server}\n",
     ["s.yaml:8:16: sweep.rates: 'fast' is not valid (a positive number of requests per second, a list of them, or max)"]),
    ("sweep: {rates: 5, max_queue_delays_ms: -1}\nbenchmark: {scenario: server, rate_precision: 0.1}\n",
     ["s.yaml:8:40: sweep.max_queue_delays_ms: -1 must not be negative",
      "s.yaml:9:31: benchmark.rate_precision: applies only to sweep.rates: max"]),
    ("sweep: {rates: max}\nobjectives: {slo: {ttft_ms_p99: 100}}\nbenchmark: {scenario: server}\n",
     ["s.yaml:5:5: models[0]: rates: max needs a latency_ms_pN bound in objectives.slo for a forward model (its rows "
      "have no ttft or tpot)"]),
    ("sweep: {rates: [10, 20]}\nexclude: [{rate: 30}]\nbenchmark: {scenario: server}\n",
     ["s.yaml:9:18: exclude[0].rate: rate 30 is not in the sweep (rate: 10, 20)"]),
])
def test_every_mistake_is_one_located_line(extra, expected):
    with pytest.raises(SpecError) as info:
        parse_spec(BASE + extra, source="s.yaml")
    assert str(info.value).splitlines() == expected
