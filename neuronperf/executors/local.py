"""The default executor: worker processes on this machine (``neuronperf.benchmark_stage.measure``)."""

from __future__ import annotations

from typing import Optional

from neuronperf import benchmark_stage
from neuronperf.entries import Measurement
from neuronperf.executors.base import Executor


class LocalExecutor(Executor):
    """Measures each entry here, in worker processes started from a shared forkserver (or spawn)."""

    name = "local"

    def __init__(self, start_method: Optional[str] = None):
        # Resolve the context now, so that a bad start method fails before the first entry.
        self.start_method = start_method or benchmark_stage.default_start_method()
        benchmark_stage.worker_context(self.start_method)

    def measure(self, task: benchmark_stage.BenchmarkTask) -> Measurement:
        return benchmark_stage.measure(task, start_method=self.start_method)
