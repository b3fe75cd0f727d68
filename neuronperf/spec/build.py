"""Construction of the typed ``Spec`` from a document that passed every check.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import MappingProxyType
from typing import Any, Optional, Union

from neuronperf.entries import (
    DEFAULT_TELEMETRY_PERIOD_MS,
    BenchmarkSettings,
    ModelSource,
    RaySettings,
    SearchSettings,
    freeze,
)
from neuronperf.spec.check_target import Target
from neuronperf.spec.context import CheckContext
from neuronperf.spec.values import (
    DEFAULT_BENCHMARK_TIMEOUT,
    DEFAULT_COMPILE_TIMEOUT,
    DEFAULT_DURATION,
    DEFAULT_PEAK_WINDOW,
    DEFAULT_WARMUP_CALLS,
    LNC_AXIS,
    MAX_RATE,
    MODEL_SOURCE_KEYS,
    SPEC_VERSION,
    SWEEP_AXES,
    CompileSettings,
    EvaluateSpec,
    ExcludeRule,
    InputTemplate,
    ModelSpec,
    Spec,
    SweepAxes,
    default_compile_jobs,
)


def make_spec(ctx: CheckContext, data: dict, target: Target, axes: dict[str, list[Any]]) -> Spec:
    name = data.get("name") or Path(ctx.source).stem
    models = tuple(make_model(ctx, i, m) for i, m in enumerate(data["models"]))
    rules = tuple(
        ExcludeRule(i, tuple((k, tuple(v) if isinstance(v, list) else (v,)) for k, v in rule.items()))
        for i, rule in enumerate(data.get("exclude") or [])
    )
    compile_data = data.get("compile") or {}
    return Spec(
        source=ctx.source,
        version=SPEC_VERSION,
        name=name,
        framework=str(target.framework),
        device_type=str(target.device_type or data["device_type"]),
        compiler=str(target.compiler or data["compiler"]),
        executor=data.get("executor", "local"),
        output_dir=data.get("output_dir") or os.path.join("runs", name),
        models=models,
        sweep=SweepAxes(**{key: tuple(axes[a]) for key, a in SWEEP_AXES.items()},
                        logical_nc_configs=tuple(axes.get(LNC_AXIS[1]) or (None,)), **_server_axes(axes)),
        exclude=rules,
        compile=CompileSettings(
            jobs=int(compile_data.get("jobs", default_compile_jobs())),
            compiler_args=freeze(compile_data.get("compiler_args", {})),
            timeout=float(compile_data.get("timeout", DEFAULT_COMPILE_TIMEOUT)),
        ),
        benchmark=_benchmark_settings(data.get("benchmark") or {}),
        slo=tuple((str(k), float(v)) for k, v in ((data.get("objectives") or {}).get("slo") or {}).items()),
        instance_type=data.get("instance_type"),
        compiler_given="compiler" in data,
        cost_per_hour=None if data.get("cost_per_hour") is None else float(data["cost_per_hour"]),
        ray=_ray_settings(data.get("ray") or {}),
        search=_search_settings(data.get("search"), data.get("objectives") or {}),
        value_pos=MappingProxyType(dict(ctx.loaded.value_pos)),
        key_pos=MappingProxyType(dict(ctx.loaded.key_pos)),
    )


def _server_axes(axes: dict[str, list[Any]]) -> dict[str, Any]:
    """The server scenario's axes (rates as floats, or "max"), absent in a closed-loop spec."""
    if "rate" not in axes:
        return {}
    rates = axes["rate"]
    return {
        # Floats, so that `rates: [100]` and `[100.0]` plan the same entries.
        "rates": MAX_RATE if rates == [MAX_RATE] else tuple(float(r) for r in rates),
        "max_queue_delays_ms": tuple(float(d) for d in axes.get("max_queue_delay_ms") or [0.0]),
    }


def make_model(ctx: CheckContext, i: int, model: dict) -> ModelSpec:
    params = tuple(
        (k, tuple(v) if isinstance(v, list) else (v,)) for k, v in (model.get("params") or {}).items()
    )
    kind = next(key for key in MODEL_SOURCE_KEYS if key in model)
    source = None
    if kind != "factory":
        source = ModelSource(
            kind=kind,
            value=str(model[kind]),
            hf_task=model.get("hf_task"),
            kwargs=freeze(model.get("hf_kwargs" if kind == "hf" else "kwargs") or {}),
            pretrained=bool(model.get("pretrained", False)),
            base_dir=ctx.base_dir,
        )
    return ModelSpec(
        name=model["name"],
        factory=model.get("factory", ""),
        kwargs=freeze(model.get("kwargs") or {}) if source is None else freeze({}),
        inputs=tuple(_input_template(t) for t in model.get("inputs") or ()),
        params=params,
        base_dir=ctx.base_dir,
        factory_pos=ctx.loaded.value_pos.get(("models", i, kind), (1, 1)),
        source=source,
        index=i,
        evaluate=_evaluate_spec(model.get("evaluate")),
        task=model.get("task", "forward"),
        new_tokens=(model.get("generate") or {}).get("new_tokens"),
    )


def _evaluate_spec(evaluate: Any) -> Optional[EvaluateSpec]:
    if not isinstance(evaluate, dict):
        return None
    metrics = evaluate["metrics"]
    return EvaluateSpec(dataset=evaluate["dataset"], metrics=tuple([metrics] if isinstance(metrics, str) else metrics),
                        target_col=int(evaluate.get("target_col", -1)))


def _input_template(tensor: Any) -> InputTemplate:
    if isinstance(tensor, list):
        return InputTemplate(shape=tuple(_dimension(d) for d in tensor))
    low, high = tensor.get("low"), tensor.get("high")
    return InputTemplate(
        shape=tuple(_dimension(d) for d in tensor["shape"]),
        dtype=tensor.get("dtype", "float32"),
        low=None if low is None else float(low),
        high=None if high is None else float(high),
        name=tensor.get("name"),
    )


def _dimension(value: Any) -> Union[int, str]:
    return value if isinstance(value, str) else int(value)


def _ray_settings(section: dict) -> RaySettings:
    defaults = RaySettings()
    return RaySettings(
        address=section.get("address"),
        cpus_per_thread=int(section.get("cpus_per_thread", defaults.cpus_per_thread)),
        max_retries=int(section.get("max_retries", defaults.max_retries)),
        max_artifact_mb=float(section.get("max_artifact_mb", defaults.max_artifact_mb)),
    )


def _search_settings(search: Any, objectives: dict) -> SearchSettings:
    defaults = SearchSettings()
    section = search if isinstance(search, dict) else {"strategy": search or defaults.strategy}
    budget = section.get("budget")
    return SearchSettings(
        strategy=str(section["strategy"]),
        min_gain=float(section.get("min_gain", defaults.min_gain)),
        budget=None if budget is None else int(budget),
        maximize=str(objectives.get("maximize", defaults.maximize)),
    )


def _benchmark_settings(bench: dict) -> BenchmarkSettings:
    # Numbers are stored as floats so that `duration: 5` and `duration: 5.0` hash the same.
    duration = float(bench.get("duration", DEFAULT_DURATION))
    warmup = bench.get("warmup", DEFAULT_WARMUP_CALLS)
    if isinstance(warmup, dict):
        calls, seconds = int(warmup.get("calls", DEFAULT_WARMUP_CALLS)), float(warmup.get("seconds", 0))
    else:
        calls, seconds = int(warmup), 0.0
    max_infers, min_calls = bench.get("max_infers"), bench.get("min_calls")
    return BenchmarkSettings(
        duration=duration,
        max_infers=None if max_infers is None else int(max_infers),
        min_calls=None if min_calls is None else int(min_calls),
        warmup_calls=calls,
        warmup_s=seconds,
        timeout=float(bench.get("timeout", DEFAULT_BENCHMARK_TIMEOUT)),
        peak_window_s=float(bench.get("peak_window", min(DEFAULT_PEAK_WINDOW, duration))),
        repeat=int(bench.get("repeat", 1)),
        order=str(bench.get("order", "planned")),
        seed=int(bench.get("seed", 0)),
        telemetry_period_ms=_telemetry_period(bench.get("telemetry", True)),
        scenario=str(bench.get("scenario", "closed")),
        arrival=str(bench.get("arrival", "poisson")),
        rate_precision=float(bench.get("rate_precision", 0.02)),
        allow_oversubscription=bench.get("allow_oversubscription") is True,
    )


def _telemetry_period(value: Any) -> Optional[float]:
    """``benchmark.telemetry`` as a period in ms: false is None (off); true or an object
    without ``period_ms`` is the default."""
    if value is False:
        return None
    period = value.get("period_ms") if isinstance(value, dict) else None
    return float(period) if period is not None else DEFAULT_TELEMETRY_PERIOD_MS
