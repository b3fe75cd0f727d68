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
message with the phase it happened in, its traceback going to the copy's log.

The worker's stdout and stderr (file descriptors 1 and 2, so C code's output too) go to the log
file the parent names, first thing, appended to: a model that prints in its forward pass never
blocks on a pipe that nobody reads, and its tracebacks stay out of the parent's progress
display. A log or samples file that cannot be written (a full disk, a link where it goes) is a
FileFailed message, not the model's error: the parent stops the sweep.

This module is preloaded by the forkserver, so it must stay cheap to import and import no
framework at module level.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import faulthandler
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from array import array
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any, Callable, Optional

from neuronperf.backends.base import ThreadDevice
from neuronperf.errors import ProtocolError, UnsafeOutputDir
from neuronperf.measure.protocol import (
    Error,
    FileFailed,
    Go,
    Loaded,
    Ready,
    Samples,
    ThreadTotals,
    recv,
    send,
)
from neuronperf.measure.task import (
    BenchmarkTask,
    call_args,
    load_backend,
    split_quota,
    worker_config,
)
from neuronperf.results.samples import write_copy_samples
from neuronperf.util import nofollow
from neuronperf.util import processes as procutil

if TYPE_CHECKING:  # imported where used: the module stays cheap for the forkserver's preload
    from neuronperf.measure.serving import Server

#: Exit status of a worker that stopped itself because its parent disappeared.
EXIT_PARENT_GONE = 70
#: The variable that holds each measuring thread's share of the CPU cores, for backends that
#: size their own thread pools (onnxruntime) before the model loads; a user's own value is kept.
CPU_THREADS_VARIABLE = "NEURONPERF_CPU_THREADS"
#: Timing buffers hold this many calls at least, and grow by chunks of at most MAX_CHUNK calls
#: (a chunk is allocated between two calls, never inside one).
MIN_CHUNK = 1024
MAX_CHUNK = 1 << 22
#: How often a measuring thread of the lean loop reads the stop event (a sibling failed, the
#: parent asked to stop): every 10 ms of calls, and at the window's end.
STOP_CHECK_NS = 10_000_000


def worker_main(
    payload: bytes,
    copy_idx: int,
    conn: Any,
    parent_env: dict[str, str],
    device_env: dict[str, str],
    parent_pid: int,
    log_path: str,
    queue: Any = None,
) -> None:
    """Run one model copy, its stdout and stderr appended to ``log_path``; every outcome,
    including failure, is reported over ``conn``. ``queue``: the entry's shared request queue
    in the server scenario (``serving.SharedQueue``)."""
    procutil.become_group_leader()
    # Ctrl-C belongs to the parent, which stops the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        try:
            redirect_output(log_path)
            # The log's first line; a disk already full fails here, before any of the model's
            # code, and stops the sweep naming the log rather than making the entry an error row.
            started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
            print(f"neuronperf: copy {copy_idx} (pid {os.getpid()}) started at {started}", flush=True)
        except (OSError, UnsafeOutputDir) as e:
            with contextlib.suppress(OSError):
                send(conn, file_failed(log_path, e))
            return
        faulthandler.enable(all_threads=False)  # a segfaulting model leaves a Python stack in the log
        stop_watching = procutil.exit_with_parent(parent_pid, EXIT_PARENT_GONE)
        worker = _Worker(copy_idx, conn, stop_watching, queue)
        try:
            worker.run(payload, parent_env, device_env)
        except BaseException as e:  # the model's own failure, whatever it is, goes to the parent
            traceback.print_exc()
            sys.stderr.flush()
            with contextlib.suppress(OSError):
                send(conn, Error(phase=worker.phase, message=describe_exception(e)))
    finally:
        conn.close()


def redirect_output(log_path: str) -> None:
    """Point file descriptors 1 and 2 (Python's and C code's stdout and stderr) at ``log_path``,
    appended to (copies of an entry share its log), opened without following links."""
    sys.stdout.flush()
    sys.stderr.flush()
    folder, name = os.path.split(os.path.abspath(log_path))
    fd = nofollow.open_file(folder, name, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def file_failed(path: str, error: BaseException) -> FileFailed:
    """The FileFailed message for a file that could not be written (``OSError``) or was refused
    (``UnsafeOutputDir``)."""
    if isinstance(error, OSError):
        return FileFailed(path=path, reason=error.strerror or str(error), errno=error.errno or 0)
    return FileFailed(path=path, reason=str(error), errno=0)


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
        # The parent's environment as it is now (not the forkserver's, which may be older), then
        # this copy's devices, before any runtime starts.
        procutil.adopt_environment(parent_env, device_env)
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
        # Each thread's share of max_infers and min_calls, as the parent splits them into Go: the
        # threads size their timing buffers from them before the window opens. (The server
        # scenario has neither: its threads' buffers are sized from the schedule, see below.)
        first = self.copy_idx * n_threads
        quotas = split_quota(task.settings.max_infers, task.n_models * n_threads)[first:first + n_threads]
        minimums = split_quota(task.settings.min_calls, task.n_models * n_threads)[first:first + n_threads]
        threads = [
            _MeasuringThread(t, _caller(model, task), inputs[t], thread_device, task.settings.warmup_calls,
                             task.settings.warmup_s, task.settings.duration, shared, task.new_tokens,
                             quota=quotas[t], minimum=minimums[t] or 0)
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
        # The copy's CPU time is read here and when its last thread stops: outside the measured
        # calls, by this thread, which is otherwise blocked while the window is open.
        cpu_from = time.process_time_ns()
        if not isinstance(go, Go):
            raise ProtocolError(f"expected a 'go' message, got {go.TYPE!r}")
        if len(go.quotas) != n_threads or len(go.minimums) != n_threads:
            raise ProtocolError(
                f"'go' has {len(go.quotas)} quotas and {len(go.minimums)} minimums for {n_threads} threads")

        if task.serving is not None:
            self.phase = "preparing the arrival schedule"
            shared.prepare_serving(task, go)
            # Each thread's record buffers, now that the schedule's length is known: before the
            # window opens, while the threads are still in their keep-warm calls.
            for thread in threads:
                thread.prepare_server()
        self.phase = "measuring"
        self.stop_watching()  # from here the pipe to the parent tells us if it is gone
        shared.open(go)
        stopped_ns, cpu_to = self._wait_for(threads, shared)
        shared.raise_first_error(self)
        for thread in threads:
            thread.collect()  # joined only now: no thread's copy is resident while others measure

        self.phase = "writing samples"
        # Read after the window, never sampled during it: nothing extra runs while measuring.
        mem_peak = backend.device_memory_peak(task.device_type) if backend is not None else None
        try:
            write_copy_samples(go.samples_path, [t.starts for t in threads], [t.latencies for t in threads],
                               [t.tokens for t in threads] if task.new_tokens is not None else None,
                               [t.requests for t in threads] if task.serving is not None else None)
        except (OSError, UnsafeOutputDir) as e:  # a full disk is the sweep's problem, not the model's
            send(self.conn, file_failed(go.samples_path, e))
            return
        send(self.conn, Samples(
            threads=tuple(t.totals() for t in threads),
            load_ms=load_ms,
            warmup_ms=warmup_ms,
            late_ns=max(0, received_ns - go.start_ns),
            cpu_ns=cpu_to - cpu_from,
            cpu_wall_ns=stopped_ns - received_ns,
            buffer_bytes=sum(t.buffer_bytes for t in threads) + shared.buffer_bytes,
            device_mem_peak_bytes=mem_peak,
        ))

    def _wait_for(self, threads: list[_MeasuringThread], shared: _Shared) -> tuple[int, int]:
        """Block until every measuring thread is done, without waking up in between; if the
        parent disappears meanwhile (its end of the pipe closes), stop everything and exit.
        Returns when the last thread stopped (``perf_counter_ns``) and the process's CPU time then."""
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
        stopped_ns, cpu_ns = time.perf_counter_ns(), time.process_time_ns()
        for thread in threads:
            thread.join()
        return stopped_ns, cpu_ns


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

    @property
    def buffer_bytes(self) -> int:
        """The harness's memory in the copy beside the threads' own buffers: the schedule."""
        return 8 * len(self.arrivals) if self.arrivals is not None else 0

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
                 new_tokens: Optional[int] = None, *, quota: Optional[int] = None, minimum: int = 0):
        super().__init__(name=f"neuronperf-measure-{idx}", daemon=True)
        self.new_tokens = new_tokens
        self.quota = quota
        self.minimum = minimum
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
        # The timing buffers, allocated (and so written, resident) after the warm-up, before the
        # window: no page of them is first touched inside a timed call, and their size is known
        # so that the memory figures can leave them out.
        self.size = 0
        self.first: Optional[tuple[array[int], array[int]]] = None
        self.clock: Optional[TokenClock] = None
        self.chunks: list[tuple[array[int], array[int], int]] = []
        self.buffer_bytes = 0
        self.call_is_model = False  # the lean loop times no part apart: the call is the model call
        self.server: Optional[Server] = None  # the server scenario's loop and records

    def run(self) -> None:
        phase = "preparing a measuring thread"
        try:
            device = self.device()
            with device.context():
                phase = "warming up"
                self._warm_up(device.sync)
                self._allocate()
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

    def _allocate(self) -> None:
        """The first chunk of timing buffers (and a generation thread's token clock): the calls
        the window holds at the warm-up's fastest pace, a quarter more (see ``_chunk_size``). In
        the server scenario nothing yet: ``prepare_server`` sizes them from the schedule."""
        if self.shared.queue is not None:
            return
        duration_ns = int(self.duration_s * 1e9)
        least = MIN_CHUNK if self.new_tokens is None else 64  # requests are far fewer than calls
        self.size = _chunk_size(duration_ns, self.quota, self.minimum, self.fastest_ns, least)
        self.first = (_buffer(self.size), _buffer(self.size))
        if self.new_tokens is not None:
            self.clock = TokenClock(min(self.size * self.new_tokens, 1 << 20))

    def prepare_server(self) -> None:
        """The server scenario's loop with its first chunk of records, and a generation thread's
        token clock, allocated before the window (called by the copy's main thread once the
        schedule is computed; the thread uses them only after the window opens)."""
        from neuronperf.measure.serving import Server

        shared = self.shared
        self.server = Server(shared.queue, shared.arrivals, shared.batch_size, shared.max_delay_ns, shared.spin_ns)
        if self.new_tokens is not None:
            self.clock = TokenClock(min(len(shared.arrivals), 1 << 16) * self.new_tokens)

    def collect(self) -> None:
        """Join the filled part of every timing chunk into one array of starts and one of
        latencies (and the token stamps); called once every thread of the copy has stopped."""
        if self.server is not None:
            self._collect_served(self.server)
            return
        if self.chunks:
            chunks = self.chunks
        else:  # it measured nothing: its allocated (resident) chunk still counts
            chunks = [(*self.first, 0)] if self.first is not None else [(_buffer(0), _buffer(0), 0)]
        self.buffer_bytes = sum(8 * (len(a) + len(b)) for a, b, _ in chunks)
        self.starts, self.latencies = _joined(chunks)
        if self.clock is not None:
            import numpy as np

            self.buffer_bytes += 8 * len(self.clock.stamps)
            self.tokens = np.frombuffer(self.clock.stamps, dtype=np.int64)[: self.clock.n].copy()
        if self.clock is not None or self.call_is_model:
            self.infer_ns = int(self.latencies.sum())
        self.chunks, self.first = [], None

    def _collect_served(self, server: Server) -> None:
        """``collect`` in the server scenario: per call its start and latency, and the requests
        it served (first, count, when the batch was due)."""
        import numpy as np

        records = server.records()
        self.buffer_bytes = server.buffer_bytes
        self.starts = np.ascontiguousarray(records[:, 2])
        self.latencies = records[:, 3] - records[:, 2]
        self.requests = (np.ascontiguousarray(records[:, 0]), np.ascontiguousarray(records[:, 1]),
                         np.ascontiguousarray(records[:, 4]))
        self.infer_ns = int(self.latencies.sum())
        if self.clock is not None:
            self.buffer_bytes += 8 * len(self.clock.stamps)
            self.tokens = np.frombuffer(self.clock.stamps, dtype=np.int64)[: self.clock.n].copy()

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
        """Serve the entry's queue (``serving.Server``, made before the window by
        ``prepare_server``) until its schedule is done, the queue is stopped or ``go.last_ns``
        comes; a call runs exactly as a timed call of the closed loop. The records are turned into
        timings by ``collect``, once every thread has stopped."""
        from neuronperf.measure.serving import quiet_timer_slack

        quiet_timer_slack()
        server = self.server
        if server is None:
            raise ProtocolError("a serving thread has no server: the copy did not prepare the schedule")
        model, pre, post, args = self.caller.model, self.caller.preprocess, self.caller.postprocess, self.args
        clock = self.clock
        call: Callable[[], Any]
        if self.new_tokens is not None:
            assert clock is not None
            new_tokens = self.new_tokens

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

    def _measure(self, go: Go, sync: Optional[Callable[[], None]]) -> None:
        """Time every call that starts in [go.start_ns, go.end_ns), at most the quota; past
        end_ns, keep timing until the thread's minimum is reached or last_ns comes."""

        quota = go.quotas[self.idx]
        limit = sys.maxsize if quota is None else quota
        least, last_ns = go.minimums[self.idx], go.last_ns
        model, pre, post, args = self.caller.model, self.caller.preprocess, self.caller.postprocess, self.args
        perf, stopped, end_ns = time.perf_counter_ns, self.shared.stop_event.is_set, go.end_ns
        size = self.size
        assert self.first is not None
        chunks: list[tuple[array[int], array[int], int]] = []
        starts, lats = self.first
        i = n = 0
        infer = pre_total = post_total = 0
        if pre is None and post is None and sync is None:
            # The common case, kept lean: the loop's own cost between calls lowers the throughput
            # of fast models, and what sits inside t0..t1 inflates their latency. So a call pays
            # two clock reads, two stores and two comparisons: the stop event is read only when
            # the clock passes a check time (every STOP_CHECK_NS, and at end_ns), and the quota
            # and the buffer's end are one index (stop_at) that the slow path below resolves.
            next_ns = min(end_ns, perf() + STOP_CHECK_NS)
            stop_at = min(size, limit)
            while stop_at:  # 0 only for a quota of 0: no call at all
                t0 = perf()
                if t0 >= next_ns:
                    if t0 >= end_ns or stopped():
                        break
                    next_ns = min(end_ns, t0 + STOP_CHECK_NS)
                model(*args)
                t1 = perf()
                starts[i] = t0
                lats[i] = t1 - t0
                i += 1
                if i == stop_at:
                    if n + i >= limit:
                        break
                    chunks.append((starts, lats, i))
                    n += i
                    starts, lats, i = _buffer(size), _buffer(size), 0
                    stop_at = min(size, limit - n)
            n += i
            # Past end_ns with fewer calls than the minimum (slow models under min_calls): the
            # calls are slow, so the careful loop's cost does not matter here.
            while n < limit and n < least and not stopped():
                t0 = perf()
                if t0 >= last_ns:
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
        self.chunks = chunks
        self.call_is_model = pre is None and post is None and sync is None
        self.infer_ns, self.preprocess_ns, self.postprocess_ns = infer, pre_total, post_total

    def _measure_generate(self, go: Go, sync: Optional[Callable[[], None]], new_tokens: int) -> None:
        """Time every request that starts in [go.start_ns, go.end_ns), at most the quota (and
        past end_ns up to the minimum, as ``_measure`` does), and when each of its tokens existed
        (the model calls the clock once per token)."""
        quota = go.quotas[self.idx]
        limit = sys.maxsize if quota is None else quota
        least, last_ns = go.minimums[self.idx], go.last_ns
        model, args = self.caller.model, self.args
        perf, stopped, end_ns = time.perf_counter_ns, self.shared.stop_event.is_set, go.end_ns
        size, clock = self.size, self.clock
        assert self.first is not None and clock is not None
        starts, lats = self.first
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
        self.chunks = chunks


def _buffer(size: int) -> array[int]:
    return array("q", bytes(8 * size))


def _chunk_size(duration_ns: int, quota: Optional[int], minimum: int, fastest_ns: int, least: int) -> int:
    """Calls per timing chunk: the calls the window holds at the warm-up's fastest pace, a
    quarter more, at least ``least`` and the minimum, but no more than the quota (a thread makes
    no more calls than that); between 1 and ``MAX_CHUNK``."""
    expected = duration_ns // max(1, fastest_ns) + 16
    size = max(least, expected + expected // 4, minimum)
    if quota is not None:
        size = min(size, quota)
    return int(max(1, min(MAX_CHUNK, size)))


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
