"""The Ray executor on two logical nodes (``ray.cluster_utils.Cluster`` on loopback): entries
land on both, a node lost mid-entry is retried or recorded, and a driver killed with SIGKILL
resumes like the local executor."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest
from test_resume_kill import Sweep as ResumeSweep
from test_sweep_run import read_csv, write_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow]
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    """A head and one more node, one CPU each: two 1-CPU entries run at once, one on each."""
    from ray.cluster_utils import Cluster

    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    nodes.add_node(num_cpus=1)
    nodes.wait_for_nodes()
    yield nodes
    nodes.shutdown()


def spec(folder: Path, batch_sizes: str, duration: float) -> Path:
    return write_spec(folder, f"""
        version: 1
        name: twonodes
        framework: torch
        device_type: cpu
        compiler: eager
        output_dir: {folder / 'out'}
        executor: ray
        models:
          - name: sleepy
            factory: "sweep_models.py:sleepy"
            kwargs: {{features: 8, sleep_ms: 2.0}}
            inputs: [{{shape: [8]}}]
        sweep:
          batch_sizes: {batch_sizes}
        benchmark: {{duration: {duration}, warmup: {{calls: 3}}, timeout: 60}}
        """)


class Sweep(ResumeSweep):
    """A real `neuronperf run --address` in its own session, read line by line."""

    def __init__(self, spec_path: Path, address: str):
        super().__init__(spec_path, "--address", address)

    def finish(self) -> tuple[int, str]:
        out, _ = self.process.communicate(timeout=180)
        return self.process.returncode, "".join(self.lines) + out


def test_entries_land_on_both_nodes_and_rows_name_them(tmp_path: Path, cluster):
    sweep = Sweep(spec(tmp_path, "[1, 2, 3, 4]", 1.0), cluster.address)
    code, output = sweep.finish()
    assert code == 0, output
    rows = read_csv(tmp_path / "out" / "results.csv")
    assert [r["status"] for r in rows] == ["ok"] * 4
    nodes = {r["node"] for r in rows}
    assert len(nodes) == 2, rows
    info = json.loads((tmp_path / "out" / "run.json").read_text())
    assert set(info["nodes"]) == nodes


@pytest.mark.parametrize("max_retries", [1, 0])
def test_a_node_lost_mid_entry_is_retried_or_recorded_never_lost(tmp_path: Path, max_retries: int):
    from ray.cluster_utils import Cluster

    from neuronperf.executors.ray import node_label

    # A cluster of its own: this test takes a node away.
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    doomed = nodes.add_node(num_cpus=1)
    nodes.wait_for_nodes()
    lost = node_label(socket.gethostname(), doomed.node_id)
    head = node_label(socket.gethostname(), nodes.head_node.node_id)
    spec_path = spec(tmp_path, "[1, 2]", 4.0)
    spec_path.write_text(spec_path.read_text() + f"ray: {{max_retries: {max_retries}}}\n")
    try:
        sweep = Sweep(spec_path, nodes.address)
        sweep.wait_for("[2/2]")  # both entries were handed to the cluster: one runs on each node
        time.sleep(2.5)  # into the measured window
        nodes.remove_node(doomed, allow_graceful=False)
        code, output = sweep.finish()
    finally:
        nodes.shutdown()
    rows = read_csv(tmp_path / "out" / "results.csv")
    assert len(rows) == 2 and all(r["status"] != "skipped" for r in rows), output
    ok = [r for r in rows if r["status"] == "ok"]
    assert {r["node"] for r in ok} == {head}
    if max_retries:  # run again on the node that is left
        assert len(ok) == 2, output
        assert code == 0
    else:  # a row that names the node it was lost with
        (failed,) = [r for r in rows if r["status"] != "ok"]
        assert failed["status"] == "error" and failed["node"] == lost, failed["error"]
        assert failed["error"].startswith(f"node {lost} was lost while it ran (retried 0 times): ")
        assert code == 1


def test_a_killed_driver_resumes_like_the_local_executor(tmp_path: Path, cluster):
    spec_path = spec(tmp_path, "[1, 2, 3, 4, 5, 6]", 1.5)
    sweep = Sweep(spec_path, cluster.address)
    sweep.wait_for("inf/s")  # one entry finished and is journaled
    os.killpg(sweep.process.pid, signal.SIGKILL)
    sweep.process.wait(timeout=30)
    journaled = [json.loads(line) for line in (tmp_path / "out" / "journal.jsonl").read_text().splitlines()]
    finished = {r["id"] for r in journaled if r["kind"] == "run"}
    assert 1 <= len(finished) < 6

    rerun = Sweep(spec_path, cluster.address)
    code, output = rerun.finish()
    assert code == 0, output
    assert f"{len(finished)} of 6 entries reused; running {6 - len(finished)}" in output
    rows = read_csv(tmp_path / "out" / "results.csv")
    assert [r["status"] for r in rows] == ["ok"] * 6
    # Every entry measured once in all: the rerun measured exactly what the killed run had not.
    runs = [json.loads(line) for line in (tmp_path / "out" / "journal.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in runs if r["kind"] == "run") == sorted(r["id"] for r in rows)


def test_ctrl_c_cancels_the_ray_tasks(tmp_path: Path, cluster):
    sweep = Sweep(spec(tmp_path, "[1, 2]", 20.0), cluster.address)
    sweep.wait_for("[2/2]")  # both entries run, one on each node
    time.sleep(3.0)
    os.kill(sweep.process.pid, signal.SIGINT)
    code, output = sweep.finish()
    assert code == 130, output
    rows = read_csv(tmp_path / "out" / "results.csv")
    assert [r["status"] for r in rows] == ["skipped", "skipped"]  # not measured yet; a rerun does them
    # Both tasks were cancelled: the cluster's two CPUs are free again, long before 20 s.
    ray.init(address=cluster.address)
    try:
        deadline = time.monotonic() + 15
        while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert ray.available_resources().get("CPU", 0) == 2
    finally:
        ray.shutdown()


def test_a_search_measures_the_entries_of_a_wave_at_once(tmp_path: Path, cluster):
    # Two questions (work 1 and 2): each of the quick search's waves holds one entry of each,
    # and the two 1-CPU nodes run them side by side.
    spec_path = write_spec(tmp_path, f"""
        version: 1
        name: searchwaves
        framework: torch
        device_type: cpu
        compiler: eager
        output_dir: {tmp_path / 'out'}
        executor: ray
        models:
          - name: sleepy
            factory: "sweep_models.py:sleep_per_item"
            params: {{work: [1, 2]}}
            kwargs: {{base_ms: $work, per_item_ms: 2}}
            inputs: [{{shape: [4]}}]
        sweep:
          batch_sizes: [1, 2]
        search: quick
        benchmark: {{duration: 1.0, warmup: {{calls: 3}}, timeout: 60}}
        """)
    sweep = Sweep(spec_path, cluster.address)
    code, output = sweep.finish()
    assert code == 0, output
    lines = output.splitlines()
    # Both entries of the first wave were handed out before either finished.
    second_start = next(i for i, line in enumerate(lines) if "[2/2]" in line)
    first_row = next(i for i, line in enumerate(lines) if "inf/s" in line)
    assert second_start < first_row, output
    rows = read_csv(tmp_path / "out" / "results.csv")
    assert [r["status"] for r in rows] == ["ok"] * 4
    starts = [r for r in rows if r["batch_size"] == "1"]
    assert len({r["node"] for r in starts}) == 2, rows
