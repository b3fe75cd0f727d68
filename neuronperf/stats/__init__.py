"""Statistics: one entry's raw samples in, the figures of its row out.

Pure numpy, no clock: every figure is a function of the ``Measurement`` alone. ``forward``
defines the closed-loop figures (method version, throughput, latency percentiles, slices,
stability, repeats and their intervals); ``generation`` those of ``task: generate``; ``serving``
those of ``benchmark.scenario: server`` (the arrival schedule, latency from the scheduled arrival).
"""

from __future__ import annotations

from neuronperf.stats.forward import (
    CV_WARN_THRESHOLD,
    METHOD_VERSION,
    MIN_CALLS_PER_SLICE,
    MIN_SAMPLES,
    PERCENTILE_METHOD,
    PERCENTILES,
    EntryStats,
    combine_repeats,
    compute_stats,
    percentile,
    short_warning,
    slice_throughputs,
    t_interval,
)
from neuronperf.stats.generation import (
    GENERATION_COLUMNS,
    GENERATION_FIGURES,
    combine_generation,
    empty_generation,
    generation_stats,
    request_times,
)

__all__ = [
    "CV_WARN_THRESHOLD", "GENERATION_COLUMNS", "GENERATION_FIGURES", "METHOD_VERSION",
    "MIN_CALLS_PER_SLICE", "MIN_SAMPLES", "PERCENTILES", "PERCENTILE_METHOD", "EntryStats",
    "combine_generation", "combine_repeats", "compute_stats", "empty_generation",
    "generation_stats", "percentile", "request_times", "short_warning", "slice_throughputs",
    "t_interval",
]
