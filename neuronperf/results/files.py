"""The results files of an output_dir: ``results.csv`` and ``results.json`` (projections of the
journal, rewritten atomically and not more often than stays linear in a sweep's length) and
the side file ``run.json`` (format versions, environments, objectives, pricing). All of them
are written and read without following links (``util.nofollow``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from neuronperf.errors import JournalError
from neuronperf.results.columns import RESULT_COLUMNS, RESULTS_FORMAT
from neuronperf.util import nofollow
from neuronperf.util.atomic import atomic_write_json, atomic_write_text, json_ready

#: Version of run.json itself.
RUN_INFO_FORMAT = 1


RESULTS_CSV, RESULTS_JSON, RUN_INFO = "results.csv", "results.json", "run.json"


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
    atomic_write_text(csv_path, csv_text(full_rows, columns), root=output_dir)
    atomic_write_text(json_path, json_list_text(full_rows), root=output_dir)
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
    from neuronperf.version import __version__

    info = {
        "format": RUN_INFO_FORMAT,
        "results_format": RESULTS_FORMAT,
        "neuronperf_version": __version__,
        "environment": dict(environment),
    }
    info.update(extra_fields)
    path = os.path.join(output_dir, RUN_INFO)
    atomic_write_json(path, info, root=output_dir)
    return path


def read_run_info(output_dir: str) -> Optional[dict[str, Any]]:
    """``run.json`` of ``output_dir``, or ``None`` if there is none; a newer or broken one is a
    ``JournalError``."""
    path = os.path.join(output_dir, RUN_INFO)
    try:
        info = json.loads(nofollow.read_bytes(output_dir, RUN_INFO).decode("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:  # UnicodeDecodeError is a ValueError
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
