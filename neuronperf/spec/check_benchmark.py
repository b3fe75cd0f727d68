"""The ``benchmark`` section's values that depend on each other (timeout against duration
and warm-up, min_calls against max_infers, peak_window against duration).
"""

from __future__ import annotations

from neuronperf.spec.context import CheckContext
from neuronperf.spec.values import DEFAULT_BENCHMARK_TIMEOUT, DEFAULT_DURATION
from neuronperf.spec.wording import is_number, show


def benchmark_pass(ctx: CheckContext, bench: dict) -> None:
    least, most = bench.get("min_calls"), bench.get("max_infers")
    if isinstance(least, int) and isinstance(most, int) and least > most:
        ctx.problem(("benchmark", "min_calls"), f"min_calls ({least}) must not exceed max_infers ({most})")
    duration = bench.get("duration", DEFAULT_DURATION)
    timeout = bench.get("timeout", DEFAULT_BENCHMARK_TIMEOUT)
    warmup = bench.get("warmup")
    warmup_s = warmup.get("seconds", 0) if isinstance(warmup, dict) else 0
    if not (is_number(duration) and is_number(timeout) and is_number(warmup_s)):
        return
    if duration > 0 and timeout > 0 and duration + warmup_s >= timeout:
        at = ("benchmark", "timeout") if "timeout" in bench else ("benchmark", "duration")
        ctx.problem(at, f"timeout ({show(timeout)} s) must be longer than duration ({show(duration)} s) plus warm-up seconds ({show(warmup_s)})")
    window = bench.get("peak_window")
    if is_number(window) and is_number(duration) and window > duration:
        ctx.problem(("benchmark", "peak_window"), f"peak_window ({show(window)} s) must not exceed duration ({show(duration)} s)")
