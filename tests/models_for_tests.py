"""Models and callbacks with known behaviour, for benchmark tests and the harness benchmark.

They live in a module (not in test files) so that worker processes can import them by name.
Models that misbehave do it on purpose: raise, abort, hang, start a child and hang, hog memory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Optional


class SleepModel:
    """Takes ``ms`` milliseconds per call; ``time.sleep`` releases the GIL, so threads overlap."""

    def __init__(self, ms: float = 20.0):
        self.seconds = ms / 1000.0

    def __call__(self, *inputs: Any) -> Any:
        time.sleep(self.seconds)
        return inputs[0] if inputs else None


class NoOpModel:
    """Returns its first input at once: what is left of a call's latency is the harness."""

    def __call__(self, *inputs: Any) -> Any:
        return inputs[0] if inputs else None


class SpinPerCopy:
    """A fixed amount of pure-Python work per call (CPU-bound, holding the GIL): ``loops``
    iterations, ``loops_copy1`` in copy 1. The copy's index comes from ``copy_env_setup`` (its
    ``env_setup_fn``), so the two copies of one entry run at different paces and ``max_infers``
    stops them at different times."""

    def __init__(self, loops: int = 20_000, loops_copy1: int = 100_000):
        self.loops = loops_copy1 if os.environ.get("NP_TEST_COPY") == "1" else loops

    def __call__(self, *inputs: Any) -> Any:
        for _ in range(self.loops):
            pass
        return inputs[0] if inputs else None


def copy_env_setup(copy_idx: int, config: dict) -> None:
    """Tells ``SpinPerCopy`` which copy it is."""
    os.environ["NP_TEST_COPY"] = str(copy_idx)


class RaiseModel:
    """Raises ``ValueError`` when built (``on="load"``), on the call after the ``after``-th
    (``on="call"``), or on the first call more than ``after_s`` seconds after it was built."""

    def __init__(self, on: str = "call", after: int = 0, after_s: Optional[float] = None):
        if on == "load":
            raise ValueError("weights are corrupt")
        self.after = after
        self.calls = 0
        self.deadline = None if after_s is None else time.monotonic() + after_s

    def __call__(self, *inputs: Any) -> Any:
        self.calls += 1
        if self.deadline is not None:
            if time.monotonic() > self.deadline:
                raise ValueError("model exploded on purpose")
            time.sleep(0.001)
        elif self.calls > self.after:
            raise ValueError("model exploded on purpose")
        return inputs[0]


class AbortModel:
    """Calls ``os.abort()`` (SIGABRT) on its first call, like a crashing native runtime."""

    def __call__(self, *inputs: Any) -> Any:
        os.abort()


class SelfKillModel:
    """Sends itself SIGKILL on its first call, as the out-of-memory killer would."""

    def __call__(self, *inputs: Any) -> Any:
        os.kill(os.getpid(), signal.SIGKILL)


class ExitModel:
    """Calls ``os._exit(code)`` while loading, like a library that exits the process."""

    def __init__(self, code: int = 3):
        os._exit(code)


class HangModel:
    """Never returns from a call (``on="call"``) or from loading (``on="load"``)."""

    def __init__(self, on: str = "call", pid_file: Optional[str] = None):
        if pid_file:
            _append(pid_file, f"worker {os.getpid()}")
        if on == "load":
            time.sleep(3600)

    def __call__(self, *inputs: Any) -> Any:
        time.sleep(3600)


class SpawnChildThenHang:
    """Starts a child process of its own when built, writes both pids to ``pid_file``, then
    hangs on the first call: a timeout must kill the child too."""

    def __init__(self, pid_file: str):
        self.child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        _append(pid_file, f"worker {os.getpid()}")
        _append(pid_file, f"child {self.child.pid}")

    def __call__(self, *inputs: Any) -> Any:
        time.sleep(3600)


class PoolModel:
    """Uses a ``multiprocessing`` pool of its own when built (as compilers and data loaders do)."""

    def __init__(self) -> None:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(1) as pool:
            self.value = pool.apply(abs, (-3,))

    def __call__(self, *inputs: Any) -> Any:
        time.sleep(0.005)
        return self.value


class MemoryHog:
    """Holds ``mb`` MiB of touched memory from the moment it is built."""

    def __init__(self, mb: int = 200):
        self.block = bytearray(mb * 1024 * 1024)
        # bytearray zero pages may not be resident until written: touch one byte per page.
        for i in range(0, len(self.block), 4096):
            self.block[i] = 1

    def __call__(self, *inputs: Any) -> Any:
        time.sleep(0.005)
        return inputs[0]


class EnvRecordingModel:
    """Sleeps ``ms`` per call; when built, appends what it sees of the environment to ``log``."""

    def __init__(self, log: str, ms: float = 5.0, names: tuple = ("NEURON_RT_VISIBLE_CORES", "NP_TEST_MARK")):
        seen = " ".join(f"{n}={os.environ.get(n, '')}" for n in names)
        _append(log, f"load pid={os.getpid()} {seen}")
        self.seconds = ms / 1000.0

    def __call__(self, *inputs: Any) -> Any:
        time.sleep(self.seconds)
        return inputs[0]


class TorchThreadsRecordingModel:
    """Records, from the thread that calls it, how many threads torch would use for an operator."""

    def __init__(self, log: str):
        self.log = log
        self.seen: set = set()

    def __call__(self, *inputs: Any) -> Any:
        import torch

        marker = (threading.get_ident(), torch.get_num_threads())
        if marker not in self.seen:
            self.seen.add(marker)
            _append(self.log, f"threads={marker[1]}")
        time.sleep(0.002)
        return inputs[0]


# ---- a model and callbacks that check they are called in the right order -------------------


class CallbackCheckingModel:
    """Fails unless ``env_setup_fn`` ran before it was built, ``setup_fn`` ran after, and its
    input went through ``preprocess_fn``; its output is marked for ``postprocess_fn`` to check."""

    def __init__(self) -> None:
        if "NP_TEST_ENV_SETUP" not in os.environ:
            raise RuntimeError("env_setup_fn did not run before the model was built")
        _log("load")
        self.setup_done = False

    def __call__(self, x: Any) -> Any:
        if not self.setup_done:
            raise RuntimeError("setup_fn did not run before the first call")
        if not (isinstance(x, tuple) and x[0] == "preprocessed"):
            raise RuntimeError(f"input did not go through preprocess_fn: {x!r}")
        time.sleep(0.002)
        return ("model-output", x[1])


def env_setup_fn(copy_idx: int, config: dict) -> None:
    os.environ["NP_TEST_ENV_SETUP"] = str(copy_idx)
    _log(f"env_setup copy={copy_idx} batch={config['batch_size']} workers={config['workers_per_model']}")


def setup_fn(copy_idx: int, config: dict, model: Any) -> None:
    model.setup_done = True
    _log(f"setup copy={copy_idx} model={type(model).__name__}")


def preprocess_fn(value: int) -> Any:
    _log_once("preprocess")
    return (("preprocessed", value),)  # a tuple: spread as the model's positional arguments


def postprocess_fn(output: Any) -> None:
    if not (isinstance(output, tuple) and output[0] == "model-output"):
        raise RuntimeError(f"postprocess_fn got something else than the model output: {output!r}")
    _log_once("postprocess")


def sleepy_load_fn(path: str, device_id: int) -> SleepModel:
    """A ``load_fn`` for ``neuronperf.benchmark``: the file holds the milliseconds per call."""
    with open(path) as f:
        ms = float(f.read().strip())
    return SleepModel(ms)


def torch_mlp(hidden: int = 64) -> Any:
    """A small real torch model."""
    import torch

    return torch.nn.Sequential(torch.nn.Linear(32, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 8)).eval()


_logged: set = set()
# Held from the check until the line is written: with two threads per copy, a thread that only
# marked "preprocess" as logged could otherwise be overtaken by the other thread's "postprocess".
_logged_lock = threading.Lock()


def _log(line: str) -> None:
    path = os.environ.get("NP_TEST_LOG")
    if path:
        _append(path, f"{line} pid={os.getpid()}")


def _log_once(line: str) -> None:
    with _logged_lock:
        if line not in _logged:
            _logged.add(line)
            _log(line)


def _append(path: str, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")


class ColdStartModel:
    """Its first ``cold_calls`` calls take ``cold_ms`` (lazy compilation, cold caches), the
    rest ``warm_ms``; the start time (perf_counter_ns) of each cold call is appended to ``log``."""

    def __init__(self, log: str, cold_calls: int = 5, cold_ms: float = 60.0, warm_ms: float = 2.0):
        self.log, self.cold_calls, self.cold_s, self.warm_s = log, cold_calls, cold_ms / 1000, warm_ms / 1000
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, *inputs: Any) -> Any:
        started = time.perf_counter_ns()
        with self.lock:
            self.calls += 1
            cold = self.calls <= self.cold_calls
        if cold:
            _append(self.log, str(started))
        time.sleep(self.cold_s if cold else self.warm_s)
        return inputs[0] if inputs else None


class StallOnceModel:
    """Sleeps ``ms`` per call, except the ``nth`` call that follows an idle gap of at least
    ``gap_ms``, which sleeps ``stall_ms``: in the server scenario at a low rate every call of the
    window follows a gap, while warm-up and keep-warm calls run back to back, so the stall falls
    inside the measured window, on a known request."""

    def __init__(self, ms: float = 2.0, stall_ms: float = 200.0, nth: int = 5, gap_ms: float = 5.0):
        self.seconds, self.stall, self.nth, self.gap = ms / 1000, stall_ms / 1000, nth, gap_ms / 1000
        self.after_gap = 0
        self.last_end = time.perf_counter()

    def __call__(self, *inputs: Any) -> Any:
        stall = False
        if time.perf_counter() - self.last_end >= self.gap:
            self.after_gap += 1
            stall = self.after_gap == self.nth
        time.sleep(self.stall if stall else self.seconds)
        self.last_end = time.perf_counter()
        return inputs[0] if inputs else None


class EnvCheckingModel:
    """Refuses to load unless ``present`` is set and ``absent`` is not in its process's
    environment: a worker must see the driver's environment as it is now."""

    def __init__(self, present: str, absent: str):
        if os.environ.get(present) is None or os.environ.get(absent) is not None:
            raise RuntimeError(f"worker environment: {present}={os.environ.get(present)!r}, "
                               f"{absent}={os.environ.get(absent)!r}")

    def __call__(self, *inputs: Any) -> Any:
        return inputs[0] if inputs else None
