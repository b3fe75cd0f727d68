"""The supervisor: measure one repeat of one entry in isolated worker processes.

``measure(task, samples_dir)`` starts ``n_models`` worker processes (one per model copy), each
driving its model with ``workers_per_model`` threads. Every copy loads and warms up and keeps
its threads calling; then the parent sends one shared measured window to all of them, and each
thread times every call that starts inside it, writing its timings to ``samples_dir``. While the
window is open the parent samples each measuring copy's resident memory from outside (psutil on
the worker pids), so nothing inside a worker competes with the measured calls; each worker reads
its own CPU time when it receives the window and when its last thread stops, outside the timed
calls. The result is the raw ``entries.Measurement``; statistics are computed elsewhere (``stats``).

A failure is a ``Measurement`` too, never an exception: a model that raises, a worker that dies
and a worker that hangs past the timeout each end with ``status`` "error" or "timeout" and an
``error`` that says what happened. Worker processes, and any process they started, are gone when
``measure`` returns or raises. The exceptions are the files: a copy that cannot write its log or
samples file (a full disk) raises ``OutputWriteFailed`` naming it, and one that meets a link
there ``UnsafeOutputDir``, so that the sweep stops instead of failing every later entry alike.

Each copy's stdout and stderr go to ``task.log_path`` (see ``worker``), never to the parent's.

Workers are never plain forks (a forked Neuron or CUDA runtime breaks): they come from a
``forkserver`` whose server process has imported torch, if installed, but touched no device, so
a worker starts in a fraction of the time a fresh ``spawn`` interpreter needs. ``spawn`` is used
where there is no forkserver (Windows) or when asked for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any, Callable, NoReturn, Optional

import psutil

from neuronperf.entries import CopyStats, Measurement, ServingWindow, Telemetry, WorkerSamples
from neuronperf.errors import (
    NeuronPerfError,
    OutputWriteFailed,
    ProtocolError,
    UnsafeOutputDir,
    UsageError,
)
from neuronperf.measure.protocol import Error, FileFailed, Go, Loaded, Ready, Samples, recv, send
from neuronperf.measure.task import BenchmarkTask, check_task, split_quota, visible_devices_env
from neuronperf.results.samples import copy_samples_path, read_copy_requests, read_copy_timings
from neuronperf.trackers import Sampler, Tracker, tracker_for
from neuronperf.util import nofollow
from neuronperf.util import processes as procutil

#: The log of the copies of a ``measure`` whose task names none, in its samples folder.
DEFAULT_LOG = "workers.log"
#: How far in the future the shared window starts once every copy is ready: long enough for each
#: worker to receive the start message and pass it to its threads before the window opens (a
#: pipe message takes well under a millisecond; this is the slack for a busy machine). A copy that
#: still gets it late is reported in its row. Paid once per entry, so it is kept small.
START_MARGIN_S = 0.02
#: Extra margin per copy, because the parent sends the start message to copies one by one.
START_MARGIN_PER_COPY_S = 0.005
#: How often the parent samples each copy's resident memory while the window is open.
USAGE_SAMPLE_INTERVAL_S = 0.2
#: After the last Samples message, how long workers get to exit on their own before being killed.
EXIT_GRACE_S = 2.0
#: Serving: extra start margin for each copy to compute the window's arrival schedule (numpy
#: draws and sums about 30 million gaps a second; the margin allows ten times that long).
SCHEDULE_NS_PER_REQUEST = 300
#: Serving: after the window's last arrival, the threads keep taking requests for at most this
#: share of the window (at least DRAIN_MIN_S): an entry that cannot keep up shows it by what it
#: served, instead of draining a backlog that grows with the window.
DRAIN_SHARE, DRAIN_MIN_S = 0.25, 1.0
#: Serving: how often the parent looks at the queue during a peak search's probe.
WATCH_INTERVAL_S = 0.025

DEFAULT_START_METHOD = "forkserver"
_FIRST_PHASE = "starting or loading"

_CONTEXTS: dict[str, Any] = {}
_CONTEXT_LOCK = threading.Lock()


def default_start_method() -> str:
    """``forkserver`` where the platform has it, else ``spawn``; never ``fork``."""
    return DEFAULT_START_METHOD if DEFAULT_START_METHOD in multiprocessing.get_all_start_methods() else "spawn"


def worker_context(start_method: Optional[str] = None) -> Any:
    """The multiprocessing context workers start from, created once per start method.

    The forkserver preloads torch (when installed), what ``NEURONPERF_PRELOAD`` names (see
    ``neuronperf.measure.preload`` and ``start_workers_early``) and the worker module, so each worker is
    a fork of a clean process that already imported them but never initialised a device."""
    method = start_method or default_start_method()
    if method not in ("forkserver", "spawn"):
        raise UsageError(f"start method {method!r} is not allowed; use 'forkserver' or 'spawn' (never 'fork')")
    if method not in multiprocessing.get_all_start_methods():
        raise UsageError(f"start method {method!r} is not available on this platform")
    with _CONTEXT_LOCK:
        if method not in _CONTEXTS:
            ctx = multiprocessing.get_context(method)
            if method == "forkserver":
                modules = ["torch"] if importlib.util.find_spec("torch") is not None else []
                ctx.set_forkserver_preload([*modules, "neuronperf.measure.forkserver_preload", "neuronperf.measure.worker"])
            _CONTEXTS[method] = ctx
        return _CONTEXTS[method]


def start_workers_early(preload: Sequence[str] = (), start_method: Optional[str] = None) -> None:
    """Start the forkserver now, with ``preload`` (``module`` or ``module:name,name`` items) to
    import besides torch, so that it loads them while the driver does other work (checks the
    factories, compiles): the first entry then waits for nothing. Returns at once. A forkserver
    already running is kept as it is (its preload was fixed when it started)."""
    from neuronperf.measure.preload import VARIABLE

    if preload:
        known = [p for p in os.environ.get(VARIABLE, "").split(";") if p]
        os.environ[VARIABLE] = ";".join(known + [p for p in preload if p not in known])
    worker_context(start_method)
    if (start_method or default_start_method()) == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def stop_forkserver() -> None:
    """End the workers' forkserver now, when nothing will be measured any more. It holds no work,
    only the preloaded libraries: a SIGKILL ends it at once, where at interpreter exit it would
    tear those libraries down while still holding the terminal's or a pipe's output open (a
    reader of ``neuronperf run | tee`` would wait for it). A later measurement starts a new one."""
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    pid = getattr(server, "_forkserver_pid", None)
    if server is None or not pid:
        return
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.waitpid(pid, 0)
    # What ensure_running() checks: the next call then starts a fresh server.
    address = getattr(server, "_forkserver_address", None)
    if isinstance(address, str) and not address.startswith("\0"):
        with contextlib.suppress(OSError):
            os.unlink(address)  # a socket file (macOS); Linux uses the abstract namespace
    alive_fd = getattr(server, "_forkserver_alive_fd", None)
    if alive_fd is not None:
        with contextlib.suppress(OSError):
            os.close(alive_fd)
    for name in ("_forkserver_pid", "_forkserver_address", "_forkserver_alive_fd"):
        if hasattr(server, name):
            setattr(server, name, None)


class WorkerCallFailed(Exception):
    """``run_in_worker``'s call raised, died or ran out of time; the message says which."""


def run_in_worker(fn: Callable[..., Any], args: tuple[Any, ...], timeout: float) -> Any:
    """``fn(*args)`` in a process from the workers' context (a fork of the forkserver, which has
    the sweep's libraries loaded already), its result sent back; for work the driver must not do
    in its own process (importing user code). ``fn``, ``args`` and the result must pickle.

    The process runs with the driver's environment as it is now, as measuring workers do: a
    forkserver's children inherit the environment of when the forkserver started, so a variable
    set since (``HF_HUB_OFFLINE``, set by a script or a test before planning) would not reach them,
    and one removed since would still be there."""
    ctx = worker_context()
    parent_conn, child_conn = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_call_and_send, args=(child_conn, fn, args, dict(os.environ)), daemon=False)
    process.start()
    child_conn.close()
    handle = None
    with contextlib.suppress(psutil.Error):
        handle = psutil.Process(process.pid)
    try:
        ready = wait([parent_conn, process.sentinel], timeout=timeout)
        if not ready:
            raise WorkerCallFailed(f"it took longer than {timeout:g} s")
        try:
            kind, value = parent_conn.recv()
        except (EOFError, OSError):
            process.join(timeout=2.0)
            raise WorkerCallFailed(f"the process died: {procutil.describe_exit(process.exitcode)}") from None
        if kind == "error":
            raise WorkerCallFailed(str(value))
        return value
    finally:
        procutil.kill_tree(handle if handle is not None else process.pid)
        process.join(timeout=5.0)
        parent_conn.close()


def _call_and_send(conn: Any, fn: Callable[..., Any], args: tuple[Any, ...], env: dict[str, str]) -> None:
    # The call does the driver's work, so it sees the driver's environment as it is now
    # (HF_HUB_OFFLINE set since, for one).
    procutil.adopt_environment(env)
    # What the call prints (a module that prints as it is imported) goes nowhere, not to the
    # parent's output, which may be a pipe nobody reads; its failure comes back in one line.
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.close(devnull)
    try:
        result = ("ok", fn(*args))
    except BaseException as e:  # whatever it is, the caller reports it in one line
        result = ("error", f"{type(e).__name__}: {e}")
    conn.send(result)
    conn.close()


@dataclass
class _Copy:
    """The parent's view of one worker process."""

    idx: int
    process: Any
    conn: Any
    #: Taken while the worker is alive, so that clean-up never signals a reused pid.
    handle: Optional[psutil.Process] = None
    #: What the parent last knew of the copy; until the Loaded message it cannot tell
    #: starting from loading.
    phase: str = _FIRST_PHASE
    loaded: Optional[Loaded] = None
    ready: Optional[Ready] = None
    samples: Optional[Samples] = None
    rss: list[int] = field(default_factory=list)
    #: The copy's CPU seconds read from outside at the window's start and when it reported (or
    #: at the window's end): only to tell this entry's CPU from other processes' (OtherLoad).
    cpu_start: Optional[float] = None
    cpu_end: Optional[float] = None


class _Failure(Exception):
    """Ends an entry early with a status and a message (internal to this module)."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def measure(task: BenchmarkTask, samples_dir: str, *, start_method: Optional[str] = None,
            tracker: Optional[Tracker] = None) -> Measurement:
    """Measure one repeat of an entry in ``task.n_models`` worker processes, their raw timings
    written under ``samples_dir`` (created if needed, without following links); failures come
    back as a ``Measurement`` with status "error" or "timeout". Raises ``UsageError`` for a bad
    task, ``OutputWriteFailed`` or ``UnsafeOutputDir`` for a file that cannot be written.

    With ``benchmark.telemetry`` on, a sampler thread of this process reads the device's
    telemetry source (``tracker``, or the device type's own: ``trackers.tracker_for``) from
    2 s before the copies start (idle power) until the window has ended."""
    check_task(task)
    payload = pickle.dumps(task)
    device_envs = [visible_devices_env(task, i) for i in range(task.n_models)]
    samples_dir = os.path.abspath(samples_dir)
    try:
        nofollow.make_folders(samples_dir, "")
    except OSError as e:
        raise OutputWriteFailed(samples_dir, e) from None
    log_path = task.log_path or os.path.join(samples_dir, DEFAULT_LOG)
    ctx = worker_context(start_method)
    from neuronperf.measure.worker import worker_main

    queue = None
    if task.serving is not None:
        from neuronperf.measure.serving import SharedQueue

        queue = SharedQueue(ctx)  # one per measurement: every copy's threads serve it

    copies: list[_Copy] = []
    sampler = _sampler(task, device_envs, tracker)
    with _sigterm_stops_workers():
        try:
            if sampler is not None:
                sampler.start()
                sampler.measure_idle()  # before any copy exists, and outside the entry's timeout
            deadline = time.monotonic() + task.settings.timeout
            parent_env = dict(os.environ)
            for idx in range(task.n_models):
                parent_conn, child_conn = ctx.Pipe(duplex=True)
                process = ctx.Process(
                    target=worker_main,
                    args=(payload, idx, child_conn, parent_env, device_envs[idx], os.getpid(), log_path, queue),
                    name=f"neuronperf-{task.entry_id}-copy{idx}",
                    # Not daemonic: a daemonic process may not start processes of its own, and
                    # models do (torch.compile workers, data loaders). _stop ends them all.
                    daemon=False,
                )
                process.start()
                child_conn.close()  # the worker holds its end; ours must go so EOF means "worker gone"
                copy = _Copy(idx, process, parent_conn)
                with contextlib.suppress(psutil.Error):
                    copy.handle = psutil.Process(process.pid)
                copies.append(copy)
            if sampler is not None:
                sampler.watch([c.process.pid for c in copies])
            measurement = _run(task, copies, deadline, samples_dir, queue)
            if sampler is not None and measurement.status == "ok":
                sampler.stop()  # its last reading comes after the window's end
                telemetry = _with_allocator_peak(sampler.telemetry(measurement.window_start_ns, measurement.window_end_ns),
                                                 measurement.copies, task.device_type)
                measurement = dataclasses.replace(measurement, telemetry=telemetry)
            return measurement
        except _Failure as failure:
            return Measurement(status=failure.status, error=failure.message)
        finally:
            with _signals_deferred():
                _stop(copies)
                if sampler is not None:
                    sampler.stop()


def _sampler(task: BenchmarkTask, device_envs: Sequence[dict[str, str]], tracker: Optional[Tracker]) -> Optional[Sampler]:
    """The telemetry sampler of one repeat, or None when ``benchmark.telemetry`` is off."""
    period_ms = task.settings.telemetry_period_ms
    if period_ms is None:
        return None
    period_s = period_ms / 1000
    if tracker is None:
        visible = [env["CUDA_VISIBLE_DEVICES"] for env in device_envs if "CUDA_VISIBLE_DEVICES" in env]
        tracker = tracker_for(task.device_type, period_s=period_s, visible_devices=visible)
    return Sampler(tracker, period_s)


def _with_allocator_peak(telemetry: Telemetry, copies: Sequence[CopyStats], device_type: str) -> Telemetry:
    """``device_mem_mb_peak`` on CUDA: the allocator peaks the copies reported, summed."""
    if device_type != "cuda":
        return telemetry
    peaks = [c.device_mem_peak_bytes for c in copies]
    if peaks and all(p is not None for p in peaks):
        return dataclasses.replace(telemetry, device_mem_mb_peak=sum(p for p in peaks if p is not None) / (1024 * 1024))
    note = "device_mem_mb_peak needs torch's CUDA allocator (this backend reports none)"
    return dataclasses.replace(telemetry, note="; ".join(n for n in (telemetry.note, note) if n))


def _run(task: BenchmarkTask, copies: list[_Copy], deadline: float, samples_dir: str, queue: Any = None) -> Measurement:
    _wait_for(copies, "ready", deadline, task.settings.timeout)
    n_threads = task.n_models * task.workers_per_model
    quotas = split_quota(task.settings.max_infers, n_threads)
    minimums = tuple(m or 0 for m in split_quota(task.settings.min_calls, n_threads))
    margin_ns = int((START_MARGIN_S + START_MARGIN_PER_COPY_S * len(copies)) * 1e9)
    rate, requests, duration_ns = None, 0, int(task.settings.duration * 1e9)
    if task.serving is not None:
        from neuronperf.stats.serving import request_count, search_minimum

        rate = _serving_rate(task, copies)
        least = search_minimum(task.settings.min_calls) if task.serving.search else task.settings.min_calls
        requests = request_count(rate, task.settings.duration, least)
        duration_ns = int(round(requests / rate * 1e9))  # the schedule's span
        margin_ns += requests * SCHEDULE_NS_PER_REQUEST
        # A keep-warm call in flight when Go arrives must end before the first request is due:
        # allow two mean warm-up calls (slow first calls included, so an upper bound).
        margin_ns += int(2e6 * max((c.ready.warmup_ms for c in copies if c.ready is not None), default=0.0))
        quotas, minimums = (None,) * n_threads, (0,) * n_threads
    now_ns = time.perf_counter_ns()
    start_ns = now_ns + margin_ns
    end_ns = start_ns + duration_ns
    # A thread short of its minimum call count may go on past end_ns for half of what the
    # timeout leaves after it: the other half is for its last call and writing the samples, so
    # a minimum that cannot be reached gives a row with fewer calls, not a timeout.
    left_after_end_s = deadline - time.monotonic() - (end_ns - now_ns) / 1e9
    last_ns = end_ns + max(0, int(left_after_end_s / 2 * 1e9))
    watch = None
    if task.serving is not None:
        last_ns = min(last_ns, end_ns + int(max(DRAIN_MIN_S, DRAIN_SHARE * duration_ns / 1e9) * 1e9))
        if task.serving.search and queue is not None:
            assert rate is not None
            watch = _OverloadWatch(queue, ServingWindow(rate, requests, task.serving.arrival, task.serving.seed,
                                                        start_ns), task.serving.slo)
    w = task.workers_per_model
    for c in copies:
        go = Go(start_ns=start_ns, end_ns=end_ns, quotas=quotas[c.idx * w : (c.idx + 1) * w],
                minimums=minimums[c.idx * w : (c.idx + 1) * w], last_ns=last_ns,
                samples_path=copy_samples_path(samples_dir, c.idx), rate=rate, requests=requests)
        with contextlib.suppress(OSError):  # a worker that is gone is reported by _wait_for
            send(c.conn, go)
        c.phase = "measuring"
    _sleep_until(start_ns)
    other = OtherLoad(copies)
    _wait_for(copies, "samples", deadline, task.settings.timeout, usage_until_ns=end_ns, other=other, watch=watch)
    other.finish()

    workers: list[WorkerSamples] = []
    stats: list[CopyStats] = []
    total_memory = psutil.virtual_memory().total
    for c in copies:
        assert c.samples is not None
        try:
            path = copy_samples_path(samples_dir, c.idx)
            timings = read_copy_timings(path, task.workers_per_model)
            served = read_copy_requests(path, task.workers_per_model) if task.serving is not None else None
        except ProtocolError as e:
            raise _Failure("error", f"copy {c.idx}: {e}") from None
        for t, (totals, (starts, latencies, tokens)) in enumerate(zip(c.samples.threads, timings)):
            first, count, due = (served[t] or (None, None, None)) if served is not None else (None, None, None)
            workers.append(WorkerSamples(
                copy_idx=c.idx, thread_idx=totals.thread_idx, start_ns=starts, latency_ns=latencies,
                infer_ns_total=totals.infer_ns_total, preprocess_ns_total=totals.preprocess_ns_total,
                postprocess_ns_total=totals.postprocess_ns_total, token_ns=tokens,
                quota=quotas[c.idx * w + totals.thread_idx],
                request_first=first, request_count=count, due_ns=due,
            ))
        stats.append(_copy_stats(c, total_memory))
    ends = [int(ws.start_ns[-1]) + int(ws.latency_ns[-1]) for ws in workers if len(ws.start_ns)]
    window = None
    if task.serving is not None:
        assert rate is not None
        window = ServingWindow(rate=rate, requests=requests, arrival=task.serving.arrival, seed=task.serving.seed,
                               start_ns=start_ns, batch_size=task.batch_size,
                               max_queue_delay_ms=task.serving.max_queue_delay_ms,
                               stopped=watch.stopped if watch is not None else "")
        ends.append(end_ns)
    if not ends:
        return Measurement(
            status="error",
            error=(f"no call was measured: benchmark.duration ({task.settings.duration:g} s) ended "
                   "before any call started; use a longer duration"),
            window_start_ns=start_ns, window_end_ns=end_ns, copies=tuple(stats), other_cpu_cores=other.cores(),
            idle_cpu_cores=other.idle_cores(),
        )
    # The window runs from the shared start until the last measured call returned: every call
    # that starts before end_ns is measured, so the window covers the time they took to finish.
    return Measurement(
        status="ok",
        window_start_ns=start_ns,
        window_end_ns=max(ends),
        workers=tuple(sorted(workers, key=lambda ws: (ws.copy_idx, ws.thread_idx))),
        copies=tuple(stats),
        other_cpu_cores=other.cores(),
        idle_cpu_cores=other.idle_cores(),
        serving=window,
    )


def _serving_rate(task: BenchmarkTask, copies: list[_Copy]) -> float:
    """The window's rate: the entry's, a probe's, or for a search's first probe the capacity the
    warm-up implies (every thread calling back to back with full batches; no rate above it can
    be served), or FALLBACK_RATE without warm-up calls."""
    serving = task.serving
    assert serving is not None
    if serving.rate is not None:
        return float(serving.rate)
    if task.probe_rate is not None:
        return float(task.probe_rate)
    fastest = [c.ready.warmup_fastest_ms for c in copies if c.ready is not None and c.ready.warmup_fastest_ms > 0]
    if not fastest:
        return FALLBACK_RATE
    return task.n_models * task.workers_per_model * task.batch_size * 1000.0 / (sum(fastest) / len(fastest))


#: The first probe's rate of a peak search whose warm-up made no call.
FALLBACK_RATE = 100.0


class _OverloadWatch:
    """Ends a peak search's probe as soon as its bound cannot hold any more.

    A request still in the queue ``limit`` after its scheduled arrival will have a latency (and a
    TTFT) above ``limit`` whatever happens next. The watch counts such requests (without counting
    one twice): once more of them than the bound's percentile allows over the whole window (for
    p99, 1% of its requests) exist, the probe has failed, and the queue is stopped."""

    def __init__(self, queue: Any, window: ServingWindow, slo: Any):
        from neuronperf.stats.serving import arrivals_ns

        self.queue = queue
        self.arrivals = arrivals_ns(window)
        self.window = window
        self.bounds = []
        for column, limit in slo:
            kind, _, q = str(column).partition("_ms_p")
            if kind in ("latency", "ttft") and q.isdigit():
                # numpy's linear percentile of n values exceeds the limit for certain once the
                # value at rank floor((n - 1) q / 100) does: once more than this many exceed it.
                n = window.requests
                allowed = n - 1 - int((n - 1) * int(q) // 100)
                self.bounds.append((column, float(limit), int(limit * 1e6), allowed, [0, 0]))  # [doomed, counted up to]
        self.stopped = ""
        self.next_ns = 0

    def __call__(self, now_ns: int) -> float:
        """Look at the queue if it is time; return the seconds until the next look."""
        import numpy as np

        if self.stopped or now_ns < self.next_ns:
            return max(0.0, (self.next_ns - now_ns) / 1e9) if not self.stopped else 1.0
        self.next_ns = now_ns + int(WATCH_INTERVAL_S * 1e9)
        head = self.queue.head
        for column, limit, limit_ns, allowed, state in self.bounds:
            overdue = int(np.searchsorted(self.arrivals, now_ns - limit_ns, side="right"))
            state[0] += max(0, overdue - max(head, state[1]))
            state[1] = max(state[1], overdue)
            if state[0] > allowed:
                self.queue.stop()
                self.stopped = (
                    f"stopped early: {state[0]} of {self.window.requests} requests waited in the queue past "
                    f"{limit:g} ms, so {column} <= {limit:g} ms could no longer hold"
                )
                break
        return WATCH_INTERVAL_S


_NEXT_PHASE = {"loaded": "warming up", "ready": "waiting for the other copies", "samples": "done"}


def _copy_stats(c: _Copy, total_memory: int) -> CopyStats:
    """One copy's figures: what the worker reported, and its memory samples less its timing
    buffers (the harness's, not the model's)."""
    assert c.samples is not None
    samples = c.samples
    cpu = samples.cpu_ns / samples.cpu_wall_ns * 100 if samples.cpu_wall_ns > 0 else None
    model_rss = [max(0, r - samples.buffer_bytes) for r in c.rss]
    return CopyStats(
        copy_idx=c.idx,
        pid=c.process.pid,
        load_ms=samples.load_ms,
        warmup_ms=samples.warmup_ms,
        cpu_avg_percent=cpu,
        peak_rss_bytes=max(model_rss) if model_rss else None,
        mem_avg_percent=sum(model_rss) / len(model_rss) / total_memory * 100 if model_rss and total_memory else None,
        late_ns=samples.late_ns,
        warmup_calls=c.ready.warmup_calls if c.ready is not None else None,
        buffer_bytes=samples.buffer_bytes,
        device_mem_peak_bytes=samples.device_mem_peak_bytes,
    )


class OtherLoad:
    """The CPU that processes other than this entry's used during its window, in cores: the
    machine's busy time (psutil's system-wide counters: user, nice, system, irq, softirq; not
    idle, iowait or steal) less the copies' own CPU and this process's, over the wall time, from
    the window's start until its planned end or the last copy's report, whichever came first. A
    copy that reports earlier is read then (it exits soon after). Read from outside, between the
    memory samples: nothing runs in the workers for it.

    Beside it, the CPU nobody used over the same span (the idle and iowait counters: a core
    waiting for a disk could have run the model): near 0 beside other processes' work, the
    machine was full and the entry may have waited for a core, which ``compare`` must know."""

    def __init__(self, copies: list[_Copy]):
        self.copies = copies
        self.me = psutil.Process()
        for c in copies:
            c.cpu_start = _cpu_seconds(c)
        self.start = self._snapshot()
        self.end: Optional[_Snapshot] = None

    def _snapshot(self) -> _Snapshot:
        t = psutil.cpu_times()
        busy = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
        idle = t.idle + getattr(t, "iowait", 0.0)
        mine = self.me.cpu_times()
        return _Snapshot(time.perf_counter_ns(), float(busy), float(mine.user + mine.system), float(idle))

    def copy_done(self, c: _Copy) -> None:
        if self.end is None and c.cpu_end is None:
            c.cpu_end = _cpu_seconds(c)

    def finish(self) -> None:
        """Take the end reading now, unless it was taken."""
        if self.end is not None:
            return
        for c in self.copies:
            self.copy_done(c)
        self.end = self._snapshot()

    def _wall_s(self) -> Optional[float]:
        if self.end is None:
            return None
        wall_s = (self.end.ns - self.start.ns) / 1e9
        return wall_s if wall_s > 0 else None

    def cores(self) -> Optional[float]:
        wall_s = self._wall_s()
        if self.end is None or wall_s is None or any(c.cpu_start is None or c.cpu_end is None for c in self.copies):
            return None
        entry = sum((c.cpu_end or 0.0) - (c.cpu_start or 0.0) for c in self.copies) + (self.end.mine - self.start.mine)
        return max(0.0, (self.end.busy - self.start.busy - entry) / wall_s)

    def idle_cores(self) -> Optional[float]:
        wall_s = self._wall_s()
        if self.end is None or wall_s is None:
            return None
        return max(0.0, (self.end.idle - self.start.idle) / wall_s)


@dataclass(frozen=True)
class _Snapshot:
    """One reading of the machine's CPU counters (seconds) at ``ns`` (perf_counter_ns)."""

    ns: int
    busy: float
    #: This process's own CPU (the supervisor's).
    mine: float
    idle: float


def _cpu_seconds(c: _Copy) -> Optional[float]:
    """The copy's CPU time so far (all its threads, user and system), read from outside."""
    if c.handle is None:
        return None
    try:
        times = c.handle.cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


def _wait_for(copies: list[_Copy], wanted: str, deadline: float, timeout: float,
              usage_until_ns: Optional[int] = None, other: Optional[OtherLoad] = None,
              watch: Optional[Callable[[int], float]] = None) -> None:
    """Read messages until every copy has sent ``wanted``; raise ``_Failure`` on an error message,
    a dead worker or the deadline. With ``usage_until_ns``, sample the memory of the copies still
    measuring until then (a copy that sent its samples is done: it holds its joined timings), and
    end ``other``'s reading then. ``watch(now)`` is called on every wake-up and says how soon it
    wants the next."""
    pending = [c for c in copies if getattr(c, wanted) is None]
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            busy = ", ".join(f"copy {c.idx} was {c.phase}" for c in pending)
            raise _Failure("timeout", f"timed out after {timeout:g} s (benchmark.timeout): {busy}")
        wait_s = remaining
        if usage_until_ns is not None:
            now = time.perf_counter_ns()
            if now >= usage_until_ns and other is not None:
                other.finish()
            if now < usage_until_ns:
                for c in copies:
                    if c.samples is None:
                        _sample_rss(c)
                wait_s = min(remaining, USAGE_SAMPLE_INTERVAL_S, (usage_until_ns - now) / 1e9)
        if watch is not None:
            wait_s = min(wait_s, watch(time.perf_counter_ns()))
        handles = [c.conn for c in pending] + [c.process.sentinel for c in pending]
        ready = set(wait(handles, timeout=wait_s))
        for c in list(pending):
            if c.conn in ready:
                _receive(c)
            elif c.process.sentinel in ready and not c.conn.poll():
                _died(c)
            if getattr(c, wanted) is not None:
                pending.remove(c)
                if other is not None:
                    other.copy_done(c)


def _sample_rss(c: _Copy) -> None:
    if c.handle is not None:
        with contextlib.suppress(psutil.Error):
            c.rss.append(int(c.handle.memory_info().rss))


def _sleep_until(target_ns: int) -> None:
    while True:
        remaining = target_ns - time.perf_counter_ns()
        if remaining <= 0:
            return
        time.sleep(remaining / 1e9)


def _receive(c: _Copy) -> None:
    try:
        message = recv(c.conn)
    except (EOFError, OSError):
        _died(c)
    except ProtocolError as e:
        raise _Failure("error", f"copy {c.idx} sent a bad message while {c.phase}: {e}") from None
    if isinstance(message, Error):
        raise _Failure("error", f"{message.message} (copy {c.idx}, while {message.phase})")
    if isinstance(message, FileFailed):
        raise file_error(message)
    if isinstance(message, Loaded):
        c.loaded = message
    elif isinstance(message, Ready):
        c.ready = message
    elif isinstance(message, Samples):
        c.samples = message
    else:
        raise _Failure("error", f"copy {c.idx} sent an unexpected {message.TYPE!r} message while {c.phase}")
    c.phase = _NEXT_PHASE[message.TYPE]


def file_error(message: FileFailed) -> NeuronPerfError:
    """The error a copy's FileFailed message stands for: the disk's (``OutputWriteFailed``, exit
    3) or neuronperf's refusal of a link (``UnsafeOutputDir``, exit 2)."""
    if message.errno == 0:
        return UnsafeOutputDir(message.reason)
    return OutputWriteFailed(message.path, OSError(message.errno, message.reason))


def _died(c: _Copy) -> NoReturn:
    c.process.join(timeout=2.0)  # the pipe closes a moment before the exit status is known
    message = f"copy {c.idx} died: {procutil.describe_exit(c.process.exitcode)} while {c.phase}"
    if c.phase == _FIRST_PHASE and c.process.exitcode == 1:
        # Python itself failed to start the worker, most often because the script that called
        # neuronperf re-ran its benchmark when the worker imported it.
        message += (
            " (see the worker's traceback on stderr or in its log; a script that calls neuronperf must do so "
            "under `if __name__ == '__main__':`, because worker processes import it)"
        )
    raise _Failure("error", message)


def _stop(copies: list[_Copy]) -> None:
    """Let finished workers exit, then kill whatever is left of every copy's process tree.

    Processes are signalled through the handle taken when they started: a worker that exited
    may have been reaped (by the forkserver) and its pid given to another process."""
    deadline = time.monotonic() + EXIT_GRACE_S
    finished = [c.process.sentinel for c in copies if c.samples is not None]
    while finished and time.monotonic() < deadline:
        done = wait(finished, timeout=max(0.0, deadline - time.monotonic()))
        finished = [s for s in finished if s not in done]
    for c in copies:
        # Also when the worker exited: processes it started may have outlived it in its group.
        procutil.kill_tree(c.handle if c.handle is not None else c.process.pid)
    for c in copies:
        c.process.join(timeout=5.0)
        c.conn.close()
        with contextlib.suppress(ValueError, AttributeError):
            c.process.close()


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, so that a second Ctrl-C cannot interrupt
    the clean-up of workers halfway; a signal that arrived is re-sent as soon as it is done."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        if signum not in received:
            received.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        for signum in received:
            signal.raise_signal(signum)


class _SigTerm(BaseException):
    """Raised in the main thread when SIGTERM arrives during ``measure``."""


@contextlib.contextmanager
def _sigterm_stops_workers() -> Iterator[None]:
    """While measuring, SIGTERM first stops the workers, then terminates the process as usual.

    Only the default disposition is replaced: a program with its own SIGTERM handler keeps it
    (``measure`` still cleans up if that handler raises)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _SigTerm()

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except _SigTerm:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)
        raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


__all__ = [
    "WorkerCallFailed", "default_start_method", "measure", "run_in_worker", "start_workers_early",
    "stop_forkserver", "worker_context",
]
