"""torch and onnxruntime on a CUDA GPU: artifacts on the GPU compute what the CPU model computes.

Every test here is marked ``cuda`` and skipped on machines without a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from neuronperf.backends import get_backend  # noqa: E402
from neuronperf.entries import CompileEntry, ModelRef, TensorSpec, freeze  # noqa: E402
from neuronperf.factory import build_model  # noqa: E402

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

TOKENS = (TensorSpec((16,), "int64", 0, 120), TensorSpec((16,), "int64", 0, 2))
MODELS = {
    "mlp": ("neuronperf.zoo:mlp", {"in_features": 32, "hidden": 64}, (TensorSpec((32,)),)),
    "bert_like": ("neuronperf.zoo:bert_like", {"vocab_size": 120, "hidden": 32}, TOKENS),
}


def make_entry(model: str, compiler: str, framework: str = "torch") -> CompileEntry:
    factory, kwargs, inputs = MODELS[model]
    return CompileEntry(
        model=ModelRef(model, factory, freeze(kwargs)),
        params=(),
        inputs=inputs,
        batch_size=2,
        pipeline_size=1,
        framework=framework,
        device_type="cuda",
        compiler=compiler,
    )


def cpu_reference(entry: CompileEntry, inputs) -> np.ndarray:
    model = build_model(entry.model).eval()
    with torch.no_grad():
        return model(*[x.cpu() if hasattr(x, "cpu") else torch.from_numpy(x) for x in inputs]).numpy()


@pytest.mark.parametrize("compiler", ["torchscript", "eager", "export"])
@pytest.mark.parametrize("model", sorted(MODELS))
def test_torch_on_cuda_equals_cpu(tmp_path, model, compiler):
    backend = get_backend("torch")
    backend.check_available("cuda")
    entry = make_entry(model, compiler)
    suffix = backend.artifact_suffix(compiler)
    path = None if suffix is None else tmp_path / f"{model}{suffix}"
    backend.compile(entry, path)
    loaded = backend.load(entry, path, device_id=0)
    inputs = backend.example_inputs(entry)
    assert all(x.is_cuda for x in inputs)
    out = loaded(*inputs)
    backend.synchronize("cuda")
    assert out.is_cuda
    np.testing.assert_allclose(backend.to_numpy(out), cpu_reference(entry, inputs), rtol=1e-3, atol=1e-4)


def test_cuda_device_facts():
    backend = get_backend("torch")
    assert backend.device_count("cuda") == torch.cuda.device_count() >= 1
    env = backend.visible_devices_env("cuda", 0, 1)
    assert list(env) == ["CUDA_VISIBLE_DEVICES"]


def test_onnxruntime_cuda_provider(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime here has no CUDAExecutionProvider (install onnxruntime-gpu)")
    backend = get_backend("onnxruntime")
    entry = make_entry("mlp", "onnx", framework="onnxruntime")
    backend.compile(entry, tmp_path / "mlp.onnx")
    loaded = backend.load(entry, tmp_path / "mlp.onnx", 0)
    assert loaded.session.get_providers()[0] == "CUDAExecutionProvider"
    inputs = backend.example_inputs(entry)
    np.testing.assert_allclose(loaded(*inputs), cpu_reference(entry, inputs), rtol=1e-3, atol=1e-4)
