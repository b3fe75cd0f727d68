"""The compile stage: artifacts, the content-addressed cache, parallel jobs and contained failures."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from neuronperf.backends import get_backend
from neuronperf.compilation.jobs import compile_all
from neuronperf.entries import CompileEntry, ModelRef, TensorSpec, freeze

pytestmark = pytest.mark.slow

TESTS = Path(__file__).parent


def _entry(batch_size: int = 1, factory: str = "neuronperf.zoo:mlp", name: str = "mlp", **kwargs) -> CompileEntry:
    return CompileEntry(
        model=ModelRef(name, factory, freeze(kwargs or {"in_features": 16, "hidden": 32, "out_features": 4}),
                       base_dir=str(TESTS)),
        params=(),
        inputs=(TensorSpec((16,)),),
        batch_size=batch_size,
        pipeline_size=1,
        framework="torch",
        device_type="cpu",
        compiler="torchscript",
    )


def test_compiles_an_artifact_equal_to_the_eager_model(tmp_path):
    entry = _entry(batch_size=2)
    [result] = compile_all([entry], str(tmp_path), jobs=1)
    assert result.ok, result.error
    assert not result.reused and result.compile_s > 0
    artifact = tmp_path / result.artifact
    assert artifact.is_file() and artifact.name.startswith(entry.id)
    meta = json.loads((tmp_path / (result.artifact + ".meta.json")).read_text())
    assert meta["key"] == result.cache_key and meta["compiler_version"] == result.compiler_version

    backend = get_backend("torch")
    compiled = backend.load(entry, artifact, 0)
    eager = backend.load(dataclasses.replace(entry, compiler="eager"), None, 0)
    inputs = backend.example_inputs(entry)
    np.testing.assert_allclose(
        backend.to_numpy(compiled(*inputs)), backend.to_numpy(eager(*inputs)), rtol=1e-5, atol=1e-6
    )


def test_second_compile_is_a_cache_hit_and_one_changed_batch_size_compiles_once(tmp_path):
    first = compile_all([_entry(1), _entry(2)], str(tmp_path), jobs=2)
    assert [r.status for r in first] == ["ok", "ok"]
    assert not any(r.reused for r in first)

    again = compile_all([_entry(1), _entry(2)], str(tmp_path), jobs=2)
    assert all(r.reused for r in again)
    assert [r.artifact for r in again] == [r.artifact for r in first]

    started = []
    changed = compile_all(
        [_entry(1), _entry(4)], str(tmp_path), jobs=2, on_start=started.append
    )
    assert [r.reused for r in changed] == [True, False]
    assert [e.batch_size for e in started] == [4]


def test_a_damaged_artifact_side_file_means_rebuild(tmp_path):
    [result] = compile_all([_entry()], str(tmp_path))
    (tmp_path / (result.artifact + ".meta.json")).write_text("{not json")
    [again] = compile_all([_entry()], str(tmp_path))
    assert again.ok and not again.reused


def test_a_failing_and_a_crashing_model_are_recorded_while_the_others_finish(tmp_path):
    entries = [
        _entry(1),
        _entry(1, factory="models_for_compile.py:raising_model", name="raiser"),
        _entry(1, factory="models_for_compile.py:crashing_model", name="crasher"),
        _entry(2),
    ]
    results = compile_all(entries, str(tmp_path), jobs=2)
    assert [r.status for r in results] == ["ok", "error", "error", "ok"]
    raiser, crasher = results[1], results[2]
    assert "RuntimeError: this model cannot be built" in raiser.error
    assert "SIGABRT" in crasher.error
    log = (tmp_path / raiser.log_file).read_text()
    assert "this model cannot be built" in log and "Traceback" in log
    assert not list((tmp_path / "models").glob("raiser*")), "a failed compile leaves no artifact"


def test_a_hung_compile_times_out_and_is_killed(tmp_path):
    import psutil

    hung = dataclasses.replace(_entry(1, factory="models_for_compile.py:hanging_model", name="hang"), timeout=3.0)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    [result, other] = compile_all([hung, _entry(1)], str(tmp_path), jobs=2)
    assert result.status == "timeout" and "timeout of 3 s" in result.error
    assert other.ok
    after = {p.pid for p in psutil.Process().children(recursive=True)}
    assert after <= before, "no compile process survives"


def test_eager_needs_no_compile_work(tmp_path):
    entry = dataclasses.replace(_entry(), compiler="eager")
    [result] = compile_all([entry], str(tmp_path))
    assert result.ok and result.artifact is None
    assert not (tmp_path / "models").exists()
