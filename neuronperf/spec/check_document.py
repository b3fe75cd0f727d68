"""Document-wide checks: values that are not finite numbers anywhere, and the JSON Schema's
verdicts turned into located, readable problems.
"""

from __future__ import annotations

import math
from typing import Any

from neuronperf.entries import SEARCH_STRATEGIES
from neuronperf.spec.context import CheckContext
from neuronperf.spec.schema import validator
from neuronperf.spec.values import SLO_COLUMNS, SPEC_VERSION
from neuronperf.spec.wording import DEVICE_ALIASES, describe, show, suggestion, type_phrase
from neuronperf.spec.yaml_source import (
    KeyPath,
)


def finite_pass(ctx: CheckContext, value: Any, path: KeyPath) -> None:
    """NaN and infinity slip past every range check (all comparisons with NaN are false)
    and cannot be written as JSON: reject them wherever they are."""
    if isinstance(value, float) and not math.isfinite(value):
        ctx.problem(path, f"{show(value)} is not a finite number")
    elif isinstance(value, dict):
        for key, item in value.items():
            finite_pass(ctx, item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            finite_pass(ctx, item, (*path, i))


def schema_pass(ctx: CheckContext, data: dict) -> None:
    for error in sorted(validator().iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        schema_error(ctx, error)


def schema_error(ctx: CheckContext, error: Any) -> None:
    path: KeyPath = tuple(error.absolute_path)
    kind = error.validator
    value = error.instance
    rule = error.validator_value
    if kind == "additionalProperties" and isinstance(value, dict):
        allowed = list(error.schema.get("properties", {}))
        for key in value:
            if key not in allowed:
                ctx.problem((*path, key), f"unknown key '{key}'{suggestion(key, allowed)}", at_key=True)
    elif kind == "required" and isinstance(value, dict):
        for key in rule:
            if key not in value:
                ctx.problem(path, f"missing required key '{key}'")
    elif kind == "type":
        types = [rule] if isinstance(rule, str) else list(rule)
        ctx.problem(path, f"expected {type_phrase(types)}, got {describe(value)}")
    elif kind == "minimum":
        if rule == 1:
            ctx.problem(path, f"{show(value)} is not a positive integer")
        elif rule == 0:
            ctx.problem(path, f"{show(value)} must not be negative")
        else:
            ctx.problem(path, f"{show(value)} is less than the minimum {rule}")
    elif kind == "maximum" and path == ("search", "min_gain"):
        ctx.problem(path, f"{show(value)} is more than 1: min_gain is a fraction of the objective (0.05 is 5%)")
    elif kind == "maximum":
        ctx.problem(path, f"{show(value)} is more than the maximum {show(rule)}")
    elif kind == "exclusiveMinimum":
        ctx.problem(path, f"{show(value)} must be greater than {rule}")
    elif kind == "minItems":
        ctx.problem(path, "must not be an empty list")
    elif kind == "minProperties":
        ctx.problem(path, "an empty rule would exclude everything; name at least one axis")
    elif kind == "enum":
        allowed = [str(v) for v in rule]
        aliases = DEVICE_ALIASES if path == ("device_type",) else {}
        ctx.problem(path, f"{show(value)} is not one of: {', '.join(allowed)}{suggestion(value, allowed, aliases, listed=True)}")
    elif kind == "const" and path == ("version",):
        ctx.problem(path, f"unsupported spec version {show(value)}; this neuronperf reads version {SPEC_VERSION}")
    elif kind == "pattern" and path[:2] == ("sweep", "n_models"):
        ctx.problem(path, f"expected a positive integer, 'max' or a list of them, got {describe(value)}")
    elif kind == "pattern" and path == ("search",):
        strategies = list(SEARCH_STRATEGIES)
        ctx.problem(path, f"unknown search strategy {show(value)}; choose: {', '.join(strategies)}{suggestion(value, strategies)}")
    elif kind == "pattern" and path == ("objectives", "maximize"):
        ctx.problem(path, f"{show(value)} is not a column name (a row column such as throughput_avg, or -column to minimise it)")
    elif kind == "pattern" and path == ("objectives", "slo"):
        ctx.problem((*path, value), f"'{value}' is not a reported latency percentile (choose: {', '.join(SLO_COLUMNS)}){suggestion(value, list(SLO_COLUMNS))}", at_key=True)
    elif kind == "pattern":
        what = str(error.schema.get("description", "")).rstrip(".")
        what = what[:1].lower() + what[1:]
        ctx.problem(path, f"{show(value)} is not valid ({what})" if what else f"{show(value)} is not valid")
    else:
        ctx.problem(path, error.message)
