"""Each model: its name, factory file, params and the ``$param`` references in its inputs,
kwargs and ``generate``, its input value ranges and its ``evaluate`` key.
"""

from __future__ import annotations

import os
import re
from typing import Any

from neuronperf.spec.context import CheckContext
from neuronperf.spec.values import (
    CAST_DTYPES,
    DTYPE_PARAM,
    EXCLUDE_AXES,
    GENERATED_SIZE_PARAMS,
    REFERENCE,
)
from neuronperf.spec.wording import (
    closest,
    id_text,
    is_integral,
    is_number,
    is_scalar,
    references,
    show,
    suggestion,
)
from neuronperf.spec.yaml_source import (
    KeyPath,
    format_path,
)

PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


INT_RANGES = {
    "int8": (-(2**7), 2**7),
    "uint8": (0, 2**8),
    "int16": (-(2**15), 2**15),
    "int32": (-(2**31), 2**31),
    "int64": (-(2**63), 2**63),
}


def models_pass(ctx: CheckContext, models: list) -> list[dict[str, list[Any]]]:
    """Check names, params and ``$param`` references; return each model's usable params."""
    first_name: dict[str, int] = {}
    all_params: list[dict[str, list[Any]]] = []
    for i, model in enumerate(models):
        params: dict[str, list[Any]] = {}
        all_params.append(params)
        if not isinstance(model, dict):
            continue
        base: KeyPath = ("models", i)
        name = model.get("name")
        if isinstance(name, str):
            if name in first_name:
                ctx.problem((*base, "name"), f"duplicate model name '{name}' (first at line {first_name[name]})")
            else:
                first_name[name] = ctx.line_of((*base, "name"))
        factory_file_check(ctx, (*base, "factory"), model.get("factory"))
        if isinstance(model.get("evaluate"), dict):
            evaluate_check(ctx, (*base, "evaluate"), model["evaluate"])
        raw_params: dict = model["params"] if isinstance(model.get("params"), dict) else {}
        params.update(params_check(ctx, base, raw_params))
        declared = set(raw_params)
        used: dict[str, list[KeyPath]] = {}
        inputs = model.get("inputs")
        if isinstance(inputs, list):
            for j, tensor in enumerate(inputs):
                input_check(ctx, (*base, "inputs", j), tensor, declared, used)
        kwargs = model.get("kwargs")
        if isinstance(kwargs, dict):
            for ref_path, ref in references(kwargs, (*base, "kwargs")):
                reference_check(ctx, ref_path, ref, declared)
                used.setdefault(ref, [])
        generate = model.get("generate")
        new_tokens = generate.get("new_tokens") if isinstance(generate, dict) else None
        token_ref = REFERENCE.match(new_tokens) if isinstance(new_tokens, str) else None
        if token_ref:
            tokens_path: KeyPath = (*base, "generate", "new_tokens")
            reference_check(ctx, tokens_path, token_ref.group(1), declared)
            used.setdefault(token_ref.group(1), []).append(tokens_path)
        # A source model without inputs: its generated inputs take the size parameters.
        generates = "factory" not in model and "inputs" not in model
        for pname in list(params):
            if pname == DTYPE_PARAM:
                dtype_values_check(ctx, (*base, "params", pname), raw_params[pname])
                continue
            if generates and pname in GENERATED_SIZE_PARAMS:
                generated_size_check(ctx, (*base, "params", pname), raw_params[pname], model)
                continue
            if pname not in used:
                sizes = f", or let it size the generated inputs ({', '.join(GENERATED_SIZE_PARAMS)}) of an hf:, timm: or torchvision: model without inputs" if pname in GENERATED_SIZE_PARAMS else ""
                ctx.problem((*base, "params", pname), f"parameter '{pname}' is not used; refer to it as '${pname}' in an input shape, in kwargs or in generate.new_tokens{sizes}", at_key=True)
            for dim_path in used.get(pname, [])[:1]:
                dimension_values_check(ctx, base, pname, raw_params[pname], dim_path)
    return all_params


def params_check(ctx: CheckContext, base: KeyPath, raw: dict) -> dict[str, list[Any]]:
    usable: dict[str, list[Any]] = {}
    for pname, values in raw.items():
        path: KeyPath = (*base, "params", pname)
        if not PARAM_NAME.match(pname):
            ctx.problem(path, f"'{pname}' is not a valid parameter name (a letter or '_', then letters, digits or '_')", at_key=True)
            continue
        if pname in EXCLUDE_AXES:
            ctx.problem(path, f"'{pname}' is an axis of every sweep; choose another parameter name", at_key=True)
            continue
        listed = values if isinstance(values, list) else [values]
        as_list = isinstance(values, list)
        seen: dict[str, int] = {}
        for k, v in enumerate(listed):
            if not is_scalar(v):
                continue  # the schema reported it
            shown = id_text(v)
            item_path = (*path, k) if as_list else path
            if shown in seen:
                ctx.problem(item_path, f"duplicate value {show(v)} (already at {format_path((*path, seen[shown]))})")
            else:
                seen[shown] = k
        usable[pname] = [v for v in listed if is_scalar(v)]
    return usable


def input_check(ctx: CheckContext, path: KeyPath, tensor: Any, declared: set, used: dict[str, list[KeyPath]]) -> None:
    shape_path: KeyPath = path if isinstance(tensor, list) else (*path, "shape")
    shape = tensor if isinstance(tensor, list) else tensor.get("shape") if isinstance(tensor, dict) else None
    if isinstance(shape, list):
        for d, dim in enumerate(shape):
            ref = REFERENCE.match(dim) if isinstance(dim, str) else None
            if ref:
                reference_check(ctx, (*shape_path, d), ref.group(1), declared)
                used.setdefault(ref.group(1), []).append((*shape_path, d))
    if not isinstance(tensor, dict):
        return
    dtype = tensor.get("dtype", "float32") if isinstance(tensor.get("dtype", "float32"), str) else None
    low: Any = tensor.get("low")
    high: Any = tensor.get("high")
    bound: Any
    for key, bound in (("low", low), ("high", high)):
        if not is_number(bound):
            continue
        if dtype == "bool":
            ctx.problem((*path, key), "a bool input takes no low/high (its values are False and True)")
        elif dtype in INT_RANGES:
            lo, hi = INT_RANGES[dtype]
            # Generated integers are in [low, high): high may be one past the largest value.
            shift = 1 if key == "high" else 0
            if not is_integral(bound):
                ctx.problem((*path, key), f"{show(bound)} is not an integer, as {dtype} values are")
            elif not lo + shift <= bound <= hi - 1 + shift:
                ctx.problem((*path, key), f"{show(bound)} is outside what {dtype} holds ({lo} to {hi - 1}; high is exclusive)")
    if is_number(low) and is_number(high) and not low < high and dtype != "bool":
        ctx.problem((*path, "high"), f"high ({show(high)}) must be greater than low ({show(low)})")


def reference_check(ctx: CheckContext, path: KeyPath, name: str, declared: set) -> None:
    if name in declared:
        return
    if declared:
        close = closest(name, sorted(declared))
        hint = f"; did you mean '${close}'?" if close else ""
        listed = ", ".join(sorted(declared))
        ctx.problem(path, f"unknown parameter '${name}'{hint} (this model's params: {listed})")
    else:
        ctx.problem(path, f"unknown parameter '${name}': declare it under this model's 'params', e.g. params: {{{name}: [...]}}")


def dimension_values_check(ctx: CheckContext, base: KeyPath, pname: str, raw: Any, dim_path: KeyPath) -> None:
    path: KeyPath = (*base, "params", pname)
    listed = raw if isinstance(raw, list) else [raw]
    for k, v in enumerate(listed):
        if is_scalar(v) and not (is_integral(v) and v >= 1):
            where = format_path(dim_path[len(base):])
            item_path = (*path, k) if isinstance(raw, list) else path
            role = f"is {where}" if dim_path[len(base):][:1] == ("generate",) else f"is a dimension in {where}"
            ctx.problem(item_path, f"{show(v)} is not a positive integer, but '${pname}' {role}")


def dtype_values_check(ctx: CheckContext, path: KeyPath, raw: Any) -> None:
    """``params: {dtype: [...]}`` casts the model and its floating inputs: only to these."""
    listed = raw if isinstance(raw, list) else [raw]
    for k, v in enumerate(listed):
        if is_scalar(v) and v not in CAST_DTYPES:
            ctx.problem((*path, k) if isinstance(raw, list) else path,
                        f"{show(v)} is not a dtype the dtype parameter casts to; choose from: {', '.join(CAST_DTYPES)}")


def generated_size_check(ctx: CheckContext, path: KeyPath, raw: Any, model: dict) -> None:
    """A size parameter of generated inputs must fit them: positive integers, and the one the
    task reads (``seq_len`` for a forward pass, ``prompt_len`` for ``task: generate``, the image
    side only for vision models, which the sources stage checks when it reads the config)."""
    listed = raw if isinstance(raw, list) else [raw]
    for k, v in enumerate(listed):
        if is_scalar(v) and not (is_integral(v) and v >= 1):
            ctx.problem((*path, k) if isinstance(raw, list) else path,
                        f"{show(v)} is not a positive integer, but '${path[-1]}' sizes the generated inputs")


def evaluate_check(ctx: CheckContext, path: KeyPath, evaluate: dict) -> None:
    """The dataset file must exist and every metric must be registered (built-in or by
    ``neuronperf.torch``; importing user code to find more would run it)."""
    from neuronperf.metrics import list_metrics

    factory_file_check(ctx, (*path, "dataset"), evaluate.get("dataset"), what="dataset")
    metrics = evaluate.get("metrics")
    listed = [metrics] if isinstance(metrics, str) else metrics if isinstance(metrics, list) else []
    seen: set = set()
    for k, name in enumerate(listed):
        where = (*path, "metrics", k) if isinstance(metrics, list) else (*path, "metrics")
        if not isinstance(name, str):
            continue
        if name not in list_metrics():
            ctx.problem(where, f"unknown metric '{name}'{suggestion(name, list_metrics(), listed=True)} (registered: {', '.join(list_metrics())})")
        elif name in seen:
            ctx.problem(where, f"metric '{name}' is listed twice")
        seen.add(name)


def factory_file_check(ctx: CheckContext, path: KeyPath, factory: Any, what: str = "factory") -> None:
    """A ``file.py:callable`` factory's file must exist (relative to the spec's folder).
    Only its existence is checked: importing it would run user code, which validate never does."""
    if not isinstance(factory, str):
        return
    module, sep, attr = factory.rpartition(":")
    if not sep or not module.endswith(".py") or not attr:
        return
    file = module if os.path.isabs(module) else os.path.join(ctx.base_dir, module)
    if not os.path.isfile(file):
        state = "is a folder" if os.path.isdir(file) else "does not exist"
        ctx.problem(path, f"{what} file {module!r} {state} (looked for {os.path.abspath(file)})")
