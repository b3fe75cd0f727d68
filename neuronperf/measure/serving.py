"""The serving scenario inside the worker processes: one virtual FIFO queue per entry.

Requests carry no data (every call takes the entry's fixed input tensors, padded to the compiled
batch size), and their arrival times are a deterministic function of (rate, arrival, seed)
(``neuronperf.stats.serving.schedule_offsets_ns``). So the queue needs no generator: every
process computes the same schedule, and the queue is one shared integer, the index of its head
(the oldest request not yet taken), in shared memory under one cross-process lock. A measuring
thread that is free takes the lock, claims the head request (for a batch, every request that
will have arrived when the call starts, up to ``batch_size``), releases the lock, waits until
the batch is due, and calls the model. Claims are made in the order threads become free, so each
batch goes to the server free first: the queue of every copy's threads behaves as one FIFO queue
with ``n_models x workers_per_model`` servers (M/D/c for a constant-time model), exactly.

Why not a generator process putting requests into a real queue: a generator is one more process
on the machine, and when it is late (it shares the cores with the model) requests enter the queue
late and their wait is hidden unless every time is taken from the schedule anyway; every request
also costs a pickle and a pipe write on one side and a read on the other. Here nothing can fall
behind: a request "arrives" at its scheduled time whatever happens, and the only delay the harness
adds is how late a free thread starts a call that is due (``generator_lag``: the lock, the wake-up
after a sleep), which is recorded for every call. ``benchmarks/serving_generators.py`` measures
both designs side by side.

Per call, a thread records five int64 (first request, requests, start, end, and when the batch
was due) into buffers
allocated before the window and grown between calls, never inside one; nothing is allocated per
request.
"""

from __future__ import annotations

import ctypes
import sys
import time
from array import array
from bisect import bisect_right
from typing import Any, Callable

#: Slots of the shared state array.
HEAD, STOP = 0, 1
_STATE_SLOTS = 4
#: A thread that waits for a due time sleeps until this long before it, then spins: a sleeping
#: thread wakes up tens of microseconds late, a spinning one within a microsecond.
SPIN_NS = 200_000
#: Call records grow by chunks of this many calls at most.
MAX_CHUNK = 1 << 16


class SharedQueue:
    """The queue's head index and a stop flag in shared memory, and the lock that guards them.

    Made by the supervisor from its multiprocessing context and passed to every copy's process
    when it starts (both travel by file descriptor to spawned and forkserver children)."""

    def __init__(self, ctx: Any):
        self.state = ctx.RawArray(ctypes.c_int64, _STATE_SLOTS)
        self.lock = ctx.Lock()

    def reset(self) -> None:
        for i in range(_STATE_SLOTS):
            self.state[i] = 0

    @property
    def head(self) -> int:
        """How many requests have been taken (read without the lock: a monitor's snapshot)."""
        return int(self.state[HEAD])

    def stop(self) -> None:
        """No thread takes another request (what is taken is still served)."""
        self.state[STOP] = 1

    @property
    def stopped(self) -> bool:
        return bool(self.state[STOP])


def _buffer(size: int) -> array[int]:
    return array("q", bytes(8 * size))


def quiet_timer_slack() -> None:
    """Ask Linux to wake this thread from sleeps on time (timer slack 1 ns instead of 50 us);
    nothing elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK
    except (OSError, AttributeError):
        return


class Server:
    """One measuring thread's serving loop over the shared queue (``serve``), and its records."""

    def __init__(self, queue: SharedQueue, arrivals_ns: array[int], batch_size: int, max_delay_ns: int,
                 spin_ns: int = SPIN_NS):
        self.queue = queue
        self.arrivals = arrivals_ns
        self.batch = batch_size
        self.delay = max_delay_ns
        self.spin_ns = spin_ns
        self.chunks: list[tuple[array[int], int]] = []

    def serve(self, call: Callable[[], Any], last_claim_ns: int) -> None:
        """Serve requests until the schedule is exhausted, the queue is stopped, or
        ``last_claim_ns`` passes (then requests left are not served)."""
        perf, sleep = time.perf_counter_ns, time.sleep
        acquire, release = self.queue.lock.acquire, self.queue.lock.release
        state, arrivals, n = self.queue.state, self.arrivals, len(self.arrivals)
        batch, delay, spin = self.batch, self.delay, self.spin_ns
        size = min(MAX_CHUNK, max(16, n))
        # One flat buffer per chunk: [first, count, start, end, due] per call.
        records, i = _buffer(5 * size), 0
        while True:
            acquire()
            head = state[HEAD]
            if head >= n or state[STOP]:
                release()
                break
            now = perf()
            if now > last_claim_ns:
                state[STOP] = 1
                release()
                break
            ready = arrivals[head]
            if batch == 1:
                k = 1
            else:
                if delay:
                    last = head + batch - 1
                    due = ready + delay
                    ready = arrivals[last] if last < n and arrivals[last] < due else due
                start = ready if ready > now else now
                k = bisect_right(arrivals, start, head, min(head + batch, n)) - head
            state[HEAD] = head + k
            release()
            wait = ready - perf()
            if wait > spin:
                sleep((wait - spin) / 1e9)
            while perf() < ready:
                pass
            t0 = perf()
            call()
            t1 = perf()
            if i == size:
                self.chunks.append((records, i))
                records, i = _buffer(5 * size), 0
            j = 5 * i
            records[j] = head
            records[j + 1] = k
            records[j + 2] = t0
            records[j + 3] = t1
            records[j + 4] = ready
            i += 1
        self.chunks.append((records, i))

    def records(self) -> Any:
        """The calls as a (calls, 5) int64 numpy array: first, count, start, end, due."""
        import numpy as np

        parts = [np.frombuffer(r, dtype=np.int64)[: 5 * k].reshape(k, 5) for r, k in self.chunks]
        return np.concatenate(parts) if parts else np.zeros((0, 5), dtype=np.int64)


def arrivals_buffer(arrivals_ns: Any) -> array[int]:
    """The schedule as an ``array('q')``: indexing it gives Python ints, several times faster in
    the serving loop than numpy scalars."""
    out = array("q")
    out.frombytes(arrivals_ns.astype("int64").tobytes())
    return out
