"""The onnxruntime backend: a torch model exported to ONNX computes what the eager model computes."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from neuronperf.backends import get_backend  # noqa: E402
from neuronperf.entries import CompileEntry, ModelRef, TensorSpec, freeze  # noqa: E402
from neuronperf.errors import BackendUnavailable, CompileFailed, ModelLoadError, UsageError  # noqa: E402
from neuronperf.sources.factory import build_model  # noqa: E402

TOKENS = (TensorSpec((16,), "int64", 0, 120), TensorSpec((16,), "int64", 0, 2))
MODELS = {
    "mlp": ("neuronperf.zoo:mlp", {"in_features": 32, "hidden": 64}, (TensorSpec((32,)),)),
    "small_cnn": ("neuronperf.zoo:small_cnn", {"image_size": 16}, (TensorSpec((3, 16, 16)),)),
    "bert": (
        "neuronperf.zoo:bert",
        {"vocab_size": 120, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128},
        TOKENS,
    ),
    "bert_like": ("neuronperf.zoo:bert_like", {"vocab_size": 120, "hidden": 32}, TOKENS),
}


def make_entry(model: str, batch_size: int = 2, compiler_args: dict | None = None, device_type: str = "cpu", **ref) -> CompileEntry:
    factory, kwargs, inputs = MODELS.get(model, (None, {}, ()))
    return CompileEntry(
        model=ModelRef(model, ref.get("factory", factory), freeze(ref.get("kwargs", kwargs)), ref.get("base_dir", ".")),
        params=(),
        inputs=ref.get("inputs", inputs),
        batch_size=batch_size,
        pipeline_size=1,
        framework="onnxruntime",
        device_type=device_type,
        compiler="onnx",
        compiler_args=freeze(compiler_args or {}),
    )


def torch_eager(entry: CompileEntry, arrays) -> tuple:
    model = build_model(entry.model).eval()
    with torch.no_grad():
        out = model(*[torch.from_numpy(a) for a in arrays])
    return tuple(o.numpy() for o in out) if isinstance(out, tuple) else (out.numpy(),)


@pytest.fixture(scope="module")
def backend():
    return get_backend("onnxruntime")


def compile_to(backend, entry: CompileEntry, folder: Path) -> Path:
    path = folder / f"{entry.id}{backend.artifact_suffix('onnx')}"
    backend.compile(entry, path)
    return path


@pytest.mark.parametrize("model", sorted(MODELS))
def test_onnx_output_equals_torch_eager(backend, tmp_path, model):
    entry = make_entry(model)
    path = compile_to(backend, entry, tmp_path)
    # One self-contained file: no .onnx.data side file that the cache would have to carry.
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    session = backend.load(entry, path, device_id=0)
    inputs = backend.example_inputs(entry)
    assert all(isinstance(x, np.ndarray) for x in inputs)
    got = backend.to_numpy(session(*inputs))
    want = torch_eager(entry, inputs)
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_one_artifact_per_batch_size_has_static_shapes(backend, tmp_path):
    entry = make_entry("mlp", batch_size=4)
    session = backend.load(entry, compile_to(backend, entry, tmp_path), 0)
    assert session(*backend.example_inputs(entry)).shape == (4, 10)
    other_batch = backend.example_inputs(make_entry("mlp", batch_size=3))
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        session(*other_batch)


def test_an_input_the_model_ignores_is_not_fed(backend, tmp_path):
    # The exporter drops graph inputs that the model never reads; the callable still takes
    # every input positionally, as the benchmark worker passes them.
    (tmp_path / "user_models.py").write_text(
        textwrap.dedent(
            """
            import torch

            class IgnoresMask(torch.nn.Module):
                def __init__(self):
                    super().__init__()
                    torch.manual_seed(0)
                    self.embed = torch.nn.Embedding(120, 8)

                def forward(self, input_ids, attention_mask):
                    return self.embed(input_ids).sum(dim=1)
            """
        )
    )
    entry = make_entry("ignores", factory="user_models.py:IgnoresMask", kwargs={}, inputs=TOKENS, base_dir=str(tmp_path))
    session = backend.load(entry, compile_to(backend, entry, tmp_path), 0)
    assert [i.name for i in session.session.get_inputs()] == ["input_0"]
    inputs = backend.example_inputs(entry)
    np.testing.assert_allclose(session(*inputs), torch_eager(entry, inputs)[0], rtol=1e-5, atol=1e-6)


def test_thread_counts_come_from_compiler_args(backend, tmp_path):
    entry = make_entry("mlp", compiler_args={"intra_op_num_threads": 1, "inter_op_num_threads": 1, "opset": 14})
    session = backend.load(entry, compile_to(backend, entry, tmp_path), 0)
    options = session.session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.inter_op_num_threads == 1
    import onnx

    assert onnx.load(str(tmp_path / f"{entry.id}.onnx")).opset_import[0].version == 14


def test_default_threads_follow_cpu_affinity(backend, tmp_path):
    import os

    entry = make_entry("mlp")
    session = backend.load(entry, compile_to(backend, entry, tmp_path), 0)
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert session.session.get_session_options().intra_op_num_threads == expected


def test_bad_compiler_args_are_usage_errors(backend, tmp_path):
    with pytest.raises(UsageError, match="threads.*accepted: opset, intra_op_num_threads"):
        backend.compile(make_entry("mlp", compiler_args={"threads": 2}), tmp_path / "x.onnx")
    entry = make_entry("mlp", compiler_args={"graph_optimization_level": "max"})
    path = compile_to(backend, entry, tmp_path)
    with pytest.raises(UsageError, match="'max' is not one of: disable, basic, extended, all"):
        backend.load(entry, path, 0)


def test_export_failure_becomes_compile_failed(backend, tmp_path):
    entry = make_entry("mlp", inputs=(TensorSpec((16,)),))  # the model wants 32 features
    with pytest.raises(CompileFailed, match="torch.onnx.export failed"):
        backend.compile(entry, tmp_path / "x.onnx")


def test_bfloat16_inputs_are_refused(backend, tmp_path):
    with pytest.raises(UsageError, match="numpy has no bfloat16"):
        backend.compile(make_entry("mlp", inputs=(TensorSpec((32,), "bfloat16"),)), tmp_path / "x.onnx")


def test_missing_artifact_is_a_load_error(backend, tmp_path):
    with pytest.raises(ModelLoadError, match="artifact not found"):
        backend.load(make_entry("mlp"), tmp_path / "nope.onnx", 0)


def test_compiler_version_names_the_exporter_and_runtime(backend):
    version = backend.compiler_version("onnx")
    assert f"torch {torch.__version__}" in version
    assert f"onnxruntime {ort.__version__}" in version


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="CUDA provider present")
def test_cuda_without_the_cuda_provider_is_reported(backend):
    with pytest.raises(BackendUnavailable, match="onnxruntime-gpu"):
        backend.check_available("cuda")
    backend.check_available("cpu")


def test_cuda_pinning_follows_cuda_visible_devices(backend, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,4")
    assert backend.device_count("cuda") == 2
    assert backend.visible_devices_env("cuda", 1, 1) == {"CUDA_VISIBLE_DEVICES": "4"}
    assert backend.visible_devices_env("cpu", 1, 1) == {}


def test_default_threads_follow_the_benchmark_workers_share(monkeypatch):
    from neuronperf.backends import onnxruntime_backend

    monkeypatch.setenv("NEURONPERF_CPU_THREADS", "1")
    assert onnxruntime_backend._default_threads() == 1
    monkeypatch.delenv("NEURONPERF_CPU_THREADS")
    assert onnxruntime_backend._default_threads() == len(os.sched_getaffinity(0))
