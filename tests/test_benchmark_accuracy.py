"""The benchmark stage measures what it claims: real worker processes, models of known latency.

Sleeping models are used for accuracy because ``time.sleep`` releases the GIL and does not need
a CPU, so the expected figures hold even on a machine busy with other work.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

import models_for_tests as m
import pytest
from measuring import measure

from neuronperf.entries import BenchmarkSettings, CompileEntry, ModelRef, RunEntry, TensorSpec
from neuronperf.executors import get_executor
from neuronperf.measure.task import BenchmarkTask, LoadFnLoader, factory_loader, task_for_entry

pytestmark = pytest.mark.slow


def settings(duration: float = 1.0, **kw: object) -> BenchmarkSettings:
    kw.setdefault("warmup_calls", 2)
    kw.setdefault("timeout", 60.0)
    return BenchmarkSettings(duration=duration, **kw)  # type: ignore[arg-type]


def latencies_ms(measurement) -> list:
    return [lat / 1e6 for w in measurement.workers for lat in w.latency_ns]


def test_sleeping_model_latency_and_throughput_match_the_truth():
    n_models, workers, batch, ms = 2, 2, 4, 20.0
    task = BenchmarkTask(
        "sleep20", factory_loader(m.SleepModel, ms=ms), batch_size=batch, n_models=n_models,
        workers_per_model=workers, settings=settings(1.0), inputs=(1,),
    )
    result = measure(task)
    assert result.status == "ok", result.error

    p50 = statistics.median(latencies_ms(result))
    assert ms <= p50 <= ms * 1.04, p50  # sleep never returns early; a few % of scheduling noise

    # The window covers every counted call: calls start for 1 s, and the last one returns at most
    # about one call later.
    window_s = (result.window_end_ns - result.window_start_ns) / 1e9
    assert 1.0 <= window_s <= 1.0 + 2 * ms / 1000, window_s
    n_calls = len(latencies_ms(result))
    throughput = n_calls * batch / window_s
    expected = n_models * workers * batch / (ms / 1000)
    assert throughput == pytest.approx(expected, rel=0.10), (throughput, expected)

    # every thread of every copy reported, and each measured call started inside the window
    assert sorted((w.copy_idx, w.thread_idx) for w in result.workers) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for w in result.workers:
        assert len(w.start_ns) == len(w.latency_ns) > 10
        assert all(result.window_start_ns <= s < result.window_end_ns for s in w.start_ns)
        assert all(s + lat <= result.window_end_ns for s, lat in zip(w.start_ns, w.latency_ns))
        assert list(w.start_ns) == sorted(w.start_ns)
        # no pre/postprocess: the model call is the whole latency
        assert w.infer_ns_total == sum(w.latency_ns)
        assert w.preprocess_ns_total == w.postprocess_ns_total == 0

    assert [c.copy_idx for c in result.copies] == [0, 1]
    assert len({c.pid for c in result.copies}) == 2 and os.getpid() not in {c.pid for c in result.copies}
    for c in result.copies:
        assert c.load_ms >= 0
        assert c.warmup_ms == pytest.approx(ms, rel=0.25)
        assert c.cpu_avg_percent is not None and 0 <= c.cpu_avg_percent < 30  # sleeping costs no CPU
        assert c.peak_rss_bytes and c.peak_rss_bytes > 10 * 2**20
        assert c.mem_avg_percent is not None and 0 < c.mem_avg_percent < 100


def test_max_infers_is_shared_fairly_and_ends_the_window_early():
    task = BenchmarkTask(
        "quota", factory_loader(m.SleepModel, ms=10), n_models=1, workers_per_model=3,
        settings=settings(30.0, max_infers=10), inputs=(1,),
    )
    result = measure(task)
    assert result.status == "ok", result.error
    assert sorted(len(w.latency_ns) for w in result.workers) == [3, 3, 4]
    window_s = (result.window_end_ns - result.window_start_ns) / 1e9
    # 4 calls of 10 ms on the busiest thread: the window ends when the last call returned.
    assert 0.035 < window_s < 1.0
    last_end = max(s + lat for w in result.workers for s, lat in zip(w.start_ns, w.latency_ns))
    assert result.window_end_ns == last_end


def test_load_fn_model_with_copies_is_measured(tmp_path: Path):
    model_file = tmp_path / "model.txt"
    model_file.write_text("10\n")
    task = BenchmarkTask(
        "load-fn", LoadFnLoader(load_fn=m.sleepy_load_fn, filename=str(model_file)), n_models=2,
        settings=settings(0.6), inputs=1,  # a non-tuple input is one argument
    )
    result = measure(task)
    assert result.status == "ok", result.error
    assert statistics.median(latencies_ms(result)) == pytest.approx(10, rel=0.08)


def test_callbacks_run_in_the_right_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    log = tmp_path / "log.txt"
    monkeypatch.setenv("NP_TEST_LOG", str(log))  # set after the forkserver started: must still arrive
    task = BenchmarkTask(
        "callbacks", factory_loader(m.CallbackCheckingModel), n_models=2, workers_per_model=2,
        settings=settings(0.5), inputs=7,
        env_setup_fn=m.env_setup_fn, setup_fn=m.setup_fn,
        preprocess_fn=m.preprocess_fn, postprocess_fn=m.postprocess_fn,
    )
    result = measure(task)
    assert result.status == "ok", result.error  # the model raises if any callback was skipped

    by_pid: dict = {}
    for line in log.read_text().splitlines():
        *words, pid = line.split()
        by_pid.setdefault(pid, []).append(words[0])
    assert len(by_pid) == 2
    for events in by_pid.values():
        assert events == ["env_setup", "load", "setup", "preprocess", "postprocess"]
    text = log.read_text()
    assert "env_setup copy=0 batch=1 workers=2" in text and "env_setup copy=1" in text

    for w in result.workers:
        # pre/postprocessing is inside the timed call, and accounted for separately
        assert w.preprocess_ns_total > 0 and w.postprocess_ns_total > 0
        assert w.preprocess_ns_total + w.infer_ns_total + w.postprocess_ns_total == sum(w.latency_ns)


def test_each_copy_is_pinned_before_env_setup_and_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    log = tmp_path / "env.txt"
    monkeypatch.setenv("NP_TEST_MARK", "from-parent")
    task = BenchmarkTask(
        "pinning", factory_loader(m.EnvRecordingModel, log=str(log)), n_models=2, pipeline_size=2,
        device_type="neuron", device_backend="torch-neuronx", settings=settings(0.3), inputs=(1,),
    )
    result = measure(task)
    assert result.status == "ok", result.error
    seen = sorted(line.split(" ", 2)[2] for line in log.read_text().splitlines())
    assert seen == [
        "NEURON_RT_VISIBLE_CORES=0-1 NP_TEST_MARK=from-parent",
        "NEURON_RT_VISIBLE_CORES=2-3 NP_TEST_MARK=from-parent",
    ]


@pytest.mark.parametrize(("n_models", "workers"), [(1, 1), (2, 1), (1, 2)])
def test_cpu_copies_and_threads_share_the_cores_for_torch(tmp_path, monkeypatch, n_models, workers):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    log = tmp_path / "threads.txt"
    task = BenchmarkTask(
        "threads", factory_loader(m.TorchThreadsRecordingModel, log=str(log)), n_models=n_models,
        workers_per_model=workers, settings=settings(0.2), inputs=(1,), device_backend="torch",
    )
    assert measure(task).status == "ok"
    cores = len(os.sched_getaffinity(0))
    share = max(1, cores // (n_models * workers))
    assert set(log.read_text().split()) == {f"threads={share}"}


def test_resource_figures_reflect_the_model():
    hog = measure(BenchmarkTask("hog", factory_loader(m.MemoryHog, mb=300), settings=settings(0.5), inputs=(1,)))
    assert hog.status == "ok", hog.error
    # the same 5 ms sleep per call, without the memory
    small = measure(BenchmarkTask("small", factory_loader(m.SleepModel, ms=5), settings=settings(0.5), inputs=(1,)))
    assert small.status == "ok", small.error
    assert hog.copies[0].peak_rss_bytes - small.copies[0].peak_rss_bytes > 250 * 2**20
    assert hog.copies[0].mem_avg_percent > small.copies[0].mem_avg_percent

    # a no-op model keeps one core busy calling it; a sleeping one leaves it idle
    busy = measure(BenchmarkTask("busy", factory_loader(m.NoOpModel), settings=settings(0.5), inputs=(1,)))
    assert busy.status == "ok", busy.error
    assert busy.copies[0].cpu_avg_percent > 30 > small.copies[0].cpu_avg_percent


def test_torch_backend_entry_through_the_local_executor(tmp_path: Path):
    pytest.importorskip("torch")
    from neuronperf.backends import get_backend

    compile_entry = CompileEntry(
        model=ModelRef(name="mlp", factory="models_for_tests:torch_mlp"),
        params=(), inputs=(TensorSpec((32,)),), batch_size=4, pipeline_size=1,
        framework="torch", device_type="cpu", compiler="torchscript",
    )
    artifact = tmp_path / "mlp.pt"
    get_backend("torch").compile(compile_entry, artifact)
    run_entry = RunEntry(compile=compile_entry, n_models=1, workers_per_model=2, benchmark=settings(0.5))
    with get_executor("local") as executor:
        result = executor.measure(task_for_entry(run_entry, "torch", str(artifact)), str(tmp_path / "samples"))
    assert result.status == "ok", result.error
    assert all(len(w.latency_ns) > 10 for w in result.workers)
    assert result.copies[0].load_ms > 0


def test_spawn_and_forkserver_measure_the_same(tmp_path: Path):
    results = {}
    for method in ("spawn", "forkserver"):
        task = BenchmarkTask("method", factory_loader(m.SleepModel, ms=10), settings=settings(0.5), inputs=(1,))
        with get_executor("local", start_method=method) as executor:
            results[method] = executor.measure(task, str(tmp_path / method))
        assert results[method].status == "ok", results[method].error
    medians = [statistics.median(latencies_ms(r)) for r in results.values()]
    assert medians[0] == pytest.approx(medians[1], rel=0.05)
