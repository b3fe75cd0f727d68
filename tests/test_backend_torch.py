"""The torch backend on CPU: every compiler's artifact computes what the eager model computes."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from neuronperf.backends import get_backend  # noqa: E402
from neuronperf.backends.torch_backend import cuda_device_index, cuda_pinning_env  # noqa: E402
from neuronperf.entries import CompileEntry, ModelRef, TensorSpec, freeze  # noqa: E402
from neuronperf.errors import BackendUnavailable, CompileFailed, ModelLoadError, UsageError  # noqa: E402
from neuronperf.spec import catalog  # noqa: E402

TINY_BERT = {
    "vocab_size": 120,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 128,
    "max_position_embeddings": 64,
}
TOKENS = (TensorSpec((16,), "int64", 0, 120), TensorSpec((16,), "int64", 1, 2))

#: name -> (factory, kwargs, inputs); small sizes keep compiles to a fraction of a second.
MODELS = {
    "mlp": ("neuronperf.zoo:mlp", {"in_features": 32, "hidden": 64}, (TensorSpec((32,)),)),
    "small_cnn": ("neuronperf.zoo:small_cnn", {"image_size": 16}, (TensorSpec((3, 16, 16)),)),
    "bert": ("neuronperf.zoo:bert", TINY_BERT, TOKENS),
    "bert_like": ("neuronperf.zoo:bert_like", {"vocab_size": 120, "hidden": 32}, TOKENS),
}


def make_entry(model: str, compiler: str, batch_size: int = 2, compiler_args: dict | None = None, **ref) -> CompileEntry:
    factory, kwargs, inputs = MODELS.get(model, (None, {}, ()))
    return CompileEntry(
        model=ModelRef(model, ref.get("factory", factory), freeze(ref.get("kwargs", kwargs)), ref.get("base_dir", ".")),
        params=(),
        inputs=ref.get("inputs", inputs),
        batch_size=batch_size,
        pipeline_size=1,
        framework="torch",
        device_type="cpu",
        compiler=compiler,
        compiler_args=freeze(compiler_args or {}),
    )


def artifact_for(backend, entry: CompileEntry, folder: Path) -> Path | None:
    suffix = backend.artifact_suffix(entry.compiler)
    return None if suffix is None else folder / f"{entry.id}{suffix}"


def eager_output(backend, entry: CompileEntry):
    """The factory's model called directly (no backend code), on the backend's example inputs."""
    from neuronperf.sources.factory import build_model

    model = build_model(entry.model).eval()
    with torch.no_grad():
        return backend.to_numpy(model(*backend.example_inputs(entry)))


def first(output):
    return output[0] if isinstance(output, (tuple, list)) else output


@pytest.fixture(scope="module")
def backend():
    return get_backend("torch")


@pytest.mark.parametrize("compiler", ["torchscript", "export"])
@pytest.mark.parametrize("model", sorted(MODELS))
def test_artifact_output_equals_eager(backend, tmp_path, model, compiler):
    entry = make_entry(model, compiler)
    path = artifact_for(backend, entry, tmp_path)
    backend.compile(entry, path)
    assert path is not None and path.is_file() and path.stat().st_size > 0
    compiled = backend.load(entry, path, device_id=0)
    got = backend.to_numpy(compiled(*backend.example_inputs(entry)))
    want = eager_output(backend, entry)
    assert type(got) is type(want)
    np.testing.assert_allclose(first(got), first(want), rtol=1e-4, atol=1e-5)
    if isinstance(want, tuple):  # bert: (last_hidden_state, pooler_output)
        assert len(got) == len(want)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-4, atol=1e-5)


def test_eager_load_builds_the_model_in_eval_mode(backend):
    entry = make_entry("small_cnn", "eager")
    assert backend.artifact_suffix("eager") is None
    backend.compile(entry, None)  # builds the model once to check the factory; writes nothing
    model = backend.load(entry, None, device_id=0)
    assert not model.module.training  # batch norm must use its running statistics
    out = model(*backend.example_inputs(entry))
    assert not out.requires_grad  # called under inference_mode: no autograd bookkeeping
    np.testing.assert_allclose(backend.to_numpy(out), eager_output(backend, entry), rtol=1e-5)


def test_torchscript_artifact_loads_in_a_fresh_process(backend, tmp_path):
    entry = make_entry("mlp", "torchscript", batch_size=3)
    path = artifact_for(backend, entry, tmp_path)
    backend.compile(entry, path)
    script = textwrap.dedent(
        """
        import sys, numpy as np
        from neuronperf.backends import get_backend
        from neuronperf.entries import CompileEntry, ModelRef, TensorSpec, freeze
        entry = CompileEntry(ModelRef("mlp", "neuronperf.zoo:mlp", freeze({"in_features": 32, "hidden": 64})),
                             (), (TensorSpec((32,)),), 3, 1, "torch", "cpu", "torchscript")
        b = get_backend("torch")
        out = b.to_numpy(b.load(entry, sys.argv[1], 0)(*b.example_inputs(entry)))
        np.save(sys.argv[2], out)
        assert "neuronperf.zoo" not in sys.modules, "loading a TorchScript artifact must not need the factory"
        """
    )
    subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "out.npy")], check=True, timeout=120)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), eager_output(backend, entry), rtol=1e-5)


def test_transformers_model_with_return_dict_is_traced_as_a_tuple(backend, tmp_path):
    # A factory the user wrote, returning a stock BertModel: return_dict is on by default and
    # transformers 5.x ignores torchscript=True, so the backend must switch it off.
    pytest.importorskip("transformers")
    (tmp_path / "user_models.py").write_text(
        textwrap.dedent(
            """
            import torch
            from transformers import BertConfig, BertModel

            def stock_bert():
                torch.manual_seed(1)
                return BertModel(BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=1,
                                            num_attention_heads=2, intermediate_size=64))
            """
        )
    )
    entry = make_entry("hf", "torchscript", factory="user_models.py:stock_bert", kwargs={}, inputs=TOKENS, base_dir=str(tmp_path))
    path = artifact_for(backend, entry, tmp_path)
    backend.compile(entry, path)
    got = backend.to_numpy(backend.load(entry, path, 0)(*backend.example_inputs(entry)))
    from neuronperf.sources.factory import build_model

    stock = build_model(entry.model).eval()
    with torch.no_grad():
        want = stock(*backend.example_inputs(entry))  # a ModelOutput (dict-like)
    assert isinstance(got, tuple)
    np.testing.assert_allclose(got[0], want.last_hidden_state.numpy(), rtol=1e-4, atol=1e-5)
    assert set(backend.to_numpy(want)) >= {"last_hidden_state", "pooler_output"}


def test_torchscript_deprecation_warning_is_silenced(backend, tmp_path):
    entry = make_entry("mlp", "torchscript")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backend.compile(entry, artifact_for(backend, entry, tmp_path))
        backend.load(entry, artifact_for(backend, entry, tmp_path), 0)
    assert not [w for w in caught if "is deprecated" in str(w.message) and "torch.jit" in str(w.message)]


@pytest.mark.slow
def test_inductor_compiles_in_the_worker(backend):
    if not (shutil.which("gcc") or shutil.which("cc") or shutil.which("clang")):
        pytest.skip("torch.compile (inductor) needs a C compiler on CPU; none found")
    entry = make_entry("mlp", "inductor", batch_size=4)
    assert backend.artifact_suffix("inductor") is None
    backend.compile(entry, None)
    model = backend.load(entry, None, 0)
    inputs = backend.example_inputs(entry)
    got = backend.to_numpy(model(*inputs))  # the first call compiles
    np.testing.assert_allclose(got, eager_output(backend, entry), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(backend.to_numpy(model(*inputs)), got)


def test_num_threads_compiler_arg_sets_torch_threads(backend):
    before = torch.get_num_threads()
    try:
        backend.load(make_entry("mlp", "eager", compiler_args={"num_threads": 1}), None, 0)
        assert torch.get_num_threads() == 1
        # The worker's CPU share, given after loading, does not override the user's choice.
        backend.use_cpu_threads(2)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
        from neuronperf.backends import torch_backend

        torch_backend._threads_chosen_by_user.clear()


def test_unknown_compiler_arg_is_a_usage_error(backend, tmp_path):
    entry = make_entry("mlp", "torchscript", compiler_args={"--fast-math": "none"})
    with pytest.raises(UsageError, match=r"--fast-math.*accepted: num_threads, freeze"):
        backend.compile(entry, tmp_path / "x.pt")


def test_unknown_compiler_is_a_usage_error(backend):
    with pytest.raises(UsageError, match="no compiler 'neuronx'"):
        backend.artifact_suffix("neuronx")


def test_trace_failure_becomes_compile_failed(backend, tmp_path):
    # The model expects 32 features; the spec feeds 16: the trace fails inside torch.
    entry = make_entry("mlp", "torchscript", inputs=(TensorSpec((16,)),))
    with pytest.raises(CompileFailed, match=r"mlp-bs2-p1: torch.jit.trace failed: RuntimeError"):
        backend.compile(entry, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_factory_that_is_not_a_module_is_rejected(backend, tmp_path):
    entry = make_entry("f", "torchscript", factory="builtins:dict", kwargs={"weights": 1})
    with pytest.raises(ModelLoadError, match="returned dict, not a torch.nn.Module"):
        backend.compile(entry, tmp_path / "x.pt")


def test_missing_artifact_is_a_load_error(backend, tmp_path):
    with pytest.raises(ModelLoadError, match="artifact not found"):
        backend.load(make_entry("mlp", "torchscript"), tmp_path / "missing.pt", 0)


@pytest.mark.parametrize("dtype", catalog.DTYPES)
def test_example_inputs_have_the_spec_dtype_and_batch(backend, dtype):
    entry = make_entry("x", "eager", batch_size=5, inputs=(TensorSpec((3, 2), dtype),))
    (tensor,) = backend.example_inputs(entry)
    assert tuple(tensor.shape) == (5, 3, 2)
    assert str(tensor.dtype) == f"torch.{dtype}"
    again = backend.example_inputs(entry)[0]
    assert torch.equal(tensor, again)  # the same seed gives the same data


def test_to_numpy_keeps_nesting(backend):
    from transformers.modeling_outputs import BaseModelOutput

    t = torch.arange(4.0)
    out = backend.to_numpy({"a": (t, [t.to(torch.bfloat16)]), "b": BaseModelOutput(last_hidden_state=t), "n": 3})
    assert isinstance(out["a"], tuple) and isinstance(out["a"][1], list)
    np.testing.assert_array_equal(out["a"][1][0], np.arange(4.0, dtype=np.float32))
    np.testing.assert_array_equal(out["b"]["last_hidden_state"], np.arange(4.0, dtype=np.float32))
    assert out["n"] == 3


def test_cpu_needs_no_pinning(backend):
    assert backend.visible_devices_env("cpu", 3, 1) == {}
    assert backend.device_count("cpu") == 1
    backend.check_available("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_absent_is_reported_clearly(backend):
    with pytest.raises(BackendUnavailable, match="device_type cuda needs a CUDA GPU"):
        backend.check_available("cuda")


def test_cuda_pinning_is_round_robin_over_visible_gpus(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert [cuda_pinning_env(i, 2)["CUDA_VISIBLE_DEVICES"] for i in range(3)] == ["0", "1", "0"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")  # the user's own choice is respected
    assert [cuda_pinning_env(i, 8)["CUDA_VISIBLE_DEVICES"] for i in range(3)] == ["2", "5", "2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(BackendUnavailable, match="no CUDA device"):
        cuda_pinning_env(0, 8)


def test_cuda_device_index_is_zero_when_pinned():
    assert cuda_device_index(3, 1) == 0  # a pinned worker sees one GPU
    assert cuda_device_index(3, 4) == 3
    assert cuda_device_index(5, 4) == 1
    with pytest.raises(BackendUnavailable):
        cuda_device_index(0, 0)


def test_measuring_threads_on_cpu_carry_the_thread_count_and_inference_mode(backend):
    import threading

    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        per_thread = backend.measuring_threads("cpu", None)
        seen: list = []

        def run() -> None:
            device = per_thread()
            with device.context():
                seen.append((torch.get_num_threads(), torch.is_inference_mode_enabled(), device.sync))

        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
        assert seen == [(1, True, None)]  # no synchronisation on the CPU
    finally:
        torch.set_num_threads(before)
