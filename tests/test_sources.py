"""Model sources (neuronperf.sources): Hugging Face checkpoints saved locally with random
weights, saved artifacts, dtype casting. No hub is reachable here: the hub paths are checked for
their one-line errors, with HF_HUB_OFFLINE set or the endpoint pointed at a closed port."""

from __future__ import annotations

import os
import shutil
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from neuronperf.errors import ModelLoadError  # noqa: E402
from neuronperf.sources import files, hf  # noqa: E402
from neuronperf.sources.dtypes import cast_inputs, cast_model, dtype_problem  # noqa: E402
from neuronperf.sources.models import (  # noqa: E402
    SourceDescription,
    build,
    check,
    check_all,
    describe,
    describe_all,
    make_source,
    needs_worker,
)

TINY = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Random-weight checkpoints saved with save_pretrained, as a user would make them."""
    folder = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    transformers.BertForMaskedLM(transformers.BertConfig(vocab_size=100, max_position_embeddings=64, **TINY)).save_pretrained(folder / "bert")
    transformers.DistilBertForSequenceClassification(transformers.DistilBertConfig(
        vocab_size=120, dim=32, n_layers=1, n_heads=2, hidden_dim=64, max_position_embeddings=64)).save_pretrained(folder / "distil")
    transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=90, n_embd=32, n_layer=1, n_head=2, n_positions=64, bos_token_id=0, eos_token_id=0)).save_pretrained(folder / "gpt2")
    transformers.ViTForImageClassification(transformers.ViTConfig(
        image_size=32, patch_size=8, num_channels=3, num_labels=3, **TINY)).save_pretrained(folder / "vit")
    return folder


def tensors(inputs, batch_size, values):
    """Tensors for input dicts, ``$param`` dimensions taken from ``values``, by name."""
    made = {}
    for spec in inputs:
        shape = [batch_size] + [values[d[1:]] if isinstance(d, str) else d for d in spec["shape"]]
        if spec["dtype"] == "int64":
            made[spec["name"]] = torch.randint(int(spec["low"]), int(spec["high"]), shape)
        else:
            made[spec["name"]] = torch.randn(shape)
    return made


@pytest.mark.parametrize("folder, task, names, output", [
    ("bert", "feature-extraction", ["input_ids", "attention_mask", "token_type_ids"], "BertModel"),
    ("bert", "fill-mask", ["input_ids", "attention_mask", "token_type_ids"], "BertForMaskedLM"),
    ("bert", "question-answering", ["input_ids", "attention_mask", "token_type_ids"], "BertForQuestionAnswering"),
    ("bert", "token-classification", ["input_ids", "attention_mask", "token_type_ids"], "BertForTokenClassification"),
    ("distil", "text-classification", ["input_ids", "attention_mask"], "DistilBertForSequenceClassification"),
    ("gpt2", "causal-lm", ["input_ids", "attention_mask"], "GPT2LMHeadModel"),
    ("vit", "image-classification", ["pixel_values"], "ViTForImageClassification"),
])
def test_each_task_loads_and_takes_its_generated_inputs_by_name(checkpoints, folder, task, names, output):
    source = make_source("hf", f"./{folder}", hf_task=task, base_dir=str(checkpoints))
    assert not needs_worker(source)  # a local folder is described from its config.json alone
    described = describe(source, declared=["seq_len"])
    assert [t["name"] for t in described.inputs] == names
    check(source, described.inputs)
    model = build(source)
    assert type(model).__name__ == output and not model.training
    with torch.inference_mode():
        out = model(**tensors(described.inputs, 2, {"seq_len": 16}), **hf.TUPLE_CALL)
    # A plain tuple of tensors, as the ONNX exporter and the Neuron tracers want (no KV cache).
    assert isinstance(out, tuple) and all(isinstance(o, torch.Tensor) for o in out) and out[0].shape[0] == 2


def test_text_inputs_follow_the_config(checkpoints):
    config = hf.read_config(hf.locate("./bert", str(checkpoints)))
    ids, mask, types = hf.call_inputs(config, "fill-mask", "$seq_len")
    assert ids == {"name": "input_ids", "shape": ["$seq_len"], "dtype": "int64", "low": 0, "high": 100}
    assert (mask["low"], mask["high"]) == (1, 2)  # all ones
    assert (types["low"], types["high"]) == (0, 1)  # one segment
    # No seq_len parameter: the default length (128), cut to a shorter context (64 here); a
    # generating model takes the prompt's ids alone.
    distil = describe(make_source("hf", "./distil", hf_task="text-classification", base_dir=str(checkpoints)))
    assert [t["shape"] for t in distil.inputs] == [[64]] * 2 and distil.inputs[0]["high"] == 120
    assert hf.call_inputs({"vocab_size": 10}, "fill-mask", hf.DEFAULT_SEQ_LEN)[0]["shape"] == [128]
    gen = describe(make_source("hf", "./gpt2", hf_task="causal-lm", base_dir=str(checkpoints)), ["prompt_len"], task="generate")
    assert [(t["name"], t["shape"]) for t in gen.inputs] == [("input_ids", ["$prompt_len"])]
    vit = describe(make_source("hf", "./vit", hf_task="image-classification", base_dir=str(checkpoints)), ["image_size"])
    assert vit.inputs[0]["shape"] == [3, "$image_size", "$image_size"] and vit.inputs[0]["dtype"] == "float32"
    assert hf.image_size({"image_size": {"height": 20, "width": 30}}) == (20, 30)
    assert hf.image_size({}) == (224, 224)


def test_generating_model_keeps_its_cache(checkpoints):
    model = build(make_source("hf", "./gpt2", hf_task="causal-lm", base_dir=str(checkpoints)), task="generate")
    assert model.config.use_cache
    out = model.generate(torch.randint(0, 90, (1, 4)), max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert out.shape == (1, 7)


def test_identity_is_the_folder_content_not_its_place(checkpoints, tmp_path):
    source = make_source("hf", "./distil", hf_task="text-classification", base_dir=str(checkpoints))
    first = describe(source).identity
    moved = tmp_path / "elsewhere"
    shutil.copytree(checkpoints / "distil", moved)
    assert describe(make_source("hf", str(moved), hf_task="text-classification")).identity == first
    config = moved / "config.json"
    config.write_text(config.read_text().replace('"n_heads": 2', '"n_heads": 4'))
    assert describe(make_source("hf", str(moved), hf_task="text-classification")).identity != first
    # Hub ids: the id and the revision asked for (pin it to tie results to a commit).
    assert hf.identity(hf.locate("org/model", hf_kwargs={"revision": "v2"})) == {"hf": "org/model", "revision": "v2"}


def test_locate_tells_folders_from_hub_ids(checkpoints):
    assert hf.locate("./bert", str(checkpoints)).path == str(checkpoints / "bert")
    assert hf.locate("bert", str(checkpoints)).is_local  # a folder of that name beside the spec wins
    assert hf.locate("distilbert-base-uncased").hub_id == "distilbert-base-uncased"
    assert hf.locate("org/name", hf_kwargs={"revision": "abc"}).revision == "abc"
    assert hf.locate("a/b/c").is_local and hf.locate("/abs/path").is_local and hf.locate("~/x").is_local


def test_a_cached_hub_checkpoint_is_read_from_the_cache(checkpoints, tmp_path, monkeypatch):
    # huggingface_hub's documented cache layout, made by hand: refs/main holds the commit.
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--org--distil"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(checkpoints / "distil", repo / "snapshots" / commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    source = make_source("hf", "org/distil", hf_task="text-classification")
    assert not needs_worker(source)
    assert describe(source).identity == {"hf": "org/distil", "revision": "main", "hf_task": "text-classification"}
    assert needs_worker(make_source("hf", "org/other", hf_task="text-classification"))


@pytest.mark.parametrize("offline", [True, False])
def test_an_unreachable_hub_is_one_line_naming_the_id_and_hf_hub_offline(offline, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a closed port: refused at once
    source = make_source("hf", "org/bert-like", hf_task="fill-mask")
    for attempt in (lambda: describe(source), lambda: build(source)):
        with pytest.raises(ModelLoadError) as caught:
            attempt()
        message = str(caught.value)
        assert "\n" not in message and "org/bert-like" in message and "HF_HUB_OFFLINE" in message


def test_bad_checkpoints_are_one_line_each(checkpoints, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "config-only").mkdir()
    shutil.copy(checkpoints / "bert" / "config.json", tmp_path / "config-only" / "config.json")
    cases = [
        (make_source("hf", "./empty", hf_task="fill-mask", base_dir=str(tmp_path)), "is not a Hugging Face checkpoint (it has no config.json"),
        (make_source("hf", "./missing", hf_task="fill-mask", base_dir=str(tmp_path)), "no such folder"),
        (make_source("hf", "./config-only", hf_task="fill-mask", base_dir=str(tmp_path)), "has a config.json but no weights"),
        (make_source("hf", "./distil", hf_task="causal-lm", base_dir=str(checkpoints)),
         "hf_task causal-lm (AutoModelForCausalLM) does not serve this architecture; model_type 'distilbert' has: feature-extraction, text-classification"),
        (make_source("hf", "./vit", hf_task="fill-mask", base_dir=str(checkpoints)), "hf_task fill-mask takes token ids, and this checkpoint (model_type 'vit') has no vocab_size"),
        (make_source("hf", "./bert", hf_task="summarize", base_dir=str(checkpoints)), "unknown hf_task 'summarize'; choose one of: feature-extraction"),
    ]
    for source, expected in cases:
        with pytest.raises(ModelLoadError) as caught:
            described = describe(source)
            check(source, described.inputs)
            build(source)
        assert expected in str(caught.value) and "\n" not in str(caught.value)
        assert str(caught.value).startswith(source.label)


def test_describe_all_and_check_all_answer_per_model(checkpoints):
    good = make_source("hf", "./distil", hf_task="text-classification", base_dir=str(checkpoints))
    wrong_task = make_source("hf", "./distil", hf_task="causal-lm", base_dir=str(checkpoints))
    missing = make_source("hf", "./nope", hf_task="fill-mask", base_dir=str(checkpoints))
    answers = describe_all([("a", good, [], "forward", False), ("b", missing, [], "forward", False)])
    assert SourceDescription.from_json(answers["a"]["ok"]) == describe(good)
    assert "no such folder" in answers["b"]["error"]
    failures = check_all([("a", good, describe(good).inputs, "forward"), ("c", wrong_task, describe(good).inputs, "forward")])
    assert list(failures) == ["c"]


# ---- saved artifacts (file:) ---------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript-based ONNX exporter, chosen on purpose
def test_artifact_kinds_are_told_from_the_files(tmp_path, checkpoints):
    model = torch.nn.Linear(4, 2).eval()
    example = (torch.randn(1, 4),)
    torch.jit.save(torch.jit.trace(model, example), str(tmp_path / "traced.pt"))
    torch.save(model, str(tmp_path / "pickled.pt"))
    torch.export.save(torch.export.export(model, example), str(tmp_path / "exported.pt2"))
    torch.onnx.export(model, example, str(tmp_path / "model.onnx"), dynamo=False, input_names=["features"])
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "saved_model.pb").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    # What a Neuron-compiled module's code calls (torch-neuronx's operator), in a TorchScript archive.
    with zipfile.ZipFile(tmp_path / "traced.pt") as src, zipfile.ZipFile(tmp_path / "neuron.pt", "w") as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))
        dst.writestr("traced/code/__torch__/neuron.py", "def forward(self, x):\n  return ops.neuron.forward_v2([x], self.model)\n")

    kind = files.artifact_kind
    assert [kind(str(tmp_path / n)) for n in ("traced.pt", "exported.pt2", "model.onnx", "saved", "neuron.pt")] == \
        ["torchscript", "export", "onnx", "savedmodel", "neuron"]
    for name, expected in [("pickled.pt", "pickled torch object (torch.save), not a TorchScript module"),
                           ("notes.txt", "cannot tell what notes.txt is from its suffix"),
                           ("absent.pt", "no such file")]:
        with pytest.raises(ModelLoadError, match=expected.replace("(", r"\(").replace(")", r"\)")):
            kind(str(tmp_path / name))
    with pytest.raises(ModelLoadError, match="is a Hugging Face checkpoint folder; write hf:"):
        kind(str(checkpoints / "bert"))

    assert files.check_target("onnx", "torch", "cpu", "file 'model.onnx'") == \
        "file 'model.onnx': a .onnx file runs with framework: onnxruntime (this spec's framework is torch)"
    assert "device_type: neuron only" in files.check_target("neuron", "torch", "cpu", "f")
    assert files.check_target("torchscript", "torch", "cpu", "f") is None
    assert (files.compiler_for("export", "torchscript"), files.compiler_for("neuron", "neuronx")) == ("export", "neuronx")

    described = describe(make_source("file", "model.onnx", base_dir=str(tmp_path)))
    assert described.inputs == ({"name": "features", "shape": [4], "dtype": "float32", "low": None, "high": None},)
    assert set(described.identity) == {"file_digest"}
    assert describe(make_source("file", "traced.pt", base_dir=str(tmp_path))).inputs == ()  # TorchScript declares none


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnx_symbolic_dimensions_come_from_params(tmp_path):
    model = torch.nn.Embedding(50, 8).eval()
    path = str(tmp_path / "embed.onnx")
    torch.onnx.export(model, (torch.zeros(1, 6, dtype=torch.long),), path, dynamo=False, input_names=["input_ids"],
                      dynamic_axes={"input_ids": {0: "batch", 1: "seq_len"}})
    assert files.onnx_inputs(path, {"seq_len": 12}) == [
        {"name": "input_ids", "shape": [12], "dtype": "int64", "low": None, "high": None}]
    with pytest.raises(ModelLoadError, match="symbolic dimension seq_len"):
        files.onnx_inputs(path)


# ---- dtype -------------------------------------------------------------------------------------------


def test_dtype_casts_the_model_and_its_floating_inputs_only():
    inputs = [{"name": "pixel_values", "dtype": "float32"}, {"name": "input_ids", "dtype": "int64"}]
    assert [t["dtype"] for t in cast_inputs(inputs, "bfloat16")] == ["bfloat16", "int64"]
    assert cast_inputs(inputs, None) == inputs
    assert dtype_problem("bfloat16") is None and "choose from: float32, bfloat16, float16" in dtype_problem("int8")
    model = cast_model(torch.nn.Linear(4, 2), "bfloat16")
    assert model.weight.dtype == torch.bfloat16
    with torch.no_grad():
        out = model(torch.randn(1, 4, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and np.isfinite(out.float().numpy()).all()


def test_importing_the_sources_imports_no_framework():
    import subprocess
    import sys

    code = ("import sys, neuronperf.sources.models, neuronperf.sources.hf, neuronperf.sources.files; "
            "print(sorted(m for m in ('torch', 'transformers', 'timm', 'torchvision', 'onnx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.getcwd()}).stdout
    assert out.strip() == "[]"
