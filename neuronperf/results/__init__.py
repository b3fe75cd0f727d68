"""The results stage: measured rows in, the files of an output_dir out, and back.

``rows`` makes a report row from an entry's measurements (``report_row``) or says why there is
none (``row_for_unrun``); ``columns`` names the columns; ``journal`` appends every finished
compile and run durably (the truth for resume); ``lock`` keeps a second run out; ``samples``
keeps the raw timings beside the rows; ``files`` writes ``results.csv``, ``results.json`` and
``run.json``; ``environment`` records the machine; ``frame`` reads results back into a pandas
DataFrame (``neuronperf.results.load``).
"""

from __future__ import annotations

from neuronperf.results.columns import DEFAULT_CSV_COLS, RESULT_COLUMNS, RESULTS_FORMAT
from neuronperf.results.files import (
    RESULTS_CSV,
    RESULTS_JSON,
    RUN_INFO,
    ResultsWriter,
    RowTable,
    read_run_info,
    write_results,
    write_run_info,
)
from neuronperf.results.frame import load
from neuronperf.results.rows import RowConfig, format_shapes, report_row, row_for_unrun

__all__ = [
    "DEFAULT_CSV_COLS", "RESULTS_CSV", "RESULTS_FORMAT", "RESULTS_JSON", "RESULT_COLUMNS", "RUN_INFO",
    "ResultsWriter", "RowConfig", "RowTable", "format_shapes", "load", "read_run_info", "report_row",
    "row_for_unrun", "write_results", "write_run_info",
]
