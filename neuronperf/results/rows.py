"""Report rows, and the results files of an output_dir.

A row is a flat dict keyed by NeuronPerf's report names plus ours (``status``, ``error``, ``id``,
``key``, ``input_shapes``, the swept parameters, ``percentile_method``, ``throughput_cv``,
``warning``, ``peak_rss_mb``). Every planned entry gets a row, failed ones too: their numbers are
empty. ``results.csv`` / ``results.json`` are projections of the journal, rewritten atomically;
their format version and the run environment live in the side file ``run.json``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Optional, Union

from neuronperf.entries import STATUSES, Measurement, RunEntry, ServingSettings, freeze
from neuronperf.errors import UsageError
from neuronperf.results.columns import RESULT_COLUMNS
from neuronperf.stats.forward import METHOD_VERSION, EntryStats, combine_repeats, compute_stats
from neuronperf.stats.generation import combine_generation, empty_generation, generation_stats
from neuronperf.stats.serving import empty_serving, serving_row_figures
from neuronperf.util.atomic import json_ready


@dataclass(frozen=True)
class RowConfig:
    """The few facts about a configuration that a report row needs, so that rows can be made
    without a planned ``RunEntry`` (the Python API benchmarks model files directly)."""

    id: str
    batch_size: int
    n_models: int = 1
    workers_per_model: int = 1
    pipeline_size: int = 1
    device_type: str = "cpu"
    peak_window_s: float = 1.0
    key: Optional[str] = None
    model_name: Optional[str] = None
    #: Input shapes WITHOUT the batch dimension, one tuple per input tensor.
    input_shapes: tuple[tuple[int, ...], ...] = ()
    #: Swept model parameters, e.g. (("seq_len", 128),); each becomes a column.
    params: tuple[tuple[str, Any], ...] = ()
    #: A generation entry's tokens per request: its row gains ``stats.GENERATION_COLUMNS``.
    new_tokens: Optional[int] = None
    #: A server-scenario entry's load: its row gains ``stats.serving.SERVING_COLUMNS``.
    serving: Optional[ServingSettings] = None

    @classmethod
    def from_run_entry(cls, entry: RunEntry) -> RowConfig:
        """The row facts of a planned run entry."""
        compile_entry = entry.compile
        return cls(
            id=entry.id,
            batch_size=compile_entry.batch_size,
            n_models=entry.n_models,
            workers_per_model=entry.workers_per_model,
            pipeline_size=compile_entry.pipeline_size,
            device_type=compile_entry.device_type,
            peak_window_s=entry.benchmark.peak_window_s,
            key=entry.key,
            model_name=compile_entry.model.name,
            input_shapes=tuple(tuple(t.shape) for t in compile_entry.inputs),
            params=tuple(compile_entry.params),
            new_tokens=compile_entry.new_tokens if compile_entry.task == "generate" else None,
            serving=entry.serving,
        )

    def to_dict(self) -> dict:
        """JSON-able form; ``from_dict`` is its inverse."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["input_shapes"] = [list(s) for s in self.input_shapes]
        data["params"] = [[k, v] for k, v in self.params]
        if self.serving is None:
            del data["serving"]  # the form closed-loop configs always had
        else:
            data["serving"] = {**dataclasses.asdict(self.serving), "slo": [list(b) for b in self.serving.slo]}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RowConfig:
        """Inverse of ``to_dict``; a missing or unknown field is a clear ``UsageError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"row config has unknown fields: {', '.join(unknown)}")
        for name in ("id", "batch_size"):
            if name not in data:
                raise UsageError(f"row config lacks the field {name!r}")
        values = dict(data)
        values["input_shapes"] = tuple(tuple(int(d) for d in s) for s in values.get("input_shapes", ()))
        # JSON turned tuples into lists; freeze them again so that the config stays hashable.
        values["params"] = tuple((str(k), freeze(v)) for k, v in values.get("params", ()))
        if values.get("serving") is not None:
            serving = dict(values["serving"])
            serving["slo"] = tuple((str(c), float(v)) for c, v in serving.get("slo", ()))
            values["serving"] = ServingSettings(**serving)
        return cls(**values)


def format_shapes(shapes: Iterable[Sequence[int]]) -> str:
    """``[[3, 224, 224], [128]]`` -> ``"3x224x224;128"`` (a scalar input is ``"scalar"``)."""
    return ";".join("x".join(str(d) for d in shape) if len(shape) else "scalar" for shape in shapes)


def report_row(
    config: Union[RowConfig, RunEntry],
    measurement: Union[Measurement, Sequence[Measurement]],
    *,
    model_name: Optional[str] = None,
    model_filename: Optional[str] = None,
    instance_type: Optional[str] = None,
    cost_per_hour: Optional[float] = None,
    extra: Optional[Mapping[str, Any]] = None,
) -> dict[str, Any]:
    """The report row of one measured configuration, from one measurement or from each of its
    repeats (then every figure is the median of the repeats', see ``stats``). A failed one keeps
    its identity columns and gets empty numbers; a failed repeat fails the row."""
    row_config = _as_row_config(config)
    repeats = (measurement,) if isinstance(measurement, Measurement) else tuple(measurement)
    if not repeats:
        raise UsageError(f"{row_config.id}: no measurement to report")
    for m in repeats:
        if m.status not in STATUSES:
            raise UsageError(f"{row_config.id}: unknown status {m.status!r}; expected one of {', '.join(STATUSES)}")
    failed = next((i for i, m in enumerate(repeats) if m.status != "ok"), None)
    serving_columns: dict[str, Any] = {}
    if failed is not None:
        status, error = repeats[failed].status, repeats[failed].error
        if len(repeats) > 1:
            error = f"repeat {failed + 1}: {error}"
        stats = EntryStats()
        if row_config.serving is not None:
            serving_columns = empty_serving(row_config.serving.rate, row_config.serving.max_queue_delay_ms,
                                            row_config.new_tokens)
    elif any(m.serving is not None for m in repeats):
        status, error = "ok", None
        stats, serving_columns = serving_row_figures(
            repeats, batch_size=row_config.batch_size, peak_window_s=row_config.peak_window_s,
            cost_per_hour=cost_per_hour, new_tokens=row_config.new_tokens,
            slo=row_config.serving.slo if row_config.serving is not None else (),
        )
    else:
        status, error = "ok", None
        stats = combine_repeats([
            compute_stats(m, batch_size=row_config.batch_size, peak_window_s=row_config.peak_window_s,
                          cost_per_hour=cost_per_hour)
            for m in repeats
        ])
    if row_config.new_tokens is not None and not serving_columns:
        generation = (
            combine_generation([generation_stats(m, batch_size=row_config.batch_size, new_tokens=row_config.new_tokens)
                                for m in repeats])
            if failed is None else empty_generation(row_config.new_tokens)
        )
        extra = {**generation, **(extra or {})}
    elif row_config.new_tokens is not None and failed is not None:
        extra = {**empty_generation(row_config.new_tokens), **serving_columns, **(extra or {})}
    elif serving_columns:
        extra = {**serving_columns, **(extra or {})}
    return _row(
        row_config,
        stats,
        status=status,
        error=error,
        model_name=model_name,
        model_filename=model_filename,
        instance_type=instance_type,
        extra=extra,
    )


def row_for_unrun(
    config: Union[RowConfig, RunEntry],
    status: str,
    error: Optional[str],
    *,
    model_name: Optional[str] = None,
    model_filename: Optional[str] = None,
    instance_type: Optional[str] = None,
    extra: Optional[Mapping[str, Any]] = None,
) -> dict[str, Any]:
    """The row of an entry that was never measured (its compile failed, it was skipped...)."""
    if status not in STATUSES or status == "ok":
        raise UsageError(f"an unrun entry's status must be error, timeout or skipped, got {status!r}")
    row_config = _as_row_config(config)
    if row_config.serving is not None:
        extra = {**empty_serving(row_config.serving.rate, row_config.serving.max_queue_delay_ms, row_config.new_tokens),
                 **(extra or {})}
    if row_config.new_tokens is not None:
        extra = {**empty_generation(row_config.new_tokens), **(extra or {})}
    return _row(
        row_config,
        EntryStats(),
        status=status,
        error=error,
        model_name=model_name,
        model_filename=model_filename,
        instance_type=instance_type,
        extra=extra,
    )


def _as_row_config(config: Union[RowConfig, RunEntry]) -> RowConfig:
    if isinstance(config, RowConfig):
        return config
    if isinstance(config, RunEntry):
        return RowConfig.from_run_entry(config)
    raise UsageError(f"expected a RowConfig or a RunEntry, got {type(config).__name__}")


def _row(
    config: RowConfig,
    stats: EntryStats,
    *,
    status: str,
    error: Optional[str],
    model_name: Optional[str],
    model_filename: Optional[str],
    instance_type: Optional[str],
    extra: Optional[Mapping[str, Any]],
) -> dict[str, Any]:
    values: dict[str, Any] = stats.to_dict()
    values.update(
        model_name=model_name if model_name is not None else config.model_name,
        model_filename=model_filename,
        device_type=config.device_type,
        instance_type=instance_type,
        batch_size=config.batch_size,
        n_models=config.n_models,
        workers_per_model=config.workers_per_model,
        pipeline_size=config.pipeline_size,
        status=status,
        error=error,
        id=config.id,
        key=config.key,
        input_shapes=format_shapes(config.input_shapes) if config.input_shapes else None,
        method_version=METHOD_VERSION,
    )
    row = {name: values.get(name) for name in RESULT_COLUMNS}
    for name, value in config.params:
        # A parameter named like a fixed column must not overwrite it.
        row[f"param_{name}" if name in RESULT_COLUMNS else name] = value
    for name, value in (extra or {}).items():
        row[str(name)] = value
    return json_ready(row)
