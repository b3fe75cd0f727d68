"""The default executor: worker processes on this machine (``neuronperf.measure.supervisor.measure``)."""

from __future__ import annotations

import socket
from typing import Optional

from neuronperf.entries import Measurement
from neuronperf.executors.base import Executor
from neuronperf.measure import supervisor
from neuronperf.measure.task import BenchmarkTask


class LocalExecutor(Executor):
    """Measures each entry here, one at a time, in worker processes started from a shared
    forkserver (or spawn)."""

    name = "local"

    def __init__(self, start_method: Optional[str] = None):
        # Resolve the context now, so that a bad start method fails before the first entry.
        self.start_method = start_method or supervisor.default_start_method()
        supervisor.worker_context(self.start_method)
        self._device_counts: dict[tuple[str, Optional[int]], Optional[int]] = {}
        self._cores: Optional[int] = None

    def measure(self, task: BenchmarkTask, samples_dir: str) -> Measurement:
        return supervisor.measure(task, samples_dir, start_method=self.start_method)

    def node_name(self) -> Optional[str]:
        return socket.gethostname()

    def cannot_host(self, task: BenchmarkTask) -> Optional[str]:
        """More measuring threads than this machine's cores carry (``contract.oversubscribed``),
        or more NeuronCores or GPUs than it has (as the task's backend counts them); where they
        cannot be counted here, nothing is ruled out: the entry's pre-flight says."""
        from neuronperf.errors import BackendUnavailable, UsageError
        from neuronperf.measure.contract import infeasible, machine_cores, oversubscribed
        from neuronperf.measure.task import BackendLoader, load_backend

        if self._cores is None:
            self._cores = machine_cores()
        too_many = oversubscribed(task, self._cores)
        if too_many is not None:
            return too_many
        if task.device_backend is None or task.device_type == "cpu":
            return None
        # A Neuron entry's logical NeuronCore config decides how many NeuronCores there are.
        lnc = task.loader.entry.lnc if isinstance(task.loader, BackendLoader) else None
        key = (task.device_type, lnc)
        if key not in self._device_counts:
            backend = load_backend(task.device_backend)
            try:
                self._device_counts[key] = int(
                    backend.device_count(task.device_type) if lnc is None else backend.device_count(task.device_type, lnc))
            except BackendUnavailable:
                self._device_counts[key] = None
            except UsageError as e:  # an LNC this machine's NeuronCores do not have
                return f"infeasible: {e}"
        count = self._device_counts[key]
        return None if count is None else infeasible(task, lambda device_type: count)
