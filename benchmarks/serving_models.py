"""Models of exactly known cost for benchmarks/serving_accuracy.py (``file.py:callable`` factories):
torch modules, so that they run through the torch backend like any model of a sweep."""

from __future__ import annotations

import time

import torch


class BusyWait(torch.nn.Module):
    """Busy-waits ``ms`` milliseconds per call, whatever the batch: a constant service time that
    keeps a core busy, as a compute-bound model does."""

    def __init__(self, ms: float = 2.0):
        super().__init__()
        self.ns = int(ms * 1e6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        end = time.perf_counter_ns() + self.ns
        while time.perf_counter_ns() < end:
            pass
        return x


class NoOp(torch.nn.Module):
    """Returns its input at once: what is left of a call is the harness's own cost."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def busy_wait(ms: float = 2.0) -> BusyWait:
    return BusyWait(ms)


def no_op() -> NoOp:
    return NoOp()


class Sleep(torch.nn.Module):
    """Sleeps ``ms`` milliseconds per call: a known service time that leaves the cores free, as a
    call waiting on a device does."""

    def __init__(self, ms: float = 20.0):
        super().__init__()
        self.s = ms / 1000

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.s)
        return x


def sleep(ms: float = 20.0) -> Sleep:
    return Sleep(ms)
