"""The benchmark core's earlier import path (documented before the stages became folders):
``run_entries``, ``Job``, ``Sink`` and the rest now live in ``neuronperf.measure.entryloop`` and
``neuronperf.measure.contract``. Kept so that scripts written against it keep working."""

from __future__ import annotations

from neuronperf.measure.contract import EntryOutcome, EntryWork, infeasible, measure_repeats
from neuronperf.measure.entryloop import ORDERS, Job, JobResult, Sink, ordered, run_entries

__all__ = [
    "ORDERS", "EntryOutcome", "EntryWork", "Job", "JobResult", "Sink", "infeasible", "measure_repeats",
    "ordered", "run_entries",
]
