"""The main function of a worker process: one model copy driven by ``workers_per_model`` threads.

The parent (``neuronperf.benchmark_stage``) starts this with the pickled task; the worker then speaks
only the JSON messages of ``neuronperf.protocol``. Order inside the worker: parent's environment
and the copy's device pinning into ``os.environ`` -> ``env_setup_fn`` -> load (timed) ->
``setup_fn`` -> per-thread inputs -> warm-up on every thread -> Ready -> wait for Go -> measure
calls that start inside the shared window -> Samples. Any exception becomes an Error message
with the phase it happened in.

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
from contextlib import AbstractContextManager
from functools import partial
from typing import Any, Callable, Optional

import psutil

from neuronperf import procutil, protocol
from neuronperf.benchmark_stage import BenchmarkTask, call_args, worker_config
from neuronperf.entries import CopyStats, WorkerSamples

#: How often the copy's resident memory is sampled during the measured window.
RSS_SAMPLE_INTERVAL_S = 0.05
#: How often the worker checks that the parent process is still alive.
#: Exit status of a worker that stopped itself because its parent disappeared.
EXIT_PARENT_GONE = 70


def worker_main(
    payload: bytes,
    copy_idx: int,
    conn: Any,
    parent_env: dict[str, str],
    device_env: dict[str, str],
    parent_pid: int,
) -> None:
    """Run one model copy; every outcome, including failure, is reported over ``conn``."""
    procutil.become_group_leader()
    # Ctrl-C belongs to the parent, which stops the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    faulthandler.enable(all_threads=False)  # a segfaulting model leaves a Python stack on stderr
    procutil.exit_with_parent(parent_pid, EXIT_PARENT_GONE)
    worker = _Worker(copy_idx, conn)
    try:
        worker.run(payload, parent_env, device_env)
    except BaseException as e:  # the model's own failure, whatever it is, goes to the parent
        with contextlib.suppress(OSError):
            protocol.send(conn, protocol.Error(phase=worker.phase, message=describe_exception(e)))
    finally:
        conn.close()


def describe_exception(e: BaseException) -> str:
    """``ValueError: the message`` (the type alone when the message is empty)."""
    text = str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


class _Worker:
    def __init__(self, copy_idx: int, conn: Any):
        self.copy_idx = copy_idx
        self.conn = conn
        self.phase = "starting"

    def run(self, payload: bytes, parent_env: dict[str, str], device_env: dict[str, str]) -> None:
        # A forkserver child inherits the server's environment, which may be older than the
        # parent's: bring it up to date, then pin this copy's devices before any runtime starts.
        os.environ.update(parent_env)
        os.environ.update(device_env)
        self.phase = "unpickling the task"
        task: BenchmarkTask = pickle.loads(payload)
        config = worker_config(task, self.copy_idx, device_env)
        _share_cpu_cores(task)

        if task.env_setup_fn is not None:
            self.phase = "running env_setup_fn"
            task.env_setup_fn(self.copy_idx, config)
        self.phase = "loading"
        t0 = time.perf_counter_ns()
        model = task.loader.load(self.copy_idx)
        load_ms = (time.perf_counter_ns() - t0) / 1e6
        protocol.send(self.conn, protocol.Loaded(load_ms=load_ms))
        _set_torch_threads(task)
        if task.setup_fn is not None:
            self.phase = "running setup_fn"
            task.setup_fn(self.copy_idx, config, model)

        self.phase = "preparing inputs"
        n_threads = task.workers_per_model
        inputs = _thread_inputs(task, n_threads)
        caller = _Caller(
            model=model,
            preprocess=task.preprocess_fn,
            postprocess=task.postprocess_fn,
            sync=task.loader.synchronizer(task.device_type),
            inference_context=_inference_context(task, model),
        )

        self.phase = "warming up"
        warmups = _run_threads(
            [partial(caller.warm_up, args, task.settings.warmup_calls, task.settings.warmup_s) for args in inputs]
        )
        durations = [d for thread_durations in warmups for d in thread_durations]
        warmup_ms = sum(durations) / len(durations) / 1e6 if durations else 0.0
        protocol.send(self.conn, protocol.Ready(warmup_ms=warmup_ms, warmup_calls=len(durations)))

        self.phase = "waiting for the start signal"
        go = protocol.recv(self.conn)
        if not isinstance(go, protocol.Go):
            raise protocol.ProtocolError(f"expected a 'go' message, got {go.TYPE!r}")
        if len(go.quotas) != n_threads:
            raise protocol.ProtocolError(f"'go' has {len(go.quotas)} quotas for {n_threads} threads")

        self.phase = "measuring"
        stop = threading.Event()
        threads = [
            _start_thread(partial(caller.measure, inputs[t], go.start_ns, go.end_ns, go.quotas[t], stop), stop)
            for t in range(n_threads)
        ]
        usage = _sample_usage(go.start_ns, [th for th, _ in threads])
        results = [_result_of(box) for _, box in threads]

        workers = tuple(
            WorkerSamples(
                copy_idx=self.copy_idx,
                thread_idx=t,
                start_ns=tuple(r.start_ns),
                latency_ns=tuple(r.latency_ns),
                infer_ns_total=r.infer_ns,
                preprocess_ns_total=r.preprocess_ns,
                postprocess_ns_total=r.postprocess_ns,
            )
            for t, r in enumerate(results)
        )
        stats = CopyStats(
            copy_idx=self.copy_idx,
            pid=os.getpid(),
            load_ms=load_ms,
            warmup_ms=warmup_ms,
            cpu_avg_percent=usage.cpu_percent,
            peak_rss_bytes=usage.peak_rss_bytes,
            mem_avg_percent=usage.mem_percent,
        )
        self.phase = "sending samples"
        protocol.send(self.conn, protocol.Samples(workers=workers, copy=stats))


# ---- calling the model -------------------------------------------------------------------------


class _ThreadResult:
    __slots__ = ("start_ns", "latency_ns", "infer_ns", "preprocess_ns", "postprocess_ns")

    def __init__(self) -> None:
        self.start_ns: list[int] = []
        self.latency_ns: list[int] = []
        self.infer_ns = 0
        self.preprocess_ns = 0
        self.postprocess_ns = 0


class _Caller:
    """Calls the model the way it is timed: preprocess -> model -> device sync -> postprocess."""

    def __init__(
        self,
        model: Callable[..., Any],
        preprocess: Optional[Callable[..., Any]],
        postprocess: Optional[Callable[..., Any]],
        sync: Optional[Callable[[], None]],
        inference_context: Callable[[], AbstractContextManager[Any]],
    ):
        self.model = model
        self.preprocess = preprocess
        self.postprocess = postprocess
        self.sync = sync
        self.inference_context = inference_context

    def warm_up(self, args: tuple[Any, ...], calls: int, seconds: float) -> list[int]:
        """Run at least ``calls`` calls and at least ``seconds``; return each call's duration."""
        model, pre, post, sync = self.model, self.preprocess, self.postprocess, self.sync
        durations: list[int] = []
        perf = time.perf_counter_ns
        until = perf() + int(seconds * 1e9)
        with self.inference_context():
            while len(durations) < calls or perf() < until:
                t0 = perf()
                out = model(*(call_args(pre(*args)) if pre is not None else args))
                if sync is not None:
                    sync()
                if post is not None:
                    post(out)
                durations.append(perf() - t0)
        return durations

    def measure(
        self, args: tuple[Any, ...], start_ns: int, end_ns: int, quota: Optional[int], stop: threading.Event
    ) -> _ThreadResult:
        """Time every call that starts in [start_ns, end_ns), at most ``quota`` of them."""
        model, pre, post, sync = self.model, self.preprocess, self.postprocess, self.sync
        result = _ThreadResult()
        starts, latencies = result.start_ns, result.latency_ns
        perf = time.perf_counter_ns
        limit = sys.maxsize if quota is None else quota
        stopped = stop.is_set
        add_start, add_latency = starts.append, latencies.append
        infer = pre_total = post_total = n = 0
        _sleep_until(start_ns)
        with self.inference_context():
            if pre is None and post is None and sync is None:
                # The common case, kept lean: the loop's own cost between calls lowers the
                # throughput of fast models, and what sits inside t0..t1 inflates their latency.
                while n < limit and not stopped():
                    t0 = perf()
                    if t0 >= end_ns:
                        break
                    model(*args)
                    t1 = perf()
                    add_start(t0)
                    add_latency(t1 - t0)
                    n += 1
                infer = sum(latencies)
            else:
                while n < limit and not stopped():
                    t0 = perf()
                    if t0 >= end_ns:
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
                    add_start(t0)
                    add_latency(t3 - t0)
                    pre_total += t1 - t0
                    infer += t2 - t1
                    post_total += t3 - t2
                    n += 1
        result.infer_ns, result.preprocess_ns, result.postprocess_ns = infer, pre_total, post_total
        return result


#: The number of threads each measuring thread's operators may use on CPU, for backends to read
#: when they build their thread pools (set per worker; a user's own value is kept).
CPU_THREADS_VARIABLE = "NEURONPERF_CPU_THREADS"


def _share_cpu_cores(task: BenchmarkTask) -> None:
    """On CPU, give each measuring thread an equal share of the cores for the model's operators.

    By default every copy's framework would use every core for each call, so n copies x m threads
    oversubscribe the machine n x m times, and OpenMP's spinning threads then measure each other
    (seen here: 2 copies of a small MLP on 2 cores, p99 16 ms for a 20 us call, throughput
    swinging 131% between seconds). The share goes into NEURONPERF_CPU_THREADS for backends that
    size their own pools (onnxruntime) before the model loads; torch gets it right after.
    """
    if task.device_type != "cpu":
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    os.environ.setdefault(CPU_THREADS_VARIABLE, str(max(1, cores // (task.n_models * task.workers_per_model))))


def _set_torch_threads(task: BenchmarkTask) -> None:
    """Apply the CPU share to torch, unless the user chose with OMP_NUM_THREADS; a
    torch.set_num_threads in setup_fn (which runs after this) also wins."""
    torch = sys.modules.get("torch")
    if task.device_type != "cpu" or torch is None or "OMP_NUM_THREADS" in os.environ:
        return
    torch.set_num_threads(int(os.environ[CPU_THREADS_VARIABLE]))


def _thread_inputs(task: BenchmarkTask, n_threads: int) -> list[tuple[Any, ...]]:
    """Each thread gets its own inputs, so no thread waits on another's (no shared lock)."""
    if task.inputs is None:
        return [tuple(task.loader.example_inputs() or ()) for _ in range(n_threads)]
    first = call_args(task.inputs)
    return [first] + [copy.deepcopy(first) for _ in range(n_threads - 1)]


def _inference_context(task: BenchmarkTask, model: Any) -> Callable[[], AbstractContextManager[Any]]:
    """``torch.inference_mode`` for torch models (autograd bookkeeping is not inference cost);
    ``no_grad`` on Neuron, whose traced graphs predate inference mode. Entered once per thread,
    because torch's grad mode is thread-local."""
    torch = sys.modules.get("torch")
    if torch is None:
        return contextlib.nullcontext
    is_torch_model = isinstance(model, (torch.nn.Module, torch.jit.ScriptFunction))
    if not (is_torch_model or task.loader.uses_torch()):
        return contextlib.nullcontext
    if task.device_type == "neuron" or not hasattr(torch, "inference_mode"):
        return torch.no_grad  # type: ignore[no-any-return]
    return torch.inference_mode  # type: ignore[no-any-return]


def _sleep_until(target_ns: int) -> None:
    while True:
        remaining = target_ns - time.perf_counter_ns()
        if remaining <= 0:
            return
        time.sleep(remaining / 1e9)


# ---- threads -----------------------------------------------------------------------------------


def _start_thread(fn: Callable[[], Any], stop: Optional[threading.Event] = None) -> tuple[threading.Thread, list[Any]]:
    """Start ``fn`` in a thread; the box receives ("ok", value) or ("error", exception). An error
    sets ``stop`` so that the copy's other threads end their loops too."""
    box: list[Any] = []
    torch = sys.modules.get("torch")
    torch_threads = torch.get_num_threads() if torch is not None else None

    def target() -> None:
        if torch is not None and torch_threads is not None:
            # OpenMP keeps its pool size per thread: a new thread would run on the default pool
            # (every core) whatever torch.set_num_threads() said in the main thread (OMP_NUM_THREADS,
            # setup_fn). Carry the setting over, so the measured calls use what the user chose.
            torch.set_num_threads(torch_threads)
        try:
            box.append(("ok", fn()))
        except BaseException as e:  # re-raised in the main thread by _result_of
            box.append(("error", e))
            if stop is not None:
                stop.set()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def _result_of(box: list[Any]) -> Any:
    kind, value = box[0]
    if kind == "error":
        raise value
    return value


def _run_threads(fns: list[Callable[[], Any]]) -> list[Any]:
    threads = [_start_thread(fn) for fn in fns]
    for thread, _ in threads:
        thread.join()
    return [_result_of(box) for _, box in threads]


class _Usage:
    def __init__(self, cpu_percent: Optional[float], peak_rss_bytes: Optional[int], mem_percent: Optional[float]):
        self.cpu_percent = cpu_percent
        self.peak_rss_bytes = peak_rss_bytes
        self.mem_percent = mem_percent


def _sample_usage(start_ns: int, threads: list[threading.Thread]) -> _Usage:
    """Wait for the measuring threads while sampling this process's CPU time and RSS.

    CPU: process CPU time (all threads) from the window start until the last thread finished,
    over that wall time. Memory: mean and peak of RSS samples taken every 50 ms in between."""
    me = psutil.Process()
    _sleep_until(start_ns)
    cpu0, wall0 = time.process_time_ns(), time.perf_counter_ns()
    rss: list[int] = []
    while True:
        with contextlib.suppress(psutil.Error):
            rss.append(me.memory_info().rss)
        for thread in threads:
            thread.join(timeout=RSS_SAMPLE_INTERVAL_S)
            if thread.is_alive():
                break
        else:
            break
    cpu, wall = time.process_time_ns() - cpu0, time.perf_counter_ns() - wall0
    total = psutil.virtual_memory().total
    peak = max([_peak_rss_bytes(), *rss])
    return _Usage(
        cpu_percent=cpu / wall * 100 if wall > 0 else None,
        peak_rss_bytes=peak or None,
        mem_percent=sum(rss) / len(rss) / total * 100 if rss and total else None,
    )


def _peak_rss_bytes() -> int:
    try:
        import resource
    except ImportError:  # Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # macOS: bytes, Linux: KiB


# ---- process hygiene ---------------------------------------------------------------------------
