"""Small timing and logging utilities of the NeuronPerf API: ``Timer``, ``timestamp_convert``,
``set_verbosity``."""

from __future__ import annotations

import logging
import numbers
import time
from collections.abc import Iterable
from typing import Callable, Optional, Union

from neuronperf.errors import UsageError

#: Nanoseconds per unit; the units every function here accepts.
UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


def _ns_per(unit: str) -> int:
    try:
        return UNITS[unit]
    except KeyError:
        raise UsageError(f"unknown time unit {unit!r}; expected one of {', '.join(UNITS)}") from None


def timestamp_convert(
    ts: Union[float, Iterable[float]], from_unit: str = "ns", to_unit: str = "s"
) -> Union[float, list[float]]:
    """Convert a time (or a sequence of times) between ``ns``, ``us``, ``ms`` and ``s``."""
    factor = _ns_per(from_unit) / _ns_per(to_unit)
    if isinstance(ts, numbers.Real):  # numpy scalars register as Real too
        return float(ts) * factor
    if isinstance(ts, Iterable):
        return [float(t) * factor for t in ts]
    raise UsageError(f"timestamp_convert: expected a number or a sequence of numbers, got {type(ts).__name__}")


class Timer:
    """Times code with ``time.perf_counter_ns``: as a context manager (``with timer:``) or with
    ``start()``/``stop()``; every interval is kept."""

    def __init__(self, clock: Callable[[], int] = time.perf_counter_ns):
        self._clock = clock  # injectable so that tests can drive an exact fake clock
        self._started_ns: Optional[int] = None
        self._durations_ns: list[int] = []

    def start(self) -> Timer:
        if self._started_ns is not None:
            raise UsageError("Timer.start() called twice without stop()")
        self._started_ns = self._clock()
        return self

    def stop(self) -> float:
        """End the current interval and return its length in seconds."""
        if self._started_ns is None:
            raise UsageError("Timer.stop() called without start()")
        duration = self._clock() - self._started_ns
        self._started_ns = None
        self._durations_ns.append(duration)
        return duration / UNITS["s"]

    def __enter__(self) -> Timer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __len__(self) -> int:
        return len(self._durations_ns)

    def reset(self) -> None:
        self._started_ns = None
        self._durations_ns = []

    def durations(self, unit: str = "s") -> list[float]:
        """Every finished interval, in ``unit``."""
        per = _ns_per(unit)
        return [d / per for d in self._durations_ns]

    def total(self, unit: str = "s") -> float:
        """The sum of the finished intervals, in ``unit``."""
        return sum(self._durations_ns) / _ns_per(unit)

    def avg(self, unit: str = "s") -> float:
        """The mean finished interval in ``unit``; a Timer with none raises ``UsageError``."""
        if not self._durations_ns:
            raise UsageError("Timer.avg(): no finished intervals")
        return self.total(unit) / len(self._durations_ns)


_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}


def set_verbosity(level: int) -> None:
    """Set how much the ``neuronperf`` logger says: 0 warnings only, 1 progress, 2 debug."""
    if level not in _LEVELS:
        raise UsageError(f"verbosity must be 0, 1 or 2, got {level!r}")
    logging.getLogger("neuronperf").setLevel(_LEVELS[level])
