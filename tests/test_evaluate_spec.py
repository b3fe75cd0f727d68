"""``evaluate:`` in a spec: accuracy columns on every row of each artifact, and its bad inputs."""

from __future__ import annotations

import csv
import shutil
import textwrap
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data" / "evaluate"


def write_spec(folder: Path, evaluate: str) -> Path:
    shutil.copy(DATA / "eval_models.py", folder / "eval_models.py")
    spec = folder / "eval.yaml"
    spec.write_text(textwrap.dedent(f"""
        version: 1
        framework: torch
        device_type: cpu
        compiler: torchscript
        output_dir: {folder / 'out'}
        models:
          - name: clf
            factory: "eval_models.py:classifier"
            inputs: [{{shape: [4]}}]
            evaluate: {evaluate}
        sweep: {{batch_sizes: [4], n_models: [1], workers_per_model: [1, 2]}}
        benchmark: {{duration: 0.3, warmup: {{calls: 2}}, timeout: 60}}
        """).lstrip())
    return spec


@pytest.mark.slow
def test_every_row_of_the_artifact_carries_the_metric_columns(tmp_path, cli):
    spec = write_spec(tmp_path, '{dataset: "eval_models.py:dataset", metrics: [accuracy, f1]}')
    result = cli("run", str(spec))
    assert result.code == 0, result.err + result.out
    with open(tmp_path / "out" / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for row in rows:
        assert row["status"] == "ok" and float(row["throughput_avg"]) > 0
        assert float(row["accuracy"]) == pytest.approx(0.8)  # eval_models.TRUE_ACCURACY
        assert 0 < float(row["f1"]) <= 1


@pytest.mark.slow
def test_a_dataset_of_lists_is_each_rows_reason_not_a_traceback(tmp_path, cli):
    spec = write_spec(tmp_path, '{dataset: "eval_models.py:not_tuples", metrics: accuracy}')
    result = cli("run", str(spec))
    assert "Traceback" not in result.err
    with open(tmp_path / "out" / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for row in rows:
        assert row["accuracy"] == ""
        assert "dataset item 0 is a list, not a tuple" in row["eval_error"]
        # The evaluation worker's traceback is in its log, which the reason names (issue 27).
        log = row["eval_error"].rpartition(" (log: ")[2].rstrip(")")
        assert log.startswith("logs/evaluate-clf-bs4-p1-") and "Traceback" in (tmp_path / "out" / log).read_text()


@pytest.mark.pure
def test_an_unknown_metric_and_a_missing_dataset_file_are_located_spec_errors(tmp_path, cli):
    spec = write_spec(tmp_path, '{dataset: "nowhere.py:data", metrics: [accuracy, acuracy]}')
    result = cli("validate", str(spec))
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert any(f"{spec}:10:" in line and "dataset file 'nowhere.py' does not exist" in line for line in lines), result.err
    assert any(f"{spec}:10:" in line and "unknown metric 'acuracy'; did you mean 'accuracy'? (registered: accuracy," in line
               for line in lines), result.err
    assert "Traceback" not in result.err
