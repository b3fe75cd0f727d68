"""torch and onnxruntime on a CUDA GPU: artifacts on the GPU compute what the CPU model computes.

Every test here is marked ``cuda`` and skipped on machines without a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from neuronperf.backends import get_backend  # noqa: E402
from neuronperf.entries import CompileEntry, ModelRef, TensorSpec, freeze  # noqa: E402
from neuronperf.sources.factory import build_model  # noqa: E402

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


def test_each_measuring_thread_queues_on_its_own_stream_and_waits_for_it_alone():
    import threading

    per_thread = get_backend("torch").measuring_threads("cuda", None)
    seen: list = []

    def run() -> None:
        device = per_thread()
        with device.context():
            stream = torch.cuda.current_stream()
            x = torch.randn(256, 256, device="cuda")
            y = x @ x
            device.sync()
            seen.append((stream, stream.query(), torch.is_inference_mode_enabled(), float(y.sum())))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (a, done_a, inf_a, _), (b, done_b, inf_b, _) = seen
    assert a != b and torch.cuda.default_stream() not in (a, b)
    assert done_a and done_b and inf_a and inf_b


def test_a_cuda_sweep_entry_is_measured_with_per_thread_streams(tmp_path):
    from measuring import measure

    from neuronperf.entries import BenchmarkSettings, RunEntry
    from neuronperf.measure.task import task_for_entry

    entry = RunEntry(make_entry("mlp", "torchscript"), n_models=1, workers_per_model=2,
                     benchmark=BenchmarkSettings(duration=0.5, warmup_calls=5))
    artifact = tmp_path / "mlp.pt"
    get_backend("torch").compile(entry.compile, artifact)
    result = measure(task_for_entry(entry, "torch", str(artifact)))
    assert result.status == "ok", result.error
    assert all(len(w.latency_ns) > 10 for w in result.workers)
