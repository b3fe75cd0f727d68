"""The executor interface: where a run entry's workers run (this machine, or a Ray cluster).

An executor turns a ``BenchmarkTask`` into a ``Measurement`` (one repeat). The local executor
runs the supervisor here; a remote one ships the (picklable) task to another machine and runs
the same supervisor there, so the measurement means the same thing everywhere.
"""

from __future__ import annotations

import abc
from types import TracebackType
from typing import TYPE_CHECKING, ClassVar, Optional

if TYPE_CHECKING:
    from neuronperf.entries import Measurement
    from neuronperf.task import BenchmarkTask


class Executor(abc.ABC):
    """Runs run entries; use it as a context manager so that its resources are released."""

    #: Registry name, e.g. "local" or "ray".
    name: ClassVar[str]

    @abc.abstractmethod
    def measure(self, task: BenchmarkTask, samples_dir: str) -> Measurement:
        """Measure one repeat of an entry, the workers' raw timings written under
        ``samples_dir``; failures come back as a Measurement, bad tasks raise UsageError."""

    def close(self) -> None:  # noqa: B027 - nothing to release is a valid default
        """Release what the executor holds (worker pools, cluster connections)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()
