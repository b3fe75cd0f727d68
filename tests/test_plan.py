"""The plan stage: the cartesian product, exclusions, ids, hashes, input_idx and the model index."""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuronperf import model_index
from neuronperf.entries import TensorSpec
from neuronperf.errors import SpecError
from neuronperf.plan.expand import plan
from neuronperf.plan.index import artifact_relpath, plan_inputs, planned_index
from neuronperf.plan.keys import compile_keys, run_keys
from neuronperf.plan.render import counts, counts_line, plan_dict, plan_json
from neuronperf.spec.load import load_spec, parse_spec

pytestmark = pytest.mark.pure

VALID = Path(__file__).parent / "data" / "specs" / "valid"
CONFIGS = Path(__file__).parent.parent / "configs"
AXES = ("batch_size", "pipeline_size", "n_models", "workers_per_model")
SWEEP_KEY = {"batch_size": "batch_sizes", "pipeline_size": "pipeline_sizes", "n_models": "n_models", "workers_per_model": "workers_per_model"}


# ---- a reference planner, written the obvious way ------------------------------------------


def reference(doc: dict) -> tuple[list[dict], dict[int, int]]:
    """Every kept run entry as a dict of its axes, in plan order, and exclusions per rule index."""
    rules = doc.get("exclude", [])
    kept, excluded = [], dict.fromkeys(range(len(rules)), 0)
    sweep = doc.get("sweep", {})
    axis_values = [_as_list(sweep.get(SWEEP_KEY[a], 1)) for a in AXES]
    for model in doc["models"]:
        params = model.get("params", {})
        names = list(params)
        for combo in itertools.product(*(_as_list(params[n]) for n in names)):
            for bs, ps, m, w in itertools.product(*axis_values):
                point = {"model": model["name"], **dict(zip(names, combo)), "batch_size": bs, "pipeline_size": ps, "n_models": m, "workers_per_model": w}
                hit = next((i for i, r in enumerate(rules) if all(k in point and point[k] in _as_list(v) for k, v in r.items())), None)
                if hit is None:
                    kept.append(point)
                else:
                    excluded[hit] += 1
    return kept, excluded


def _as_list(value):
    return value if isinstance(value, list) else [value]


def point_id(point: dict, param_names: list) -> str:
    parts = [point["model"]] + [f"{n}{point[n]}" for n in param_names]
    return "-".join(parts + [f"bs{point['batch_size']}", f"p{point['pipeline_size']}", f"m{point['n_models']}", f"w{point['workers_per_model']}"])


# ---- random sweeps --------------------------------------------------------------------------

distinct_sizes = st.lists(st.integers(1, 64), min_size=1, max_size=4, unique=True)
param_names = st.lists(st.sampled_from(["seq_len", "width", "depth"]), max_size=2, unique=True)


@st.composite
def sweeps(draw):
    """A random valid sweep document (as it would be written in YAML), with exclude rules."""
    names = draw(st.lists(st.sampled_from(["mlp", "bert", "cnn", "resnet"]), min_size=1, max_size=3, unique=True))
    models = []
    for name in names:
        params = {p: draw(distinct_sizes) for p in draw(param_names)}
        shape = [f"${p}" for p in params] + [4]
        model = {"name": name, "factory": "neuronperf.zoo:mlp", "inputs": [{"shape": shape, "dtype": "float32"}]}
        if params:
            # A one-value parameter may be written as a scalar.
            model["params"] = {p: (v[0] if len(v) == 1 and draw(st.booleans()) else v) for p, v in params.items()}
        models.append(model)
    sweep = {}
    for axis in AXES:
        values = draw(distinct_sizes)
        sweep[SWEEP_KEY[axis]] = values[0] if len(values) == 1 and draw(st.booleans()) else values
    doc = {"version": 1, "framework": "torch", "device_type": "neuron", "compiler": "neuronx", "models": models, "sweep": sweep}
    # Exclude rules only name values that are in the sweep (anything else is a spec error).
    choices = {a: _as_list(sweep[SWEEP_KEY[a]]) for a in AXES}
    choices["model"] = names
    for model in models:
        for p, v in model.get("params", {}).items():
            choices[p] = sorted(set(choices.get(p, [])) | set(_as_list(v)))
    rules = []
    for _ in range(draw(st.integers(0, 3))):
        keys = draw(st.lists(st.sampled_from(sorted(choices)), min_size=1, max_size=3, unique=True))
        rule = {}
        for k in keys:
            picked = draw(st.lists(st.sampled_from(choices[k]), min_size=1, max_size=2, unique=True))
            rule[k] = picked[0] if len(picked) == 1 else picked
        rules.append(rule)
    if rules:
        doc["exclude"] = rules
    return doc


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sweeps())
def test_plan_matches_the_reference_planner(doc):
    text = yaml.safe_dump(doc, sort_keys=False)
    kept, excluded = reference(doc)
    spec = parse_spec(text, source="random.yaml")
    if not kept:
        with pytest.raises(SpecError) as info:
            plan(spec)
        assert "nothing is left to run" in str(info.value)
        return
    p = plan(spec)
    params_of = {m["name"]: list(m.get("params", {})) for m in doc["models"]}
    # Count = product of the axis lengths minus the excluded; each exclusion credited to its rule.
    total = sum(
        len(list(itertools.product(*(_as_list(v) for v in m.get("params", {}).values()))))
        for m in doc["models"]
    ) * len(list(itertools.product(*(_as_list(doc["sweep"][SWEEP_KEY[a]]) for a in AXES))))
    assert counts(p)["planned"] == total
    assert len(p.run_entries) == total - p.n_excluded == len(kept)
    assert p.excluded == tuple((f"exclude[{i}]", n) for i, n in excluded.items())
    # The same entries in the same order.
    assert [e.id for e in p.run_entries] == [point_id(pt, params_of[pt["model"]]) for pt in kept]
    # Ids and keys are unique; the fast key path agrees with the definition.
    keys = run_keys(p.run_entries)
    assert keys == [e.key for e in p.run_entries]
    assert len(set(keys)) == len(keys) == len({e.id for e in p.run_entries})
    assert len({c.id for c in p.compile_entries}) == len({c.key for c in p.compile_entries}) == len(p.compile_entries)
    # A compile entry exists exactly when one of its run entries is kept.
    assert [c.id for c in p.compile_entries] == list(dict.fromkeys(e.compile.id for e in p.run_entries))
    # input_idx numbers the distinct (model, params, batch size) inputs in order of appearance.
    firsts = list(dict.fromkeys((c.model.name, c.params, c.batch_size) for c in p.compile_entries))
    assert [c.input_idx for c in p.compile_entries] == [firsts.index((c.model.name, c.params, c.batch_size)) for c in p.compile_entries]
    # Parameters are substituted into the input shapes.
    for c in p.compile_entries:
        assert c.inputs == (TensorSpec(shape=(*(v for _, v in c.params), 4), dtype="float32"),)


def test_counts_line_names_each_rule():
    text = (VALID / "full.yaml").read_text()
    p = plan(parse_spec(text, base_dir=str(VALID)))
    # 2 models x 3 batch sizes x 2 n_models x 2 workers = 24; rule 0 drops bs16 x m2 (2 workers
    # x 2 models = 4), rule 1 drops cnn x w2 of what is left (3 + 3 - 1 = 5).
    assert counts(p) == {"planned": 24, "excluded": 9, "excluded_by": {"exclude[0]": 4, "exclude[1]": 5}, "run_entries": 15, "compile_entries": 6}
    assert counts_line(p) == "24 planned, 4 excluded by exclude[0], 5 excluded by exclude[1]: 15 run entries, 6 compile entries"


def test_params_sweep_substitutes_shapes_and_kwargs():
    p = plan(load_spec(VALID / "seqlen.yaml"))
    first = p.compile_entries[0]
    assert first.id == "bert-seq_len128-layers2-bs1-p1"
    assert first.params == (("seq_len", 128), ("layers", 2))
    assert first.inputs == (
        TensorSpec(shape=(128,), dtype="int64", low=0.0, high=1000.0),
        TensorSpec(shape=(128,), dtype="int64", low=1.0, high=2.0),
    )
    kwargs = first.model.to_dict()["kwargs"]
    assert kwargs == {"vocab_size": 1000, "hidden": 64, "layers": 2, "heads": 4, "max_len": 128, "tag": "$literal"}
    assert {c.model.to_dict()["kwargs"]["max_len"] for c in p.compile_entries} == {128, 256, 512}


def test_plan_carries_spec_settings():
    spec = load_spec(VALID / "full.yaml")
    p = plan(spec)
    assert (p.name, p.output_dir) == ("full-sweep", "results/full")
    for c in p.compile_entries:
        assert (c.framework, c.device_type, c.compiler) == ("torch", "cpu", "eager")
        assert c.compiler_args == ("--opt-level", "2")
        assert c.timeout == 120.0
        assert c.model.base_dir == str(VALID.resolve())
    assert {e.benchmark for e in p.run_entries} == {spec.benchmark}


def test_pipeline_variants_share_an_input():
    p = plan(load_spec(CONFIGS / "inf1-bert.yaml"))
    by_idx = {}
    for c in p.compile_entries:
        by_idx.setdefault(c.input_idx, set()).add((c.batch_size, c.pipeline_size))
    assert sorted(by_idx) == [0, 1, 2]
    assert by_idx == {0: {(1, 1), (1, 4)}, 1: {(4, 1), (4, 4)}, 2: {(8, 1), (8, 4)}}
    inputs = plan_inputs(p)
    assert [batch for _, batch in inputs] == [1, 4, 8]
    assert all(tensors[0].shape == (128,) for tensors, _ in inputs)
    for c in p.compile_entries:
        assert inputs[c.input_idx] == (c.inputs, c.batch_size)


def test_an_empty_plan_is_a_located_error(cli, tmp_path):
    spec = tmp_path / "empty-plan.yaml"
    spec.write_text((VALID / "minimal.yaml").read_text() + "exclude:\n  - {n_models: 1}\n")
    code, out, err = cli("plan", str(spec))
    assert code == 2 and out == ""
    assert err.strip() == f"{spec}:10:3: exclude: the exclude rules drop all 1 entries; nothing is left to run"


def test_colliding_ids_between_models(tmp_path):
    text = textwrap.dedent(
        """\
        version: 1
        framework: torch
        device_type: cpu
        models:
          - name: m-n1
            factory: "neuronperf.zoo:mlp"
            inputs: [[4]]
          - name: m
            factory: "neuronperf.zoo:mlp"
            params: {n: 1}
            inputs: [[$n]]
        """
    )
    with pytest.raises(SpecError) as info:
        plan(parse_spec(text, source="s.yaml"))
    assert str(info.value) == "s.yaml:8:11: models[1].name: entry id 'm-n1-bs1-p1' is also produced by model 'm-n1'; rename one of the models"


def test_colliding_ids_within_a_model():
    text = textwrap.dedent(
        """\
        version: 1
        framework: torch
        device_type: cpu
        models:
          - name: m
            factory: "neuronperf.zoo:mlp"
            params: {a: [x-b2, x], b: [2, 2-b2]}
            kwargs: {a: $a, b: $b}
            inputs: [[4]]
        """
    )
    with pytest.raises(SpecError) as info:
        plan(parse_spec(text, source="s.yaml"))
    assert str(info.value).startswith("s.yaml:7:13: models[0].params: two parameter combinations give the same entry id 'm-ax-b2-b2-bs1-p1'")


def test_hashes_change_exactly_with_content():
    base = (VALID / "minimal.yaml").read_text()
    reference_plan = plan(parse_spec(base, source="a.yaml"))
    ((entry,),) = [reference_plan.run_entries]
    # Name, output_dir, the spec's file name and folder do not change what is measured...
    same = plan(parse_spec(base + "name: other\noutput_dir: elsewhere\n", source="b.yaml", base_dir="/tmp"))
    assert same.run_entries[0].key == entry.key
    # ...everything that changes the result does.
    changes = [
        base.replace("[[128]]", "[[129]]"),
        base.replace("[[128]]", "[{shape: [128], dtype: float16}]"),
        base.replace('"neuronperf.zoo:mlp"', '"neuronperf.zoo:mlp"\n    kwargs: {hidden: 8}'),
        base + "compiler: eager\n",
        base + "compile: {compiler_args: [--O2]}\n",
        base + "benchmark: {duration: 6}\n",
        base + "benchmark: {warmup: 3}\n",
        base + "sweep: {batch_sizes: 2}\n",
        base + "sweep: {n_models: 2}\n",
        base + "sweep: {workers_per_model: 2}\n",
    ]
    keys = {plan(parse_spec(text)).run_entries[0].key for text in changes}
    assert entry.key not in keys and len(keys) == len(changes)


def _has_model_source(path: Path) -> bool:
    return any(m.source is not None for m in load_spec(path).models)


def _spec_files(tmp_path: Path) -> list[Path]:
    """The checked-in specs plus a few random ones written to files."""
    # Configs with model sources (hf:, timm:) plan from the checkpoints they name: test_configs
    # plans them beside a checkpoint it makes; this test needs specs that plan anywhere.
    files = sorted(VALID.glob("*.yaml")) + [p for p in sorted(CONFIGS.glob("*.yaml")) if not _has_model_source(p)]
    rng = random.Random(1234)
    for i in range(5):
        sizes = {k: rng.sample(range(1, 33), rng.randint(1, 3)) for k in ("batch_sizes", "n_models", "workers_per_model")}
        text = (VALID / "seqlen.yaml").read_text().split("sweep:")[0] + "sweep: " + json.dumps(sizes) + "\n"
        path = tmp_path / f"random{i}.yaml"
        path.write_text(text)
        files.append(path)
    return files


def test_hashes_are_stable_across_processes(tmp_path):
    files = _spec_files(tmp_path)
    script = textwrap.dedent(
        """
        import json, sys
        from neuronperf.plan import plan
        from neuronperf.spec import load_spec
        out = {}
        for path in sys.argv[1:]:
            p = plan(load_spec(path))
            out[path] = [[e.id, e.key] for e in p.run_entries] + [[c.id, c.key] for c in p.compile_entries]
        print(json.dumps(out))
        """
    )
    expected = {}
    for path in files:
        p = plan(load_spec(str(path)))
        expected[str(path)] = [[e.id, e.key] for e in p.run_entries] + [[c.id, c.key] for c in p.compile_entries]
    for seed in ("0", "4242"):  # str hashing differs between these processes; our keys must not
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run(
            [sys.executable, "-c", script, *map(str, files)], capture_output=True, text=True, env=env, check=True, timeout=120
        )
        assert json.loads(proc.stdout) == expected


def test_artifact_relpath():
    p = plan(load_spec(VALID / "seqlen.yaml"))
    entry = p.compile_entries[0]
    assert artifact_relpath(entry, ".pt") == f"models/bert-seq_len128-layers2-bs1-p1-{entry.key[:8]}.pt"
    assert artifact_relpath(entry, "", key="abcdef0123456789") == "models/bert-seq_len128-layers2-bs1-p1-abcdef01"
    assert artifact_relpath(entry, None) == f"{entry.compiler}:bert-seq_len128-layers2-bs1-p1-{entry.key[:8]}"


def test_artifact_relpath_never_leaves_models_dir():
    text = (VALID / "minimal.yaml").read_text().replace(
        "inputs: [[128]]", "params: {act: ['../../etc/x y']}\n    kwargs: {act: $act}\n    inputs: [[128]]"
    )
    (entry,) = plan(parse_spec(text)).compile_entries
    path = artifact_relpath(entry, ".pt")
    assert path.startswith("models/") and path.count("/") == 1 and " " not in path


def test_planned_index_is_a_model_index(tmp_path):
    p = plan(load_spec(CONFIGS / "bert-seqlen-cpu.yaml"))
    index = planned_index(p)
    assert set(index) == {"version", "model_configs"}
    assert len(index["model_configs"]) == len(p.compile_entries) == 5
    for config, entry in zip(index["model_configs"], p.compile_entries):
        assert config == {
            "filename": artifact_relpath(entry, ".pt"),
            "input_idx": entry.input_idx,
            "batch_size": entry.batch_size,
            "pipeline_size": entry.pipeline_size,
            "compile_s": None,
            "id": entry.id,
            "key": entry.key,
            "model_name": "bert-base",
            "params": dict(entry.params),
        }
    # The seed's functions read it, keep the extra keys, and filter on them.
    saved = model_index.save(index, str(tmp_path / "model_index.json"))
    loaded = model_index.load(saved)
    assert loaded["model_configs"] == index["model_configs"]
    assert len(model_index.filter(loaded, batch_size=1)["model_configs"]) == 3
    eager = planned_index(p, suffix=None)
    assert all(c["filename"].startswith("torchscript:") for c in eager["model_configs"])


def test_plan_json_shape(cli):
    code, out, err = cli("plan", "--json", str(VALID / "full.yaml"))
    assert code == 0 and err == ""
    data = json.loads(out)
    assert set(data) == {"name", "output_dir", "counts", "compile_entries", "run_entries"}
    assert data["counts"]["run_entries"] == len(data["run_entries"]) == 15
    p = plan(load_spec(VALID / "full.yaml"))
    assert [r["id"] for r in data["run_entries"]] == [e.id for e in p.run_entries]
    assert [r["key"] for r in data["run_entries"]] == [e.key for e in p.run_entries]
    assert [c["key"] for c in data["compile_entries"]] == compile_keys(p.compile_entries)
    first = data["run_entries"][0]
    assert first == {
        "id": "mlp-bs1-p1-m1-w1",
        "key": p.run_entries[0].key,
        "compile_id": "mlp-bs1-p1",
        "compile_key": p.compile_entries[0].key,
        "model": "mlp",
        "params": {},
        "batch_size": 1,
        "pipeline_size": 1,
        "n_models": 1,
        "workers_per_model": 1,
    }
    assert data["compile_entries"][0]["inputs"] == [{"shape": [64], "dtype": "float32", "low": -1.0, "high": 1.0}]


def test_plan_table(cli):
    from neuronperf.cli.spec_commands import format_plan_table

    code, out, err = cli("plan", str(VALID / "seqlen.yaml"))
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["id", "batch_size", "pipeline_size", "n_models", "workers_per_model", "key"]
    p = plan(load_spec(VALID / "seqlen.yaml"))
    assert [line.split()[0] for line in lines[1:-1]] == [e.id for e in p.run_entries]
    assert lines[-1] == counts_line(p)
    # With statuses (as `status` shows them), keyed by run entry id.
    statuses = {p.run_entries[0].id: "ok", p.run_entries[1].id: "error"}
    table = format_plan_table(p, statuses).splitlines()
    assert table[0].split()[-1] == "status"
    assert [row.split()[-1] for row in table[1:4]] == ["ok", "error", "-"]


def test_a_hundred_thousand_entries():
    sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
    try:
        from plan_speed import spec_text
    finally:
        sys.path.pop(0)
    p = plan(parse_spec(spec_text(100_000)))
    assert len(p.run_entries) == 100_000 and len(p.compile_entries) == 100
    data = json.loads(plan_json(p))
    assert data["counts"]["run_entries"] == len(data["run_entries"]) == 100_000
    assert len({r["key"] for r in data["run_entries"]}) == 100_000
    sample = p.run_entries[::9973]
    assert [r["key"] for r in data["run_entries"][::9973]] == [e.key for e in sample]
    assert plan_dict(p)["counts"] == counts(p)
