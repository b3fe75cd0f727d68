"""The sweep's axes, the exclude rules that must name real axes and values, and the size of
the product.
"""

from __future__ import annotations

import math
from typing import Any

from neuronperf.spec.check_target import Target, pipeline_check
from neuronperf.spec.context import CheckContext
from neuronperf.spec.instances import COMPILER_PATHS, lnc_problem
from neuronperf.spec.values import (
    EXCLUDE_AXES,
    LNC_AXIS,
    LNC_VALUES,
    MAX_COPIES,
    MAX_RUN_ENTRIES,
    SWEEP_AXES,
)
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


def lnc_pass(ctx: CheckContext, sweep: dict, target: Target, instance_type: Any) -> list[int]:
    """``sweep.logical_nc_configs``: 1 or 2, each once, on a target and instance that have logical
    NeuronCores; return its values ([] when the key is absent: the runtime's LNC)."""
    key = LNC_AXIS[0]
    if key not in sweep:
        return []
    raw = sweep[key]
    listed = raw if isinstance(raw, list) else [raw]
    values = [int(v) for v in listed if is_integral(v) and v in LNC_VALUES]
    where: KeyPath = ("sweep", key)
    if target.device_type is not None and target.device_type != "neuron":
        ctx.problem(where, f"logical NeuronCore configs are a Neuron setting (Trn2/Trn3); this sweep runs on {target.device_type}", at_key=True)
        return values
    path = COMPILER_PATHS.get((str(target.framework), str(target.compiler)))
    if path == "inf1":
        ctx.problem(where, f"logical NeuronCore configs apply to Trn2/Trn3; compiler {target.compiler} (Inferentia 1) runs without them", at_key=True)
        return values
    seen: dict[int, int] = {}
    for k, v in enumerate(listed):
        if not (is_integral(v) and v in LNC_VALUES):
            continue  # the schema pass has said what is wrong with it
        item_path: KeyPath = (*where, k) if isinstance(raw, list) else where
        if int(v) in seen:
            ctx.problem(item_path, f"duplicate value {show(v)} (already at sweep.{key}[{seen[int(v)]}])")
            continue
        seen[int(v)] = k
        if isinstance(instance_type, str):
            problem = lnc_problem(int(v), instance_type)
            if problem:
                ctx.problem(item_path, problem)
    return list(dict.fromkeys(values))


def exclude_pass(ctx: CheckContext, rules: list, models: list, params_by_model: list[dict[str, list[Any]]], axes: dict[str, list[Any]]) -> None:
    values: dict[str, list[Any]] = dict(axes)
    model_names = [m.get("name") for m in models if isinstance(m, dict) and isinstance(m.get("name"), str)]
    values["model"] = list(dict.fromkeys(model_names))
    for params in params_by_model:
        for pname, pvalues in params.items():
            known = values.setdefault(pname, [])
            known += [v for v in pvalues if not any(same_value(v, k) for k in known)]
    # logical_nc_config is an axis only where the sweep sets logical_nc_configs
    names = [n for n in EXCLUDE_AXES if n != LNC_AXIS[1] or n in values] + [n for n in values if n not in EXCLUDE_AXES]
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            continue
        for key, wanted in rule.items():
            path: KeyPath = ("exclude", i, key)
            if key not in values and key == LNC_AXIS[1]:
                ctx.problem(path, f"{key} is not an axis of this sweep (set sweep.{LNC_AXIS[0]} to sweep it)", at_key=True)
                continue
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
