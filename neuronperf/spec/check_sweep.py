"""The sweep's axes, the exclude rules that must name real axes and values, and the size of
the product.
"""

from __future__ import annotations

import math
from typing import Any

from neuronperf.spec.check_target import Target, pipeline_check
from neuronperf.spec.context import CheckContext
from neuronperf.spec.values import EXCLUDE_AXES, MAX_COPIES, MAX_RUN_ENTRIES, SWEEP_AXES
from neuronperf.spec.wording import is_integral, is_scalar, same_value, show, suggestion
from neuronperf.spec.yaml_source import (
    KeyPath,
)


def sweep_pass(ctx: CheckContext, sweep: dict, target: Target) -> dict[str, list[Any]]:
    """Check each axis for duplicates and pipeline support; return the axes' values."""
    axes: dict[str, list[int]] = {}
    for key, axis in SWEEP_AXES.items():
        raw = sweep.get(key, 1)
        listed = raw if isinstance(raw, list) else [raw]
        values: list[Any] = [int(v) if is_integral(v) else v for v in listed if (is_integral(v) and v >= 1) or (key == "n_models" and v == MAX_COPIES)]
        axes[axis] = values
        seen: dict[Any, int] = {}
        for k, v in enumerate(listed):
            if not (is_integral(v) or (key == "n_models" and v == MAX_COPIES)):
                continue
            item_path: KeyPath = ("sweep", key, k) if isinstance(raw, list) else ("sweep", key)
            marker = v if isinstance(v, str) else int(v)
            if marker in seen:
                ctx.problem(item_path, f"duplicate value {show(v)} (already at sweep.{key}[{seen[marker]}])")
            else:
                seen[marker] = k
            if isinstance(v, str):
                continue
            if key == "pipeline_sizes" and v > 1:
                pipeline_check(ctx, item_path, int(v), target)
    return axes


def exclude_pass(ctx: CheckContext, rules: list, models: list, params_by_model: list[dict[str, list[Any]]], axes: dict[str, list[Any]]) -> None:
    values: dict[str, list[Any]] = dict(axes)
    model_names = [m.get("name") for m in models if isinstance(m, dict) and isinstance(m.get("name"), str)]
    values["model"] = list(dict.fromkeys(model_names))
    for params in params_by_model:
        for pname, pvalues in params.items():
            known = values.setdefault(pname, [])
            known += [v for v in pvalues if not any(same_value(v, k) for k in known)]
    names = list(EXCLUDE_AXES) + [n for n in values if n not in EXCLUDE_AXES]
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            continue
        for key, wanted in rule.items():
            path: KeyPath = ("exclude", i, key)
            if key not in values:
                ctx.problem(path, f"unknown axis '{key}'{suggestion(key, names)} (axes: {', '.join(names)})", at_key=True)
                continue
            listed = wanted if isinstance(wanted, list) else [wanted]
            for k, v in enumerate(listed):
                if not is_scalar(v) or any(same_value(v, known) for known in values[key] if known != MAX_COPIES):
                    continue
                item_path = (*path, k) if isinstance(wanted, list) else path
                if key == "n_models" and MAX_COPIES in values[key]:
                    # What 'max' comes to is known only when planning on the machine.
                    if v == MAX_COPIES:
                        ctx.problem(item_path, "exclude a number of copies, not 'max' (what max comes to depends on the machine)")
                    continue
                known_text = ", ".join(show(x) for x in values[key])
                hint = suggestion(v, [x for x in values[key] if isinstance(x, str)]) if isinstance(v, str) else ""
                ctx.problem(item_path, f"{key} {show(v)} is not in the sweep{hint} ({key}: {known_text})")


def size_pass(ctx: CheckContext, params_by_model: list[dict[str, list[Any]]], axes: dict[str, list[Any]]) -> None:
    combos = sum(math.prod(len(v) or 1 for v in params.values()) for params in params_by_model)
    total = combos * math.prod(len(v) or 1 for v in axes.values())
    if total > MAX_RUN_ENTRIES:
        ctx.problem(("sweep",) if ("sweep",) in ctx.loaded.value_pos else (), f"the sweep has {total:,} entries before exclusions; the limit is {MAX_RUN_ENTRIES:,} (split it into several specs)")
