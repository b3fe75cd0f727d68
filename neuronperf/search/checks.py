"""Whether the rows of a plan will have the column ``objectives.maximize`` names.

A spec check that needs the result columns, which live above the spec stage: the sweep runs
it when it loads a plan (``run``, ``status``, ``plan``, ``validate``), and each problem is
located at ``objectives.maximize`` like the spec's own.
"""

from __future__ import annotations

from typing import Any

from neuronperf.answers.slo import Objective
from neuronperf.errors import Problem
from neuronperf.results.columns import RESULT_COLUMNS, TEXT_COLUMNS
from neuronperf.spec.load import spec_problem
from neuronperf.spec.values import MAX_RATE
from neuronperf.spec.wording import suggestion
from neuronperf.stats.generation import GENERATION_FIGURES
from neuronperf.stats.serving import GOODPUT_COLUMN

#: The numeric columns only the server scenario's rows have (``benchmark.scenario: server``).
SERVER_COLUMNS = ("rate_target", "max_queue_delay_ms", "rate_achieved", "max_rate_under_slo", "queue_ms_p50",
                  "queue_ms_p99", "service_ms_p50", "service_ms_p99", "batch_fill_avg", "dropped",
                  "generator_lag_ms_p99", GOODPUT_COLUMN)

#: Extra numeric columns of repeated measurements (``benchmark.repeat`` > 1).
_REPEATED = ("throughput_ci_low", "throughput_ci_high", "latency_ms_p50_ci_low", "latency_ms_p50_ci_high")
#: Numeric columns that every row of a measured entry has.
_EVERY_ROW = tuple(c for c in RESULT_COLUMNS if c not in TEXT_COLUMNS and c not in _REPEATED and c != "cost_per_1m_inf")


def objective_problems(spec: Any) -> list[Problem]:
    """The problems with ``spec.search.maximize``: a column rows do not have, or have as text."""
    text = spec.search.maximize
    column = Objective.parse(text).column
    at = "objectives.maximize"
    server = spec.benchmark.scenario == "server"
    if column in SERVER_COLUMNS and not server:
        return [spec_problem(spec, at, f"{column} is a column of the server scenario (benchmark.scenario: server), "
                                       "and this spec measures the closed loop; maximize throughput_avg or another "
                                       "column of these rows")]
    if column == "max_rate_under_slo" and spec.sweep.rates != MAX_RATE:
        return [spec_problem(spec, at, "max_rate_under_slo is found by the peak search: set sweep.rates: max (with a "
                                       "bound in objectives.slo), or maximize rate_achieved at the listed rates")]
    if column == GOODPUT_COLUMN and not any(model.task == "generate" for model in spec.models):
        return [spec_problem(spec, at, f"{column} counts generation requests that met their bounds: only "
                                       "'task: generate' models have it")]
    if column in TEXT_COLUMNS:
        return [spec_problem(spec, at, f"{column} holds text, not a number; name a numeric column such as throughput_avg")]
    params = {name for model in spec.models for name, _ in model.params}
    if column in params:
        return [spec_problem(spec, at, f"{column} is a swept model parameter: each of its values is a question of its own, "
                                       "answered separately; name a measured column such as throughput_avg")]
    if column == "cost_per_1m_inf":
        if spec.cost_per_hour is None and spec.instance_type is None:
            return [spec_problem(spec, at, "rows have a cost_per_1m_inf only with a price: give cost_per_hour (USD) or "
                                           "instance_type in the spec")]
        return []
    problems = []
    for model in spec.models:
        have = set(_EVERY_ROW)
        if server:
            have.update(c for c in SERVER_COLUMNS if c != GOODPUT_COLUMN)
            if model.task == "generate":
                have.add(GOODPUT_COLUMN)
        if model.task == "generate":
            have.update(GENERATION_FIGURES)
        if model.evaluate is not None:
            have.update(model.evaluate.metrics)
        if spec.benchmark.repeat > 1:
            have.update(_REPEATED)
        if column in have:
            continue
        if column in GENERATION_FIGURES:
            why = f"model '{model.name}' is not a 'task: generate' model, so its rows have no {column}"
        elif _is_metric(column):
            why = f"model '{model.name}' does not evaluate {column} (evaluate: {{dataset: ..., metrics: [{column}]}}), so its rows have no such column"
        elif column in _REPEATED:
            why = f"rows have {column} only with benchmark.repeat of 2 or more"
        else:
            known = sorted(have | {"cost_per_1m_inf"})
            why = f"unknown column '{column}'{_closest(column, known)} (rows of model '{model.name}' have: {', '.join(known)})"
        problems.append(spec_problem(spec, at, why))
        break  # one line says it
    return problems


def _is_metric(name: str) -> bool:
    from neuronperf.metrics import list_metrics

    return name in list_metrics()


def _closest(column: str, known: list[str]) -> str:
    """"; did you mean 'x'?", preferring a column the name begins (throughput -> throughput_avg)."""
    longer = [k for k in known if k.startswith(column + "_")]
    return f"; did you mean '{longer[0]}'?" if longer else suggestion(column, known)
