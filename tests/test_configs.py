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


def config_files() -> list[Path]:
    return sorted(CONFIGS.glob("*.yaml"))


def test_the_expected_configs_exist():
    names = {p.name for p in config_files()}
    assert {"quickstart.yaml", "bert-seqlen-cpu.yaml", "resnet50-cpu.yaml", "inf1-bert.yaml", "inf2-bert.yaml",
            "gpt2-generate-cpu.yaml", "serving-cpu.yaml"} <= names


@pytest.mark.parametrize("path", config_files(), ids=lambda p: p.name)
def test_config_validates_and_plans(cli, path):
    code, out, err = cli("validate", str(path))
    assert (code, err) == (0, "")
    spec = load_spec(path)
    p = plan(spec)
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
