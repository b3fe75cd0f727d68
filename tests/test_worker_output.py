"""What worker processes write, in real sweeps (issue 27): their output goes to a log of the entry
(a model that prints megabytes on an unread pipe still finishes, a failed row names its log),
a full disk while a worker writes its samples stops the sweep like a full journal (exit 3), and
entries beyond the machine's cores are rows that say why unless allowed."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_hostile_inputs import REPO, snapshot, write

pytestmark = pytest.mark.slow

FACTORY = '''
import errno
import os
import sys
import time

import torch

CHUNK = "p" * 65536


class Printer(torch.nn.Module):
    """Prints 64 KB to stdout and to stderr in every forward pass."""

    def forward(self, x):
        print(CHUNK, flush=True)
        print(CHUNK, file=sys.stderr, flush=True)
        time.sleep(0.01)
        return x


class Raiser(torch.nn.Module):
    def forward(self, x):
        raise ValueError("this model fails on purpose")


def fill_disk_at_samples():
    """In this (worker) process: the first write to a copy's samples file is short, every later
    one finds the disk full."""
    real_write, state = os.write, {"full": False}

    def write(fd, data):
        try:
            name = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            name = ""
        if "/samples/" in name and os.path.basename(name).startswith(".copy-"):
            if state["full"]:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            state["full"] = True
            return real_write(fd, bytes(memoryview(data)[: max(1, len(data) // 2)]))
        return real_write(fd, data)

    os.write = write


def build(kind="plain"):
    if os.environ.get("NP_TEST_FULL_DISK"):
        fill_disk_at_samples()
    if kind == "print":
        return Printer().eval()
    if kind == "raise":
        return Raiser().eval()
    return torch.nn.Sequential(torch.nn.Linear(8, 8)).eval()
'''


def sweep(folder: Path, *, kinds: str = '["plain"]', batch_sizes: str = "[1]", axes: str = "",
          benchmark: str = "") -> Path:
    write(folder / "printing.py", FACTORY)
    return write(folder / "sweep.yaml", f"""
        version: 1
        name: workers
        framework: torch
        device_type: cpu
        compiler: eager
        output_dir: out
        models:
          - name: m
            factory: "printing.py:build"
            kwargs: {{kind: $kind}}
            params: {{kind: {kinds}}}
            inputs: [[8]]
        sweep: {{batch_sizes: {batch_sizes}{axes}}}
        benchmark: {{duration: 0.3, warmup: {{calls: 2}}, timeout: 60{benchmark}}}
        """)


def rows(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_a_model_printing_megabytes_on_an_unread_pipe_finishes(tmp_path):
    spec = sweep(tmp_path, kinds='["print"]')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO)])))
    # stdout and stderr are pipes that nobody reads while it runs (a pipe holds 64 KB): a worker
    # that wrote its prints there would block inside the measured window until the timeout.
    process = subprocess.Popen([sys.executable, "-m", "neuronperf", "run", str(spec)], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        code = process.wait(timeout=120)
    finally:
        process.kill()
    stdout, stderr = process.communicate()
    assert code == 0, stderr.decode()
    [row] = rows(tmp_path / "out")
    assert row["status"] == "ok"
    [log] = (tmp_path / "out" / "logs").glob("run-m-kindprint-*.log")
    assert log.stat().st_size > 2 * 2**20, "the prints went to the entry's log"
    assert b"ppppp" not in stdout + stderr, "and not to the driver's output"


def test_a_failed_row_names_its_log_which_holds_the_traceback(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = sweep(tmp_path, kinds='["plain", "raise"]')
    code, stdout, stderr = cli("run", str(spec))
    assert code == 1, stderr
    ok, failed = rows(tmp_path / "out")
    assert ok["status"] == "ok" and failed["status"] == "error"
    error, _, log = failed["error"].rpartition(" (log: ")
    assert error == "ValueError: this model fails on purpose (copy 0, while warming up)"
    assert log.startswith("logs/run-m-kindraise-bs1-p1-m1-w1-") and log.endswith(".log)")
    text = (tmp_path / "out" / log[:-1]).read_text()
    assert text.startswith("neuronperf: copy 0 (pid ")
    assert "Traceback (most recent call last)" in text and "ValueError: this model fails on purpose" in text
    assert "Traceback" not in stderr + stdout, "tracebacks stay out of the progress display"
    assert f"(log: {log}" in stdout
    assert f"  worker log of m-kindraise-bs1-p1-m1-w1: out/{log[:-1]}" in stdout.splitlines()


def test_a_full_disk_while_a_worker_writes_its_samples_stops_the_sweep(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = sweep(tmp_path, batch_sizes="[1, 2]")
    out = tmp_path / "out"
    before = snapshot(tmp_path, skip=out)
    monkeypatch.setenv("NP_TEST_FULL_DISK", "1")  # the workers inherit it: their samples write fails
    code, stdout, stderr = cli("run", str(spec))
    monkeypatch.delenv("NP_TEST_FULL_DISK")
    assert code == 3, stderr
    assert "Traceback" not in stderr
    [folder] = (out / "samples").iterdir()
    [line] = [line for line in stderr.splitlines() if line.startswith("neuronperf: error:")]
    assert line == (f"neuronperf: error: {folder / 'repeat-0' / 'copy-0.npz'}: cannot be written: No space left "
                    "on device; the sweep stopped, finished entries are kept: free some space and rerun to go on")
    assert "workers: 0 ok, 0 failed, 0 reused, 0 run, 2 not measured" in stdout, "one line, not an error row per entry"
    assert os.listdir(folder / "repeat-0") == [], "the half-written temporary is removed"
    assert [r["status"] for r in rows(out)] == ["skipped", "skipped"]
    assert snapshot(tmp_path, skip=out) == before

    code, stdout, stderr = cli("run", str(spec))
    assert code == 0, stderr
    assert "workers: running 2 entries" in stderr and [r["status"] for r in rows(out)] == ["ok", "ok"]


def test_entries_beyond_the_machine_are_rows_that_say_why_unless_allowed(tmp_path, cli, monkeypatch):
    from neuronperf.measure.contract import MAX_THREADS_PER_CORE, machine_cores

    monkeypatch.chdir(tmp_path)
    cores = machine_cores()
    many = MAX_THREADS_PER_CORE * cores + 1
    spec = sweep(tmp_path, axes=f", n_models: [1, {many}], workers_per_model: [1, {many}]")
    code, stdout, stderr = cli("run", str(spec))
    assert code == 1, stderr
    found = {(r["n_models"], r["workers_per_model"]): r for r in rows(tmp_path / "out")}
    assert found[("1", "1")]["status"] == "ok"
    plural = "s" if cores != 1 else ""
    for n, w in ((1, many), (many, 1), (many, many)):
        row = found[(str(n), str(w))]
        assert row["status"] == "error"
        assert row["error"] == (
            f"beyond this machine: {n * w} measuring threads (n_models {n} x workers_per_model {w}) on {cores} "
            f"usable core{plural}, where at most {MAX_THREADS_PER_CORE} per core ({MAX_THREADS_PER_CORE * cores}) "
            "are measured; nothing of it ran. Set benchmark.allow_oversubscription: true to measure it anyway")
    assert list((tmp_path / "out" / "logs").glob("run-*")) == list((tmp_path / "out" / "logs").glob("run-*-m1-w1-*")), \
        "no worker of a refused entry started"
    # Asking for them keeps every identity: the measured entry stays done, the others are retried.
    from neuronperf.sweep.state import load_plan

    _, plain = load_plan(str(spec))
    allowed = sweep(tmp_path, axes=f", n_models: [1, {many}], workers_per_model: [1, {many}]",
                    benchmark=", allow_oversubscription: true")
    _, asked = load_plan(str(allowed))
    assert all(e.benchmark.allow_oversubscription for e in asked.run_entries)
    assert [e.key for e in asked.run_entries] == [e.key for e in plain.run_entries]
    code, stdout, _ = cli("status", "--json", str(allowed))
    assert code == 0 and json.loads(stdout)["counts"] == {"done": 1, "failed": 3, "todo": 0}


def test_the_python_api_keeps_the_log_of_a_failed_configuration_only(tmp_path, monkeypatch):
    import tempfile

    import models_for_tests as m

    import neuronperf.cpu

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the temporary logs go
    [ok] = neuronperf.cpu.benchmark(m.SleepModel, [1], batch_sizes=1, n_models=1, workers_per_model=1, duration=0.2)
    [failed] = neuronperf.cpu.benchmark(m.RaiseModel, [1], batch_sizes=1, n_models=1, workers_per_model=1, duration=0.2)
    assert ok["status"] == "ok"
    error, _, log = failed["error"].rpartition(" (log: ")
    assert error == "ValueError: model exploded on purpose (copy 0, while warming up)"
    path = Path(log[:-1])
    assert path.parent.parent == tmp_path and path.parent.name.startswith("neuronperf-logs-")
    assert path.name.startswith("RaiseModel-bs1-p1-m1-w1-") and path.suffix == ".log"
    assert "ValueError: model exploded on purpose" in path.read_text()
    assert [p.name for p in tmp_path.glob("neuronperf-logs-*/*")] == [path.name], "the ok configuration's log is removed"


def test_the_python_api_refuses_more_threads_than_the_cores_carry():
    import models_for_tests as m

    import neuronperf.cpu
    from neuronperf.measure.contract import MAX_THREADS_PER_CORE, machine_cores

    many = MAX_THREADS_PER_CORE * machine_cores() + 1
    [refused] = neuronperf.cpu.benchmark(m.SleepModel, [1], batch_sizes=1, n_models=1, workers_per_model=many,
                                         duration=0.2)
    assert refused["status"] == "error" and refused["error"].startswith(f"beyond this machine: {many} measuring threads")


def test_server_entries_log_like_closed_ones_and_are_bounded_alike(tmp_path, cli, monkeypatch):
    """The server scenario's copies write to the entry's log (a model printing megabytes still
    finishes, a failed row names its log) and its entries are refused beyond the machine's cores."""
    from neuronperf.measure.contract import MAX_THREADS_PER_CORE, machine_cores

    monkeypatch.chdir(tmp_path)
    many = MAX_THREADS_PER_CORE * machine_cores() + 1
    spec = sweep(tmp_path, kinds='["print", "raise"]', axes=f", rates: [50], workers_per_model: [1, {many}]",
                 benchmark=", scenario: server")
    code, stdout, stderr = cli("run", str(spec))
    assert code == 1, stderr
    found = {(r["kind"], r["workers_per_model"]): r for r in rows(tmp_path / "out")}
    printed, failed = found[("print", "1")], found[("raise", "1")]
    assert printed["status"] == "ok" and printed["rate_target"] == "50.0"
    [log] = (tmp_path / "out" / "logs").glob("run-m-kindprint-*-w1-*.log")
    assert log.stat().st_size > 2**20, "the prints went to the entry's log"
    assert "ppppp" not in stdout + stderr
    error, _, named = failed["error"].rpartition(" (log: ")
    assert error.startswith("ValueError: this model fails on purpose (copy 0, while ")
    assert "ValueError: this model fails on purpose" in (tmp_path / "out" / named[:-1]).read_text()
    for kind in ("print", "raise"):
        assert found[(kind, str(many))]["error"].startswith(f"beyond this machine: {many} measuring threads")
    assert not list((tmp_path / "out" / "logs").glob(f"run-*-w{many}-*")), "no worker of a refused entry started"


def _worker_with_no_room_for_files(conn, log_path):
    """A worker process in which no file may grow (RLIMIT_FSIZE 0: a write is EFBIG, as on a
    full disk), so its log's first line cannot be written."""
    import resource
    import signal

    from neuronperf.measure.worker import worker_main

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails instead of killing the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    worker_main(b"never unpickled", 0, conn, {}, {}, os.getppid(), log_path)


def test_a_log_the_disk_refuses_is_the_sweeps_failure_not_the_models(tmp_path):
    """Before any of the model's code runs, a copy that cannot write its log's first line says
    so in a FileFailed message (the supervisor raises ``OutputWriteFailed``: exit 3) instead of
    dying, which made every remaining entry an error row."""
    import errno
    import multiprocessing

    from neuronperf.measure.protocol import FileFailed, recv
    from neuronperf.measure.supervisor import file_error

    log = tmp_path / "run.log"
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(target=_worker_with_no_room_for_files,
                                                            args=(child, str(log)))
    process.start()
    child.close()
    try:
        assert parent.poll(60), "the worker said nothing"
        message = recv(parent)
    finally:
        process.join(timeout=30)
    assert message == FileFailed(path=str(log), reason=os.strerror(errno.EFBIG), errno=errno.EFBIG)
    failure = file_error(message)
    assert failure.exit_code == 3 and failure.out_of_space
    assert str(failure) == f"{log}: cannot be written: File too large"
