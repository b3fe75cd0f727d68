"""Models of exactly known cost for benchmarks/serving_accuracy.py (``file.py:callable`` factories)."""

from __future__ import annotations

import time
from typing import Any


class BusyWait:
    """Busy-waits ``ms`` milliseconds per call, whatever the batch: a constant service time that
    keeps a core busy, as a compute-bound model does."""

    def __init__(self, ms: float = 2.0):
        self.ns = int(ms * 1e6)

    def __call__(self, *inputs: Any) -> Any:
        end = time.perf_counter_ns() + self.ns
        while time.perf_counter_ns() < end:
            pass
        return inputs[0] if inputs else None


class NoOp:
    """Returns at once: what is left of a call is the harness's own cost."""

    def __call__(self, *inputs: Any) -> Any:
        return inputs[0] if inputs else None


def busy_wait(ms: float = 2.0) -> BusyWait:
    return BusyWait(ms)


def no_op() -> NoOp:
    return NoOp()
