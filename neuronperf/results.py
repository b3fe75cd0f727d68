"""Report rows, and the results files of an output_dir.

A row is a flat dict keyed by NeuronPerf's report names plus ours (``status``, ``error``, ``id``,
``key``, ``input_shapes``, the swept parameters, ``percentile_method``, ``throughput_cv``,
``warning``, ``peak_rss_mb``). Every planned entry gets a row, failed ones too: their numbers are
empty. ``results.csv`` / ``results.json`` are projections of the journal, rewritten atomically;
their format version and the run environment live in the side file ``run.json``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Optional, Union

from neuronperf.atomic import atomic_write_json, atomic_write_text, json_ready
from neuronperf.entries import STATUSES, Measurement, RunEntry, freeze
from neuronperf.errors import JournalError, UsageError
from neuronperf.stats import (
    METHOD_VERSION,
    EntryStats,
    combine_generation,
    combine_repeats,
    compute_stats,
    empty_generation,
    generation_stats,
)

#: Version of the results.csv / results.json columns, recorded in run.json.
RESULTS_FORMAT = 1
#: Version of run.json itself.
RUN_INFO_FORMAT = 1
RESULTS_CSV, RESULTS_JSON, RUN_INFO = "results.csv", "results.json", "run.json"

#: NeuronPerf's default CSV columns, in its order: users' scripts parse these first.
DEFAULT_CSV_COLS: tuple[str, ...] = (
    "model_name",
    "n_models",
    "workers_per_model",
    "pipeline_size",
    "batch_size",
    "throughput_avg",
    "throughput_peak",
    "latency_ms_p0",
    "latency_ms_p50",
    "latency_ms_p90",
    "latency_ms_p95",
    "latency_ms_p99",
    "latency_ms_p100",
    "cpu_avg_percent",
    "mem_avg_percent",
    "e2e_avg_ms",
    "infer_avg_ms",
    "total_infs",
    "total_s",
    "model_filename",
    "device_type",
    "instance_type",
    "cost_per_1m_inf",
)
#: The remaining NeuronPerf report keys.
OTHER_REPORT_COLS: tuple[str, ...] = (
    "status",
    "latency_ms_avg",
    "load_avg_ms",
    "warmup_avg_ms",
    "preprocess_avg_ms",
    "postprocess_avg_ms",
)
#: Our additions; the swept parameters and any extra columns follow these.
OUR_COLS: tuple[str, ...] = (
    "id",
    "key",
    "error",
    "input_shapes",
    "percentile_method",
    "throughput_cv",
    "warning",
    "peak_rss_mb",
    "repeats",
    "throughput_ci_low",
    "throughput_ci_high",
    "latency_ms_p50_ci_low",
    "latency_ms_p50_ci_high",
    "method_version",
    "node",  # the machine that measured the row (on Ray: host/node id)
)
#: Every fixed column of a row, in file order.
RESULT_COLUMNS: tuple[str, ...] = DEFAULT_CSV_COLS + OTHER_REPORT_COLS + OUR_COLS


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
        )

    def to_dict(self) -> dict:
        """JSON-able form; ``from_dict`` is its inverse."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["input_shapes"] = [list(s) for s in self.input_shapes]
        data["params"] = [[k, v] for k, v in self.params]
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
    if failed is not None:
        status, error = repeats[failed].status, repeats[failed].error
        if len(repeats) > 1:
            error = f"repeat {failed + 1}: {error}"
        stats = EntryStats()
    else:
        status, error = "ok", None
        stats = combine_repeats([
            compute_stats(m, batch_size=row_config.batch_size, peak_window_s=row_config.peak_window_s,
                          cost_per_hour=cost_per_hour)
            for m in repeats
        ])
    if row_config.new_tokens is not None:
        generation = (
            combine_generation([generation_stats(m, batch_size=row_config.batch_size, new_tokens=row_config.new_tokens)
                                for m in repeats])
            if failed is None else empty_generation(row_config.new_tokens)
        )
        extra = {**generation, **(extra or {})}
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


def columns_of(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The fixed columns in their order, then every other key in the order rows first use it."""
    columns = list(RESULT_COLUMNS)
    seen = set(columns)
    for row in rows:
        for name in row:
            if name not in seen:
                seen.add(name)
                columns.append(name)
    return columns


def csv_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], missing: str = "") -> str:
    """CSV with a header line; ``None``/NaN cells are written as ``missing``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(row.get(name), missing) for name in columns])
    return buffer.getvalue()


def _csv_cell(value: Any, missing: str) -> str:
    if value is None:
        return missing
    kind = type(value)
    if kind is str:  # the common cells first: this runs once per cell of every rewrite
        return value  # type: ignore[no-any-return]
    if kind is int:
        return str(value)
    if kind is float and math.isfinite(value):
        return str(value)
    value = json_ready(value)
    if value is None:
        return missing
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)  # str(float) is the shortest text that reads back to the same float


def write_results(output_dir: str, rows: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """Rewrite ``results.csv`` and ``results.json`` in ``output_dir`` atomically; return their paths."""
    columns = columns_of(rows)
    full_rows = [{name: row.get(name) for name in columns} for row in rows]
    csv_path = os.path.join(output_dir, RESULTS_CSV)
    json_path = os.path.join(output_dir, RESULTS_JSON)
    atomic_write_text(csv_path, csv_text(full_rows, columns))
    atomic_write_text(json_path, json_list_text(full_rows))
    return csv_path, json_path


def json_list_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """Strict JSON text of a list of rows, one row per line: as readable and diffable as an
    indented file, and several times faster to write (the C encoder runs only without indent)."""
    if not rows:
        return "[]\n"
    return "[\n" + ",\n".join(_json_line(r) for r in rows) + "\n]\n"


def _json_line(row: Mapping[str, Any]) -> str:
    try:
        return json.dumps(row, allow_nan=False)  # rows made here and journal rows are JSON already
    except (TypeError, ValueError):
        return json.dumps(json_ready(row), allow_nan=False)


class RowTable(dict):
    """Entry -> its row, plus ``ordered``: every planned entry's row in plan order (a
    placeholder until it has one), updated in place, so that setting a row costs O(1) however
    long the sweep (a dict, so that code that fills rows by entry needs nothing else)."""

    def __init__(self, entries: Sequence[Any], placeholder: Any, transform: Any = None):
        super().__init__()
        #: Applied to every row as it is placed (the driver prices rows for the results files).
        self._transform = transform or (lambda row: row)
        self._position = {e: i for i, e in enumerate(entries)}
        self.ordered: list = [self._transform(placeholder(e)) for e in entries]

    def __setitem__(self, entry: Any, row: Any) -> None:
        row = self._transform(row)
        super().__setitem__(entry, row)
        self.ordered[self._position[entry]] = row


class ResultsWriter:
    """Keeps ``results.csv``/``results.json`` up to date during a sweep at a linear total cost.

    Each write rewrites both files atomically (always complete, valid files), which costs time
    in proportion to the number of rows. Rewriting after every entry would make a long sweep's
    bookkeeping quadratic; instead ``update`` rewrites only once at least ``spacing`` times the
    last write's duration has passed since it, so the files trail the journal (the truth) by a
    moment at most and writing takes at most about 1/``spacing`` of the sweep's time. With
    entries that take seconds each, that is every entry. ``flush`` always writes.
    """

    def __init__(self, output_dir: str, *, spacing: float = 10.0, clock: Any = None):
        self.output_dir = output_dir
        self.spacing = spacing
        self._clock = clock or time.monotonic
        self._next_due = float("-inf")
        self.writes = 0

    def update(self, rows: Sequence[Mapping[str, Any]]) -> bool:
        """Rewrite the files if a write is due; return whether it wrote."""
        if self._clock() < self._next_due:
            return False
        self.flush(rows)
        return True

    def flush(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Rewrite the files now (at the end of a sweep, or when it stops)."""
        started = self._clock()
        write_results(self.output_dir, rows)
        finished = self._clock()
        self._next_due = finished + self.spacing * (finished - started)
        self.writes += 1


def write_run_info(output_dir: str, environment: Mapping[str, Any], **extra_fields: Any) -> str:
    """Write ``run.json`` (format versions, the run environment, and ``extra_fields``) atomically."""
    from neuronperf import __version__

    info = {
        "format": RUN_INFO_FORMAT,
        "results_format": RESULTS_FORMAT,
        "neuronperf_version": __version__,
        "environment": dict(environment),
    }
    info.update(extra_fields)
    path = os.path.join(output_dir, RUN_INFO)
    atomic_write_json(path, info)
    return path


def read_run_info(output_dir: str) -> Optional[dict[str, Any]]:
    """``run.json`` of ``output_dir``, or ``None`` if there is none; a newer or broken one is a
    ``JournalError``."""
    path = os.path.join(output_dir, RUN_INFO)
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise JournalError(f"{path}: cannot be read: {e}") from None
    if not isinstance(info, dict) or not isinstance(info.get("format"), int):
        raise JournalError(f"{path}: not a neuronperf run file (no integer 'format' key)")
    for key, supported in (("format", RUN_INFO_FORMAT), ("results_format", RESULTS_FORMAT)):
        version = info.get(key, 1)
        if isinstance(version, int) and version > supported:
            raise JournalError(
                f"{path}: written by a newer neuronperf ({key} {version}; this one reads up to "
                f"{supported}); upgrade neuronperf or use another output_dir"
            )
    if not isinstance(info.get("environment"), dict):
        raise JournalError(f"{path}: has no 'environment' object; delete it or start over with --fresh")
    return info



def load(path: str) -> Any:
    """The results at ``path`` (an output_dir, a results.json or a results.csv, NeuronPerf's
    too) as a typed pandas DataFrame; see ``neuronperf.frame``."""
    from neuronperf.frame import load as load_frame

    return load_frame(path)
