"""The server scenario's keys, which only make sense together: ``benchmark.scenario: server``
with ``sweep.rates``, ``rates: max`` with a latency bound to search under, and none of the
server's keys in a closed-loop spec.
"""

from __future__ import annotations

from typing import Any

from neuronperf.spec.context import CheckContext
from neuronperf.spec.values import MAX_RATE, SERVER_AXES
from neuronperf.spec.wording import is_number, show
from neuronperf.spec.yaml_source import KeyPath


def serving_pass(ctx: CheckContext, data: dict) -> dict[str, list[Any]]:
    """Check the server scenario's keys; return its axes (``rate``, ``max_queue_delay_ms``) for
    the exclude rules and the plan's size, empty in a closed-loop spec."""
    bench: dict = data["benchmark"] if isinstance(data.get("benchmark"), dict) else {}
    sweep: dict = data["sweep"] if isinstance(data.get("sweep"), dict) else {}
    scenario = bench.get("scenario", "closed")
    if scenario != "server":
        for key in SERVER_AXES:
            if key in sweep:
                ctx.problem(("sweep", key), f"requires benchmark.scenario: server (requests arriving at a rate); this "
                            f"spec's scenario is {show(scenario)}", at_key=True)
        for key in ("arrival", "rate_precision"):
            if key in bench:
                ctx.problem(("benchmark", key), "applies only to benchmark.scenario: server", at_key=True)
        return {}
    rates = sweep.get("rates")
    slo = (data.get("objectives") or {}).get("slo") if isinstance(data.get("objectives"), dict) else None
    bounds = [str(k) for k in slo] if isinstance(slo, dict) else []
    if rates is None:
        ctx.problem(("benchmark", "scenario"), "server needs sweep.rates: the request rates to measure (requests per "
                    "second, e.g. [100, 200, 400]), or max with a latency bound in objectives.slo")
    elif rates == MAX_RATE:
        if not any(b.startswith(("latency_ms_p", "ttft_ms_p")) for b in bounds):
            ctx.problem(("sweep", "rates"), "max needs a latency bound to search under: objectives.slo with "
                        "latency_ms_pN (or ttft_ms_pN for task: generate), e.g. objectives: {slo: {latency_ms_p99: 20}}")
        else:
            models: list = data["models"] if isinstance(data.get("models"), list) else []
            forward = [i for i, m in enumerate(models) if isinstance(m, dict) and m.get("task", "forward") != "generate"]
            if forward and not any(b.startswith("latency_ms_p") for b in bounds):
                ctx.problem(("models", forward[0]), "rates: max needs a latency_ms_pN bound in objectives.slo for a "
                            "forward model (its rows have no ttft or tpot)")
    if "rate_precision" in bench and rates != MAX_RATE:
        ctx.problem(("benchmark", "rate_precision"), "applies only to sweep.rates: max", at_key=True)
    if bench.get("max_infers") is not None:
        ctx.problem(("benchmark", "max_infers"), "does not apply to scenario: server: rate x duration sets a window's "
                    "requests (min_calls raises them)", at_key=True)
    for i, model in enumerate(data["models"] if isinstance(data.get("models"), list) else []):
        params = model.get("params") if isinstance(model, dict) else None
        for name in SERVER_AXES.values():
            if isinstance(params, dict) and name in params:
                ctx.problem(("models", i, "params", name), f"'{name}' is an axis of the server scenario; choose "
                            "another parameter name", at_key=True)
    axes: dict[str, list[Any]] = {}
    for key, axis in SERVER_AXES.items():
        raw = sweep.get(key, MAX_RATE if key == "rates" and rates == MAX_RATE else 0)
        listed = raw if isinstance(raw, list) else [raw]
        seen: dict[float, int] = {}
        values: list[Any] = []
        for k, v in enumerate(listed):
            if v == MAX_RATE and key == "rates":
                values.append(v)
                continue
            if not is_number(v) or v < 0 or (v == 0 and key == "rates"):
                continue  # the schema says what is wrong with it
            item: KeyPath = ("sweep", key, k) if isinstance(raw, list) else ("sweep", key)
            if float(v) in seen:
                ctx.problem(item, f"duplicate value {show(v)} (already at sweep.{key}[{seen[float(v)]}])")
            else:
                seen[float(v)] = k
                values.append(v)
        axes[axis] = values
    return axes
