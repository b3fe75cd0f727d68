"""``neuronperf index show|filter|append|copy|delete`` through the CLI, on real files."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from neuronperf import model_index

pytestmark = pytest.mark.pure


@pytest.fixture
def run_dir(tmp_path, monkeypatch) -> Path:
    """A run folder with three real artifacts (one a folder) and one eager config naming no file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    run = tmp_path / "run"
    (run / "models" / "saved_b4").mkdir(parents=True)
    (run / "models" / "saved_b4" / "saved_model.pb").write_text("graph")
    (run / "models" / "m_b1.pt").write_text("b1")
    (run / "models" / "m_b2.pt").write_text("b2")
    index = model_index.append(
        model_index.create("models/m_b1.pt", batch_size=1, compile_s=1.25, compiler="torchscript"),
        model_index.create("models/m_b2.pt", input_idx=1, batch_size=2, compile_s=2.5, compiler="torchscript"),
        model_index.create("models/saved_b4", input_idx=2, batch_size=4, pipeline_size=2, compiler="torchscript"),
        model_index.create("models/mlp-bs8-eager", input_idx=3, batch_size=8, compiler="eager"),
    )
    model_index.save(index, run / "model_index.json")
    return run


def configs(path) -> list:
    with open(path) as f:
        return json.load(f)["model_configs"]


class FakeTerminal(io.StringIO):
    """A stdin that says it is a terminal and answers the prompt with ``answer``."""

    def __init__(self, answer: str):
        super().__init__(answer + "\n")

    def isatty(self) -> bool:
        return True


# ------------------------------------------------------------------------------- show


def test_show_prints_a_table_of_configs(cli, run_dir):
    code, out, err = cli("index", "show", "run/model_index.json")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "run/model_index.json: 4 configs, version " + model_index.INDEX_VERSION
    assert lines[1].split() == ["#", "filename", "input_idx", "batch_size", "pipeline_size", "compile_s", "compiler", "artifact"]
    assert lines[2].split() == ["0", "models/m_b1.pt", "0", "1", "1", "1.25", "torchscript", "file"]
    assert lines[4].split() == ["2", "models/saved_b4", "2", "4", "2", "null", "torchscript", "folder"]
    assert lines[5].split() == ["3", "models/mlp-bs8-eager", "3", "8", "1", "null", "eager", "missing"]
    # Columns line up: every row starts its filename at the same offset.
    assert len({line.index("models/") for line in lines[2:]}) == 1


def test_show_json_prints_the_file_content(cli, run_dir):
    code, out, _ = cli("index", "show", "--json", "run/model_index.json")
    assert code == 0
    assert json.loads(out) == model_index.load(run_dir / "model_index.json")


def test_show_of_an_empty_index(cli, tmp_path):
    (tmp_path / "empty.json").write_text('{"version": "1", "model_configs": []}')
    code, out, _ = cli("index", "show", str(tmp_path / "empty.json"))
    assert code == 0 and out.strip().endswith("0 configs, version 1")


@pytest.mark.parametrize(
    "content, message",
    [(None, "no such model index file"), ("{oops", "invalid JSON"), ('{"configs": []}', "missing 'model_configs'")],
)
def test_show_of_a_bad_file_is_one_line_and_exit_2(cli, tmp_path, content, message):
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    code, out, err = cli("index", "show", str(path))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and str(path) in err
    assert "Traceback" not in err


def test_index_without_a_subcommand_prints_help(cli):
    code, out, _ = cli("index")
    assert code == 2 and "show" in out and "delete" in out


# ------------------------------------------------------------------------------- filter


def test_filter_by_batch_size_writes_a_new_index(cli, run_dir):
    code, out, err = cli("index", "filter", "run/model_index.json", "--batch-size", "1", "4", "-o", "run/small.json")
    assert (code, err) == (0, "")
    assert "2 of 4 configs" in out
    assert [c["batch_size"] for c in configs(run_dir / "small.json")] == [1, 4]
    # Written next to its artifacts, the new index uses relative names again.
    assert [c["filename"] for c in configs(run_dir / "small.json")] == ["models/m_b1.pt", "models/saved_b4"]
    assert len(configs(run_dir / "model_index.json")) == 4


def test_filter_output_elsewhere_still_points_at_the_artifacts(cli, run_dir, tmp_path):
    code, _, _ = cli("index", "filter", "run/model_index.json", "--pipeline-size", "1", "--input-idx", "1", "2", "-o", "out/one.json")
    assert code == 0
    assert [os.path.basename(p) for p in model_index.artifact_paths(tmp_path / "out" / "one.json")] == ["m_b2.pt"]
    assert all(os.path.exists(p) for p in model_index.artifact_paths(tmp_path / "out" / "one.json"))


def test_filter_where_matches_any_key_with_json_or_text_values(cli, run_dir):
    code, _, _ = cli("index", "filter", "run/model_index.json", "--where", "compiler=eager", "-o", "eager.json")
    assert code == 0 and [c["batch_size"] for c in configs("eager.json")] == [8]
    code, _, _ = cli(
        "index", "filter", "run/model_index.json", "--where", "compile_s=null", "--where", "compile_s=2.5", "-o", "n.json"
    )
    assert code == 0 and [c["batch_size"] for c in configs("n.json")] == [2, 4, 8]
    code, _, _ = cli("index", "filter", "run/model_index.json", "--filename", "models/m_b1.pt", "-o", "f.json")
    assert code == 0 and [c["batch_size"] for c in configs("f.json")] == [1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--where", "colour=red"], "unknown key 'colour'"),
        (["--where", "novalue"], "expected KEY=VALUE"),
        (["--where", "=3"], "expected KEY=VALUE"),
    ],
)
def test_filter_bad_criteria_exit_2_and_write_nothing(cli, run_dir, args, message):
    code, _, err = cli("index", "filter", "run/model_index.json", *args, "-o", "x.json")
    assert code == 2 and message in err and err.count("\n") == 1
    assert not os.path.exists("x.json")


def test_filter_requires_an_output_and_integer_sizes(cli, run_dir):
    assert cli("index", "filter", "run/model_index.json", "--batch-size", "1")[0] == 2
    code, _, err = cli("index", "filter", "run/model_index.json", "--batch-size", "one", "-o", "x.json")
    assert code == 2 and "invalid int value" in err


# ------------------------------------------------------------------------------- append


def test_append_concatenates_and_warns_about_duplicates_in_one_line(cli, run_dir):
    code, _, _ = cli("index", "filter", "run/model_index.json", "--batch-size", "2", "-o", "two.json")
    assert code == 0
    code, out, err = cli("index", "append", "run/model_index.json", "two.json", "-o", "all.json")
    assert code == 0
    assert "4 configs from 2 indexes" in out
    assert err.startswith("neuronperf: warning: append: dropped 1 duplicate") and err.count("\n") == 1
    assert model_index.artifact_paths("all.json") == model_index.artifact_paths(run_dir / "model_index.json")


def test_append_of_a_missing_index_exits_2(cli, run_dir):
    code, _, err = cli("index", "append", "run/model_index.json", "nope.json", "-o", "all.json")
    assert code == 2 and "nope.json" in err
    assert not os.path.exists("all.json")


# ------------------------------------------------------------------------------- copy


def test_copy_copies_artifacts_and_never_overwrites(cli, run_dir, tmp_path):
    code, out, err = cli("index", "copy", "run/model_index.json", "shipped", "dest")
    assert (code, err) == (0, "")
    assert out.strip() == "wrote " + os.path.join("dest", "shipped.json")
    assert sorted(os.listdir("dest")) == ["m_b1.pt", "m_b2.pt", "saved_b4", "shipped.json"]
    assert (tmp_path / "dest" / "saved_b4" / "saved_model.pb").read_text() == "graph"
    assert [c["filename"] for c in configs("dest/shipped.json")] == ["m_b1.pt", "m_b2.pt", "saved_b4", "models/mlp-bs8-eager"]

    code, _, err = cli("index", "copy", "run/model_index.json", "again", "dest")
    assert code == 2 and "already exists" in err
    assert sorted(os.listdir("dest")) == ["m_b1.pt", "m_b2.pt", "saved_b4", "shipped.json"]


# ------------------------------------------------------------------------------- delete


def test_delete_without_yes_and_without_a_terminal_refuses(cli, run_dir, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))  # piped input is not a confirmation
    code, _, err = cli("index", "delete", "run/model_index.json")
    assert code == 2 and "--yes" in err
    assert (run_dir / "model_index.json").exists() and (run_dir / "models" / "m_b1.pt").exists()


def test_delete_asks_on_a_terminal_and_no_keeps_everything(cli, run_dir, monkeypatch):
    monkeypatch.setattr(sys, "stdin", FakeTerminal("n"))
    code, out, _ = cli("index", "delete", "run/model_index.json")
    assert code == 1
    assert "This removes 5 path(s)" in out and str(run_dir / "models" / "saved_b4") in out
    assert "Nothing removed." in out
    assert len(os.listdir(run_dir / "models")) == 3 and (run_dir / "model_index.json").exists()


def test_delete_asks_on_a_terminal_and_yes_removes(cli, run_dir, monkeypatch):
    monkeypatch.setattr(sys, "stdin", FakeTerminal("y"))
    code, out, err = cli("index", "delete", "run/model_index.json")
    assert code == 0 and "removed 4 path(s)" in out
    assert "warning: delete: 1 path(s) did not exist" in err  # the eager config names no file
    assert os.listdir(run_dir) == ["models"] and os.listdir(run_dir / "models") == []


def test_delete_yes_removes_without_asking(cli, run_dir):
    code, out, _ = cli("index", "delete", "--yes", "run/model_index.json")
    assert code == 0 and "removed 4 path(s)" in out
    assert not (run_dir / "model_index.json").exists()


def test_delete_refusal_is_one_line_exit_2_and_removes_nothing(cli, run_dir):
    index = model_index.load(run_dir / "model_index.json")
    index["model_configs"].append({"filename": "..", "batch_size": 16})
    model_index.save(index, run_dir / "model_index.json")
    code, _, err = cli("index", "delete", "--yes", "run/model_index.json")
    assert code == 2 and err.count("\n") == 1
    assert "delete refused, nothing was removed" in err and "a folder above the index's folder" in err
    assert len(os.listdir(run_dir / "models")) == 3 and (run_dir / "model_index.json").exists()


# ------------------------------------------------------------------------------- a real process


def test_python_m_neuronperf_index_show_in_a_subprocess(run_dir):
    result = subprocess.run(
        [sys.executable, "-m", "neuronperf", "index", "show", "run/model_index.json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "4 configs" in result.stdout and "models/saved_b4" in result.stdout and "folder" in result.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "neuronperf", "index", "show", "missing.json"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and bad.stderr.strip() == "neuronperf: error: missing.json: no such model index file"
