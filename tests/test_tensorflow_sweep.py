"""A TensorFlow sweep end to end (runs in `nox -s tensorflow`, where tensorflow-cpu is installed)."""

from __future__ import annotations

import csv
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("tensorflow")
pytestmark = [pytest.mark.tensorflow, pytest.mark.slow]


def test_a_keras_sweep_compiles_savedmodels_and_measures_every_entry(tmp_path):
    spec = tmp_path / "tf.yaml"
    spec.write_text(textwrap.dedent(f"""
        version: 1
        framework: tensorflow
        device_type: cpu
        output_dir: {tmp_path / 'out'}
        models:
          - name: kmlp
            factory: "neuronperf.zoo:keras_mlp"
            kwargs: {{in_features: 32, hidden: 64, out_features: 4}}
            inputs: [{{shape: [32]}}]
        sweep: {{batch_sizes: [1, 4], workers_per_model: [1, 2]}}
        benchmark: {{duration: 0.5, warmup: {{calls: 3}}}}
        """))
    run = subprocess.run([sys.executable, "-m", "neuronperf", "run", str(spec)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    with open(tmp_path / "out" / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["ok"] * 4
    assert all(float(r["throughput_avg"]) > 0 for r in rows)
    assert all((tmp_path / "out" / "models").glob("kmlp-bs*"))
    again = subprocess.run([sys.executable, "-m", "neuronperf", "run", str(spec)],
                           capture_output=True, text=True, timeout=120)
    assert "4 of 4 entries reused; running 0" in again.stderr
