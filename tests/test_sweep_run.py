"""`neuronperf run` end to end: spec -> plan -> compile -> benchmark -> results, and resume."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

DATA = Path(__file__).parent / "data" / "sweep"


def write_spec(folder: Path, body: str, name: str = "sweep.yaml") -> Path:
    """A spec in ``folder`` next to a copy of the test models, with output_dir inside it."""
    shutil.copy(DATA / "sweep_models.py", folder / "sweep_models.py")
    spec = folder / name
    spec.write_text(textwrap.dedent(body).lstrip())
    return spec


def fast_spec(folder: Path, batch_sizes="[1, 2]", workers="[1, 2]", extra_models="", compiler="torchscript") -> Path:
    return write_spec(folder, f"""
        version: 1
        name: e2e
        framework: torch
        device_type: cpu
        compiler: {compiler}
        output_dir: {folder / 'out'}
        models:
          - name: fast
            factory: "sweep_models.py:fast"
            kwargs: {{features: 8}}
            inputs: [{{shape: [8]}}]
        {extra_models}
        sweep:
          batch_sizes: {batch_sizes}
          n_models: [1]
          workers_per_model: {workers}
        compile: {{jobs: 2}}
        benchmark: {{duration: 0.3, warmup: {{calls: 3}}, timeout: 60}}
        """)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "neuronperf", *args], capture_output=True, text=True, timeout=timeout
    )


def test_run_writes_every_file_and_a_rerun_reuses_everything(tmp_path, cli):
    spec = fast_spec(tmp_path)
    first = cli("run", str(spec))
    assert first.code == 0, first.err + first.out
    out = tmp_path / "out"
    rows = read_csv(out / "results.csv")
    assert [r["id"] for r in rows] == [
        "fast-bs1-p1-m1-w1", "fast-bs1-p1-m1-w2", "fast-bs2-p1-m1-w1", "fast-bs2-p1-m1-w2"
    ]
    assert all(r["status"] == "ok" and float(r["throughput_avg"]) > 0 for r in rows)
    assert (out / "results.csv").read_text().startswith("model_name,")
    as_json = json.loads((out / "results.json").read_text())
    assert [r["id"] for r in as_json] == [r["id"] for r in rows]
    index = json.loads((out / "model_index.json").read_text())
    assert [c["batch_size"] for c in index["model_configs"]] == [1, 2]
    for config in index["model_configs"]:
        assert (out / config["filename"]).is_file()
        assert config["compile_s"] > 0
        assert config["backend"] == "torch" and config["compiler"] == "torchscript"
        assert config["compiler_version"].startswith("torch ") and config["compiler_args"] == {}
    assert "running 4 entries" in first.err

    started = time.monotonic()
    again = cli("run", str(spec))
    assert again.code == 0, again.err
    assert "4 of 4 entries reused; running 0" in again.err
    assert time.monotonic() - started < 10
    assert read_csv(out / "results.csv") == rows, "reused entries keep their numbers exactly"


def test_editing_the_spec_runs_only_the_new_entries(tmp_path, cli):
    spec = fast_spec(tmp_path, batch_sizes="[1]", workers="[1]")
    assert cli("run", str(spec)).code == 0
    before = read_csv(tmp_path / "out" / "results.csv")
    spec = fast_spec(tmp_path, batch_sizes="[1, 4]", workers="[1]")
    result = cli("run", str(spec))
    assert result.code == 0, result.err
    assert "1 of 2 entries reused; running 1" in result.err
    assert result.err.count("compiling ") == 1
    after = read_csv(tmp_path / "out" / "results.csv")
    assert after[0] == before[0]
    assert [r["batch_size"] for r in after] == ["1", "4"]

    # Dropping an entry from the spec drops its row, but the journal keeps it for later.
    spec = fast_spec(tmp_path, batch_sizes="[4]", workers="[1]")
    assert cli("run", str(spec)).code == 0
    assert [r["batch_size"] for r in read_csv(tmp_path / "out" / "results.csv")] == ["4"]


def test_a_failing_model_is_a_row_and_exit_code_1(tmp_path, cli):
    spec = fast_spec(tmp_path, batch_sizes="[1]", workers="[1]", compiler="eager", extra_models="""
          - name: raiser
            factory: "sweep_models.py:raiser"
            inputs: [{shape: [8]}]
    """)
    result = cli("run", str(spec))
    assert result.code == 1
    rows = {r["id"]: r for r in read_csv(tmp_path / "out" / "results.csv")}
    assert rows["fast-bs1-p1-m1-w1"]["status"] == "ok"
    assert rows["raiser-bs1-p1-m1-w1"]["status"] == "error"
    assert "bad input for this model" in rows["raiser-bs1-p1-m1-w1"]["error"]
    assert "FAILED raiser-bs1-p1-m1-w1" in result.out

    status = cli("status", str(spec))
    assert status.code == 0
    assert "1 done, 1 failed, 0 to do" in status.out

    # Failed entries are retried on a rerun unless --keep-failed.
    kept = cli("run", str(spec), "--keep-failed")
    assert "2 of 2 entries reused; running 0" in kept.err and kept.code == 1
    retried = cli("run", str(spec))
    assert "1 of 2 entries reused; running 1" in retried.err


def test_a_factory_that_does_not_resolve_is_a_located_spec_error(tmp_path, cli):
    spec = write_spec(tmp_path, f"""
        version: 1
        framework: torch
        device_type: cpu
        output_dir: {tmp_path / 'out'}
        models:
          - name: missing
            factory: "sweep_models.py:no_such_function"
            inputs: [{{shape: [8]}}]
        """)
    result = cli("run", str(spec))
    assert result.code == 2
    assert result.err.startswith(f"{spec}:7:14: models[0].factory: ")
    assert "no_such_function" in result.err and "Traceback" not in result.err


def test_status_before_and_after(tmp_path, cli):
    spec = fast_spec(tmp_path, batch_sizes="[1]", workers="[1, 2]")
    before = cli("status", str(spec))
    assert before.code == 0 and "0 done, 0 failed, 2 to do" in before.out
    assert not (tmp_path / "out" / "journal.jsonl").exists(), "status runs nothing and writes nothing"
    assert cli("run", str(spec)).code == 0
    after = cli("status", str(spec), "--json")
    assert json.loads(after.out)["counts"] == {"done": 2, "failed": 0, "todo": 0}


def test_fresh_starts_over(tmp_path, cli):
    spec = fast_spec(tmp_path, batch_sizes="[1]", workers="[1]")
    assert cli("run", str(spec)).code == 0
    result = cli("run", str(spec), "--fresh")
    assert result.code == 0 and "running 1 entries" in result.err
    assert "compile fast-bs1-p1: ok" in result.err, "fresh recompiles too"


def test_results_from_another_machine_are_not_mixed(tmp_path, cli):
    spec = fast_spec(tmp_path, batch_sizes="[1]", workers="[1]")
    assert cli("run", str(spec)).code == 0
    run_json = tmp_path / "out" / "run.json"
    info = json.loads(run_json.read_text())
    info["environment"]["cpu_model"] = "Some Other CPU"
    run_json.write_text(json.dumps(info))
    refused = cli("run", str(spec))
    assert refused.code == 2
    assert "cpu_model" in refused.err and "--allow-env-mismatch" in refused.err
    assert cli("run", str(spec), "--allow-env-mismatch").code == 0
    info = json.loads(run_json.read_text())
    assert info["environment"]["cpu_model"] == "Some Other CPU", "the baseline stays the first run's"
    assert [e["cpu_model"] for e in info["environments"]][-1] != "Some Other CPU", "and the mix is recorded"


def test_a_second_run_on_the_same_output_dir_is_refused(tmp_path):
    spec = write_spec(tmp_path, f"""
        version: 1
        framework: torch
        device_type: cpu
        compiler: eager
        output_dir: {tmp_path / 'out'}
        models:
          - name: sleepy
            factory: "sweep_models.py:sleepy"
            inputs: [{{shape: [8]}}]
        benchmark: {{duration: 20, timeout: 120}}
        """)
    first = subprocess.Popen([sys.executable, "-m", "neuronperf", "run", str(spec)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "out" / "journal.jsonl").exists() and time.monotonic() < deadline:
            if (tmp_path / "out" / "run.json").exists():
                break
            time.sleep(0.2)
        second = run_cli("run", str(spec), timeout=60)
        assert second.returncode == 2
        assert "output_dir" in second.stderr or "locked" in second.stderr.lower()
        assert str(first.pid) in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.terminate()
        first.communicate(timeout=60)


def test_a_rerun_with_nothing_to_do_loads_no_model(tmp_path):
    spec = write_spec(tmp_path, f"""
        version: 1
        framework: torch
        device_type: cpu
        compiler: eager
        output_dir: {tmp_path / 'out'}
        models:
          - name: marked
            factory: "sweep_models.py:pid_marker"
            inputs: [{{shape: [8]}}]
        sweep: {{n_models: [1, 2]}}
        benchmark: {{duration: 0.3, warmup: {{calls: 2}}}}
        """)
    first = run_cli("run", str(spec))
    assert first.returncode == 0, first.stderr
    markers = set(tmp_path.glob("loaded-*.pid"))
    assert len(markers) == 3, "eager workers build the model: 1 + 2 copies"
    started = time.monotonic()
    again = run_cli("run", str(spec))
    elapsed = time.monotonic() - started
    assert again.returncode == 0 and "2 of 2 entries reused; running 0" in again.stderr
    assert set(tmp_path.glob("loaded-*.pid")) == markers, "no model was loaded"
    assert elapsed < 10, f"a rerun with nothing to do took {elapsed:.1f} s"


def test_the_quickstart_config_runs_as_the_readme_says(tmp_path):
    # The README's first command, on the checked-in spec (its output_dir moved into tmp_path).
    spec = Path(__file__).parent.parent / "configs" / "quickstart.yaml"
    copy = tmp_path / "quickstart.yaml"
    copy.write_text(spec.read_text().replace("name: quickstart", f"name: quickstart\noutput_dir: {tmp_path / 'out'}"))
    result = run_cli("run", str(copy))
    assert result.returncode == 0, result.stderr
    rows = read_csv(tmp_path / "out" / "results.csv")
    assert len(rows) == 8 and all(r["status"] == "ok" for r in rows)
    assert "quickstart: 8 ok, 0 failed" in result.stdout


def test_identity_follows_what_changes_results(tmp_path, cli):
    spec = fast_spec(tmp_path, batch_sizes="[1]", workers="[1]")
    assert cli("run", str(spec)).code == 0
    # A longer timeout changes no measurement: nothing reruns.
    spec.write_text(spec.read_text().replace("timeout: 60", "timeout: 90"))
    assert "1 of 1 entries reused; running 0" in cli("run", str(spec)).err
    # Editing the model's source file rebuilds its artifact and measures again.
    models = tmp_path / "sweep_models.py"
    models.write_text(models.read_text() + "\n# edited\n")
    edited = cli("run", str(spec))
    assert "running 1 entries" in edited.err and "compile fast-bs1-p1: ok" in edited.err


def test_unknown_compiler_args_are_one_located_error_before_any_compile(tmp_path, cli):
    spec = fast_spec(tmp_path, batch_sizes="[1, 2]", workers="[1]")
    spec.write_text(spec.read_text().replace("compile: {jobs: 2}", "compile: {jobs: 2, compiler_args: {bogus: 1}}"))
    result = cli("run", str(spec))
    assert result.code == 2
    [line] = result.err.strip().splitlines()
    assert line.startswith(f"{spec}:") and ": compile.compiler_args: " in line and "bogus" in line
    assert not (tmp_path / "out" / "models").exists(), "nothing was compiled"
