"""The NeuronPerf-compatible Python API: thin layers over the same stages a sweep runs.

``arguments`` normalises what callers pass (and raises ``UsageError`` before any work);
``compiling`` and ``benchmarking`` call into the compile stage and the benchmark core;
``framework`` binds them to one framework (``neuronperf.torch``, ``neuronperf.tensorflow``);
``reporting`` prints and writes reports as NeuronPerf did; ``timer`` is its ``Timer``. The
public names are re-exported by ``neuronperf`` and its framework modules.
"""

from __future__ import annotations

from neuronperf.api.arguments import DEFAULT_DURATION, DEFAULT_WORKERS_PER_MODEL, config_grid
from neuronperf.api.benchmarking import benchmark_artifacts, benchmark_loader
from neuronperf.api.compiling import choose_backend, compile_model, compile_with_function
from neuronperf.api.framework import FrameworkAPI

__all__ = [
    "DEFAULT_DURATION", "DEFAULT_WORKERS_PER_MODEL", "FrameworkAPI", "benchmark_artifacts",
    "benchmark_loader", "choose_backend", "compile_model", "compile_with_function", "config_grid",
]
