"""The main function of a worker process: one model copy driven by ``workers_per_model`` threads.

The supervisor starts this with the pickled task; the worker then speaks only the JSON messages
of ``neuronperf.protocol``. Order inside the worker: the parent's environment and the copy's
device pinning into ``os.environ`` -> ``env_setup_fn`` -> load (timed) -> ``setup_fn`` ->
per-thread inputs -> the measuring threads start. Each measuring thread lives for the whole
entry: it warms up, then keeps calling the model (unmeasured) until the shared window opens, so
no copy cools down while the others load or warm up, and then times every call that starts
inside the window. Warm-up and keep-warm calls run on the very OS thread that measures, so its
per-thread state (OpenMP team, allocator arenas, CUDA stream) is warm when the window opens.

While the window is open nothing else in the worker runs Python: the main thread blocks on the
parent's pipe and the threads' completion (the parent samples CPU and memory from outside), and
the parent watch thread is stopped. Timings go into preallocated int64 buffers (16 bytes per
call) and straight to the samples file named by the parent. Any exception becomes an Error
message with the phase it happened in.

This module is preloaded by the forkserver, so it must stay cheap to import and import no
framework at module level.
"""

from __future__ import annotations

import contextlib
import copy
import faulthandler
import os
import pickle
import signal
import sys
import threading
import time
from array import array
from multiprocessing.connection import wait
from typing import Any, Callable, Optional

from neuronperf.backends.base import ThreadDevice
from neuronperf.errors import ProtocolError
from neuronperf.measure.protocol import Error, Go, Loaded, Ready, Samples, ThreadTotals, recv, send
from neuronperf.measure.task import BenchmarkTask, call_args, load_backend, worker_config
from neuronperf.results.samples import write_copy_samples
from neuronperf.util import processes as procutil

#: Exit status of a worker that stopped itself because its parent disappeared.
EXIT_PARENT_GONE = 70
#: The variable that holds each measuring thread's share of the CPU cores, for backends that
#: size their own thread pools (onnxruntime) before the model loads; a user's own value is kept.
CPU_THREADS_VARIABLE = "NEURONPERF_CPU_THREADS"
#: Timing buffers hold this many calls at least, and grow by chunks of at most MAX_CHUNK calls
#: (a chunk is allocated between two calls, never inside one).
MIN_CHUNK = 1024
MAX_CHUNK = 1 << 22


def worker_main(
    payload: bytes,
    copy_idx: int,
    conn: Any,
    parent_env: dict[str, str],
    device_env: dict[str, str],
    parent_pid: int,
    queue: Any = None,
) -> None:
    """Run one model copy; every outcome, including failure, is reported over ``conn``.
    ``queue``: the entry's shared request queue in the server scenario (``serving.SharedQueue``)."""
    procutil.become_group_leader()
    # Ctrl-C belongs to the parent, which stops the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    faulthandler.enable(all_threads=False)  # a segfaulting model leaves a Python stack on stderr
    stop_watching = procutil.exit_with_parent(parent_pid, EXIT_PARENT_GONE)
    worker = _Worker(copy_idx, conn, stop_watching, queue)
    try:
        worker.run(payload, parent_env, device_env)
    except BaseException as e:  # the model's own failure, whatever it is, goes to the parent
        with contextlib.suppress(OSError):
            send(conn, Error(phase=worker.phase, message=describe_exception(e)))
    finally:
        conn.close()


def describe_exception(e: BaseException) -> str:
    """``ValueError: the message`` (the type alone when the message is empty)."""
    text = str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


class _Worker:
    def __init__(self, copy_idx: int, conn: Any, stop_watching: Callable[[], None], queue: Any = None):
        self.copy_idx = copy_idx
        self.conn = conn
        self.stop_watching = stop_watching
        self.queue = queue
        self.phase = "starting"

    def run(self, payload: bytes, parent_env: dict[str, str], device_env: dict[str, str]) -> None:
        # A forkserver child inherits the server's environment, which may be older than the
        # parent's: bring it up to date, then pin this copy's devices before any runtime starts.
        os.environ.update(parent_env)
        os.environ.update(device_env)
        self.phase = "unpickling the task"
        task: BenchmarkTask = pickle.loads(payload)
        backend = load_backend(task.device_backend) if task.device_backend else None
        config = worker_config(task, self.copy_idx, device_env)
        cpu_share = _share_cpu_cores(task)

        if task.env_setup_fn is not None:
            self.phase = "running env_setup_fn"
            task.env_setup_fn(self.copy_idx, config)
        self.phase = "loading"
        t0 = time.perf_counter_ns()
        model = task.loader.load(self.copy_idx)
        load_ms = (time.perf_counter_ns() - t0) / 1e6
        send(self.conn, Loaded(load_ms=load_ms))
        if backend is not None and cpu_share is not None:
            backend.use_cpu_threads(cpu_share)
        if task.setup_fn is not None:
            self.phase = "running setup_fn"
            task.setup_fn(self.copy_idx, config, model)

        self.phase = "preparing inputs"
        n_threads = task.workers_per_model
        inputs = _thread_inputs(task, n_threads)
        thread_device: Callable[[], ThreadDevice] = (
            backend.measuring_threads(task.device_type, model) if backend is not None else ThreadDevice
        )
        shared = _Shared(self.queue if task.serving is not None else None)
        threads = [
            _MeasuringThread(t, _caller(model, task), inputs[t], thread_device, task.settings.warmup_calls,
                             task.settings.warmup_s, task.settings.duration, shared, task.new_tokens)
            for t in range(n_threads)
        ]

        self.phase = "warming up"
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.warmed.wait()
        shared.raise_first_error(self)
        warm_calls = sum(t.warmup_calls for t in threads)
        warmup_ms = sum(t.warmup_ns for t in threads) / warm_calls / 1e6 if warm_calls else 0.0
        fastest = [t.fastest_ns for t in threads if t.warmup_calls]
        send(self.conn, Ready(warmup_ms=warmup_ms, warmup_calls=warm_calls,
                              warmup_fastest_ms=min(fastest) / 1e6 if fastest else 0.0))

        self.phase = "waiting for the start signal"
        go = recv(self.conn)
        received_ns = time.perf_counter_ns()
        if not isinstance(go, Go):
            raise ProtocolError(f"expected a 'go' message, got {go.TYPE!r}")
        if len(go.quotas) != n_threads or len(go.minimums) != n_threads:
            raise ProtocolError(
                f"'go' has {len(go.quotas)} quotas and {len(go.minimums)} minimums for {n_threads} threads")

        if task.serving is not None:
            self.phase = "preparing the arrival schedule"
            shared.prepare_serving(task, go)
        self.phase = "measuring"
        self.stop_watching()  # from here the pipe to the parent tells us if it is gone
        shared.open(go)
        self._wait_for(threads, shared)
        shared.raise_first_error(self)

        self.phase = "writing samples"
        # Read after the window, never sampled during it: nothing extra runs while measuring.
        mem_peak = backend.device_memory_peak(task.device_type) if backend is not None else None
        write_copy_samples(go.samples_path, [t.starts for t in threads], [t.latencies for t in threads],
                           [t.tokens for t in threads] if task.new_tokens is not None else None,
                           [t.requests for t in threads] if task.serving is not None else None)
        send(self.conn, Samples(
            threads=tuple(t.totals() for t in threads),
            load_ms=load_ms,
            warmup_ms=warmup_ms,
            late_ns=max(0, received_ns - go.start_ns),
            device_mem_peak_bytes=mem_peak,
        ))

    def _wait_for(self, threads: list[_MeasuringThread], shared: _Shared) -> None:
        """Block until every measuring thread is done, without waking up in between; if the
        parent disappears meanwhile (its end of the pipe closes), stop everything and exit."""
        pending = len(threads)
        while pending:
            ready = wait([self.conn, shared.done_r])
            if self.conn in ready:
                try:
                    message = recv(self.conn)
                except (EOFError, OSError):
                    procutil.kill_children()
                    os._exit(EXIT_PARENT_GONE)
                raise ProtocolError(f"unexpected {message.TYPE!r} message while measuring")
            pending -= len(os.read(shared.done_r, pending))
        for thread in threads:
            thread.join()


# ---- calling the model -------------------------------------------------------------------------


class _Shared:
    """What a copy's measuring threads share: the window, the first error, a stop flag, and in
    the server scenario the entry's request queue and its arrival schedule."""

    def __init__(self, queue: Any = None) -> None:
        self.go_event = threading.Event()
        self.stop_event = threading.Event()
        self.go: Optional[Go] = None
        self.errors: list[tuple[BaseException, str]] = []
        self.lock = threading.Lock()
        # Each thread writes one byte here when it finishes, which wakes the main thread.
        self.done_r, self.done_w = os.pipe()
        self.queue = queue
        self.arrivals: Any = None  # the schedule as absolute perf_counter_ns, an array('q')
        self.batch_size = 1
        self.max_delay_ns = 0
        self.spin_ns = 0

    def prepare_serving(self, task: BenchmarkTask, go: Go) -> None:
        """Compute the window's schedule (every copy computes the same one from the task's
        arrival and seed and the rate and request count in ``go``)."""
        from neuronperf.measure.serving import SPIN_NS, arrivals_buffer
        from neuronperf.stats.serving import schedule_offsets_ns

        serving = task.serving
        if serving is None or self.queue is None or go.rate is None:
            raise ProtocolError("a server-scenario task needs the shared queue and a 'go' with a rate")
        offsets = schedule_offsets_ns(go.rate, go.requests, serving.arrival, serving.seed)
        self.arrivals = arrivals_buffer(go.start_ns + offsets)
        self.batch_size = task.batch_size
        self.max_delay_ns = int(round(serving.max_queue_delay_ms * 1e6))
        # A spinning thread holds the interpreter lock, which its siblings in this process would
        # wait for: only a copy's single thread spins, several threads sleep to the due time.
        self.spin_ns = SPIN_NS if task.workers_per_model == 1 else 0

    def open(self, go: Go) -> None:
        self.go = go
        self.go_event.set()

    def fail(self, error: BaseException, phase: str) -> None:
        with self.lock:
            self.errors.append((error, phase))
        self.stop_event.set()
        self.go_event.set()
        if self.queue is not None:
            self.queue.stop()  # the other copies' threads stop taking requests too

    def raise_first_error(self, worker: _Worker) -> None:
        """Raise the first thread's error, the worker's phase then saying where it happened."""
        if self.errors:
            error, worker.phase = self.errors[0]
            raise error


def _caller(model: Callable[..., Any], task: BenchmarkTask) -> _Caller:
    """Each thread's own caller (a generation caller holds the thread's warm-up clock)."""
    if task.new_tokens is not None:
        return _GenerateCaller(model, task.new_tokens)
    return _Caller(model, task.preprocess_fn, task.postprocess_fn)


class _Caller:
    """Calls the model the way it is timed: preprocess -> model -> device sync -> postprocess."""

    def __init__(self, model: Callable[..., Any], preprocess: Optional[Callable[..., Any]],
                 postprocess: Optional[Callable[..., Any]]):
        self.model = model
        self.preprocess = preprocess
        self.postprocess = postprocess

    def once(self, args: tuple[Any, ...], sync: Optional[Callable[[], None]]) -> None:
        """One untimed call, exactly as a timed one runs (warm-up and keep-warm)."""
        pre, post = self.preprocess, self.postprocess
        out = self.model(*(call_args(pre(*args)) if pre is not None else args))
        if sync is not None:
            sync()
        if post is not None:
            post(out)


class GenerationMismatch(RuntimeError):
    """A generation request produced another number of tokens than ``new_tokens``."""


class TokenClock:
    """Records when each token of a generation request exists: the backend's adapter calls it
    once per decoding step, as soon as that step's tokens are on the host (never for the prompt).

    The stamps go into a preallocated int64 buffer, grown (doubled) only when full, after the
    stamp was read, so a growth never delays the token it records."""

    __slots__ = ("stamps", "n", "_perf")

    def __init__(self, capacity: int):
        self.stamps = _buffer(max(1, capacity))
        self.n = 0
        self._perf = time.perf_counter_ns

    def __call__(self) -> None:
        stamp = self._perf()
        n = self.n
        if n == len(self.stamps):
            self.stamps.extend(_buffer(len(self.stamps)))
        self.stamps[n] = stamp
        self.n = n + 1


def check_tokens(made: int, wanted: int) -> None:
    """Raise ``GenerationMismatch`` unless a request made exactly ``wanted`` tokens."""
    if made != wanted:
        raise GenerationMismatch(
            f"a request generated {made} tokens where generate.new_tokens asks for {wanted}: the "
            "model's generate must make exactly new_tokens tokens per request (min_new_tokens = "
            "max_new_tokens, no stop at an end-of-sequence token) and report each one"
        )


class _GenerateCaller(_Caller):
    """Calls a generation model as ``model(*inputs, on_token=clock)``; an untimed request (warm-up,
    keep-warm) runs exactly as a timed one, its tokens counted on a clock of its own."""

    def __init__(self, model: Callable[..., Any], new_tokens: int):
        super().__init__(model, None, None)
        self.new_tokens = new_tokens
        self.untimed_clock = TokenClock(new_tokens)

    def once(self, args: tuple[Any, ...], sync: Optional[Callable[[], None]]) -> None:
        clock = self.untimed_clock
        clock.n = 0
        self.model(*args, on_token=clock)
        if sync is not None:
            sync()
        check_tokens(clock.n, self.new_tokens)


class _MeasuringThread(threading.Thread):
    """One worker thread: warm-up, keep-warm until the window opens, then the measured calls."""

    def __init__(self, idx: int, caller: _Caller, args: tuple[Any, ...], device: Callable[[], ThreadDevice],
                 warmup_calls: int, warmup_s: float, duration_s: float, shared: _Shared,
                 new_tokens: Optional[int] = None):
        super().__init__(name=f"neuronperf-measure-{idx}", daemon=True)
        self.new_tokens = new_tokens
        self.idx = idx
        self.caller = caller
        self.args = args
        self.device = device
        self.want_warm_calls = warmup_calls
        self.want_warm_s = warmup_s
        self.duration_s = duration_s
        self.shared = shared
        self.warmed = threading.Event()
        self.warmup_calls = 0
        self.warmup_ns = 0
        self.fastest_ns = 0
        self.starts: Any = None
        self.latencies: Any = None
        self.tokens: Any = None  # a generation thread's token stamps, new_tokens per request
        #: In the server scenario, per call: first request, requests served, when it was due.
        self.requests: Any = None
        self.infer_ns = self.preprocess_ns = self.postprocess_ns = 0

    def run(self) -> None:
        phase = "preparing a measuring thread"
        try:
            device = self.device()
            with device.context():
                phase = "warming up"
                self._warm_up(device.sync)
                self.warmed.set()
                phase = "keeping warm until the window opens"
                self._keep_warm(device.sync)
                go = self.shared.go
                if go is not None and not self.shared.stop_event.is_set():
                    phase = "measuring"
                    if self.shared.arrivals is not None:
                        phase = "serving"
                        self._serve(go, device.sync)
                    elif self.new_tokens is None:
                        self._measure(go, device.sync)
                    else:
                        self._measure_generate(go, device.sync, self.new_tokens)
        except BaseException as e:  # re-raised in the worker's main thread
            self.shared.fail(e, phase)
        finally:
            self.warmed.set()
            os.write(self.shared.done_w, b"x")

    def totals(self) -> ThreadTotals:
        return ThreadTotals(
            thread_idx=self.idx, calls=len(self.starts) if self.starts is not None else 0,
            infer_ns_total=self.infer_ns, preprocess_ns_total=self.preprocess_ns,
            postprocess_ns_total=self.postprocess_ns,
        )

    def _warm_up(self, sync: Optional[Callable[[], None]]) -> None:
        """At least ``warmup_calls`` calls and at least ``warmup_s`` seconds."""
        perf, once, args = time.perf_counter_ns, self.caller.once, self.args
        until = perf() + int(self.want_warm_s * 1e9)
        calls, total, fastest = 0, 0, sys.maxsize
        while calls < self.want_warm_calls or perf() < until:
            t0 = perf()
            once(args, sync)
            d = perf() - t0
            calls, total, fastest = calls + 1, total + d, min(fastest, d)
        self.warmup_calls, self.warmup_ns = calls, total
        self.fastest_ns = fastest if calls else 0

    def _keep_warm(self, sync: Optional[Callable[[], None]]) -> None:
        """Keep calling until the window opens, so that this thread is as warm as the others."""
        perf, once, args, shared = time.perf_counter_ns, self.caller.once, self.args, self.shared
        while not shared.go_event.is_set():
            once(args, sync)
        go = shared.go
        if go is None:
            return
        if shared.arrivals is not None:
            # Serving: no call may still be running when the first request is due, so stop
            # when the next one would end after the window opens.
            last = 0
            while perf() + last < go.start_ns and not shared.stop_event.is_set():
                t0 = perf()
                once(args, sync)
                last = perf() - t0
            return
        while perf() < go.start_ns and not shared.stop_event.is_set():
            once(args, sync)

    def _serve(self, go: Go, sync: Optional[Callable[[], None]]) -> None:
        """Serve the entry's queue (``serving.Server``) until its schedule is done, the queue is
        stopped or ``go.last_ns`` comes; a call runs exactly as a timed call of the closed loop."""
        import numpy as np

        from neuronperf.measure.serving import Server, quiet_timer_slack

        quiet_timer_slack()
        shared = self.shared
        server = Server(shared.queue, shared.arrivals, shared.batch_size, shared.max_delay_ns, shared.spin_ns)
        model, pre, post, args = self.caller.model, self.caller.preprocess, self.caller.postprocess, self.args
        clock: Optional[TokenClock] = None
        call: Callable[[], Any]
        if self.new_tokens is not None:
            new_tokens = self.new_tokens
            clock = TokenClock(min(len(shared.arrivals), 1 << 16) * new_tokens)

            def call() -> None:
                before = clock.n
                model(*args, on_token=clock)
                if sync is not None:
                    sync()
                check_tokens(clock.n - before, new_tokens)
        elif pre is None and post is None and sync is None:
            def call() -> Any:
                return model(*args)
        else:
            def call() -> None:
                out = model(*(call_args(pre(*args)) if pre is not None else args))
                if sync is not None:
                    sync()
                if post is not None:
                    post(out)
        server.serve(call, go.last_ns)
        records = server.records()
        self.starts = np.ascontiguousarray(records[:, 2])
        self.latencies = records[:, 3] - records[:, 2]
        self.requests = (np.ascontiguousarray(records[:, 0]), np.ascontiguousarray(records[:, 1]),
                         np.ascontiguousarray(records[:, 4]))
        self.infer_ns = int(self.latencies.sum())
        if clock is not None:
            self.tokens = np.frombuffer(clock.stamps, dtype=np.int64)[: clock.n].copy()

    def _measure(self, go: Go, sync: Optional[Callable[[], None]]) -> None:
        """Time every call that starts in [go.start_ns, go.end_ns), at most the quota; past
        end_ns, keep timing until the thread's minimum is reached or last_ns comes."""

        quota = go.quotas[self.idx]
        limit = sys.maxsize if quota is None else quota
        least, last_ns = go.minimums[self.idx], go.last_ns
        model, pre, post, args = self.caller.model, self.caller.preprocess, self.caller.postprocess, self.args
        perf, stopped, end_ns = time.perf_counter_ns, self.shared.stop_event.is_set, go.end_ns
        size = _chunk_size(go, quota, least, self.fastest_ns, MIN_CHUNK)
        chunks: list[tuple[array[int], array[int], int]] = []
        starts, lats = _buffer(size), _buffer(size)
        i = n = 0
        infer = pre_total = post_total = 0
        if pre is None and post is None and sync is None:
            # The common case, kept lean: the loop's own cost between calls lowers the throughput
            # of fast models, and what sits inside t0..t1 inflates their latency.
            while n < limit and not stopped():
                t0 = perf()
                if t0 >= end_ns and (n >= least or t0 >= last_ns):
                    break
                model(*args)
                t1 = perf()
                if i == size:
                    chunks.append((starts, lats, i))
                    starts, lats, i = _buffer(size), _buffer(size), 0
                starts[i] = t0
                lats[i] = t1 - t0
                i += 1
                n += 1
        else:
            while n < limit and not stopped():
                t0 = perf()
                if t0 >= end_ns and (n >= least or t0 >= last_ns):
                    break
                if pre is None:
                    t1 = t0
                    out = model(*args)
                else:
                    call = call_args(pre(*args))
                    t1 = perf()
                    out = model(*call)
                if sync is not None:
                    sync()
                t2 = perf()
                if post is None:
                    t3 = t2
                else:
                    post(out)
                    t3 = perf()
                if i == size:
                    chunks.append((starts, lats, i))
                    starts, lats, i = _buffer(size), _buffer(size), 0
                starts[i] = t0
                lats[i] = t3 - t0
                pre_total += t1 - t0
                infer += t2 - t1
                post_total += t3 - t2
                i += 1
                n += 1
        chunks.append((starts, lats, i))
        self.starts, self.latencies = _joined(chunks)
        if pre is None and post is None and sync is None:
            infer = int(self.latencies.sum())
        self.infer_ns, self.preprocess_ns, self.postprocess_ns = infer, pre_total, post_total

    def _measure_generate(self, go: Go, sync: Optional[Callable[[], None]], new_tokens: int) -> None:
        """Time every request that starts in [go.start_ns, go.end_ns), at most the quota (and
        past end_ns up to the minimum, as ``_measure`` does), and when each of its tokens existed
        (the model calls the clock once per token)."""
        import numpy as np

        quota = go.quotas[self.idx]
        limit = sys.maxsize if quota is None else quota
        least, last_ns = go.minimums[self.idx], go.last_ns
        model, args = self.caller.model, self.args
        perf, stopped, end_ns = time.perf_counter_ns, self.shared.stop_event.is_set, go.end_ns
        # Requests are slow, so far fewer of them fit a window than calls of a forward pass.
        size = _chunk_size(go, quota, least, self.fastest_ns, 64)
        clock = TokenClock(min(size * new_tokens, 1 << 20))
        starts, lats = _buffer(size), _buffer(size)
        chunks: list[tuple[array[int], array[int], int]] = []
        i = n = 0
        while n < limit and not stopped():
            t0 = perf()
            if t0 >= end_ns and (n >= least or t0 >= last_ns):
                break
            before = clock.n
            model(*args, on_token=clock)
            if sync is not None:
                sync()
            t1 = perf()
            check_tokens(clock.n - before, new_tokens)
            if i == size:
                chunks.append((starts, lats, i))
                starts, lats, i = _buffer(size), _buffer(size), 0
            starts[i] = t0
            lats[i] = t1 - t0
            i += 1
            n += 1
        chunks.append((starts, lats, i))
        self.starts, self.latencies = _joined(chunks)
        self.tokens = np.frombuffer(clock.stamps, dtype=np.int64)[: clock.n].copy()
        self.infer_ns = int(self.latencies.sum())


def _buffer(size: int) -> array[int]:
    return array("q", bytes(8 * size))


def _chunk_size(go: Go, quota: Optional[int], minimum: int, fastest_ns: int, least: int) -> int:
    """Calls per timing chunk: the calls the window holds at the warm-up's fastest pace, a
    quarter more, at least ``least``, the quota and the minimum, at most ``MAX_CHUNK``."""
    expected = (go.end_ns - go.start_ns) // max(1, fastest_ns) + 16
    return int(min(MAX_CHUNK, max(least, expected + expected // 4, minimum, 0 if quota is None else quota)))


def _joined(chunks: list[tuple[array[int], array[int], int]]) -> tuple[Any, Any]:
    """The filled part of every chunk, as one int64 array of starts and one of latencies."""
    import numpy as np

    starts = np.concatenate([np.frombuffer(s, dtype=np.int64)[:k] for s, _, k in chunks])
    latencies = np.concatenate([np.frombuffer(lat, dtype=np.int64)[:k] for _, lat, k in chunks])
    return starts, latencies


# ---- CPU shares and inputs -----------------------------------------------------------------------


def _share_cpu_cores(task: BenchmarkTask) -> Optional[int]:
    """On CPU, give each measuring thread an equal share of the cores for the model's operators.

    By default every copy's framework would use every core for each call, so n copies x m threads
    oversubscribe the machine n x m times, and OpenMP's spinning threads then measure each other
    (seen here: 2 copies of a small MLP on 2 cores, p99 16 ms for a 20 us call, throughput
    swinging 131% between seconds). The share goes into NEURONPERF_CPU_THREADS for backends that
    size their own pools (onnxruntime) before the model loads; the backend applies it to its
    framework (torch) right after loading. None off the CPU.
    """
    if task.device_type != "cpu":
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    os.environ.setdefault(CPU_THREADS_VARIABLE, str(max(1, cores // (task.n_models * task.workers_per_model))))
    return int(os.environ[CPU_THREADS_VARIABLE])


def _thread_inputs(task: BenchmarkTask, n_threads: int) -> list[tuple[Any, ...]]:
    """Each thread gets its own inputs, so no thread waits on another's (no shared lock)."""
    if task.inputs is None:
        return [tuple(task.loader.example_inputs() or ()) for _ in range(n_threads)]
    first = call_args(task.inputs)
    return [first] + [copy.deepcopy(first) for _ in range(n_threads - 1)]
