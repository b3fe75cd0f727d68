"""The NeuronPerf documentation's scripts, on CPU: compile a model for batch sizes [1, 2, 3],
benchmark batch size 2 of the index, print_reports, write_csv, write_json, delete the index.

Once in this process, and once as a real script (``python script.py``) whose model class lives in
its ``__main__`` under an ``if __name__ == "__main__":`` guard, as users write them.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch

import neuronperf
import neuronperf.torch

# NeuronPerf's documented columns: users' tools parse these names, in this order.
PRINT_COLS = ["throughput_avg", "latency_ms_p50", "latency_ms_p99", "n_models", "pipeline_size",
              "workers_per_model", "batch_size", "model_filename"]
CSV_COLS = ["model_name", "n_models", "workers_per_model", "pipeline_size", "batch_size",
            "throughput_avg", "throughput_peak", "latency_ms_p0", "latency_ms_p50", "latency_ms_p90",
            "latency_ms_p95", "latency_ms_p99", "latency_ms_p100", "cpu_avg_percent",
            "mem_avg_percent", "e2e_avg_ms", "infer_avg_ms", "total_infs", "total_s",
            "model_filename", "device_type", "instance_type", "cost_per_1m_inf"]
STAMP = r"\d{8}-\d{6}"


class Model(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(100, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.linear(x))


def _reject_constant(name: str) -> None:
    raise AssertionError(f"{name} is not JSON")


def check_outputs(folder, table: str, csv_name: str, json_name: str, model_name: str) -> None:
    """What print_reports, write_csv and write_json produced for one benchmarked batch size 2."""
    lines = table.strip().splitlines()
    assert lines[0].split() == PRINT_COLS
    assert set(lines[1].replace(" ", "")) == {"-"}
    (row,) = lines[2:]
    cells = row.split()
    assert float(cells[0]) > 0  # throughput_avg
    assert cells[3:7] == ["1", "1", "1", "2"]  # n_models, pipeline_size, workers_per_model, batch_size
    assert re.search(r"_b2_p1_\w+\.pt$", cells[7])

    assert re.fullmatch(rf"{model_name}\.results-{STAMP}\.csv", csv_name)
    assert re.fullmatch(rf"{model_name}\.results-{STAMP}\.json", json_name)
    with open(folder / csv_name, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == CSV_COLS
    (values,) = [dict(zip(rows[0], r)) for r in rows[1:]]
    assert values["batch_size"] == "2" and values["device_type"] == "cpu"
    assert values["cost_per_1m_inf"] == "N/A" and values["instance_type"] == "N/A"  # NeuronPerf's "missing"
    assert int(values["total_infs"]) > 0

    text = (folder / json_name).read_text()
    reports = json.loads(text, parse_constant=_reject_constant)  # strict: no NaN/Infinity tokens
    (report,) = reports
    assert report["status"] == "ok" and report["batch_size"] == 2 and report["model_name"] == model_name
    assert report["throughput_avg"] == pytest.approx(float(values["throughput_avg"]))


@pytest.mark.slow
def test_docs_workflow_in_process(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    batch_sizes = [1, 2, 3]
    inputs = [torch.zeros((b, 100)) for b in batch_sizes]
    filename = neuronperf.torch.compile(Model(), inputs, batch_sizes=batch_sizes, device_type="cpu")
    assert re.fullmatch(r"model_\w{8}\.json", filename)

    reports = neuronperf.torch.benchmark(filename, inputs, batch_sizes=2, duration=0.5,
                                         n_models=1, workers_per_model=1, device_type="cpu")
    capsys.readouterr()
    neuronperf.print_reports(reports)
    table = capsys.readouterr().out
    csv_name = neuronperf.write_csv(reports)
    json_name = neuronperf.write_json(reports)
    check_outputs(tmp_path, table, csv_name, json_name, "model")

    artifacts = neuronperf.model_index.artifact_paths(filename)
    assert len(artifacts) == 3 and all(os.path.isfile(a) for a in artifacts)
    neuronperf.model_index.delete(filename)
    assert not os.path.exists(filename) and not any(os.path.exists(a) for a in artifacts)


SCRIPT = '''
import torch

import neuronperf
import neuronperf.cpu
import neuronperf.torch


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(100, 10)

    def forward(self, x):
        return torch.relu(self.linear(x))


class Doubler:
    """A plain-Python model for neuronperf.cpu.benchmark; the workers import it from this script."""

    def __call__(self, x):
        return x * 2


if __name__ == "__main__":
    batch_sizes = [1, 2, 3]
    inputs = [torch.zeros((b, 100)) for b in batch_sizes]
    filename = neuronperf.torch.compile(Model(), inputs, batch_sizes=batch_sizes,
                                        filename="model_index.json", model_name="mymodel",
                                        device_type="cpu")
    reports = neuronperf.torch.benchmark(filename, inputs, batch_sizes=2, duration=0.5,
                                         n_models=1, workers_per_model=1, device_type="cpu")
    neuronperf.print_reports(reports)
    print("CSV", neuronperf.write_csv(reports))
    print("JSON", neuronperf.write_json(reports))
    cpu_reports = neuronperf.cpu.benchmark(Doubler, torch.zeros(1, 100), duration=0.3,
                                           n_models=1, workers_per_model=1)
    print("CPU", cpu_reports[0]["status"], cpu_reports[0]["error"])
    neuronperf.model_index.delete(filename)
'''


@pytest.mark.slow
def test_docs_workflow_as_a_users_script(tmp_path):
    (tmp_path / "script.py").write_text(textwrap.dedent(SCRIPT))
    done = subprocess.run([sys.executable, "script.py"], cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr

    out = done.stdout.splitlines()
    csv_name = next(line.split(" ", 1)[1] for line in out if line.startswith("CSV "))
    json_name = next(line.split(" ", 1)[1] for line in out if line.startswith("JSON "))
    table = "\n".join(line for line in out if not line.startswith(("CSV ", "JSON ", "CPU ")))
    check_outputs(tmp_path, table, csv_name, json_name, "mymodel")
    # A class from the script's __main__ reached the (spawned) workers.
    assert "CPU ok None" in out
    # model_index.delete removed the index and every artifact.
    assert not (tmp_path / "model_index.json").exists()
    assert list((tmp_path / "models").iterdir()) == []
