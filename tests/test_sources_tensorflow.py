"""A TensorFlow SavedModel of the user's, measured as it is (file:); runs in `nox -s tensorflow`,
where tensorflow-cpu is installed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

tf = pytest.importorskip("tensorflow")
pytestmark = [pytest.mark.tensorflow, pytest.mark.slow]


def test_a_saved_model_folder_runs_without_a_compile_step(tmp_path):
    from neuronperf.zoo import keras_mlp

    # Saved the way a user saves a Keras model for serving: a serving_default signature.
    model = keras_mlp(in_features=16, hidden=32, out_features=4)
    tf.saved_model.save(model, str(tmp_path / "saved"))
    (tmp_path / "tf.yaml").write_text(textwrap.dedent("""
        version: 1
        framework: tensorflow
        device_type: cpu
        output_dir: out
        models:
          - name: saved
            file: saved
            inputs: [[16]]
        sweep: {batch_sizes: [2]}
        benchmark: {duration: 0.5, warmup: {calls: 3}}
        """).lstrip())
    run = subprocess.run([sys.executable, "-m", "neuronperf", "run", "tf.yaml", "--quiet"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["status"] for r in rows] == ["ok"] and rows[0]["throughput_avg"] > 0
    assert not (tmp_path / "out" / "models").exists()  # nothing compiled, nothing copied
