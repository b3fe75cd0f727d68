"""The tensorflow backend: a Keras model saved as a SavedModel computes what the model computes.

Needs tensorflow (``nox -s tensorflow`` installs tensorflow-cpu); skipped without it, except the
test that checks what a user without tensorflow is told.
"""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

from neuronperf.backends import get_backend
from neuronperf.entries import CompileEntry, ModelRef, TensorSpec, freeze
from neuronperf.errors import BackendUnavailable, ModelLoadError, UsageError
from neuronperf.sources.factory import build_model


def make_entry(factory: str = "neuronperf.zoo:keras_mlp", kwargs=None, inputs=None, base_dir: str = ".", **extra) -> CompileEntry:
    return CompileEntry(
        model=ModelRef("kmodel", factory, freeze(kwargs if kwargs is not None else {"in_features": 16, "hidden": 8}), base_dir),
        params=(),
        inputs=tuple(inputs) if inputs is not None else (TensorSpec((16,)),),
        batch_size=extra.get("batch_size", 3),
        pipeline_size=1,
        framework="tensorflow",
        device_type="cpu",
        compiler="savedmodel",
        compiler_args=freeze(extra.get("compiler_args", {})),
    )


def test_missing_tensorflow_is_explained(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    backend = get_backend("tensorflow")
    with pytest.raises(BackendUnavailable, match="tensorflow is not installed.*pip install tensorflow-cpu"):
        backend.check_available("cpu")
    with pytest.raises(BackendUnavailable, match="pip install tensorflow-cpu"):
        backend.compiler_version("savedmodel")
    assert backend.artifact_suffix("savedmodel") == ""  # a folder; known without tensorflow


@pytest.mark.tensorflow
def test_savedmodel_output_equals_keras(tmp_path):
    pytest.importorskip("tensorflow")
    backend = get_backend("tensorflow")
    entry = make_entry()
    path = tmp_path / "kmlp"
    backend.compile(entry, path)
    assert (path / "saved_model.pb").is_file()
    model = backend.load(entry, path, device_id=0)
    inputs = backend.example_inputs(entry)
    want = build_model(entry.model)(inputs[0]).numpy()
    np.testing.assert_allclose(backend.to_numpy(model(*inputs)), want, rtol=1e-5, atol=1e-6)


@pytest.mark.tensorflow
def test_multi_input_functional_model(tmp_path):
    pytest.importorskip("tensorflow")
    (tmp_path / "keras_models.py").write_text(
        textwrap.dedent(
            """
            import tensorflow as tf

            def two_inputs():
                tf.keras.utils.set_random_seed(0)
                a = tf.keras.Input(shape=(4,))
                b = tf.keras.Input(shape=(6,))
                joined = tf.keras.layers.Concatenate()([a, b])
                return tf.keras.Model([a, b], tf.keras.layers.Dense(2)(joined))
            """
        )
    )
    backend = get_backend("tensorflow")
    entry = make_entry("keras_models.py:two_inputs", {}, (TensorSpec((4,)), TensorSpec((6,))), str(tmp_path))
    backend.compile(entry, tmp_path / "two")
    inputs = backend.example_inputs(entry)
    got = backend.to_numpy(backend.load(entry, tmp_path / "two", 0)(*inputs))
    assert got.shape == (3, 2)
    want = build_model(entry.model)(list(inputs)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.tensorflow
def test_errors_are_typed(tmp_path):
    pytest.importorskip("tensorflow")
    backend = get_backend("tensorflow")
    with pytest.raises(UsageError, match="takes no compiler_args"):
        backend.compile(make_entry(compiler_args={"x": 1}), tmp_path / "m")
    with pytest.raises(ModelLoadError, match="SavedModel folder not found"):
        backend.load(make_entry(), tmp_path / "absent", 0)
