"""Every malformed spec gets exit code 2 and one located line per problem, never a traceback.

The corpus lives in tests/data/specs/invalid/, one file per kind of mistake; EXPECTED holds the
exact lines ``neuronperf validate`` prints for each (after the file name).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from neuronperf.errors import SpecError
from neuronperf.spec.load import load_spec

pytestmark = pytest.mark.pure

INVALID = Path(__file__).parent / "data" / "specs" / "invalid"
LOCATED = re.compile(r"^.+:\d+:\d+: ")

EXPECTED = {
    'alias_bomb.yaml': [
        '1:1: the document expands to more than 200000 values (aliases?)',
    ],
    'bad_factory.yaml': [
        "6:14: models[0].factory: 'neuronperf/zoo.mlp' is not valid ('package.module:callable', or 'file.py:callable' relative to the spec's folder; called with kwargs, returns the model)",
    ],
    'binary.yaml': [
        '3:1: this is a binary file (it contains NUL bytes), not YAML text',
    ],
    'comments_only.yaml': [
        "1:1: the file is empty; a spec starts with 'version: 1'",
    ],
    'duplicate_axis_value.yaml': [
        '10:20: sweep.n_models[2]: duplicate value 1 (already at sweep.n_models[0])',
    ],
    'duplicate_key.yaml': [
        "4:1: framework: duplicate key 'framework' (first set at line 2)",
    ],
    'duplicate_model_name.yaml': [
        "9:11: models[1].name: duplicate model name 'mlp' (first at line 5)",
    ],
    'empty.yaml': [
        "1:1: the file is empty; a spec starts with 'version: 1'",
    ],
    'exclude_unknown_axis.yaml': [
        "12:6: exclude[0].batch_sizes: unknown axis 'batch_sizes'; did you mean 'batch_size'? (axes: model, batch_size, pipeline_size, n_models, workers_per_model)",
    ],
    'exclude_value_not_in_sweep.yaml': [
        '12:22: exclude[0].batch_size[1]: batch_size 16 is not in the sweep (batch_size: 1, 8)',
    ],
    'excludes_everything.yaml': [
        '12:3: exclude: the exclude rules drop all 2 entries; nothing is left to run',
    ],
    'executor_unknown.yaml': [
        "9:11: executor: unknown executor 'rya' (choose: local, ray); did you mean 'ray'?",
    ],
    'int_out_of_range.yaml': [
        '8:51: models[0].inputs[0].high: 300 is outside what int8 holds (-128 to 127; high is exclusive)',
    ],
    'ray_section.yaml': [
        '10:24: ray.cpus_per_thread: 0 is not a positive integer',
        "10:27: ray.adress: unknown key 'adress'; did you mean 'address'?",
    ],
    'low_not_below_high.yaml': [
        '8:54: models[0].inputs[0].high: high (1) must be greater than low (5)',
    ],
    'many_errors.yaml': [
        "2:1: missing required key 'models'",
        "5:1: modles: unknown key 'modles'; did you mean 'models'?",
        '7:20: sweep.batch_sizes[1]: -4 is not a positive integer',
        "8:13: sweep.n_models: expected a positive integer, 'max' or a list of them, got the string 'two'",
        '10:13: benchmark.duration: 0 must be greater than 0',
    ],
    'nan_duration.yaml': [
        '9:13: benchmark.duration: nan is not a finite number',
    ],
    'missing_required.yaml': [
        "1:1: missing required key 'models'",
    ],
    'multiple_documents.yaml': [
        '9:1: YAML syntax error: expected a single document in the stream but found another document',
    ],
    'negative_workers.yaml': [
        '10:22: sweep.workers_per_model: -2 is not a positive integer',
    ],
    'not_utf8.yaml': [
        '2:10: not UTF-8 text (byte 0xe9); is this a binary file?',
    ],
    'param_not_a_dimension.yaml': [
        "8:22: models[0].params.seq_len[1]: 'large' is not a positive integer, but '$seq_len' is a dimension in inputs[0].shape[0]",
    ],
    'pipeline_not_capable.yaml': [
        '10:23: sweep.pipeline_sizes[1]: pipeline_size 4 needs a pipelining compiler; torch on cpu with torchscript runs whole models only (pipelining: tensorflow/neuron/neuron, torch/neuron/neuron, torch/neuron/neuronx, torch/neuron/optimum)',
    ],
    'python_tag.yaml': [
        "9:12: benchmark: the tag '!!python/object/apply:os.system' is not allowed: specs are loaded safely, tags are never executed",
    ],
    'syntax_error.yaml': [
        "5:1: YAML syntax error: expected ',' or '}', but got '<stream end>' (while parsing a flow mapping at line 4)",
    ],
    'tab_indent.yaml': [
        "4:1: YAML syntax error: found character '\\t' that cannot start any token",
    ],
    'timeout_too_short.yaml': [
        '12:12: benchmark.timeout: timeout (20 s) must be longer than duration (30 s) plus warm-up seconds (10)',
    ],
    'top_level_list.yaml': [
        '1:1: the top level must be a mapping (version: 1, framework: ..., models: ...), got a list',
    ],
    'top_level_scalar.yaml': [
        "2:1: the top level must be a mapping (version: 1, framework: ..., models: ...), got the string 'just some words'",
    ],
    'undeclared_param.yaml': [
        "10:18: models[0].inputs[0].shape[0]: unknown parameter '$seq_lenn'; did you mean '$seq_len'? (this model's params: seq_len)",
    ],
    'unknown_compiler.yaml': [
        "4:11: compiler: 'torchscrpt' is not a compiler of torch on cpu (choose: torchscript, eager, export, inductor); did you mean 'torchscript'?",
    ],
    'unknown_device_type.yaml': [
        "3:14: device_type: 'gpu' is not one of: cpu, cuda, neuron; did you mean 'cuda'?",
    ],
    'unknown_dtype.yaml': [
        "8:31: models[0].inputs[0].dtype: 'flaot32' is not one of: float32, float16, bfloat16, float64, int64, int32, int16, int8, uint8, bool; did you mean 'float32'?",
    ],
    'unknown_framework.yaml': [
        "2:12: framework: unknown framework 'pytorch'; did you mean 'torch'? (built in: onnxruntime, tensorflow, torch; plug-ins register under the 'neuronperf.backends' entry-point group)",
    ],
    'unknown_key.yaml': [
        "2:1: nmae: unknown key 'nmae'; did you mean 'name'?",
    ],
    'unknown_sweep_key.yaml': [
        "10:3: sweep.batch_size: unknown key 'batch_size'; did you mean 'batch_sizes'?",
    ],
    'unsupported_version.yaml': [
        '1:10: version: unsupported spec version 2; this neuronperf reads version 1',
    ],
    'search_objective_rows_lack.yaml': [
        "12:13: objectives.maximize: model 'mlp' is not a 'task: generate' model, so its rows have no output_tokens_per_s",
    ],
    'search_prune_without_bound.yaml': [
        '10:9: search: prune rules entries out by a latency bound, and the spec has none: add one (objectives: {slo: {latency_ms_p99: 20}}) or use search: grid',
    ],
    'search_unknown_strategy.yaml': [
        "10:20: search.strategy: 'quik' is not one of: grid, prune, quick; did you mean 'quick'?",
    ],
    'wrong_type.yaml': [
        "10:16: sweep.batch_sizes: expected an integer or a list, got the string '8'",
    ],
    'zero_batch_size.yaml': [
        '10:20: sweep.batch_sizes[1]: 0 is not a positive integer',
    ],
}


def test_corpus_is_complete():
    # Each file in the corpus has its expectation and each expectation its file.
    assert sorted(p.name for p in INVALID.glob("*.yaml")) == sorted(EXPECTED)
    assert len(EXPECTED) >= 20


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_invalid_spec_reports_exact_lines(cli, name):
    path = str(INVALID / name)
    code, out, err = cli("validate", path)
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    assert err.splitlines() == [f"{path}:{line}" for line in EXPECTED[name]]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_plan_command_reports_the_same(cli, name):
    path = str(INVALID / name)
    code, out, err = cli("plan", path)
    assert code == 2
    assert out == ""
    assert err.splitlines() == [f"{path}:{line}" for line in EXPECTED[name]]


def test_spec_error_holds_problems_with_positions():
    with pytest.raises(SpecError) as info:
        load_spec(INVALID / "many_errors.yaml")
    problems = info.value.problems
    assert [(p.line, p.col, p.path) for p in problems] == [
        (2, 1, ""),
        (5, 1, "modles"),
        (7, 20, "sweep.batch_sizes[1]"),
        (8, 13, "sweep.n_models"),
        (10, 13, "benchmark.duration"),
    ]
    assert all(p.file == str(INVALID / "many_errors.yaml") for p in problems)


def test_missing_file(cli, tmp_path):
    path = str(tmp_path / "nowhere.yaml")
    code, out, err = cli("validate", path)
    assert code == 2
    assert err.strip() == f"{path}:1:1: cannot read the file: No such file or directory"


def test_directory_instead_of_file(cli, tmp_path):
    code, _, err = cli("validate", str(tmp_path))
    assert code == 2
    assert err.strip().startswith(f"{tmp_path}:1:1: cannot read the file: ")


def test_python_tag_is_never_executed(cli, tmp_path):
    marker = tmp_path / "executed"
    spec = tmp_path / "evil.yaml"
    spec.write_text(
        "version: 1\n"
        f"framework: !!python/object/apply:os.system ['touch {marker}']\n"
        "name: !!python/name:os.system\n"
    )
    code, _, err = cli("validate", str(spec))
    assert code == 2
    assert not marker.exists()
    assert f"{spec}:2:12: framework: the tag '!!python/object/apply:os.system' is not allowed" in err
    assert f"{spec}:3:7: name: the tag '!!python/name:os.system' is not allowed" in err


def test_validate_reports_every_file_and_continues(cli):
    good = str(Path(__file__).parent / "data" / "specs" / "valid" / "minimal.yaml")
    bad = str(INVALID / "zero_batch_size.yaml")
    code, out, err = cli("validate", bad, good)
    assert code == 2
    assert out.strip() == f"{good}: ok (1 run entry)"
    assert err.startswith(f"{bad}:10:20: ")


@pytest.mark.parametrize("name", ["python_tag.yaml", "binary.yaml", "many_errors.yaml"])
def test_real_subprocess_has_no_traceback(name):
    path = str(INVALID / name)
    proc = subprocess.run(
        [sys.executable, "-m", "neuronperf", "validate", path],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert lines == [f"{path}:{line}" for line in EXPECTED[name]]
    assert all(LOCATED.match(line) for line in lines)
