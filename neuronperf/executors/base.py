"""The executor interface: where a run entry's workers run (this machine, or a Ray cluster).

An executor turns a ``BenchmarkTask`` into a ``Measurement`` (one repeat), and a stream of
entries into a stream of their outcomes (``measure_entries``). The local executor runs the
supervisor here, one entry at a time; a remote one ships the (picklable) task to another
machine and runs the same supervisor there, several entries at once on different nodes or
devices, so the measurement means the same thing everywhere.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Optional

if TYPE_CHECKING:
    from neuronperf.entries import Measurement
    from neuronperf.measure.contract import EntryOutcome, EntryWork
    from neuronperf.measure.task import BenchmarkTask


class Executor(abc.ABC):
    """Runs run entries; use it as a context manager so that its resources are released."""

    #: Registry name, e.g. "local" or "ray".
    name: ClassVar[str]

    @abc.abstractmethod
    def measure(self, task: BenchmarkTask, samples_dir: str) -> Measurement:
        """Measure one repeat of an entry, the workers' raw timings written under
        ``samples_dir``; failures come back as a Measurement, bad tasks raise UsageError."""

    def measure_entries(self, works: Iterable[EntryWork], started: Callable[[EntryWork], None]) -> Iterator[EntryOutcome]:
        """Measure each entry (its pre-flight, then every repeat) and yield its outcome as soon
        as it is known; ``started(work)`` is called when an entry begins. This default takes
        one entry at a time, in order: the next is not even pulled before the last is done."""
        from neuronperf.measure.contract import measure_repeats

        node = self.node_name()
        for work in works:
            started(work)
            yield measure_repeats(work, self.measure, node)

    def node_name(self) -> Optional[str]:
        """The name rows give the node this executor measures on (None: it has several)."""
        return None

    def cannot_host(self, task: BenchmarkTask) -> Optional[str]:
        """Why no machine of this executor can ever run ``task`` (it needs more devices than
        any has), or None; checked before anything is compiled."""
        return None

    def node_environments(self, probe: Callable[[], dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Each node's environment, as ``probe()`` run on that node describes it."""
        return {self.node_name() or "local": probe()}

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
