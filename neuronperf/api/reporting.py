"""The NeuronPerf reporting API: ``get_reports``, ``print_reports``, ``write_csv``, ``write_json``.

``benchmark(..., return_timers=True)`` returns *raw results*: JSON-able dicts that keep the raw
samples, so reports can be recomputed or re-analysed later. A raw result is

    {"format": 1, "config": RowConfig.to_dict(), "measurement": asdict(Measurement), "meta": {...}}

where ``meta`` holds the report's other inputs (``model_name``, ``model_filename``,
``instance_type``, ``cost_per_hour``, ``extra``). ``raw_result`` builds one, ``parse_raw_result``
takes it apart and ``get_reports`` turns a list of them into report dicts.
"""

from __future__ import annotations

import math
import numbers
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any, Optional

from neuronperf.entries import CopyStats, Measurement, WorkerSamples
from neuronperf.errors import UsageError
from neuronperf.results.columns import DEFAULT_CSV_COLS, DEFAULT_PRINT_COLS, MISSING
from neuronperf.results.files import csv_text
from neuronperf.results.rows import RowConfig, report_row
from neuronperf.util.atomic import atomic_write_text, dumps_strict, json_ready

RAW_RESULT_FORMAT = 1

__all__ = [
    "DEFAULT_CSV_COLS",
    "DEFAULT_PRINT_COLS",
    "get_reports",
    "parse_raw_result",
    "print_reports",
    "raw_result",
    "write_csv",
    "write_json",
]

_META_KEYS = ("model_name", "model_filename", "instance_type", "cost_per_hour", "extra")


def raw_result(row_config: RowConfig, measurement: Measurement, **meta: Any) -> dict[str, Any]:
    """A JSON-able raw result of one configuration; ``meta`` takes the keyword arguments of
    ``results.report_row`` (model_name, model_filename, instance_type, cost_per_hour, extra)."""
    unknown = sorted(set(meta) - set(_META_KEYS))
    if unknown:
        raise UsageError(f"raw_result: unknown metadata {', '.join(unknown)}; expected {', '.join(_META_KEYS)}")
    return {
        "format": RAW_RESULT_FORMAT,
        "config": row_config.to_dict(),
        "measurement": json_ready(asdict(measurement)),
        "meta": json_ready(meta),
    }


def parse_raw_result(raw: Mapping[str, Any]) -> tuple[RowConfig, Measurement, dict[str, Any]]:
    """Inverse of ``raw_result``: (row config, measurement, metadata); a malformed raw result is
    a ``UsageError`` that says what is wrong."""
    if not isinstance(raw, Mapping) or "measurement" not in raw or "config" not in raw:
        raise UsageError(
            "not a raw result: expected a dict with 'config' and 'measurement' "
            "(as benchmark(..., return_timers=True) returns)"
        )
    version = raw.get("format", RAW_RESULT_FORMAT)
    if not isinstance(version, int) or version > RAW_RESULT_FORMAT:
        raise UsageError(
            f"raw result format {version!r} was written by a newer neuronperf "
            f"(this one reads up to {RAW_RESULT_FORMAT}); upgrade neuronperf"
        )
    config = RowConfig.from_dict(raw["config"])
    try:
        measurement = measurement_from_dict(raw["measurement"])
    except (KeyError, TypeError, ValueError) as e:
        raise UsageError(f"raw result {config.id}: malformed measurement: {e}") from None
    return config, measurement, dict(raw.get("meta") or {})


def measurement_from_dict(data: Mapping[str, Any]) -> Measurement:
    """Rebuild a ``Measurement`` from ``dataclasses.asdict`` output (lists become tuples)."""
    workers = tuple(
        WorkerSamples(
            copy_idx=int(w["copy_idx"]),
            thread_idx=int(w["thread_idx"]),
            start_ns=tuple(int(t) for t in w["start_ns"]),
            latency_ns=tuple(int(t) for t in w["latency_ns"]),
            infer_ns_total=int(w.get("infer_ns_total", 0)),
            preprocess_ns_total=int(w.get("preprocess_ns_total", 0)),
            postprocess_ns_total=int(w.get("postprocess_ns_total", 0)),
            quota=None if w.get("quota") is None else int(w["quota"]),
        )
        for w in data.get("workers", ())
    )
    copies = tuple(CopyStats(**c) for c in data.get("copies", ()))
    return Measurement(
        status=str(data["status"]),
        error=data.get("error"),
        window_start_ns=int(data.get("window_start_ns", 0)),
        window_end_ns=int(data.get("window_end_ns", 0)),
        workers=workers,
        copies=copies,
        other_cpu_cores=None if data.get("other_cpu_cores") is None else float(data["other_cpu_cores"]),
        idle_cpu_cores=None if data.get("idle_cpu_cores") is None else float(data["idle_cpu_cores"]),
    )


def get_reports(results: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Report dicts (one per configuration) from the raw results of ``benchmark(...,
    return_timers=True)``."""
    if isinstance(results, Mapping):  # one raw result on its own
        results = [results]
    reports = []
    for raw in results:
        config, measurement, meta = parse_raw_result(raw)
        reports.append(report_row(config, measurement, **{k: meta.get(k) for k in _META_KEYS}))
    return reports


def print_reports(
    reports: Sequence[Mapping[str, Any]],
    cols: Sequence[str] = DEFAULT_PRINT_COLS,
    sort_by: Optional[str] = "throughput_avg",
    reverse: bool = False,
) -> None:
    """Print ``reports`` to stdout as a fixed-width table of ``cols``, sorted by ``sort_by``
    (rows without that value last)."""
    cols = _columns(cols)
    rows = _sorted(reports, sort_by, reverse)
    table = [list(cols)] + [[_cell_text(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
    numeric = [all(_is_number(r.get(c)) or r.get(c) is None for r in rows) for c in cols]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(cells, widths, numeric)
        ).rstrip()

    out = [line(table[0]), "  ".join("-" * w for w in widths)] + [line(cells) for cells in table[1:]]
    sys.stdout.write("\n".join(out) + "\n")


def write_csv(
    reports: Sequence[Mapping[str, Any]],
    filename: Optional[str] = None,
    cols: Sequence[str] = DEFAULT_CSV_COLS,
) -> str:
    """Write ``reports`` as CSV (header first, missing values ``N/A``), atomically; return the
    file name (default ``<model_name>.results-<YYYYmmdd-HHMMSS>.csv``)."""
    reports = list(reports)
    filename = filename or default_filename(reports, "csv")
    atomic_write_text(filename, csv_text(reports, _columns(cols), missing=MISSING))
    return filename


def write_json(reports: Sequence[Mapping[str, Any]], filename: Optional[str] = None) -> str:
    """Write ``reports`` as a strict JSON list (NaN becomes null), atomically; return the file name
    (default ``<model_name>.results-<YYYYmmdd-HHMMSS>.json``)."""
    reports = [dict(r) for r in reports]
    filename = filename or default_filename(reports, "json")
    atomic_write_text(filename, dumps_strict(reports, indent=2) + "\n")
    return filename


def default_filename(reports: Sequence[Mapping[str, Any]], extension: str) -> str:
    """``<model_name>.results-<YYYYmmdd-HHMMSS>.<extension>``, named after the first report."""
    name = next((str(r["model_name"]) for r in reports if r.get("model_name")), "model")
    # A model name may be a path or hold spaces; the file goes in the working directory.
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.basename(name)) or "model"
    return f"{name}.results-{time.strftime('%Y%m%d-%H%M%S')}.{extension}"


def _columns(cols: Sequence[str]) -> list[str]:
    if isinstance(cols, str):  # a single column name
        return [cols]
    cols = list(cols)
    if not cols or not all(isinstance(c, str) for c in cols):
        raise UsageError(f"cols must be a non-empty list of column names, got {cols!r}")
    return cols


def _sorted(
    reports: Sequence[Mapping[str, Any]], sort_by: Optional[str], reverse: bool
) -> list[Mapping[str, Any]]:
    rows = list(reports)
    if sort_by is None:
        return rows
    if rows and not any(sort_by in r for r in rows):
        raise UsageError(f"sort_by: no report has the column {sort_by!r}")
    known = [r for r in rows if _present(r.get(sort_by))]
    unknown = [r for r in rows if not _present(r.get(sort_by))]
    # Numbers before text, so a column mixing both still sorts instead of raising.
    known.sort(key=lambda r: (0, r[sort_by], "") if _is_number(r[sort_by]) else (1, 0, str(r[sort_by])), reverse=reverse)
    return known + unknown


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _cell_text(value: Any) -> str:
    if not _present(value):
        return MISSING
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
