"""Model sources in specs: the keys, one located line per bad input, planning with inputs from
the checkpoint's config (passed by name), the dtype axis, identities (a checkpoint's content, not
its place; factory specs' keys unchanged), `plan` showing each entry's tensors, and a source's
check in a worker before anything is compiled. Checkpoints are config.json files written here
(planning reads nothing else); tests/test_sources.py loads real ones."""

from __future__ import annotations

import json
import textwrap

import pytest

from neuronperf.errors import SpecError
from neuronperf.plan.expand import plan
from neuronperf.sources.planning import describe_spec, plan_spec
from neuronperf.spec.load import load_spec
from neuronperf.sweep.state import load_plan

pytestmark = pytest.mark.pure

BERT = {"model_type": "bert", "vocab_size": 1000, "max_position_embeddings": 256, "type_vocab_size": 2}
DISTILBERT = {"model_type": "distilbert", "vocab_size": 30522, "max_position_embeddings": 512}
VIT = {"model_type": "vit", "image_size": 32, "num_channels": 3}


def write(tmp_path, text, checkpoints=None):
    for name, config in (checkpoints or {}).items():
        (tmp_path / name).mkdir(parents=True, exist_ok=True)
        (tmp_path / name / "config.json").write_text(json.dumps(config))
    path = tmp_path / "sweep.yaml"
    # HEAD + the models, written indented as they read in this file.
    path.write_text(HEAD.lstrip() + textwrap.dedent(text[len(HEAD):]) if text.startswith(HEAD) else textwrap.dedent(text).lstrip())
    return path


HEAD = """
version: 1
framework: torch
device_type: cpu
models:
"""


def test_hf_model_plans_with_named_inputs_from_its_config(tmp_path, cli):
    path = write(tmp_path, HEAD + """
      - name: bert
        hf: ./bert
        hf_task: text-classification
        params: {seq_len: [64, 128]}
      - name: vit
        hf: ./vit
        hf_task: image-classification
        params: {dtype: [float32, bfloat16]}
    sweep: {batch_sizes: [1, 8]}
    """, {"bert": BERT, "vit": VIT})
    _, p = load_plan(str(path))
    bert = [c for c in p.compile_entries if c.model.name == "bert"]
    assert [(dict(c.params)["seq_len"], c.batch_size) for c in bert] == [(64, 1), (64, 8), (128, 1), (128, 8)]
    ids, mask, types = bert[1].inputs
    assert (ids.name, ids.shape, ids.dtype, ids.low, ids.high) == ("input_ids", (64,), "int64", 0, 1000)
    assert (mask.name, mask.low, mask.high) == ("attention_mask", 1, 2)
    assert (types.name, types.low, types.high) == ("token_type_ids", 0, 1)
    vit = [c for c in p.compile_entries if c.model.name == "vit"]
    assert [(c.id, c.inputs[0].dtype) for c in vit] == [
        ("vit-dtypefloat32-bs1-p1", "float32"), ("vit-dtypefloat32-bs8-p1", "float32"),
        ("vit-dtypebfloat16-bs1-p1", "bfloat16"), ("vit-dtypebfloat16-bs8-p1", "bfloat16")]
    assert vit[0].inputs[0].shape == (3, 32, 32) and vit[0].inputs[0].name == "pixel_values"

    code, out, err = cli("plan", str(path))
    assert code == 0, err
    assert "  bert-seq_len64-bs8-p1: input_ids=int64[8,64] in [0,1000), attention_mask=int64[8,64] all 1, " \
           "token_type_ids=int64[8,64] all 0" in out.splitlines()
    assert "  vit-dtypebfloat16-bs1-p1: pixel_values=bfloat16[1,3,32,32]" in out.splitlines()
    assert out.splitlines()[-1] == "8 planned: 8 run entries, 8 compile entries"
    code, out, _ = cli("plan", "--json", str(path))
    first = json.loads(out)["compile_entries"][0]
    assert [t["name"] for t in first["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]


def test_given_inputs_win_and_keep_their_names(tmp_path):
    path = write(tmp_path, HEAD + """
      - name: bert
        hf: ./bert
        hf_task: fill-mask
        inputs: [{name: input_ids, shape: [16], dtype: int64, low: 0, high: 10}]
    """, {"bert": BERT})
    (entry,) = load_plan(str(path))[1].compile_entries
    assert [(t.name, t.shape, t.high) for t in entry.inputs] == [("input_ids", (16,), 10)]


def test_identity_is_the_checkpoint_content_and_factory_keys_are_unchanged(tmp_path):
    text = HEAD + """
      - name: d
        hf: ./d
        hf_task: text-classification
    """
    first = load_plan(str(write(tmp_path / "a", text, {"d": DISTILBERT})))[1].run_entries[0].key
    moved = load_plan(str(write(tmp_path / "b", text, {"d": DISTILBERT})))[1].run_entries[0].key
    edited = load_plan(str(write(tmp_path / "c", text, {"d": {**DISTILBERT, "n_layers": 3}})))[1].run_entries[0].key
    assert first == moved != edited
    # The keys of factory specs are what they were before model sources existed (main at c1eded0).
    from pathlib import Path

    configs = Path(__file__).resolve().parent.parent / "configs"
    for name, run_key, last_compile_key in [("quickstart.yaml", "85a2e349226d3b5b", "c98e9b142466fe0f"),
                                            ("bert-seqlen-cpu.yaml", "23713f0ca7e42632", "8a1f8cdd571d852a"),
                                            ("gpt2-generate-cpu.yaml", "b5005c5bd0d252b6", "5bc637fa71ff06a2")]:
        p = plan(load_spec(configs / name))
        assert (p.run_entries[0].key, p.compile_entries[-1].key) == (run_key, last_compile_key)


def problems_of(path):
    with pytest.raises(SpecError) as caught:
        load_plan(str(path))
    return [str(p).split(": ", 1)[1] for p in caught.value.problems]


def test_every_bad_source_is_one_located_line(tmp_path):
    (tmp_path / "traced.pt").write_bytes(b"")
    (tmp_path / "empty").mkdir()
    path = write(tmp_path, HEAD + """
      - name: two
        factory: "neuronperf.zoo:mlp"
        timm: resnet18
        inputs: [[4]]
      - name: none
        inputs: [[4]]
      - name: notask
        hf: ./bert
      - name: stray
        timm: resnet18
        hf_task: fill-mask
        hf_kwargs: {revision: x}
      - name: hfkw
        hf: ./bert
        hf_task: fill-mask
        kwargs: {a: 1}
        pretrained: true
      - name: noinputs
        factory: "neuronperf.zoo:mlp"
      - name: artifact
        file: traced.pt
      - name: onnx
        file: model.onnx
      - name: gen
        timm: resnet18
        task: generate
        generate: {new_tokens: 2}
      - name: dt
        hf: ./bert
        hf_task: fill-mask
        params: {dtype: [float32, int8], seq_len: [0]}
    compiler: eager
    """)
    assert problems_of(path) == [
        "models[0].timm: a model has exactly one source, and this one has factory and timm; keep one",
        "models[1]: no model source: give one of factory, hf, timm, torchvision, file",
        "models[2].hf: an hf: checkpoint needs hf_task: what it is loaded as (feature-extraction, text-classification, "
        "token-classification, question-answering, fill-mask, causal-lm or image-classification)",
        "models[3].hf_task: hf_task goes with an hf: checkpoint",
        "models[3].hf_kwargs: hf_kwargs go with an hf: checkpoint (to from_pretrained)",
        "models[4].kwargs: kwargs go with a factory, timm: or torchvision:; use hf_kwargs (passed to from_pretrained)",
        "models[4].pretrained: pretrained goes with a timm: or torchvision: architecture",
        "models[5]: a factory model needs inputs: the tensors of one call (hf:, timm: and torchvision: models have them from their config)",
        "models[6]: this artifact declares no inputs (only an .onnx graph does): give inputs:, each with the name it is "
        "passed by, e.g. {name: input_ids, shape: [128], dtype: int64, low: 0, high: 30522}",
        f"models[7].file: no such file or folder: {tmp_path / 'model.onnx'}",
        "models[8].task: task: generate needs a causal language model (a factory, or hf: with hf_task: causal-lm); timm: models run forward passes",
        "models[9].params.dtype[1]: 'int8' is not a dtype the dtype parameter casts to; choose from: float32, bfloat16, float16",
        "models[9].params.seq_len[0]: 0 is not a positive integer, but '$seq_len' sizes the generated inputs",
    ]


def test_what_planning_finds_wrong_is_located_too(tmp_path, monkeypatch):
    (tmp_path / "not-a-checkpoint").mkdir()
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07")
    (tmp_path / "pickled.pt").write_bytes(b"not a zip")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-cache"))
    path = write(tmp_path, HEAD + """
      - name: long
        hf: ./bert
        hf_task: fill-mask
        params: {seq_len: [128, 512]}
      - name: folder
        hf: ./not-a-checkpoint
        hf_task: fill-mask
      - name: missing
        hf: ./absent
        hf_task: fill-mask
      - name: hub
        hf: org/bert-like
        hf_task: fill-mask
      - name: pickled
        file: pickled.pt
        inputs: [[4]]
    """, {"bert": BERT})
    lines = problems_of(path)
    assert lines[0] == "models[0].params.seq_len[1]: seq_len 512 is longer than hf './bert' takes (256 positions, its config's maximum)"
    assert lines[1].startswith("models[1].hf: hf './not-a-checkpoint': ") and "is not a Hugging Face checkpoint (it has no config.json" in lines[1]
    assert lines[2].startswith("models[2].hf: hf './absent': no such folder")
    assert lines[3].startswith("models[3].hf: hf 'org/bert-like': not in the local hub cache") and "HF_HUB_OFFLINE" in lines[3]
    assert lines[4] == "models[4].file: file 'pickled.pt': pickled.pt is not a TorchScript archive (not a zip file)"
    assert len(lines) == 5


def test_an_artifact_of_another_framework_is_refused_at_its_file(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"")
    path = write(tmp_path, HEAD + """
      - name: onnx
        file: model.onnx
    """)
    assert problems_of(path) == ["models[0].file: model.onnx runs with framework: onnxruntime (this spec's framework is torch)"]


def test_planning_without_descriptions_says_how(tmp_path):
    path = write(tmp_path, HEAD + """
      - name: bert
        hf: ./bert
        hf_task: fill-mask
    """, {"bert": BERT})
    with pytest.raises(SpecError, match=r"models\[0\].hf: hf './bert' was not described; plan it with `neuronperf plan`"):
        plan(load_spec(path))
    assert plan_spec(load_spec(path)).compile_entries
    assert set(describe_spec(load_spec(path))["bert"]) == {"inputs", "identity", "max_length"}


def test_a_missing_library_is_one_line_with_its_install_command(tmp_path, monkeypatch):
    import sys

    # Where timm and torchvision are installed (nox -s vision), make their import fail.
    monkeypatch.setitem(sys.modules, "timm", None)
    monkeypatch.setitem(sys.modules, "torchvision", None)
    path = write(tmp_path, HEAD + """
      - name: a
        timm: resnet18
      - name: b
        torchvision: resnet18
    """)
    spec = load_spec(path)
    with pytest.raises(SpecError) as caught:
        plan_spec(spec)  # described in this process, where the imports fail
    lines = [str(p).split(": ", 1)[1] for p in caught.value.problems]
    assert lines[0].startswith("models[0].timm: timm 'resnet18': needs timm (") and lines[0].endswith("install with: pip install timm")
    assert lines[1].startswith("models[1].torchvision: torchvision 'resnet18': needs torchvision (")
    assert lines[1].endswith("install with: pip install torchvision (the build that matches your torch)")


def test_the_schema_lists_the_tasks_the_loader_has():
    from neuronperf.sources.hf import HF_TASKS
    from neuronperf.spec.schema import schema

    assert schema()["$defs"]["model"]["properties"]["hf_task"]["enum"] == list(HF_TASKS)


def test_planning_a_local_checkpoint_imports_no_framework(tmp_path):
    import os
    import subprocess
    import sys

    path = write(tmp_path, HEAD + """
      - name: bert
        hf: ./bert
        hf_task: fill-mask
    """, {"bert": BERT})
    code = ("import sys; from neuronperf.sweep.state import load_plan; load_plan(sys.argv[1]); "
            "print(sorted(m for m in ('torch', 'transformers', 'timm', 'torchvision', 'onnx') if m in sys.modules))")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": root}).stdout
    assert out.strip() == "[]"
