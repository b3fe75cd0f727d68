"""The values trackers produce: one ``Sample`` per reading, one ``Telemetry`` per repeat.

A sample holds its readings per *channel*: a CPU package (``package-0``), a GPU (``gpu1``), a
NeuronCore (``nc4``) or a Neuron runtime (``pid4242``). Which channels belong to the entry is the
tracker's answer (``Tracker.entry_channels``), because only it knows how its devices map to the
copies; the arithmetic over the channels is the same for every source (``figures``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional, Protocol

# The value a repeat's telemetry ends in travels in ``Measurement``, so it is defined with it.
from neuronperf.entries import Telemetry


@dataclass(frozen=True)
class Sample:
    """What one tracker read at ``t_ns`` (``time.perf_counter_ns``, the clock of the window)."""

    t_ns: int
    #: Cumulative energy per channel in joules, wraparound already undone (a counter: only
    #: differences mean anything).
    energy_j: Mapping[str, float] = field(default_factory=dict)
    #: Power per channel in watts, at that moment.
    power_w: Mapping[str, float] = field(default_factory=dict)
    #: Busy share per channel in percent, over the ``span_ns`` before ``t_ns``.
    util_pct: Mapping[str, float] = field(default_factory=dict)
    #: Device memory held by the entry's processes, per channel, in bytes.
    mem_bytes: Mapping[str, int] = field(default_factory=dict)
    #: Channels on which one of the entry's processes was seen (even when its memory was not
    #: reported).
    present: frozenset[str] = frozenset()
    #: The interval the utilisation figures describe, ending at ``t_ns`` (0: that instant).
    span_ns: int = 0


class Tracker(Protocol):
    """One telemetry source. ``open`` and ``close`` bracket its use; ``poll`` is called by the
    sampler thread once per period and returns what was read since the last call (one sample for
    a source that is read on demand, the reports that arrived meanwhile for a streaming one)."""

    @property
    def name(self) -> str:
        """What ``energy_source`` says when this tracker's figures fill the row."""

    @property
    def mem_column(self) -> Optional[str]:
        """The column its per-process memory fills, or None when it reads no memory."""

    def open(self) -> Optional[str]:
        """Get ready to read; None when it can, else why not (that is the row's note)."""

    def reads_power(self) -> bool:
        """Whether it reads energy or power (after ``open``): only then is idle power measured."""

    def poll(self, pids: frozenset[int]) -> list[Sample]:
        """Read now; ``pids`` are the entry's worker processes (empty before they start)."""

    def entry_channels(self, samples: Sequence[Sample]) -> tuple[Optional[frozenset[str]], Optional[str]]:
        """The channels that are the entry's devices (None: every channel), and a note when the
        choice is doubtful or impossible."""

    def notes(self) -> list[str]:
        """Problems met while polling that left a figure empty or partial."""

    def close(self) -> None:
        """Release what ``open`` took; safe to call more than once."""


__all__ = ["Sample", "Telemetry", "Tracker"]
