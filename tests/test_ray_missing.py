"""Without the ``ray`` extra, asking for the Ray executor is one line naming it (no Ray needed)."""

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
        "neuronperf: error: executor 'ray' needs Ray, which is not installed here: pip install 'neuronperf[ray]'"]
    assert not (tmp_path / "out" / "journal.jsonl").exists() and not (tmp_path / "out" / "models").exists()


@pytest.mark.pure
def test_address_without_the_ray_executor_is_refused():
    from neuronperf.driver import SweepOptions, executor_choice
    from neuronperf.entries import Plan
    from neuronperf.errors import UsageError

    plan = Plan(name="p", output_dir="o", compile_entries=(), run_entries=())
    with pytest.raises(UsageError, match="--address is for the ray executor; this sweep runs on 'local'"):
        executor_choice(plan, SweepOptions(address="10.0.0.1:6379"))
    name, options = executor_choice(plan, SweepOptions(executor="ray", address="10.0.0.1:6379"))
    assert name == "ray" and options["address"] == "10.0.0.1:6379" and options["cpus_per_thread"] == 1
