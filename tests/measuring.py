"""``measure(task)`` for tests: one repeat by the supervisor, its raw samples in a temporary
folder (the timings are in memory by the time the folder goes)."""

from __future__ import annotations

import tempfile
from typing import Any

from neuronperf.entries import Measurement
from neuronperf.measure import supervisor


def measure(task: Any, **options: Any) -> Measurement:
    with tempfile.TemporaryDirectory(prefix="neuronperf-test-samples-") as folder:
        return supervisor.measure(task, folder, **options)
