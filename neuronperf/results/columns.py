"""The columns of a row: NeuronPerf's report keys first, then ours, in the order the results
files write them. One definition, used by the rows, the files, the DataFrame and the answers.
"""

from __future__ import annotations

#: Version of the results.csv / results.json columns, recorded in run.json.
RESULTS_FORMAT = 1


#: The device telemetry columns (``neuronperf.trackers``; docs/measurement.md, "Telemetry").
TELEMETRY_COLUMNS: tuple[str, ...] = (
    "device_mem_mb_peak",
    "device_mem_mb_nvml_peak",
    "device_util_pct_avg",
    "power_w_avg",
    "power_w_idle",
    "energy_j_per_inf",
    "energy_source",
    "telemetry_note",
)

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
    "other_cpu_cores",
    "method_version",
    "node",  # the machine that measured the row (on Ray: host/node id)
    # Columns added later go last, so that scripts reading columns by position keep working.
    *TELEMETRY_COLUMNS,  # issue 24
    "idle_cpu_cores",  # issue 27
)


#: Every fixed column of a row, in file order.
RESULT_COLUMNS: tuple[str, ...] = DEFAULT_CSV_COLS + OTHER_REPORT_COLS + OUR_COLS

#: The fixed columns that hold text, not numbers (the rest are numbers, or empty).
TEXT_COLUMNS: tuple[str, ...] = (
    "model_name", "model_filename", "device_type", "instance_type", "status", "id", "key", "error",
    "input_shapes", "percentile_method", "warning", "node", "energy_source", "telemetry_note",
)

#: The columns ``print_reports`` shows unless told otherwise (NeuronPerf's defaults).
DEFAULT_PRINT_COLS: tuple[str, ...] = (
    "throughput_avg",
    "latency_ms_p50",
    "latency_ms_p99",
    "n_models",
    "pipeline_size",
    "workers_per_model",
    "batch_size",
    "model_filename",
)

#: What NeuronPerf wrote for a value it did not have.
MISSING = "N/A"
