"""Model sources through the backends: a random-weight checkpoint saved with save_pretrained,
its generated inputs passed by name through every compiler that takes keyword inputs
(TorchScript traced with example_kwarg_inputs, torch.export with kwargs, eager), exported to ONNX
with named inputs, traced by the Neuron stand-ins through a wrapper that passes them on by name;
saved artifacts (file:) measured as they are; the dtype axis; real sweeps of both."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import types
import warnings
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from neuronperf.backends import find_backend, get_backend  # noqa: E402
from neuronperf.backends.torch_backend import positional_module  # noqa: E402
from neuronperf.compilation.jobs import compile_all  # noqa: E402
from neuronperf.errors import SpecError  # noqa: E402
from neuronperf.sources.hf import TUPLE_CALL  # noqa: E402
from neuronperf.sources.models import build  # noqa: E402
from neuronperf.sources.planning import plan_spec  # noqa: E402
from neuronperf.spec.load import parse_spec  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A BERT checkpoint (three named inputs: the forward's order is input_ids, attention_mask,
    token_type_ids) with random weights and a two-label head."""
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=64, num_labels=2)
    transformers.BertForSequenceClassification(config).save_pretrained(folder / "bert")
    transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=90, n_embd=32, n_layer=1, n_head=2, n_positions=64,
                                                         bos_token_id=0, eos_token_id=0)).save_pretrained(folder / "gpt2")
    return folder


def entries(folder, compiler="eager", framework="torch", device="cpu", params="{seq_len: [8]}", batch="[2]", model=None):
    model = model or f"""
          - name: bert
            hf: ./bert
            hf_task: text-classification
            params: {params}
    """
    text = textwrap.dedent(f"""
        version: 1
        framework: {framework}
        device_type: {device}
        compiler: {compiler}
        models:
        """) + textwrap.dedent(model) + f"sweep: {{batch_sizes: {batch}}}\n"
    return plan_spec(parse_spec(text, source="s.yaml", base_dir=str(folder))).compile_entries


def logits(output):
    """The first output of a model: a tuple's, a ModelOutput's or a dict's (TorchScript's)."""
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        output = output[0]
    return np.asarray(output.detach().float() if hasattr(output, "detach") else output)


def eager_logits(entry, inputs):
    model = build(entry.model.source)
    with torch.inference_mode():
        return logits(model(**dict(zip([t.name for t in entry.inputs], inputs)), **TUPLE_CALL))


@pytest.mark.parametrize("compiler", ["eager", "torchscript", "export"])
def test_named_inputs_through_each_torch_compiler(checkpoint, tmp_path, compiler):
    (entry,) = entries(checkpoint, compiler)
    backend = find_backend("torch", "cpu", compiler)
    suffix = backend.artifact_suffix(compiler)
    path = tmp_path / f"m{suffix}" if suffix else None
    backend.compile(entry, path)
    model = backend.load(entry, path, 0)
    assert model.names == ("input_ids", "attention_mask", "token_type_ids")  # called by keyword
    inputs = backend.example_inputs(entry)
    np.testing.assert_allclose(logits(model(*inputs)), eager_logits(entry, inputs), rtol=1e-4, atol=1e-5)


def test_torchscript_artifact_was_traced_by_keyword(checkpoint, tmp_path):
    (entry,) = entries(checkpoint, "torchscript")
    backend = find_backend("torch", "cpu", "torchscript")
    backend.compile(entry, tmp_path / "m.pt")
    loaded = torch.jit.load(str(tmp_path / "m.pt"))
    names = [a.name for a in loaded.forward.schema.arguments][1:]
    assert names == ["input_ids", "attention_mask", "token_type_ids"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnx_export_has_the_named_inputs(checkpoint, tmp_path):
    onnx = pytest.importorskip("onnx")
    (entry,) = entries(checkpoint, "onnx", framework="onnxruntime")
    backend = find_backend("onnxruntime", "cpu", "onnx")
    backend.compile(entry, tmp_path / "m.onnx")
    assert [i.name for i in onnx.load(str(tmp_path / "m.onnx")).graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    model = backend.load(entry, tmp_path / "m.onnx", 0)
    arrays = backend.example_inputs(entry)
    want = eager_logits(entry, [torch.from_numpy(a) for a in arrays])
    np.testing.assert_allclose(logits(model(*arrays)), want, rtol=1e-4, atol=1e-5)


@pytest.fixture
def torch_neuronx_standin(monkeypatch):
    """torch_neuronx's documented trace(func, example_inputs, compiler_args=...), recorded; it
    returns a real traced module so the artifact loads and runs."""
    calls: list = []
    module = types.ModuleType("torch_neuronx")
    module.__version__ = "2.9.0-standin"

    def trace(func, example_inputs, *, compiler_args=None, **kwargs):
        calls.append((func, example_inputs, compiler_args))
        return torch.jit.trace(func, example_inputs, strict=False)

    module.trace = trace
    module.calls = calls
    monkeypatch.setitem(sys.modules, "torch_neuronx", module)
    return module


def test_neuron_trace_gets_positional_inputs_passed_on_by_name(checkpoint, tmp_path, torch_neuronx_standin):
    (entry,) = entries(checkpoint, "neuronx", device="neuron")
    backend = get_backend("torch-neuronx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        backend.compile(entry, tmp_path / "m.pt")
    ((func, example_inputs, _),) = torch_neuronx_standin.calls
    # The SDK binds example inputs by position: in the entry's (named) order, to a wrapper whose
    # forward passes them on by name and asks for a plain tuple.
    assert [tuple(t.shape) for t in example_inputs] == [(2, 8)] * 3
    assert [t.dtype for t in example_inputs] == [torch.int64] * 3
    assert type(func).__name__ == "Positional"
    with torch.inference_mode():
        out = func(*example_inputs)
    assert isinstance(out, tuple)
    np.testing.assert_allclose(logits(out), eager_logits(entry, example_inputs), rtol=1e-4, atol=1e-5)
    model = backend.load(entry, tmp_path / "m.pt", 0)
    np.testing.assert_allclose(logits(model(*backend.example_inputs(entry))), logits(out), rtol=1e-4, atol=1e-5)


def test_a_causal_lm_checkpoint_generates(checkpoint):
    (entry,) = entries(checkpoint, "eager", batch="[1]", model="""
          - name: gpt2
            hf: ./gpt2
            hf_task: causal-lm
            task: generate
            generate: {new_tokens: 3}
            params: {prompt_len: [4]}
    """)
    (ids,) = entry.inputs
    assert (ids.name, ids.shape, ids.high) == ("input_ids", (4,), 90)
    backend = find_backend("torch", "cpu", "eager")
    model = backend.load(entry, None, 0)
    stamps: list = []
    with torch.inference_mode():
        model(*backend.example_inputs(entry), on_token=lambda: stamps.append(1))
    assert len(stamps) == 3  # exactly new_tokens, one stamp per decoding step


def test_dtype_axis_casts_the_model(checkpoint, tmp_path):
    fp32, bf16 = entries(checkpoint, "eager", params="{seq_len: [8], dtype: [float32, bfloat16]}")
    backend = find_backend("torch", "cpu", "eager")
    model = backend.load(bf16, None, 0)
    assert next(model.module.parameters()).dtype == torch.bfloat16
    assert next(backend.load(fp32, None, 0).module.parameters()).dtype == torch.float32
    assert logits(model(*backend.example_inputs(bf16))).shape == (2, 2)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_saved_artifacts_are_measured_as_they_are(checkpoint, tmp_path):
    (entry,) = entries(checkpoint, "eager")
    model = build(entry.model.source)
    named = dict(zip([t.name for t in entry.inputs], find_backend("torch", "cpu", "eager").example_inputs(entry)))
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(model, example_kwarg_inputs=named, strict=False), str(tmp_path / "traced.pt"))
    inputs = """[{name: input_ids, shape: [8], dtype: int64, low: 0, high: 100},
                 {name: attention_mask, shape: [8], dtype: int64, low: 1, high: 2},
                 {name: token_type_ids, shape: [8], dtype: int64, low: 0, high: 1}]"""
    (traced,) = entries(tmp_path, "torchscript", model=f"""
          - name: traced
            file: traced.pt
            inputs: {inputs}
    """)
    assert traced.compiler == "torchscript" and set(traced.model.to_dict()["source"]) == {"file_digest"}
    (tmp_path / "out").mkdir()
    (result,) = compile_all([traced], str(tmp_path / "out"))
    assert (result.status, result.artifact, result.compile_s) == ("ok", "../traced.pt", 0.0)  # nothing built
    backend = find_backend("torch", "cpu", "torchscript")
    loaded = backend.load(traced, tmp_path / "out" / result.artifact, 0)
    example = backend.example_inputs(traced)
    np.testing.assert_allclose(logits(loaded(*example)), eager_logits(entry, example), rtol=1e-4, atol=1e-5)


SWEEP = """
version: 1
name: {name}
framework: {framework}
device_type: cpu
compiler: {compiler}
output_dir: out-{name}
models:
{models}
sweep: {{batch_sizes: {batch}}}
benchmark: {{duration: 0.3, warmup: {{calls: 2}}, timeout: 120}}
"""


def run_sweep(folder, name, models, compiler="torchscript", framework="torch", batch="[1, 2]"):
    (folder / f"{name}.yaml").write_text(SWEEP.format(name=name, framework=framework, compiler=compiler,
                                                      models=textwrap.indent(textwrap.dedent(models), "  "), batch=batch))
    done = subprocess.run([sys.executable, "-m", "neuronperf", "run", f"{name}.yaml", "--quiet"], cwd=folder,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((folder / f"out-{name}" / "results.json").read_text())


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_an_hf_sweep_and_saved_artifacts_run_with_no_factory(checkpoint, tmp_path):
    # The acceptance shape, small: a local checkpoint, no inputs, no factory, seq_len x batch.
    import shutil

    shutil.copytree(checkpoint / "bert", tmp_path / "bert")
    rows = run_sweep(tmp_path, "hf", """
        - name: bert
          hf: ./bert
          hf_task: text-classification
          params: {seq_len: [8, 16]}
    """)
    assert [(r["id"], r["status"]) for r in rows] == [
        (f"bert-seq_len{s}-bs{b}-p1-m1-w1", "ok") for s in (8, 16) for b in (1, 2)]
    assert all(r["latency_ms_p50"] > 0 for r in rows)
    # A TorchScript and an ONNX file, measured without a compile step.
    (entry,) = entries(tmp_path, "eager")
    model = build(entry.model.source)
    named = dict(zip([t.name for t in entry.inputs], find_backend("torch", "cpu", "eager").example_inputs(entry)))
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(model, example_kwarg_inputs=named, strict=False), str(tmp_path / "bert.pt"))
        wrapped = positional_module(torch, model, list(named), TUPLE_CALL)
        torch.onnx.export(wrapped, tuple(named.values()), str(tmp_path / "bert.onnx"), dynamo=False, input_names=list(named))
    inputs = "[{name: input_ids, shape: [8], dtype: int64, low: 0, high: 100}, {name: attention_mask, shape: [8], dtype: int64, low: 1, high: 2}, {name: token_type_ids, shape: [8], dtype: int64, low: 0, high: 1}]"
    rows = run_sweep(tmp_path, "pt", f"""
        - name: saved
          file: bert.pt
          inputs: {inputs}
    """, batch="[2]")
    assert [r["status"] for r in rows] == ["ok"]
    index = json.loads((tmp_path / "out-pt" / "model_index.json").read_text())
    assert [c["filename"] for c in index["model_configs"]] == ["../bert.pt"]  # the user's file, not a copy
    rows = run_sweep(tmp_path, "onnx", """
        - name: saved
          file: bert.onnx
    """, compiler="onnx", framework="onnxruntime", batch="[2]")
    assert [r["status"] for r in rows] == ["ok"]


def test_a_neuron_compiled_file_is_loaded_by_the_neuron_backend(tmp_path, torch_neuronx_standin):
    model = torch.nn.Linear(4, 2).eval()
    torch.jit.save(torch.jit.trace(model, (torch.randn(2, 4),)), str(tmp_path / "plain.pt"))
    # What a torch_neuronx.trace artifact's code calls (the stand-in cannot compile one): the
    # Neuron operator, beside a module that loads and runs here.
    with zipfile.ZipFile(tmp_path / "plain.pt") as src, zipfile.ZipFile(tmp_path / "neuron.pt", "w") as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))
        dst.writestr("plain/code/__torch__/neuron_call.py", "def f(x):\n  return ops.neuron.forward_v2([x], None)\n")
    (entry,) = entries(tmp_path, "neuronx", device="neuron", model="""
          - name: compiled
            file: neuron.pt
            inputs: [[4]]
    """)
    assert entry.compiler == "neuronx"
    (tmp_path / "out").mkdir()
    (result,) = compile_all([entry], str(tmp_path / "out"))
    assert result.artifact == "../neuron.pt" and not torch_neuronx_standin.calls  # not traced again
    loaded = get_backend("torch-neuronx").load(entry, tmp_path / "out" / result.artifact, 0)
    assert tuple(loaded(torch.randn(2, 4)).shape) == (2, 2)
    with pytest.raises(Exception, match="runs on device_type: neuron only"):
        entries(tmp_path, "torchscript", model="""
          - name: compiled
            file: neuron.pt
            inputs: [[4]]
        """)
    # TorchNeuron compiles the model itself: a traced artifact is one located line, whether the
    # spec names native or takes it from the installed torch-neuronx.
    compiled = """
          - name: compiled
            file: neuron.pt
            inputs: [[4]]
        """
    with pytest.raises(SpecError) as raised:
        entries(tmp_path, "native", device="neuron", model=compiled)
    (line,) = str(raised.value).splitlines()
    assert line.endswith("models[0].file: file 'neuron.pt': a Neuron-compiled TorchScript .pt (torch_neuronx.trace or "
                         "torch.neuron.trace) runs with compiler neuronx (torch-neuronx 2.9.x) or neuron (torch-neuron), "
                         "not native: TorchNeuron compiles the model itself; give its source (hf:, timm:, torchvision: "
                         "or factory:)"), line


def test_a_traced_file_under_the_installed_torchneuron_asks_for_compiler_neuronx(tmp_path, monkeypatch):
    from neuron_fakes import use_torch_neuronx

    from neuronperf.sweep.state import load_plan

    torch.jit.save(torch.jit.trace(torch.nn.Linear(4, 2).eval(), (torch.randn(2, 4),)), str(tmp_path / "plain.pt"))
    with zipfile.ZipFile(tmp_path / "plain.pt") as src, zipfile.ZipFile(tmp_path / "neuron.pt", "w") as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))
        dst.writestr("plain/code/__torch__/neuron_call.py", "def f(x):\n  return ops.neuron.forward_v2([x], None)\n")
    (tmp_path / "s.yaml").write_text("version: 1\nframework: torch\ndevice_type: neuron\n"
                                     "models:\n  - {name: compiled, file: neuron.pt, inputs: [[4]]}\n")
    use_torch_neuronx(monkeypatch, "2.14")
    with pytest.raises(SpecError) as raised:
        load_plan(str(tmp_path / "s.yaml"))
    (line,) = str(raised.value).splitlines()
    assert "not native: TorchNeuron compiles the model itself" in line
    assert line.endswith("; the spec names no compiler, and the installed torch-neuronx takes the native path: "
                         "set compiler: neuronx"), line


@pytest.mark.slow
def test_a_task_the_architecture_lacks_stops_the_run_before_any_compile(checkpoint, tmp_path):
    import shutil

    shutil.copytree(checkpoint / "bert", tmp_path / "bert")
    (tmp_path / "s.yaml").write_text(SWEEP.format(name="wrong", framework="torch", compiler="torchscript", batch="[1]",
                                                  models="  - name: bert\n    hf: ./bert\n    hf_task: image-classification"))
    done = subprocess.run([sys.executable, "-m", "neuronperf", "run", "s.yaml"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("s.yaml:11:14: models[0].hf_task: hf './bert': hf_task image-classification "
                           "(AutoModelForImageClassification) does not serve this architecture; model_type 'bert' has: "
                           "feature-extraction, text-classification")
    assert not (tmp_path / "out-wrong" / "models").exists()


@pytest.mark.parametrize("compiler", ["native", "native-compile"])
def test_torchneuron_passes_a_checkpoints_inputs_by_name(checkpoint, monkeypatch, compiler):
    """An hf: model on TorchNeuron (the 2.14 stand-in): eager and torch.compile take keywords, so
    each named input reaches its parameter, whatever order the spec lists them in."""
    from neuron_fakes import use_torch_neuronx

    sdk = use_torch_neuronx(monkeypatch, "2.14")
    (entry,) = entries(checkpoint, compiler, device="neuron")
    backend = get_backend("torchneuron")
    backend.compile(entry, None)
    model = backend.load(entry, None, 0)
    assert model.names == ("input_ids", "attention_mask", "token_type_ids")
    inputs = backend.example_inputs(entry)
    with torch.inference_mode():
        np.testing.assert_allclose(logits(model(*inputs)), eager_logits(entry, inputs), rtol=1e-4, atol=1e-5)
    made = [c["call"] for c in sdk.calls if c["call"] != "import"]
    assert made[0] == "Module.to"
    if compiler == "native-compile":  # one graph, compiled by the neuron backend, no break
        assert made.count("torch.compile") == 1 and made.count("dynamo backend") == 1
    # The spec's own order (attention_mask first): a positional call would feed the mask as ids.
    swapped = """[{name: attention_mask, shape: [8], dtype: int64, low: 1, high: 2},
                  {name: input_ids, shape: [8], dtype: int64, low: 0, high: 100}]"""
    (entry,) = entries(checkpoint, compiler, device="neuron", model=f"""
          - name: bert
            hf: ./bert
            hf_task: text-classification
            inputs: {swapped}
    """)
    model = backend.load(entry, None, 0)
    inputs = backend.example_inputs(entry)
    with torch.inference_mode():
        np.testing.assert_allclose(logits(model(*inputs)), eager_logits(entry, inputs), rtol=1e-4, atol=1e-5)
