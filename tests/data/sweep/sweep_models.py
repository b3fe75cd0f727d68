"""Model factories for the end-to-end sweep tests (resolved as "sweep_models.py:NAME")."""

from __future__ import annotations

import os
import time

import torch


class SleepyLinear(torch.nn.Module):
    """A linear layer that also sleeps per call (eager only: tracing would drop the sleep)."""

    def __init__(self, features: int, sleep_ms: float):
        super().__init__()
        self.linear = torch.nn.Linear(features, features)
        self.sleep_s = sleep_ms / 1000.0

    def forward(self, x):
        time.sleep(self.sleep_s)
        return self.linear(x)


def sleepy(features: int = 8, sleep_ms: float = 5.0):
    torch.manual_seed(0)
    return SleepyLinear(features, sleep_ms).eval()


class ClockedLinear(torch.nn.Module):
    """A linear layer whose calls end on the ticks of a clock of period ``period_ms``, as a device
    with a fixed frame rate would: each call sleeps until the next tick of the monotonic clock.

    Its figures do not move with the machine's load, unlike a plain sleep's: back-to-back calls
    serve exactly one call per period, and a call's latency is the period plus this wake-up's
    lateness minus the last one's (less the loop's step between calls), so a load that makes
    every wake-up late by the same amount cancels out of it."""

    def __init__(self, features: int, period_ms: float):
        super().__init__()
        self.linear = torch.nn.Linear(features, features)
        self.period_ns = int(period_ms * 1e6)

    def forward(self, x):
        now = time.monotonic_ns()
        time.sleep((self.period_ns - now % self.period_ns) / 1e9)
        return self.linear(x)


def clocked(features: int = 8, period_ms: float = 20.0):
    torch.manual_seed(0)
    return ClockedLinear(features, period_ms).eval()


class Raiser(torch.nn.Module):
    def forward(self, x):
        raise ValueError("bad input for this model")


def raiser(**kwargs):
    return Raiser()


def slow_to_build(features: int = 8, build_s: float = 3.0):
    """Builds slowly, so that a compile of it is long enough to be interrupted."""
    time.sleep(build_s)
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(features, features), torch.nn.ReLU()).eval()


def fast(features: int = 8):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(features, features), torch.nn.ReLU()).eval()


def pid_marker(features: int = 8):
    """Writes this process's pid next to the spec, to show that a model was loaded at all."""
    with open(os.path.join(os.path.dirname(__file__), f"loaded-{os.getpid()}.pid"), "w") as f:
        f.write(str(os.getpid()))
    return fast(features)


class SleepPerItem(torch.nn.Module):
    """Sleeps ``base_ms + per_item_ms x batch`` per call: latency grows with the batch size, and
    threads do not wait for each other (a sleep releases the interpreter lock)."""

    def __init__(self, base_ms: float, per_item_ms: float):
        super().__init__()
        self.base_s, self.per_item_s = base_ms / 1000.0, per_item_ms / 1000.0

    def forward(self, x):
        time.sleep(self.base_s + self.per_item_s * x.shape[0])
        return x


def sleep_per_item(base_ms: float = 5.0, per_item_ms: float = 10.0):
    return SleepPerItem(base_ms, per_item_ms).eval()
