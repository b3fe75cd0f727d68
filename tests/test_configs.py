"""Every checked-in experiment spec in configs/ validates and plans."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from neuronperf.plan.expand import plan
from neuronperf.plan.index import planned_index
from neuronperf.spec import catalog
from neuronperf.spec.load import load_spec

pytestmark = pytest.mark.pure

CONFIGS = Path(__file__).parent.parent / "configs"
SCHEMA_COMMENT = "# yaml-language-server: $schema=../neuronperf/spec/schema.json"


#: What configs/make_distilbert_rand.py's checkpoint says in its config.json (the keys the
#: inputs come from), and BERT-base's (bert-base-uncased, as its hub config.json says them).
DISTILBERT_CONFIG = {"model_type": "distilbert", "architectures": ["DistilBertForSequenceClassification"],
                     "vocab_size": 30522, "max_position_embeddings": 512, "dim": 768, "n_layers": 6}
BERT_BASE_CONFIG = {"model_type": "bert", "architectures": ["BertForMaskedLM"], "vocab_size": 30522,
                    "max_position_embeddings": 512, "type_vocab_size": 2, "hidden_size": 768}


def config_files() -> list[Path]:
    return sorted(CONFIGS.glob("*.yaml"))


def placed(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``path`` where it can be planned here: a spec with model sources is copied beside what
    they read, a checkpoint folder's config.json and a hub cache holding the hub configs (in
    huggingface_hub's documented layout; this machine reaches no hub). A timm or torchvision
    spec is planned where they are installed (``nox -s vision``), and skipped elsewhere."""
    import importlib.util
    import json
    import shutil

    spec = load_spec(path)
    kinds = {m.source.kind for m in spec.models if m.source is not None}
    if not kinds:
        return path
    for library in sorted(kinds & {"timm", "torchvision"}):
        if importlib.util.find_spec(library) is None:
            pytest.skip(f"{path.name} plans with {library}, which is not installed here (nox -s vision plans it)")
    tmp_path.mkdir(parents=True, exist_ok=True)
    copy = tmp_path / path.name
    shutil.copy(path, copy)
    for model in spec.models:
        if model.source is None or model.source.kind != "hf":
            continue
        if model.source.value.startswith("."):
            (tmp_path / model.source.value).mkdir(parents=True)
            (tmp_path / model.source.value / "config.json").write_text(json.dumps(DISTILBERT_CONFIG))
        else:
            commit = "0" * 40
            repo = tmp_path / "hub" / ("models--" + model.source.value.replace("/", "--"))
            (repo / "refs").mkdir(parents=True)
            (repo / "refs" / "main").write_text(commit)
            (repo / "snapshots" / commit).mkdir(parents=True)
            (repo / "snapshots" / commit / "config.json").write_text(json.dumps(BERT_BASE_CONFIG))
            monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    return copy


def test_the_expected_configs_exist():
    names = {p.name for p in config_files()}
    assert {"quickstart.yaml", "bert-seqlen-cpu.yaml", "resnet50-cpu.yaml", "inf1-bert.yaml", "inf2-bert.yaml",
            "gpt2-generate-cpu.yaml", "distilbert-hf-cpu.yaml", "timm-resnet18-cpu.yaml", "inf2-hf-bert.yaml",
            "inf2-timm-resnet50.yaml", "serving-cpu.yaml"} <= names
    assert (CONFIGS / "make_distilbert_rand.py").is_file()
    # One per Neuron instance family (docs/neuron-2026.md).
    assert {"inf1-bert.yaml", "inf2-bert.yaml", "trn1-bert.yaml", "trn2-bert.yaml", "trn3-bert.yaml"} <= names


@pytest.mark.parametrize("path", config_files(), ids=lambda p: p.name)
def test_config_validates_and_plans(cli, path, tmp_path, monkeypatch):
    from neuronperf.sources.planning import plan_spec

    path = placed(path, tmp_path, monkeypatch)
    code, out, err = cli("validate", str(path))
    assert (code, err) == (0, "")
    spec = load_spec(path)
    p = plan_spec(spec)
    assert out.strip() == f"{path}: ok ({len(p.run_entries)} run entries)"
    assert spec.name == path.stem
    assert len(planned_index(p)["model_configs"]) == len(p.compile_entries)
    code, out, err = cli("plan", str(path))
    assert code == 0 and out.splitlines()[-1].startswith(f"{len(p.run_entries) + p.n_excluded} planned")


@pytest.mark.parametrize("path", config_files(), ids=lambda p: p.name)
def test_config_points_editors_at_the_schema(path):
    assert path.read_text().splitlines()[0] == SCHEMA_COMMENT
    assert (CONFIGS / "../neuronperf/spec/schema.json").resolve().is_file()


@pytest.mark.parametrize("path", config_files(), ids=lambda p: p.name)
def test_config_factories_accept_their_kwargs(path):
    # neuronperf.zoo imports its frameworks inside the factories, so this stays pure.
    import neuronperf.zoo as zoo

    for model in load_spec(path).models:
        if model.source is not None:
            continue
        module, _, name = model.factory.partition(":")
        assert module == "neuronperf.zoo"
        signature = inspect.signature(getattr(zoo, name))
        signature.bind(**dict(model.kwargs))


def test_quickstart_is_small():
    # The quick start must finish in about a minute on 2 cores, compile included.
    spec = load_spec(CONFIGS / "quickstart.yaml")
    p = plan(spec)
    assert len(p.run_entries) <= 8 and len(p.compile_entries) <= 2
    assert (spec.framework, spec.device_type) == ("torch", "cpu")
    # About 2 s of start, load and warm-up per entry on top of the measured window.
    assert len(p.run_entries) * (spec.benchmark.duration + 2) <= 60


def test_bert_seqlen_sweeps_three_lengths():
    p = plan(load_spec(CONFIGS / "bert-seqlen-cpu.yaml"))
    assert sorted({dict(c.params)["seq_len"] for c in p.compile_entries}) == [128, 256, 512]
    for c in p.compile_entries:
        ids, mask = c.inputs
        assert ids.shape == mask.shape == (dict(c.params)["seq_len"],)
        assert (ids.dtype, ids.low, ids.high) == ("int64", 0, 30522)
        assert (mask.dtype, mask.low, mask.high) == ("int64", 1, 2)


def test_gpt2_generate_sweeps_prompt_length_new_tokens_and_batch():
    p = plan(load_spec(CONFIGS / "gpt2-generate-cpu.yaml"))
    combos = {(dict(c.params)["prompt_len"], c.new_tokens, c.batch_size) for c in p.compile_entries}
    assert combos == {(pl, nt, bs) for pl in (16, 64) for nt in (8, 16) for bs in (1, 4)}
    for c in p.compile_entries:
        assert (c.task, c.compiler, c.device_type) == ("generate", "eager", "cpu")
        (ids,) = c.inputs
        assert (ids.shape, ids.dtype, ids.low, ids.high) == ((dict(c.params)["prompt_len"],), "int64", 0, 50257)


@pytest.mark.parametrize(("name", "compiler"), [("inf1-bert.yaml", "neuron"), ("inf2-bert.yaml", "neuronx")])
def test_inferentia_configs(name, compiler):
    spec = load_spec(CONFIGS / name)
    assert (spec.framework, spec.device_type, spec.compiler) == ("torch", "neuron", compiler)
    assert ("torch", "neuron", compiler) in catalog.PIPELINE_CAPABLE
    if name == "inf1-bert.yaml":
        assert spec.sweep.pipeline_sizes == (1, 4)


def test_hf_configs_take_their_inputs_from_the_checkpoint(tmp_path, monkeypatch):
    from neuronperf.sources.planning import plan_spec

    cpu = plan_spec(load_spec(placed(CONFIGS / "distilbert-hf-cpu.yaml", tmp_path / "cpu", monkeypatch)))
    assert {(dict(c.params)["seq_len"], c.batch_size) for c in cpu.compile_entries} == {(s, b) for s in (64, 128) for b in (1, 8)}
    for c in cpu.compile_entries:
        ids, mask = c.inputs
        assert (ids.name, ids.dtype, ids.low, ids.high, ids.shape) == ("input_ids", "int64", 0, 30522, (dict(c.params)["seq_len"],))
        assert (mask.name, mask.low, mask.high) == ("attention_mask", 1, 2)
    inf2 = plan_spec(load_spec(placed(CONFIGS / "inf2-hf-bert.yaml", tmp_path / "inf2", monkeypatch)))
    assert {c.compiler for c in inf2.compile_entries} == {"neuronx"}
    assert [t.name for t in inf2.compile_entries[0].inputs] == ["input_ids", "attention_mask", "token_type_ids"]
    assert dict(inf2.compile_entries[0].model.to_dict()["source"]) == {
        "hf": "bert-base-uncased", "revision": "main", "hf_task": "feature-extraction", "hf_kwargs": {"revision": "main"}}
