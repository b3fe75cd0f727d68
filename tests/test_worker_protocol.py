"""The parent/worker protocol, quota division, task checks, exit wording and tree killing.

Fast tests: no worker processes (the tree-kill test starts plain subprocesses).
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import time

import models_for_tests as m
import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st

from neuronperf.entries import BenchmarkSettings, CompileEntry, ModelRef, RunEntry, TensorSpec
from neuronperf.errors import ProtocolError, UsageError
from neuronperf.executors import Executor, get_executor
from neuronperf.executors.local import LocalExecutor
from neuronperf.measure.protocol import (
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    Error,
    Go,
    Loaded,
    Ready,
    Samples,
    ThreadTotals,
    decode,
    encode,
    recv,
    send,
)
from neuronperf.measure.supervisor import worker_context
from neuronperf.measure.task import (
    BackendLoader,
    BenchmarkTask,
    FactoryLoader,
    LoadFnLoader,
    call_args,
    check_task,
    factory_loader,
    split_quota,
    task_for_entry,
    visible_devices_env,
)
from neuronperf.results.samples import copy_samples_path, read_copy_samples, write_copy_samples
from neuronperf.util import processes as procutil

SAMPLES = Samples(
    threads=(
        ThreadTotals(thread_idx=0, calls=3, infer_ns_total=18, preprocess_ns_total=0, postprocess_ns_total=0),
        ThreadTotals(thread_idx=1, calls=0, infer_ns_total=0, preprocess_ns_total=0, postprocess_ns_total=0),
    ),
    load_ms=1.5, warmup_ms=2.5, late_ns=0,
)

MESSAGES = [
    Loaded(load_ms=12.5),
    Ready(warmup_ms=3.25, warmup_calls=10),
    Go(start_ns=1_000_000_000_000, end_ns=1_000_500_000_000, quotas=(3, None), minimums=(0, 5),
                last_ns=1_002_000_000_000, samples_path="/tmp/x/copy-0.npz"),
    SAMPLES,
    Error(phase="loading", message="ValueError: bad"),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda msg: msg.TYPE)
def test_every_message_round_trips_through_json(message):
    data = encode(message)
    body = json.loads(data)
    assert body["v"] == PROTOCOL_VERSION and body["type"] == message.TYPE
    assert decode(data) == message


def test_every_message_type_is_defined_once():
    assert set(MESSAGE_TYPES) == {"loaded", "ready", "go", "samples", "error"}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"not json", "malformed message"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"type": "loaded", "load_ms": 1}', f"protocol version None received, {PROTOCOL_VERSION} expected"),
        (b'{"v": 99, "type": "loaded", "load_ms": 1}', "protocol version 99 received"),
        (b'{"v": 6, "type": "hello"}', "unknown message type 'hello'"),
        (b'{"v": 6, "type": "loaded"}', "missing fields ['load_ms']"),
        (b'{"v": 6, "type": "loaded", "load_ms": 1, "x": 2}', "unexpected fields ['x']"),
        (b'{"v": 6, "type": "go", "start_ns": 1.5, "end_ns": 2, "quotas": [], "minimums": [], "last_ns": 3, "samples_path": "x", "rate": null, "requests": 0}', "1.5 is not an integer"),
        (b'{"v": 6, "type": "go", "start_ns": 1, "end_ns": 2, "quotas": [], "minimums": [], "last_ns": 3, "samples_path": 3, "rate": null, "requests": 0}', "samples_path must be a string"),
        (
            b'{"v": 6, "type": "samples", "load_ms": 1, "warmup_ms": 1, "late_ns": 0, "device_mem_peak_bytes": null, "threads": [{"thread_idx": 0, '
            b'"calls": 1, "infer_ns_total": 0}]}',
            "missing fields ['postprocess_ns_total', 'preprocess_ns_total']",
        ),
        (
            b'{"v": 6, "type": "samples", "load_ms": 1, "warmup_ms": 1, "late_ns": 0.5, "device_mem_peak_bytes": null, "threads": []}',
            "0.5 is not an integer",
        ),
    ],
)
def test_bad_messages_are_protocol_errors(data, expected):
    with pytest.raises(ProtocolError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        decode(data)


def test_messages_travel_over_a_real_pipe():
    import multiprocessing

    a, b = multiprocessing.Pipe()
    send(a, SAMPLES)
    assert recv(b) == SAMPLES
    a.close()
    with pytest.raises(EOFError):
        recv(b)


@given(st.integers(min_value=1, max_value=10_000), st.integers(min_value=1, max_value=64))
def test_quota_division_is_fair_and_exact(max_infers, n_threads):
    quotas = split_quota(max_infers, n_threads)
    assert len(quotas) == n_threads
    assert sum(quotas) == max_infers  # type: ignore[arg-type]
    assert max(quotas) - min(quotas) <= 1  # type: ignore[type-var, operator]


def test_no_quota_without_max_infers():
    assert split_quota(None, 3) == (None, None, None)


def test_a_tuple_input_is_spread_anything_else_is_one_argument():
    assert call_args((1, 2)) == (1, 2)
    assert call_args([1, 2]) == ([1, 2],)
    assert call_args({"a": 1}) == ({"a": 1},)


def test_pinning_is_asked_of_the_tasks_backend(monkeypatch):
    neuron = BenchmarkTask("x", factory_loader(m.SleepModel), device_type="neuron", device_backend="torch-neuronx", pipeline_size=4)
    assert visible_devices_env(neuron, 0) == {"NEURON_RT_VISIBLE_CORES": "0-3"}
    assert visible_devices_env(neuron, 2) == {"NEURON_RT_VISIBLE_CORES": "8-11"}
    assert visible_devices_env(BenchmarkTask("x", factory_loader(m.SleepModel)), 3) == {}  # no backend: no pinning
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4, 6")
    cuda = BenchmarkTask("x", factory_loader(m.SleepModel), device_type="cuda", device_backend="torch")
    assert [visible_devices_env(cuda, i) for i in range(3)] == [
        {"CUDA_VISIBLE_DEVICES": "4"}, {"CUDA_VISIBLE_DEVICES": "6"}, {"CUDA_VISIBLE_DEVICES": "4"},
    ]


def test_a_copys_samples_file_round_trips(tmp_path):
    import numpy as np

    path = copy_samples_path(str(tmp_path), 1)
    starts = [np.array([10, 20, 30], dtype=np.int64), np.zeros(0, dtype=np.int64)]
    lats = [np.array([5, 6, 7], dtype=np.int64), np.zeros(0, dtype=np.int64)]
    write_copy_samples(path, starts, lats)
    back = read_copy_samples(path, 2)
    assert [list(s) for s, _ in back] == [[10, 20, 30], []] and list(back[0][1]) == [5, 6, 7]
    assert back[0][0].dtype == np.int64
    with pytest.raises(ProtocolError, match="cannot be read"):
        read_copy_samples(str(tmp_path / "missing.npz"), 1)
    with pytest.raises(ProtocolError, match="cannot be read"):
        read_copy_samples(path, 3)  # a thread the file does not hold


def _entry() -> RunEntry:
    compile_entry = CompileEntry(
        model=ModelRef(name="mlp", factory="models_for_tests:torch_mlp"), params=(), inputs=(TensorSpec((32,)),),
        batch_size=8, pipeline_size=1, framework="torch", device_type="cpu", compiler="eager",
    )
    return RunEntry(compile=compile_entry, n_models=3, workers_per_model=2, benchmark=BenchmarkSettings(duration=2))


def test_task_for_entry_carries_the_entry():
    entry = _entry()
    task = task_for_entry(entry, "torch", None)
    assert task.entry_id == entry.id == "mlp-bs8-p1-m3-w2"
    assert (task.batch_size, task.pipeline_size, task.n_models, task.workers_per_model) == (8, 1, 3, 2)
    assert task.settings == entry.benchmark and task.device_type == "cpu"
    assert task.loader == BackendLoader("torch", entry.compile, None) and task.device_backend == "torch"
    assert task.inputs is None  # the backend makes them in each worker
    assert pickle.loads(pickle.dumps(task)) == task


def test_check_task_names_every_problem():
    bad = BenchmarkTask(
        "bad", factory_loader(m.SleepModel), batch_size=0, workers_per_model=-1, inputs=(1,),
        settings=BenchmarkSettings(duration=0, timeout=-1, max_infers=0, repeat=0),
    )
    with pytest.raises(UsageError) as info:
        check_task(bad)
    text = str(info.value)
    for expected in ("batch_size must be a positive integer, got 0", "workers_per_model", "duration must be positive",
                     "timeout must be positive", "max_infers must be a positive integer or None, got 0",
                     "repeat must be a positive integer, got 0"):
        assert expected in text


def test_check_task_refuses_unpicklable_things_and_unknown_backends():
    with pytest.raises(UsageError, match="postprocess_fn"):
        check_task(BenchmarkTask("x", factory_loader(m.SleepModel), inputs=(1,), postprocess_fn=lambda out: out))
    with pytest.raises(UsageError, match="model factory"):
        check_task(BenchmarkTask("x", FactoryLoader(factory=lambda: m.SleepModel()), inputs=(1,)))
    with pytest.raises(UsageError, match="load_fn"):
        check_task(BenchmarkTask("x", LoadFnLoader(load_fn=lambda p, device_id: None, filename="f"), inputs=(1,)))
    unpicklable_input = ((x for x in [1]),)  # generators cannot be pickled
    with pytest.raises(UsageError, match="inputs"):
        check_task(BenchmarkTask("x", factory_loader(m.SleepModel), inputs=unpicklable_input))
    with pytest.raises(UsageError, match="setup_fn must be callable"):
        check_task(BenchmarkTask("x", factory_loader(m.SleepModel), inputs=(1,), setup_fn=3))  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="unknown backend 'nope'"):
        check_task(BenchmarkTask("x", BackendLoader("nope", _entry().compile)))


def test_never_fork():
    with pytest.raises(UsageError, match="never 'fork'"):
        worker_context("fork")
    with pytest.raises(UsageError, match="never 'fork'"):
        get_executor("local", start_method="fork")


def test_executor_registry():
    with get_executor() as executor:
        assert isinstance(executor, LocalExecutor) and isinstance(executor, Executor)
        assert executor.start_method in ("forkserver", "spawn")
    with pytest.raises(UsageError, match="unknown executor 'nope'; choose one of: local, ray"):
        get_executor("nope")
    with pytest.raises(UsageError, match="executor 'local'"):
        get_executor("local", workers=3)


def test_an_unknown_executor_is_a_clear_error():
    with pytest.raises(UsageError, match="unknown executor 'dask'; choose one of: local, ray"):
        get_executor("dask")


@pytest.mark.parametrize(
    ("exitcode", "expected"),
    [
        (-6, "SIGABRT (signal 6)"),
        (-11, "SIGSEGV (signal 11)"),
        (3, "exit code 3"),
        (None, "an unknown exit status"),
    ],
)
def test_exit_status_wording(exitcode, expected):
    assert procutil.describe_exit(exitcode) == expected


def test_sigkill_wording_suggests_out_of_memory():
    assert procutil.describe_exit(-9).startswith("SIGKILL (signal 9), ")
    assert "out-of-memory" in procutil.describe_exit(-9)


def test_kill_tree_kills_grandchildren_and_orphans_in_the_group():
    # A group leader with a child that ignores SIGTERM and an orphaned grandchild that stays in the group.
    script = (
        "import os, signal, subprocess, sys, time\n"
        "os.setpgid(0, 0)\n"
        "stubborn = subprocess.Popen([sys.executable, '-c', 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); time.sleep(60)'], stdout=subprocess.PIPE)\n"
        "stubborn.stdout.readline()\n"
        "orphan_parent = subprocess.Popen([sys.executable, '-c', 'import subprocess, sys, time; p = subprocess.Popen([sys.executable, \"-c\", \"import time; time.sleep(60)\"]); print(p.pid, flush=True)'], stdout=subprocess.PIPE)\n"
        "orphan = int(orphan_parent.stdout.readline())\n"
        "orphan_parent.wait()\n"
        "print(stubborn.pid, orphan, flush=True)\n"
        "time.sleep(60)\n"
    )
    leader = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        stubborn, orphan = (int(x) for x in leader.stdout.readline().split())  # type: ignore[union-attr]
        assert psutil.Process(orphan).ppid() != leader.pid  # re-parented: not findable through the leader
        started = time.monotonic()
        killed = procutil.kill_tree(leader.pid, grace_s=0.5)
        assert {leader.pid, stubborn, orphan} <= set(killed)
        assert time.monotonic() - started < 5
        leader.wait(timeout=5)
        for pid in (stubborn, orphan):
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    finally:
        leader.kill()


def test_kill_tree_of_a_finished_process_is_a_no_op():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert procutil.kill_tree(proc.pid) == []


@pytest.mark.slow
def test_a_worker_call_sees_the_drivers_environment_as_it_is_now(monkeypatch):
    """A forkserver's children inherit the environment of when it started; a variable set since
    (HF_HUB_OFFLINE set by a script before planning) must still reach the work done in them. The
    first call starts the forkserver, the variable is set after it."""
    from neuronperf.measure.supervisor import run_in_worker

    monkeypatch.delenv("NEURONPERF_TEST_LATE_VARIABLE", raising=False)
    assert run_in_worker(m.environment_variable, ("NEURONPERF_TEST_LATE_VARIABLE",), timeout=120) is None
    monkeypatch.setenv("NEURONPERF_TEST_LATE_VARIABLE", "set later")
    assert run_in_worker(m.environment_variable, ("NEURONPERF_TEST_LATE_VARIABLE",), timeout=120) == "set later"
