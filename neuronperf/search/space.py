"""The shape of a plan as a search sees it: questions, coordinates, the order a bound prunes
along, and neighbours.

A *question* is one model at one combination of its swept parameters (BERT at sequence 128 and
at 512 are different questions, as in the summary's answers); its entries differ only in batch
size, pipeline size, copies and threads (and, where the sweep sets ``logical_nc_configs``, the
logical NeuronCore config), the *coordinates*, each an index into that axis's values in
increasing order. Entries the exclude rules dropped are simply absent: a neighbour is
the nearest planned entry along an axis.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from neuronperf.entries import RunEntry

#: The axes a search moves along, in the order neighbours are listed. ``logical_nc_config`` has
#: one value (0: the runtime's) unless the sweep sets ``logical_nc_configs``, and so no neighbours.
AXES = ("batch_size", "pipeline_size", "n_models", "workers_per_model", "logical_nc_config")


@dataclass(frozen=True)
class Question:
    """One model at one combination of its swept parameters: the entries compared with each other."""

    model: str
    params: tuple[tuple[str, Any], ...]
    #: The server scenario's load, ``(("rate", 200.0), ("max_queue_delay_ms", 1.0))`` (rate None:
    #: ``sweep.rates: max``): each offered load is a question of its own, as latencies at
    #: different rates answer different questions. Empty in the closed loop.
    load: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        values = " ".join(f"{k}={v}" for k, v in self.params + self.load)
        return f"{self.model} {values}" if values else self.model


def question_of(entry: RunEntry) -> Question:
    serving = entry.serving
    load = () if serving is None else (("rate", "max" if serving.rate is None else serving.rate),
                                       ("max_queue_delay_ms", serving.max_queue_delay_ms))
    return Question(entry.compile.model.name, entry.compile.params, load)


def axis_values(entry: RunEntry) -> tuple[int, int, int, int, int]:
    """The entry's values on ``AXES`` (LNC 0: the runtime's, when the sweep does not set it)."""
    c = entry.compile
    return (c.batch_size, c.pipeline_size, entry.n_models, entry.workers_per_model, c.lnc or 0)


def below(smaller: RunEntry, bigger: RunEntry) -> bool:
    """Whether ``bigger`` is ``smaller`` with a bigger batch size or more threads, or both
    (same question, pipeline size, copies and logical NeuronCore config: a copy at another LNC
    runs on other cores, so no order holds across it; not the same entry): the order along which
    the monotonic assumption says latency does not fall."""
    if smaller is bigger or question_of(smaller) != question_of(bigger):
        return False
    sb, sp, sm, sw, sl = axis_values(smaller)
    bb, bp, bm, bw, bl = axis_values(bigger)
    return sp == bp and sm == bm and sl == bl and sb <= bb and sw <= bw and (sb, sw) != (bb, bw)


class Space:
    """The run entries of a plan grouped into questions, with coordinates and neighbours."""

    def __init__(self, entries: Iterable[RunEntry]):
        self.entries: tuple[RunEntry, ...] = tuple(entries)
        self.position = {e: i for i, e in enumerate(self.entries)}
        self.questions: dict[Question, list[RunEntry]] = {}
        for entry in self.entries:
            self.questions.setdefault(question_of(entry), []).append(entry)
        # Per question: each axis's values in increasing order, and coordinates -> entry.
        self._values: dict[Question, tuple[tuple[int, ...], ...]] = {}
        self._at: dict[Question, dict[tuple[int, ...], RunEntry]] = {}
        self._coords: dict[RunEntry, tuple[int, ...]] = {}
        #: (question, pipeline size, copies, LNC) -> its entries in plan order: the slices along
        #: which the pruning order runs.
        self._slices: dict[tuple[Question, int, int, int], list[RunEntry]] = {}
        self._slice_of: dict[RunEntry, tuple[Question, int, int, int]] = {}
        self._below: dict[RunEntry, list[RunEntry]] = {}
        for question, members in self.questions.items():
            values = tuple(tuple(sorted({axis_values(e)[a] for e in members})) for a in range(len(AXES)))
            self._values[question] = values
            index = [{v: i for i, v in enumerate(axis)} for axis in values]
            at = {}
            for entry in members:
                coords = tuple(index[a][v] for a, v in enumerate(axis_values(entry)))
                at[coords] = entry
                self._coords[entry] = coords
            self._at[question] = at
        for entry in self.entries:
            _, pipeline, copies, _, lnc = axis_values(entry)
            key = (question_of(entry), pipeline, copies, lnc)
            self._slice_of[entry] = key
            self._slices.setdefault(key, []).append(entry)

    def below_in_slice(self, entry: RunEntry) -> list[RunEntry]:
        """The entries ``below`` ``entry`` (smaller or equal batch size and threads, same
        question, pipeline size, copies and LNC), in plan order."""
        found = self._below.get(entry)
        if found is None:
            batch, _, _, threads, _ = axis_values(entry)
            found = []
            for other in self._slices[self._slice_of[entry]]:
                b, _, _, t, _ = axis_values(other)
                if b <= batch and t <= threads and (b, t) != (batch, threads):
                    found.append(other)
            self._below[entry] = found
        return found

    def coordinates(self, entry: RunEntry) -> tuple[int, ...]:
        return self._coords[entry]

    def smallest(self, question: Question) -> RunEntry:
        """Where ``quick`` starts: the entry with the smallest values on every axis (batch size
        first when the exclude rules dropped that corner)."""
        return min(self.questions[question], key=lambda e: (sum(self._coords[e]), self._coords[e]))

    def neighbours(self, entry: RunEntry) -> list[RunEntry]:
        """One step along one axis, down then up on each axis in ``AXES`` order: the nearest
        planned entry that differs from ``entry`` only on that axis."""
        question = question_of(entry)
        at, coords = self._at[question], self._coords[entry]
        found = []
        for axis, values in enumerate(self._values[question]):
            for step in (-1, 1):
                i = coords[axis] + step
                while 0 <= i < len(values):
                    other = at.get(coords[:axis] + (i,) + coords[axis + 1:])
                    if other is not None:
                        found.append(other)
                        break
                    i += step
        return found

    def direction(self, start: RunEntry, end: RunEntry) -> tuple[int, int]:
        """The step from ``start`` to its neighbour ``end``: (axis index, +1 up or -1 down)."""
        a, b = self._coords[start], self._coords[end]
        axis = next(i for i in range(len(a)) if a[i] != b[i])
        return axis, 1 if b[axis] > a[axis] else -1

    def neighbours_up(self, entry: RunEntry) -> list[RunEntry]:
        """The neighbours one step up (a bigger value on one axis)."""
        mine = self._coords[entry]
        return [n for n in self.neighbours(entry) if self._coords[n] > mine]

    def minimal(self, candidates: Sequence[RunEntry]) -> list[RunEntry]:
        """The candidates that have no other candidate below them, in plan order."""
        pool = set(candidates)
        return [e for e in sorted(pool, key=self.position.__getitem__)
                if not any(other in pool for other in self.below_in_slice(e))]
