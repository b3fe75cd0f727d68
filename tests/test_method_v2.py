"""Measurement method 2 end to end: warm-up outside the window, late copies, repeats with
confidence intervals, the method version in the identity, one core for the sweep and the
facades, shuffled order, infeasible entries and pre-flight failures as rows."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import models_for_tests as m
import pytest
from measuring import measure

from neuronperf import stats
from neuronperf.entries import BenchmarkSettings
from neuronperf.errors import BackendUnavailable
from neuronperf.executors import get_executor
from neuronperf.measure import supervisor
from neuronperf.measure.contract import infeasible
from neuronperf.measure.entryloop import Job, Sink, ordered, run_entries
from neuronperf.measure.task import BenchmarkTask, factory_loader
from neuronperf.results import rows as result_rows
from neuronperf.results.rows import RowConfig, report_row
from neuronperf.stats import forward as forward_stats

pytestmark = pytest.mark.slow

TESTS = Path(__file__).parent


def settings(duration: float = 1.0, **kw: object) -> BenchmarkSettings:
    kw.setdefault("warmup_calls", 2)
    kw.setdefault("timeout", 60.0)
    return BenchmarkSettings(duration=duration, **kw)  # type: ignore[arg-type]


def run_jobs(*jobs: Job, **options: object) -> Sink:
    sink = Sink()
    with get_executor("local") as executor:
        run_entries(list(jobs), executor, sink, **options)  # type: ignore[arg-type]
    return sink


def test_cold_calls_are_warm_up_and_provably_outside_the_window(tmp_path):
    log = tmp_path / "cold.txt"
    task = BenchmarkTask("cold", factory_loader(m.ColdStartModel, log=str(log), cold_calls=5), workers_per_model=2,
                         settings=settings(0.8, warmup_calls=3), inputs=(1,))
    result = measure(task)
    assert result.status == "ok", result.error
    cold_starts = [int(x) for x in log.read_text().split()]
    assert len(cold_starts) == 5
    assert max(cold_starts) < result.window_start_ns  # every cold call began before the window
    assert all(s >= result.window_start_ns for w in result.workers for s in w.start_ns)
    slowest_ms = max(int(lat) for w in result.workers for lat in w.latency_ns) / 1e6
    assert slowest_ms < 30  # no 60 ms cold call among the measured ones
    assert result.copies[0].warmup_ms > 2.0  # ... they are in the warm-up figure instead


def test_a_late_copy_is_named_in_the_row(monkeypatch):
    # A window that opened before the copies could hear of it: every copy is late.
    monkeypatch.setattr(supervisor, "START_MARGIN_S", -0.3)
    task = BenchmarkTask("late", factory_loader(m.SleepModel, ms=5), n_models=2, settings=settings(1.0), inputs=(1,))
    result = measure(task)
    assert result.status == "ok", result.error
    assert all(c.late_ns >= 250_000_000 for c in result.copies)
    row = report_row(RowConfig(id="late", batch_size=1, n_models=2), result)
    assert "late start: copy 0, 1 learnt of the window up to" in row["warning"]
    assert "late start" in stats.short_warning(row["warning"])


def test_a_steady_slow_model_gets_exact_peak_and_no_warning():
    task = BenchmarkTask("slow", factory_loader(m.SleepModel, ms=300), workers_per_model=3,
                         settings=settings(2.5, warmup_calls=1), inputs=(1,))
    result = measure(task)
    row = report_row(RowConfig(id="slow", batch_size=1, workers_per_model=3), result)
    truth = 3 / (row["latency_ms_p50"] / 1000)
    assert row["throughput_peak"] == pytest.approx(truth, rel=0.03)
    assert row["throughput_avg"] == pytest.approx(truth, rel=0.02)
    assert "unstable" not in (row["warning"] or "") and "too few calls" not in (row["warning"] or "")


def test_three_repeats_give_a_confidence_interval_that_holds_the_truth():
    task = BenchmarkTask("rep", factory_loader(m.SleepModel, ms=10), workers_per_model=2,
                         settings=settings(1.0, repeat=3), inputs=(1,))
    sink = run_jobs(Job(config=RowConfig(id="rep", batch_size=2, workers_per_model=2), task=task))
    (result,) = sink.results
    row = result.row
    assert row["status"] == "ok" and row["repeats"] == 3 and len(result.measurements) == 3
    # Truth without the harness's estimator: Little's law per thread (its calls over the sum of
    # their latencies), summed over the threads, times the batch, and averaged over the repeats
    # as the interval's centre is. A 10 ms sleep is so steady that three repeats can agree to
    # 0.01%, an interval narrower than what separates the row's definition from this truth: the
    # row's time also holds the loop's own step between calls (about 10 us here, 0.1% of a call),
    # which Little's law leaves out. So the truth must sit in the interval widened by 0.5%.
    def little_of(r):
        return 2 * sum(len(w.latency_ns) / (sum(int(lat) for lat in w.latency_ns) / 1e9) for w in r.workers)

    little = sum(little_of(r) for r in result.measurements) / len(result.measurements)
    assert row["throughput_ci_low"] * 0.995 <= little <= row["throughput_ci_high"] * 1.005
    assert row["throughput_ci_low"] <= row["throughput_avg"] <= row["throughput_ci_high"]
    # A 10 ms sleep never returns early and oversleeps by well under a millisecond.
    assert 10.0 <= row["latency_ms_p50_ci_low"] <= row["latency_ms_p50"] <= row["latency_ms_p50_ci_high"] < 11.0
    per_repeat = [stats.compute_stats(r, batch_size=2).throughput_avg for r in result.measurements]
    assert row["throughput_avg"] == pytest.approx(sum(per_repeat) / 3)  # the mean, as its interval's


def test_a_failing_repeat_fails_the_row_and_names_it():
    task = BenchmarkTask("boom", factory_loader(m.RaiseModel, on="call", after_s=0.3), settings=settings(1.0, repeat=3),
                         inputs=(1,))
    (result,) = run_jobs(Job(config=RowConfig(id="boom", batch_size=1), task=task)).results
    assert result.row["status"] == "error" and "ValueError: model exploded on purpose" in result.row["error"]
    assert len(result.measurements) == 1  # it failed the first time: the other repeats are not run


def test_preflight_failure_is_that_entrys_row_and_the_rest_run():
    def busy(device_type: str, cores: int) -> None:
        raise BackendUnavailable("NeuronCore 0 is in use by pid 42 (serve.py)")

    ok = Job(config=RowConfig(id="ok", batch_size=1), task=BenchmarkTask("ok", factory_loader(m.SleepModel, ms=2),
                                                                        settings=settings(0.3), inputs=(1,)))
    held = Job(config=RowConfig(id="held", batch_size=1), preflight=busy,
               task=BenchmarkTask("held", factory_loader(m.SleepModel, ms=2), settings=settings(0.3), inputs=(1,)))
    rows = {r.job.id: r.row for r in run_jobs(held, ok).results}
    assert rows["held"]["status"] == "error" and rows["held"]["error"] == "pre-flight: NeuronCore 0 is in use by pid 42 (serve.py)"
    assert rows["ok"]["status"] == "ok"


def test_infeasible_is_decided_by_device_count():
    task = BenchmarkTask("big", factory_loader(m.SleepModel), n_models=3, pipeline_size=2, device_type="neuron")
    assert infeasible(task, lambda device_type: 4) == (
        "infeasible: this entry needs 6 NeuronCores (n_models 3 x pipeline_size 2); this machine has 4")
    assert infeasible(task, lambda device_type: 6) is None
    assert infeasible(BenchmarkTask("cpu", factory_loader(m.SleepModel), n_models=64), lambda d: 1) is None


def test_oversubscription_is_decided_by_the_cores_unless_allowed():
    from neuronperf.measure.contract import MAX_THREADS_PER_CORE, oversubscribed

    def task(n: int, w: int, allow: bool = False) -> BenchmarkTask:
        return BenchmarkTask("e", factory_loader(m.SleepModel), n_models=n, workers_per_model=w,
                             settings=BenchmarkSettings(allow_oversubscription=allow))

    assert MAX_THREADS_PER_CORE == 4
    assert oversubscribed(task(2, 4), cores=2) is None  # 8 threads on 2 cores: the limit itself
    assert oversubscribed(task(1, 400), cores=2) == (
        "beyond this machine: 400 measuring threads (n_models 1 x workers_per_model 400) on 2 usable cores, where "
        "at most 4 per core (8) are measured; nothing of it ran. Set benchmark.allow_oversubscription: true to "
        "measure it anyway")
    assert "64 measuring threads (n_models 64 x workers_per_model 1) on 1 usable core," in oversubscribed(task(64, 1), 1)
    assert oversubscribed(task(64, 1, allow=True), cores=1) is None
    # Allowing it changes no identity: it decides whether an entry runs, not what it measures.
    assert BenchmarkSettings(allow_oversubscription=True).identity_dict() == BenchmarkSettings().identity_dict()
    assert "allow_oversubscription" not in BenchmarkSettings().to_dict()


def test_shuffled_order_is_seeded():
    jobs = [Job(config=RowConfig(id=f"j{i}", batch_size=1)) for i in range(8)]
    first = [j.id for j in ordered(jobs, "shuffled", 7)]
    assert first == [j.id for j in ordered(jobs, "shuffled", 7)] and sorted(first) == sorted(j.id for j in jobs)
    assert first != [j.id for j in jobs] and [j.id for j in ordered(jobs)] == [j.id for j in jobs]


# ---- through `neuronperf run` -------------------------------------------------------------------


def write_spec(folder: Path, benchmark: str, sweep: str = "batch_sizes: [1, 2]\n  workers_per_model: [1, 2]") -> Path:
    (folder / "models.py").write_text((TESTS / "data" / "sweep" / "sweep_models.py").read_text())
    spec = folder / "sweep.yaml"
    spec.write_text(f"""version: 1
name: v2
framework: torch
device_type: cpu
compiler: torchscript
output_dir: {folder / 'out'}
models:
  - name: fast
    factory: "models.py:fast"
    inputs: [{{shape: [8]}}]
sweep:
  {sweep}
benchmark: {benchmark}
""")
    return spec


def run_ids(out: Path) -> list[str]:
    return [json.loads(line)["id"] for line in (out / "journal.jsonl").read_text().splitlines()
            if json.loads(line)["kind"] == "run"]


def test_a_method_version_change_measures_again_and_status_says_why(tmp_path, cli, monkeypatch):
    spec = write_spec(tmp_path, "{duration: 0.3, warmup: 3, timeout: 60}", "batch_sizes: [1]\n  workers_per_model: [1, 2]")
    assert cli("run", str(spec)).code == 0
    info = json.loads((tmp_path / "out" / "run.json").read_text())
    assert info["method_version"] == stats.METHOD_VERSION
    assert "2 of 2 entries reused" in cli("run", str(spec)).err

    # Where the version is defined, and where rows read it (a module-level import).
    old, new = stats.METHOD_VERSION, stats.METHOD_VERSION + 1
    monkeypatch.setattr(forward_stats, "METHOD_VERSION", new)
    monkeypatch.setattr(result_rows, "METHOD_VERSION", new)
    status = cli("status", str(spec))
    assert status.out.count(f"(measured by method {old}; method {new} measures it again)") == 2
    again = cli("run", str(spec))
    assert again.code == 0 and "reused" not in again.err
    rows = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["method_version"] for r in rows] == [new, new]


def test_shuffled_sweep_runs_in_seed_order_and_resumes(tmp_path, cli):
    spec = write_spec(tmp_path, "{duration: 0.2, warmup: 2, timeout: 60, order: shuffled, seed: 3}")
    assert cli("run", str(spec)).code == 0
    planned = ["fast-bs1-p1-m1-w1", "fast-bs1-p1-m1-w2", "fast-bs2-p1-m1-w1", "fast-bs2-p1-m1-w2"]
    expected = [j.id for j in ordered([Job(config=RowConfig(id=i, batch_size=1)) for i in planned], "shuffled", 3)]
    assert run_ids(tmp_path / "out") == expected != planned
    rows = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["id"] for r in rows] == planned  # the results stay in plan order
    assert "4 of 4 entries reused" in cli("run", str(spec)).err


def test_facade_and_sweep_give_the_same_row(tmp_path, cli):
    import torch

    import neuronperf

    spec = write_spec(tmp_path, "{duration: 0.5, warmup: 20, timeout: 60}", "batch_sizes: [1]\n  workers_per_model: [1]")
    assert cli("run", str(spec)).code == 0
    (swept,) = json.loads((tmp_path / "out" / "results.json").read_text())
    (facade,) = neuronperf.torch.benchmark(str(tmp_path / "out" / "model_index.json"), [torch.zeros(1, 8)],
                                           n_models=1, workers_per_model=1, duration=0.5, warmup_calls=20,
                                           device_type="cpu", model_name="fast")
    assert set(facade) == set(swept)
    assert (facade["id"], facade["status"], facade["batch_size"]) == (swept["id"], swept["status"], 1)
    assert facade["method_version"] == swept["method_version"] == stats.METHOD_VERSION
    # Figures within the noise of a shared machine.
    assert facade["latency_ms_p50"] == pytest.approx(swept["latency_ms_p50"], rel=1.0)
    assert facade["throughput_avg"] == pytest.approx(swept["throughput_avg"], rel=1.0)


def test_an_infeasible_entry_is_a_row_before_anything_compiles(tmp_path, cli, monkeypatch):
    """Neuron with the SDK stood in (a module on sys.path) and a neuron-ls that reports 2 cores:
    the entry that needs 4 is a row saying so and is never compiled; the other goes on."""
    monkeypatch.syspath_prepend(str(TESTS / "data" / "neuron_standin"))
    # setitem remembers whether a torch_neuronx was imported, so that the end of the test puts
    # that one back, or none (the sweep imports the stand-in into this process when it compiles;
    # left there, it would be every later test's torch_neuronx)
    monkeypatch.setitem(sys.modules, "torch_neuronx", None)
    del sys.modules["torch_neuronx"]
    script = tmp_path / "bin" / "neuron-ls"
    script.parent.mkdir()
    devices = [{"neuron_device": 0, "bdf": "00:10.0", "nc_count": 2, "memory_size": 1, "neuron_processes": []}]
    script.write_text(f"#!{sys.executable}\nprint({json.dumps(devices)!r})\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "models.py").write_text((TESTS / "data" / "sweep" / "sweep_models.py").read_text())
    spec = tmp_path / "neuron.yaml"
    spec.write_text(f"""version: 1
name: inf
framework: torch
device_type: neuron
output_dir: {tmp_path / 'out'}
models:
  - name: fast
    factory: "models.py:fast"
    inputs: [{{shape: [8]}}]
sweep:
  pipeline_sizes: [1, 4]
benchmark: {{duration: 0.2, warmup: 1, timeout: 60}}
""")
    result = cli("run", str(spec))
    assert result.code == 1, result.err
    rows = {r["id"]: r for r in json.loads((tmp_path / "out" / "results.json").read_text())}
    big = rows["fast-bs1-p4-m1-w1"]
    assert big["status"] == "error"
    assert big["error"] == ("infeasible: this entry needs 4 NeuronCores (n_models 1 x pipeline_size 4); "
                            "this machine has 2")
    assert "infeasible" not in (rows["fast-bs1-p1-m1-w1"]["error"] or "")  # it ran (or failed on its own)
    compiled = [json.loads(line)["id"] for line in (tmp_path / "out" / "journal.jsonl").read_text().splitlines()
                if json.loads(line)["kind"] == "compile"]
    assert compiled == ["fast-bs1-p1"]
