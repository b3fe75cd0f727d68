"""The compile stage: one artifact per distinct compile entry, cached, built in parallel jobs.

Each compile runs in its own process (started with ``spawn``: a compiler that crashes or hangs
takes only its job down), with its output captured in a log file and a hard timeout. A failure
becomes a ``CompileResult`` with status ``error``/``timeout``; the other jobs finish.

The cache is content-addressed: an artifact's file name carries its compile key, and a small
side file (``<artifact>.meta.json``) written after the artifact is complete and fsync'd records
that key, the artifact's size and its sha256. An artifact whose side file matches, and whose
bytes still have that size and digest, is reused without compiling (by ``neuronperf run`` and
``neuronperf compile``; the Python API's ``compile(model, ...)`` holds a model object, whose
weights have no cheap content key, so it always compiles, as NeuronPerf did).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Callable, Optional

import psutil

from neuronperf.backends import find_backend
from neuronperf.backends.base import Backend
from neuronperf.compilation.artifacts import (
    artifact_relpath,
    cached_meta,
    compile_key,
    compile_one,
    remove_path,
    temporary_path,
    write_meta,
)
from neuronperf.entries import CompileEntry
from neuronperf.errors import OutputWriteFailed
from neuronperf.spec.values import default_compile_jobs
from neuronperf.util import processes as procutil
from neuronperf.util.atomic import atomic_write_json
from neuronperf.util.paths import safe_file_stem

LOGS_DIR = "logs"


#: Thread-pool sizes that frameworks read at import (torch, numpy's BLAS, TensorFlow, onnxruntime).
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


#: Exit status of a compile job that saw its parent die.
EXIT_PARENT_GONE = 70


@dataclass(frozen=True)
class CompileResult:
    """What became of one compile entry."""

    entry: CompileEntry
    status: str  # "ok", "error" or "timeout"
    cache_key: str
    compiler_version: str
    #: Path of the artifact relative to output_dir; None when the compiler builds no artifact.
    artifact: Optional[str] = None
    compile_s: Optional[float] = None  # wall seconds of this compile (of the original build if reused)
    reused: bool = False
    error: Optional[str] = None
    log_file: Optional[str] = None  # relative to output_dir

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def compile_all(
    entries: Sequence[CompileEntry],
    output_dir: str,
    *,
    jobs: int = 0,
    on_result: Optional[Callable[[CompileResult], None]] = None,
    on_start: Optional[Callable[[CompileEntry], None]] = None,
) -> list[CompileResult]:
    """Build (or reuse) the artifact of every entry; return one result per entry, in order.

    ``on_result`` is called as each entry finishes (for the journal and the progress display);
    ``on_start`` as each compile job starts.
    """
    out = Path(output_dir)
    results: dict[int, CompileResult] = {}
    pending: list[tuple[int, CompileEntry, Backend, str, str]] = []
    versions: dict[tuple[str, str], str] = {}
    for i, entry in enumerate(entries):
        backend = find_backend(entry.framework, entry.device_type, entry.compiler)
        vkey = (backend.name, entry.compiler)
        if vkey not in versions:
            versions[vkey] = backend.compiler_version(entry.compiler)
        version = versions[vkey]
        key = compile_key(entry, version)
        source = entry.model.source
        if source is not None and source.kind == "file":
            # A saved artifact is measured as it is: nothing to build, and its path stays the
            # user's (relative to output_dir, as every artifact path of the index is).
            from neuronperf.sources.files import resolve_path

            artifact = os.path.relpath(resolve_path(source.value, source.base_dir), out.resolve())
            results[i] = CompileResult(entry, "ok", key, version, artifact=artifact, compile_s=0.0, reused=True)
            if on_result:
                on_result(results[i])
            continue
        relpath = artifact_relpath(entry, backend, key)
        if relpath is None:
            # Nothing is built ahead of time (eager): the worker builds the model itself.
            results[i] = CompileResult(entry, "ok", key, version)
        else:
            meta = cached_meta(out, relpath, key)
            if meta is not None:
                results[i] = CompileResult(entry, "ok", key, version, artifact=relpath,
                                           compile_s=meta.get("compile_s"), reused=True)
            else:
                pending.append((i, entry, backend, key, relpath))
                continue
        if on_result:
            on_result(results[i])

    if pending:
        (out / LOGS_DIR).mkdir(parents=True, exist_ok=True)
        for i, result in _run_jobs(pending, out, max(1, jobs or default_compile_jobs()), versions, on_result, on_start):
            results[i] = result
    return [results[i] for i in range(len(entries))]


@dataclass
class _Job:
    index: int
    entry: CompileEntry
    key: str
    relpath: str
    version: str
    process: multiprocessing.process.BaseProcess
    result_path: Path
    log_relpath: str
    deadline: float
    started: float
    handle: Optional[psutil.Process]


def _run_jobs(pending, out: Path, jobs: int, versions, on_result, on_start):  # type: ignore[no-untyped-def]
    ctx = multiprocessing.get_context("spawn")
    queue = list(pending)
    running: list[_Job] = []
    try:
        while queue or running:
            while queue and len(running) < jobs:
                i, entry, backend, key, relpath = queue.pop(0)
                log_relpath = f"{LOGS_DIR}/compile-{safe_file_stem(entry.id, key)}.log"
                result_path = out / LOGS_DIR / f".compile-{key}.result.json"
                result_path.unlink(missing_ok=True)
                process = ctx.Process(
                    target=_compile_job,
                    args=(backend.name, entry, str(out / relpath), str(out / log_relpath), str(result_path),
                          os.getpid(), max(1, (os.cpu_count() or 1) // jobs)),
                    name=f"neuronperf-compile-{entry.id}",
                    daemon=False,
                )
                if on_start:
                    on_start(entry)
                now = time.monotonic()
                process.start()
                running.append(
                    _Job(i, entry, key, relpath, versions[(backend.name, entry.compiler)], process,
                         result_path, log_relpath, now + entry.timeout, now,
                         procutil.handle(process.pid) if process.pid is not None else None)
                )
            sentinels = [job.process.sentinel for job in running]
            next_deadline = min(job.deadline for job in running)
            wait(sentinels, timeout=max(0.0, min(1.0, next_deadline - time.monotonic())))
            still_running = []
            for job in running:
                if job.process.is_alive() and time.monotonic() < job.deadline:
                    still_running.append(job)
                    continue
                result = _finish_job(job, out)
                if on_result:
                    on_result(result)
                yield job.index, result
            running = still_running
    finally:
        # Interrupted (Ctrl-C), a full disk or an error in a callback: leave no compiler
        # running, and none of their half-built artifacts behind.
        for job in running:
            _kill(job)
            job.process.join(5)
            if job.process.pid is not None:
                remove_path(temporary_path(str(out / job.relpath), job.process.pid))


def _finish_job(job: _Job, out: Path) -> CompileResult:
    timed_out = job.process.is_alive()
    if timed_out:
        _kill(job)
    job.process.join(10)
    def result(status: str, **outcome: Any) -> CompileResult:
        return CompileResult(job.entry, status, job.key, job.version, log_file=job.log_relpath, **outcome)

    if timed_out:
        return result("timeout", error=f"compile exceeded its timeout of {job.entry.timeout:g} s")
    try:
        report = json.loads(job.result_path.read_text())
        job.result_path.unlink()
    except (OSError, ValueError):
        report = None
    if report is None or report.get("status") != "ok":
        if report is not None:
            error = report.get("error") or "compile failed"
        else:
            error = f"compile process {procutil.describe_exit(job.process.exitcode)}"
        return result("error", error=error)
    compile_s = float(report["compile_s"])
    try:
        write_meta(out, job.relpath, {"key": job.key, "compile_s": compile_s, "compiler_version": job.version,
                                      "entry": job.entry.to_dict()})
    except OSError as e:
        if isinstance(e, OutputWriteFailed):
            raise
        return result("error", error=f"the compiled artifact {out / job.relpath} cannot be read: {e.strerror or e}")
    return result("ok", artifact=job.relpath, compile_s=compile_s)


def _kill(job: _Job) -> None:
    # The handle taken at start: a job reaped meanwhile (is_alive() reaps) is not mistaken for
    # whatever process got its pid next.
    if job.handle is not None:
        procutil.kill_tree(job.handle)


def _compile_job(
    backend_name: str, entry: CompileEntry, artifact_path: str, log_path: str, result_path: str, parent_pid: int,
    threads: int,
) -> None:
    """Runs in a fresh process: compile one entry, output into its log, outcome into a file."""
    # Parallel jobs share the cores: each framework's thread pool gets its share, unless the
    # user set it (with every job using every core, two jobs only fight over them).
    for name in _THREAD_VARIABLES:
        os.environ.setdefault(name, str(threads))
    # Ctrl-C is the parent's to handle (it stops its jobs); a parent killed outright takes its
    # compiles with it instead of leaving hours of orphaned compiler work behind.
    procutil.become_group_leader()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    procutil.exit_with_parent(parent_pid, EXIT_PARENT_GONE)
    # Redirect the OS-level stdout/stderr: compilers (neuron-cc, inductor) print from C code too.
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    report: dict
    try:
        from neuronperf.backends import get_backend

        backend = get_backend(backend_name)
        print(f"neuronperf: compiling {entry.id} with {backend_name}/{entry.compiler}", flush=True)
        compile_s = compile_one(backend, entry, artifact_path)
        report = {"status": "ok", "compile_s": compile_s}
        print(f"neuronperf: compiled {entry.id} in {compile_s:.2f} s", flush=True)
    except BaseException as e:  # the job's whole point is to report any failure, then exit
        traceback.print_exc()
        report = {"status": "error", "error": f"{type(e).__name__}: {e}".strip()}
    atomic_write_json(result_path, report)
