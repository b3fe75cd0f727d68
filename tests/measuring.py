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


def busy_loop(stop: Any) -> None:
    """Keep one core busy until ``stop`` (a multiprocessing Event) is set: another tenant of the
    machine, for the tests that judge what the harness does on a loaded one."""
    while not stop.is_set():
        for _ in range(20_000):
            pass


class BusyProcess:
    """``with BusyProcess():`` a second process spinning on a core for the block's duration."""

    def __enter__(self) -> BusyProcess:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.stop = ctx.Event()
        self.process = ctx.Process(target=busy_loop, args=(self.stop,), daemon=True)
        self.process.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
