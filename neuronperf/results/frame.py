"""Results as a pandas DataFrame: ``neuronperf.results.load(path)``.

``load`` takes an output_dir, a ``results.json`` or a ``results.csv`` (also a CSV written by
NeuronPerf's ``write_csv``, whose missing values are ``N/A``) and returns one row per entry with
typed columns: integers for the configuration and the counts, floats for the figures (NaN where
missing), a categorical ``status``, text for the rest, and each swept parameter as a column.
pandas is imported here only, so ``import neuronperf`` stays fast.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

from neuronperf.entries import STATUSES
from neuronperf.errors import UsageError
from neuronperf.results.columns import RESULT_COLUMNS
from neuronperf.results.files import RESULTS_CSV, RESULTS_JSON
from neuronperf.stats.generation import GENERATION_FIGURES

#: Columns that hold whole numbers.
INT_COLUMNS = ("n_models", "workers_per_model", "pipeline_size", "batch_size", "total_infs", "repeats")
#: Columns that hold text (everything else of the fixed columns is a number).
TEXT_COLUMNS = (
    "model_name", "model_filename", "device_type", "instance_type", "status", "id", "key",
    "error", "input_shapes", "percentile_method", "warning", "node", "energy_source", "telemetry_note",
)
#: What NeuronPerf's CSV writer wrote for a value it did not have.
MISSING_MARKS = ("N/A", "")


@dataclass(frozen=True)
class ResultsSource:
    """Where a set of results lives: the results file, and the output_dir it belongs to when
    there is one (the journal and raw samples live there)."""

    path: str
    output_dir: Optional[str]


def locate(path: str) -> ResultsSource:
    """The results file for ``path`` (an output_dir, or a results file); a path without results
    is a one-line ``UsageError``."""
    if os.path.isdir(path):
        for name in (RESULTS_JSON, RESULTS_CSV):
            candidate = os.path.join(path, name)
            if os.path.isfile(candidate):
                return ResultsSource(candidate, path)
        raise UsageError(f"{path}: holds no results ({RESULTS_JSON} or {RESULTS_CSV}); run the sweep first, or name a results file")
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file or folder")
    if not path.endswith((".json", ".csv")):
        raise UsageError(f"{path}: not a results file (expected an output_dir, a .json or a .csv)")
    folder = os.path.dirname(os.path.abspath(path))
    has_journal = os.path.isfile(os.path.join(folder, "journal.jsonl"))
    return ResultsSource(path, folder if has_journal else None)


def load(path: str) -> Any:
    """The results at ``path`` (an output_dir, a results.json or a results.csv, NeuronPerf's
    too) as a typed ``pandas.DataFrame``, one row per entry: ``neuronperf.results.load``."""
    source = locate(path)
    return frame_of(read_records(source.path))


def read_records(path: str) -> list[dict[str, Any]]:
    """The rows of a results file as plain dicts (missing values ``None``)."""
    if path.endswith(".json"):
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            raise UsageError(f"{path}: not a readable results file: {e}") from None
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise UsageError(f"{path}: not a results file (expected a JSON list of row objects)")
        return data
    return _read_csv(path)


def _read_csv(path: str) -> list[dict[str, Any]]:
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames:
                raise UsageError(f"{path}: an empty CSV file (no header line)")
            rows = [{k: _csv_value(v) for k, v in row.items() if k is not None} for row in reader]
    except OSError as e:
        raise UsageError(f"{path}: cannot be read: {e.strerror or e}") from None
    except csv.Error as e:
        raise UsageError(f"{path}: not a readable CSV file: {e}") from None
    return rows


def _csv_value(text: Optional[str]) -> Any:
    """A CSV cell as the value it stands for: a number where it reads as one, None if missing."""
    if text is None or text in MISSING_MARKS:
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    if text in ("true", "false"):
        return text == "true"
    return text


def frame_of(records: Sequence[dict[str, Any]]) -> Any:
    """Typed DataFrame of report rows (the shared step of ``load``)."""
    import pandas as pd

    rows = [dict(r) for r in records]
    for row in rows:
        _fill_identity(row)
    columns = _columns(rows)
    df = pd.DataFrame([[row.get(c) for c in columns] for row in rows], columns=columns)
    for column in columns:
        df[column] = _typed(df[column], column)
    return df


def _fill_identity(row: dict[str, Any]) -> None:
    """NeuronPerf's CSV has no status and no id: an entry with a throughput was measured."""
    if row.get("status") is None:
        row["status"] = "ok" if row.get("throughput_avg") is not None else None
    if row.get("id") is None and row.get("batch_size") is not None:
        model = os.path.basename(str(row.get("model_name") or "model"))
        row["id"] = (
            f"{model}-bs{row.get('batch_size')}-p{row.get('pipeline_size', 1)}"
            f"-m{row.get('n_models', 1)}-w{row.get('workers_per_model', 1)}"
        )


def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    present = {name for row in rows for name in row}
    columns = [c for c in RESULT_COLUMNS if c in present]
    for row in rows:
        for name in row:
            if name not in columns:
                columns.append(name)
    return columns


def _typed(series: Any, column: str) -> Any:
    import pandas as pd

    if column == "status":
        return pd.Categorical(series.where(series.notna(), None), categories=list(STATUSES))
    if column in INT_COLUMNS:
        values = pd.to_numeric(series, errors="coerce")
        return values.astype("int64") if values.notna().all() else values.astype("Int64")
    if column in TEXT_COLUMNS:
        return series.astype(object).where(series.notna(), None)
    # A generation row's figures are floats too, even where every value is missing.
    if column in RESULT_COLUMNS or column in GENERATION_FIGURES or column.endswith(("_ci_low", "_ci_high")):
        return pd.to_numeric(series, errors="coerce").astype("float64")
    return series.infer_objects()  # a swept parameter: whatever its values are


def records(df: Any) -> list[dict[str, Any]]:
    """The DataFrame's rows as plain dicts with Python values (``None`` for missing)."""
    out = []
    for raw in df.to_dict(orient="records"):
        out.append({k: _plain(v) for k, v in raw.items()})
    return out


def _plain(value: Any) -> Any:
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return None
    except ImportError:  # pragma: no cover - pandas is a core dependency
        pass
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
