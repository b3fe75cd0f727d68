"""The spec stage on valid specs: defaults, parameters, positions, schema, plug-ins, purity."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from neuronperf.entries import BenchmarkSettings, FrozenDict, freeze
from neuronperf.errors import Problem, SpecError
from neuronperf.spec import catalog
from neuronperf.spec.load import load_spec, parse_spec, spec_problem
from neuronperf.spec.schema import SCHEMA_FILE, schema
from neuronperf.spec.values import (
    GENERATE_ONLY_COMPILERS,
    InputTemplate,
    default_compile_jobs,
    substitute,
)
from neuronperf.spec.wording import parse_path

pytestmark = pytest.mark.pure

VALID = Path(__file__).parent / "data" / "specs" / "valid"

MINIMAL = """\
version: 1
framework: torch
device_type: cpu
models:
  - name: mlp
    factory: "neuronperf.zoo:mlp"
    inputs: [[128]]
"""


def test_minimal_spec_gets_defaults():
    spec = load_spec(VALID / "minimal.yaml")
    assert spec.name == "minimal"  # the file's stem
    assert spec.output_dir == os.path.join("runs", "minimal")  # kept relative: the driver resolves it
    assert spec.compiler == catalog.default_compiler("torch", "cpu") == "torchscript"
    assert spec.executor == "local"
    assert (spec.sweep.batch_sizes, spec.sweep.pipeline_sizes) == ((1,), (1,))
    assert (spec.sweep.n_models, spec.sweep.workers_per_model) == ((1,), (1,))
    assert spec.exclude == ()
    assert spec.compile.jobs == default_compile_jobs() >= 1
    assert spec.compile.compiler_args == FrozenDict()
    assert spec.benchmark == BenchmarkSettings(duration=5.0, warmup_calls=10, warmup_s=0.0, timeout=300.0, peak_window_s=1.0)
    (model,) = spec.models
    assert model.inputs == (InputTemplate(shape=(128,), dtype="float32"),)
    assert model.kwargs == FrozenDict()
    assert model.params == ()


def test_every_key_is_read():
    spec = load_spec(VALID / "full.yaml")
    assert spec.name == "full-sweep"
    assert spec.output_dir == "results/full"
    assert (spec.framework, spec.device_type, spec.compiler) == ("torch", "cpu", "eager")
    assert spec.sweep.batch_sizes == (1, 4, 16)
    assert spec.sweep.pipeline_sizes == (1,)  # a scalar is a one-value axis
    assert [r.label for r in spec.exclude] == ["exclude[0]", "exclude[1]"]
    assert spec.exclude[1].match == (("model", ("cnn",)), ("workers_per_model", (2,)))
    assert spec.compile.jobs == 3
    assert spec.compile.compiler_args == ("--opt-level", "2")
    assert spec.compile.timeout == 120.0
    assert spec.benchmark == BenchmarkSettings(
        duration=2.5, max_infers=1000, warmup_calls=4, warmup_s=0.5, timeout=60.0, peak_window_s=0.5
    )
    mlp, cnn = spec.models
    assert mlp.kwargs == freeze({"in_features": 64, "hidden": 32, "out_features": 4, "layers": 1})
    assert mlp.inputs == (InputTemplate(shape=(64,), dtype="float32", low=-1.0, high=1.0),)
    assert cnn.factory == "models.py:build_cnn"
    assert cnn.inputs == (InputTemplate(shape=(3, 16, 16)),)


def test_model_positions_and_base_dir():
    spec = load_spec(VALID / "full.yaml")
    mlp, cnn = spec.models
    assert mlp.factory_pos == (12, 14)
    assert cnn.factory_pos == (17, 14)
    assert (mlp.index, cnn.index) == (0, 1)
    # File-relative factories resolve against the spec's folder, whatever the working directory.
    assert cnn.base_dir == str(VALID.resolve())


def test_spec_problem_locates_key_paths():
    spec = load_spec(VALID / "full.yaml")
    problem = spec_problem(spec, "models[1].factory", "cannot import 'models.py'")
    assert problem == Problem(spec.source, 17, 14, "models[1].factory", "cannot import 'models.py'")
    assert str(problem) == f"{spec.source}:17:14: models[1].factory: cannot import 'models.py'"
    # The key itself, rather than its value:
    assert spec_problem(spec, ("compile", "jobs"), "x", at_key=True).col == 3
    # A path without a position of its own is reported at its nearest ancestor.
    assert spec_problem(spec, "models[1].kwargs.missing", "x").line == 18


def test_parse_path_round_trip():
    assert parse_path("models[0].inputs[1].shape[2]") == ("models", 0, "inputs", 1, "shape", 2)
    assert parse_path("sweep.batch_sizes") == ("sweep", "batch_sizes")
    assert parse_path("") == ()


def test_params_keep_declared_order_and_values():
    spec = load_spec(VALID / "seqlen.yaml")
    (model,) = spec.models
    assert model.params == (("seq_len", (128, 256, 512)), ("layers", (2, 4)))
    assert model.inputs[0] == InputTemplate(shape=("$seq_len",), dtype="int64", low=0.0, high=1000.0)
    assert model.inputs[0].resolve({"seq_len": 256, "layers": 2}).shape == (256,)


def test_substitute_keeps_types_and_unescapes():
    kwargs = {"a": "$n", "b": ["$n", {"c": "$$n"}], "d": "x$n", "e": 3}
    assert substitute(kwargs, {"n": 128}) == {"a": 128, "b": [128, {"c": "$n"}], "d": "x$n", "e": 3}
    assert substitute("$flag", {"flag": False}) is False


def test_anchors_and_merge_keys():
    spec = load_spec(VALID / "anchors.yaml")
    small, wide, cnn = spec.models
    assert (small.name, wide.name, cnn.name) == ("small", "wide", "cnn")
    assert wide.factory == small.factory == "neuronperf.zoo:mlp"
    assert wide.kwargs == freeze({"in_features": 32, "hidden": 256})  # explicit keys win
    assert wide.inputs == small.inputs
    assert spec.compiler == "onnx"  # onnxruntime's default compiler
    assert spec.sweep.batch_sizes == (4,)


def test_numbers_are_normalized_for_stable_hashes():
    a = parse_spec(MINIMAL + "benchmark: {duration: 5, timeout: 60}\nsweep: {batch_sizes: [2.0]}\n")
    b = parse_spec(MINIMAL + "benchmark: {duration: 5.0, timeout: 60.0}\nsweep: {batch_sizes: [2]}\n")
    assert a.benchmark == b.benchmark
    assert a.sweep.batch_sizes == b.sweep.batch_sizes == (2,)
    assert type(a.sweep.batch_sizes[0]) is int


def test_warmup_forms():
    calls = parse_spec(MINIMAL + "benchmark: {warmup: 3}\n").benchmark
    assert (calls.warmup_calls, calls.warmup_s) == (3, 0.0)
    seconds = parse_spec(MINIMAL + "benchmark: {warmup: {seconds: 2}}\n").benchmark
    assert (seconds.warmup_calls, seconds.warmup_s) == (10, 2.0)
    short = parse_spec(MINIMAL + "benchmark: {duration: 0.25}\n").benchmark
    assert short.peak_window_s == 0.25  # the peak window never exceeds the measured window


def test_parse_spec_names_its_source():
    with pytest.raises(SpecError) as info:
        parse_spec("version: 1\nframework: torch\n", source="inline.yaml")
    assert str(info.value).startswith("inline.yaml:1:1: missing required key")


def test_every_problem_sorted_in_file_order():
    text = MINIMAL.replace("framework: torch", "framework: tensorflow").replace("cpu", "neuron")
    text += "sweep: {batch_sizes: [0], n_models: [0]}\ncolour: 1\n"
    with pytest.raises(SpecError) as info:
        parse_spec(text, source="s.yaml")
    lines = str(info.value).splitlines()
    assert lines == [
        "s.yaml:8:23: sweep.batch_sizes[0]: 0 is not a positive integer",
        "s.yaml:8:38: sweep.n_models[0]: 0 is not a positive integer",
        "s.yaml:9:1: colour: unknown key 'colour' (allowed: version, name, framework, device_type, compiler, executor, ray, output_dir, models, sweep, exclude, compile, search, objectives, instance_type, cost_per_hour, benchmark)",
    ]


GENERATE_MINIMAL = """\
version: 1
framework: torch
device_type: cpu
models:
  - name: gpt2
    factory: "neuronperf.zoo:gpt2"
    task: generate
    generate: {new_tokens: 4}
    inputs:
      - {shape: [8], dtype: int64, low: 0, high: 100}
"""


def test_pipeline_sizes_allowed_where_the_catalog_says():
    for framework, device, compiler in sorted(catalog.PIPELINE_CAPABLE):
        # A generation-only compiler (optimum) takes generation models only.
        base = GENERATE_MINIMAL if (framework, device, compiler) in GENERATE_ONLY_COMPILERS else MINIMAL
        text = base.replace("torch", framework, 1).replace("cpu", device)
        spec = parse_spec(text + f"compiler: {compiler}\nsweep: {{pipeline_sizes: [1, 4]}}\n")
        assert spec.sweep.pipeline_sizes == (1, 4)


def test_backend_name_as_framework_gets_a_translation():
    with pytest.raises(SpecError) as info:
        parse_spec(MINIMAL.replace("framework: torch", "framework: torch-neuronx"), source="s.yaml")
    assert str(info.value) == (
        "s.yaml:2:12: framework: 'torch-neuronx' is a backend, not a framework; "
        "write framework: torch, device_type: neuron, compiler: neuronx"
    )


def test_framework_device_mismatch():
    with pytest.raises(SpecError) as info:
        parse_spec(MINIMAL.replace("torch", "onnxruntime", 1).replace("cpu", "neuron"), source="s.yaml")
    assert str(info.value) == "s.yaml:3:14: device_type: framework 'onnxruntime' does not run on 'neuron' (choose: cpu, cuda)"


@pytest.fixture
def plugin_framework(tmp_path, monkeypatch):
    """A real installed distribution (a .dist-info on sys.path) registering framework 'jaxish'."""
    dist = tmp_path / "jaxish_backend-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: jaxish-backend\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[neuronperf.backends]\njaxish = jaxish_backend:JaxishBackend\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "jaxish"


def test_plugin_framework_is_accepted_with_a_compiler(plugin_framework):
    text = MINIMAL.replace("framework: torch", f"framework: {plugin_framework}") + "compiler: xla\n"
    spec = parse_spec(text)
    assert (spec.framework, spec.compiler) == ("jaxish", "xla")
    with pytest.raises(SpecError) as info:
        parse_spec(MINIMAL.replace("framework: torch", f"framework: {plugin_framework}"), source="s.yaml")
    assert str(info.value) == "s.yaml:2:12: framework: framework 'jaxish' is a plug-in: name its compiler with a 'compiler:' key"


def test_unregistered_framework_is_rejected():
    with pytest.raises(SpecError) as info:
        parse_spec(MINIMAL.replace("framework: torch", "framework: jaxish") + "compiler: xla\n", source="s.yaml")
    assert "s.yaml:2:12: framework: unknown framework 'jaxish'" in str(info.value)


def test_schema_command_prints_the_shipped_schema(cli):
    code, out, err = cli("schema")
    assert code == 0 and err == ""
    assert json.loads(out) == schema() == json.loads(SCHEMA_FILE.read_text())


def test_schema_is_valid_and_agrees_with_the_catalog():
    import jsonschema

    doc = schema()
    jsonschema.Draft202012Validator.check_schema(doc)
    assert tuple(doc["$defs"]["input"]["properties"]["dtype"]["enum"]) == catalog.DTYPES
    assert tuple(doc["properties"]["device_type"]["enum"]) == catalog.DEVICE_TYPES
    assert set(doc["properties"]["framework"]["examples"]) == set(catalog.COMPILERS)


def test_schema_accepts_the_valid_corpus_as_plain_yaml():
    # Editors validate with the schema alone: every valid spec must pass it unchanged.
    import jsonschema
    import yaml

    validator = jsonschema.Draft202012Validator(schema())
    for path in sorted(VALID.glob("*.yaml")):
        assert list(validator.iter_errors(yaml.safe_load(path.read_text()))) == [], path


def test_spec_stage_is_pure(tmp_path):
    # Loading and planning must not import a framework, a backend, an executor or user code.
    script = textwrap.dedent(
        f"""
        import sys
        from neuronperf.spec import load_spec
        from neuronperf.plan import plan
        p = plan(load_spec({str(VALID / "full.yaml")!r}))
        heavy = [m for m in ("torch", "tensorflow", "onnxruntime", "ray", "transformers",
                             "neuronperf.zoo", "neuronperf.backends", "neuronperf.executors") if m in sys.modules]
        user = [m for m in sys.modules if m.startswith("neuronperf_user_")]
        print(len(p.run_entries), heavy, user)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split(maxsplit=1) == ["15", "[] []\n"]


def test_huge_sweeps_are_refused_before_planning():
    text = MINIMAL + f"sweep:\n  batch_sizes: {list(range(1, 1001))}\n  n_models: {list(range(1, 1002))}\n"
    with pytest.raises(SpecError) as info:
        parse_spec(text, source="s.yaml")
    assert str(info.value) == (
        "s.yaml:9:3: sweep: the sweep has 1,001,000 entries before exclusions; "
        "the limit is 1,000,000 (split it into several specs)"
    )


def test_spec_values_are_frozen_and_hashable():
    spec = load_spec(VALID / "seqlen.yaml")
    assert hash(spec) == hash(load_spec(VALID / "seqlen.yaml"))
    with pytest.raises(AttributeError):
        spec.name = "other"  # type: ignore[misc]
