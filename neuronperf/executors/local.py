"""The default executor: worker processes on this machine (``neuronperf.supervisor.measure``)."""

from __future__ import annotations

import socket
from typing import Optional

from neuronperf import supervisor
from neuronperf.entries import Measurement
from neuronperf.executors.base import Executor
from neuronperf.task import BenchmarkTask


class LocalExecutor(Executor):
    """Measures each entry here, one at a time, in worker processes started from a shared
    forkserver (or spawn)."""

    name = "local"

    def __init__(self, start_method: Optional[str] = None):
        # Resolve the context now, so that a bad start method fails before the first entry.
        self.start_method = start_method or supervisor.default_start_method()
        supervisor.worker_context(self.start_method)

    def measure(self, task: BenchmarkTask, samples_dir: str) -> Measurement:
        return supervisor.measure(task, samples_dir, start_method=self.start_method)

    def node_name(self) -> Optional[str]:
        return socket.gethostname()
