"""The Ray executor's parts that need no cluster: the missing extra, options, resources, core grants."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from test_sweep_run import fast_spec


@pytest.mark.slow
def test_without_ray_the_executor_is_one_line_naming_the_extra(tmp_path: Path, cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as without the extra
    monkeypatch.delitem(sys.modules, "neuronperf.executors.ray", raising=False)
    result = cli("run", str(fast_spec(tmp_path)), "--executor", "ray")
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        "neuronperf: error: executor 'ray' needs Ray, which is not installed here: pip install 'neuronperf-sweep[ray]'"]
    assert not (tmp_path / "out" / "journal.jsonl").exists() and not (tmp_path / "out" / "models").exists()


@pytest.mark.pure
def test_address_without_the_ray_executor_is_refused():
    from neuronperf.entries import Plan
    from neuronperf.errors import UsageError
    from neuronperf.sweep.driver import SweepOptions, executor_choice

    plan = Plan(name="p", output_dir="o", compile_entries=(), run_entries=())
    with pytest.raises(UsageError, match="--address is for the ray executor; this sweep runs on 'local'"):
        executor_choice(plan, SweepOptions(address="10.0.0.1:6379"))
    name, options = executor_choice(plan, SweepOptions(executor="ray", address="10.0.0.1:6379"))
    assert name == "ray" and options["address"] == "10.0.0.1:6379" and options["cpus_per_thread"] == 1


@pytest.mark.pure
def test_each_entry_asks_ray_for_what_it_occupies():
    from neuronperf.entries import BenchmarkSettings
    from neuronperf.executors.ray import entry_resources
    from neuronperf.measure.task import BenchmarkTask, LoadFnLoader

    def task(device_type: str, n: int, w: int = 1, p: int = 1) -> BenchmarkTask:
        return BenchmarkTask(entry_id="e", loader=LoadFnLoader(load_fn=print, filename="m"), n_models=n,
                             workers_per_model=w, pipeline_size=p, device_type=device_type, settings=BenchmarkSettings())

    assert entry_resources(task("cpu", 2, 3)) == {"CPU": 6.0}
    assert entry_resources(task("cpu", 2, 3), cpus_per_thread=2) == {"CPU": 12.0}
    assert entry_resources(task("cuda", 4, 2)) == {"CPU": 1.0, "GPU": 4.0}
    assert entry_resources(task("neuron", 2, 1, 4)) == {"CPU": 1.0, "neuron_cores": 8.0}


@pytest.mark.pure
def test_copies_share_out_the_neuron_cores_ray_granted(monkeypatch):
    from neuronperf.backends.neuron import granted_neuron_cores, neuron_core_range
    from neuronperf.errors import BackendUnavailable

    monkeypatch.delenv("NEURON_RT_VISIBLE_CORES", raising=False)
    assert [neuron_core_range(c, 2) for c in range(2)] == ["0-1", "2-3"]
    monkeypatch.setenv("NEURON_RT_VISIBLE_CORES", "4,5,6,7")  # what Ray sets for neuron_cores: 4
    assert granted_neuron_cores() == [4, 5, 6, 7]
    assert [neuron_core_range(c, 2) for c in range(2)] == ["4,5", "6,7"]
    monkeypatch.setenv("NEURON_RT_VISIBLE_CORES", "8-9")
    assert neuron_core_range(1, 1) == "9"
    with pytest.raises(BackendUnavailable, match="grants this process only 2"):
        neuron_core_range(1, 2)
