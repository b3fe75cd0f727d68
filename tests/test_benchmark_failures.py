"""Failure is a Measurement, never an exception, and no worker process outlives ``measure``.

Real worker processes run models that raise, abort, get SIGKILLed, exit, hang, and hang after
starting a child process of their own.
"""

from __future__ import annotations

import multiprocessing.forkserver
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import models_for_tests as m
import psutil
import pytest
from measuring import measure

from neuronperf.entries import BenchmarkSettings
from neuronperf.errors import UsageError
from neuronperf.measure.task import BenchmarkTask, LoadFnLoader, factory_loader

pytestmark = pytest.mark.slow

TESTS_DIR = Path(__file__).parent


def settings(duration: float = 0.5, timeout: float = 30.0) -> BenchmarkSettings:
    return BenchmarkSettings(duration=duration, warmup_calls=1, timeout=timeout)


def task(loader, n_models: int = 1, timeout: float = 30.0, **kw) -> BenchmarkTask:
    return BenchmarkTask("failing", loader, n_models=n_models, settings=settings(timeout=timeout), inputs=(1,), **kw)


def live_workers() -> list[psutil.Process]:
    """Processes the forkserver started that are still running (zombies excluded)."""
    pid = multiprocessing.forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]
    if pid is None:
        return []
    alive = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.append(child)
        except psutil.NoSuchProcess:
            continue
    return alive


def pids_in(pid_file: Path) -> dict:
    return {name: int(pid) for name, pid in (line.split() for line in pid_file.read_text().splitlines())}


def assert_gone(*pids: int) -> None:
    deadline = time.monotonic() + 3
    alive = [p for p in pids if psutil.pid_exists(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if _running(p)]
    assert not alive, f"still running: {alive}"


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def healthy_entry_still_measures() -> None:
    result = measure(task(factory_loader(m.SleepModel, ms=5), n_models=2))
    assert result.status == "ok", result.error
    assert all(len(w.latency_ns) > 10 for w in result.workers)
    assert not live_workers()


def test_model_that_raises_on_call_reports_its_own_message():
    result = measure(task(factory_loader(m.RaiseModel, on="call", after=0), n_models=2))
    assert result.status == "error"
    assert result.error.startswith("ValueError: model exploded on purpose (copy ")
    assert "while warming up" in result.error
    assert not live_workers()
    healthy_entry_still_measures()


def test_model_that_raises_while_loading():
    result = measure(task(factory_loader(m.RaiseModel, on="load")))
    assert result.status == "error"
    assert result.error == "ValueError: weights are corrupt (copy 0, while loading)"
    assert not live_workers()


def test_model_that_raises_during_the_measured_window():
    # warm-up and the start of the window pass within 0.3 s; the window lasts longer
    result = measure(task(factory_loader(m.RaiseModel, on="call", after_s=0.3)))
    assert result.status == "error"
    assert "ValueError: model exploded on purpose" in result.error and "while measuring" in result.error


def test_abort_is_reported_with_its_signal_and_the_other_copies_are_stopped(tmp_path: Path):
    result = measure(task(factory_loader(m.AbortModel), n_models=2))
    assert result.status == "error"
    assert result.error.startswith("copy ") and "died: SIGABRT (signal 6) while warming up" in result.error
    assert not live_workers()
    healthy_entry_still_measures()


def test_sigkill_mentions_a_possible_out_of_memory_kill():
    result = measure(task(factory_loader(m.SelfKillModel)))
    assert result.status == "error"
    assert "copy 0 died: SIGKILL (signal 9)" in result.error and "out-of-memory" in result.error


def test_exit_code_is_reported():
    result = measure(task(factory_loader(m.ExitModel, code=3)))
    assert result.status == "error"
    assert result.error == "copy 0 died: exit code 3 while starting or loading"


def test_one_failing_copy_stops_the_healthy_ones(tmp_path: Path):
    pid_file = tmp_path / "pids.txt"
    model_file = tmp_path / "model.txt"
    model_file.write_text(str(pid_file))
    result = measure(task(LoadFnLoader(load_fn=_fail_second_copy, filename=str(model_file)), n_models=2, timeout=20))
    assert result.status == "error"
    assert result.error == "RuntimeError: copy 1 refuses to load (copy 1, while loading)"
    healthy_pid = pids_in(pid_file)["worker"]
    assert_gone(healthy_pid)
    assert not live_workers()


def test_hang_times_out_and_the_worker_is_killed(tmp_path: Path):
    pid_file = tmp_path / "pids.txt"
    started = time.monotonic()
    result = measure(task(factory_loader(m.HangModel, pid_file=str(pid_file)), n_models=2, timeout=2.0))
    elapsed = time.monotonic() - started
    assert result.status == "timeout"
    assert result.error.startswith("timed out after 2 s (benchmark.timeout): ")
    assert "copy 0 was warming up" in result.error and "copy 1 was warming up" in result.error
    assert 2.0 <= elapsed < 6.0
    worker_pids = [int(line.split()[1]) for line in pid_file.read_text().splitlines()]
    assert len(worker_pids) == 2
    assert_gone(*worker_pids)
    assert not live_workers()
    healthy_entry_still_measures()


def test_hang_while_loading_names_the_phase():
    result = measure(task(factory_loader(m.HangModel, on="load"), timeout=1.5))
    assert result.status == "timeout"
    assert "copy 0 was starting or loading" in result.error  # no Loaded message yet


def test_timeout_kills_a_child_process_the_model_started(tmp_path: Path):
    pid_file = tmp_path / "pids.txt"
    result = measure(task(factory_loader(m.SpawnChildThenHang, pid_file=str(pid_file)), timeout=3.0))
    assert result.status == "timeout"
    pids = pids_in(pid_file)
    assert set(pids) == {"worker", "child"}
    assert_gone(pids["worker"], pids["child"])
    assert not live_workers()


def test_a_model_may_start_processes_of_its_own():
    result = measure(task(factory_loader(m.PoolModel)))
    assert result.status == "ok", result.error
    assert not live_workers()


def test_callbacks_that_cannot_reach_a_worker_are_a_usage_error_before_anything_starts():
    with pytest.raises(UsageError, match="preprocess_fn <lambda> cannot be sent to worker processes"):
        measure(task(factory_loader(m.SleepModel), preprocess_fn=lambda x: x))
    with pytest.raises(UsageError, match="inputs are required"):
        measure(BenchmarkTask("no-inputs", factory_loader(m.SleepModel)))
    with pytest.raises(UsageError, match="n_models must be a positive integer, got 0"):
        measure(task(factory_loader(m.SleepModel), n_models=0))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_interrupted_parent_leaves_no_worker_behind(tmp_path: Path, sig: int):
    pid_file = tmp_path / "pids.txt"
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(TESTS_DIR)!r})
        import models_for_tests as m
        import tempfile
        from neuronperf.measure.supervisor import measure
        from neuronperf.measure.task import BenchmarkTask, factory_loader
        from neuronperf.entries import BenchmarkSettings

        if __name__ == "__main__":
            loader = factory_loader(m.SpawnChildThenHang, pid_file={str(pid_file)!r})
            measure(BenchmarkTask("hang", loader, n_models=2, inputs=(1,),
                                  settings=BenchmarkSettings(duration=1, timeout=120)), tempfile.mkdtemp())
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE)
    try:
        _wait_for_lines(pid_file, 4)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    if sig == signal.SIGTERM:
        assert proc.returncode == -signal.SIGTERM
    else:
        # Python ends an unhandled KeyboardInterrupt by re-raising SIGINT on itself
        assert proc.returncode == -signal.SIGINT and b"KeyboardInterrupt" in err
    pids = [int(line.split()[1]) for line in pid_file.read_text().splitlines()]
    assert_gone(*pids)


def test_workers_exit_when_the_parent_is_killed(tmp_path: Path):
    pid_file = tmp_path / "pids.txt"
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(TESTS_DIR)!r})
        import models_for_tests as m
        import tempfile
        from neuronperf.measure.supervisor import measure
        from neuronperf.measure.task import BenchmarkTask, factory_loader
        from neuronperf.entries import BenchmarkSettings

        if __name__ == "__main__":
            loader = factory_loader(m.HangModel, pid_file={str(pid_file)!r})
            measure(BenchmarkTask("hang", loader, inputs=(1,), settings=BenchmarkSettings(duration=1, timeout=120)),
                    tempfile.mkdtemp())
    """))
    proc = subprocess.Popen([sys.executable, str(script)])
    try:
        _wait_for_lines(pid_file, 1)
        proc.kill()  # no chance to clean up: the worker must notice on its own
        proc.wait(timeout=10)
    finally:
        proc.kill()
    worker_pid = int(pid_file.read_text().split()[1])
    deadline = time.monotonic() + 5
    while _running(worker_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(worker_pid)


def _wait_for_lines(path: Path, n: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= n:
            time.sleep(0.3)  # let the workers reach their hang
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never got {n} lines")


def _fail_second_copy(path: str, device_id: int) -> m.SleepModel:
    with open(path) as f:
        pid_file = f.read().strip()
    if device_id == 1:
        # Fail once copy 0 has loaded (its pid line is written), so that there is a healthy copy
        # to stop. A fixed 0.3 s sleep only made that likely: both copies start together, and on
        # a loaded machine copy 0 may not have reached its load_fn by then, leaving no pid file.
        written = Path(pid_file)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not (written.is_file() and written.read_text().endswith("\n")):
            time.sleep(0.01)
        raise RuntimeError("copy 1 refuses to load")
    with open(pid_file, "a") as f:
        f.write(f"worker {os.getpid()}\n")
    return m.SleepModel(5)


def test_a_call_in_a_worker_sees_the_drivers_environment_as_it_is_now(monkeypatch):
    """A forkserver child starts with the server's environment, as it was when the server
    started; ``run_in_worker`` does the driver's work (checking factories and sources), so it
    must see what the driver sees now: a variable set since, and none removed since."""
    from neuronperf.measure.supervisor import run_in_worker

    monkeypatch.setenv("NEURONPERF_TEST_REMOVED", "set before the forkserver started")
    run_in_worker(os.getpid, (), timeout=60)  # the forkserver runs from here on
    monkeypatch.setenv("NEURONPERF_TEST_ADDED", "set after the forkserver started")
    monkeypatch.delenv("NEURONPERF_TEST_REMOVED")
    assert run_in_worker(os.getenv, ("NEURONPERF_TEST_ADDED",), timeout=60) == "set after the forkserver started"
    assert run_in_worker(os.getenv, ("NEURONPERF_TEST_REMOVED",), timeout=60) is None


def test_every_kind_of_worker_sees_the_drivers_environment_as_it_is_now(monkeypatch):
    """The same for the workers that measure and those that evaluate (one helper serves all
    three): a variable removed from the driver after the forkserver started is gone there too."""
    from neuronperf.measure.evaluate import evaluation_task, run_evaluation
    from neuronperf.measure.supervisor import run_in_worker

    monkeypatch.setenv("NEURONPERF_TEST_REMOVED", "set before the forkserver started")
    run_in_worker(os.getpid, (), timeout=60)  # the forkserver runs from here on, with that variable
    monkeypatch.setenv("NEURONPERF_TEST_ADDED", "set after the forkserver started")
    monkeypatch.delenv("NEURONPERF_TEST_REMOVED")
    loader = factory_loader(m.EnvCheckingModel, present="NEURONPERF_TEST_ADDED", absent="NEURONPERF_TEST_REMOVED")
    result = measure(BenchmarkTask("env", loader, inputs=(1,),
                                   settings=BenchmarkSettings(duration=0.2, warmup_calls=1, timeout=60.0)))
    assert result.status == "ok", result.error
    evaluated = run_evaluation(evaluation_task("env", loader, [(1, 1)], ["accuracy"]))
    assert evaluated.error is None, evaluated.error
