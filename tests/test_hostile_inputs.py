"""Hostile inputs and lost disks, without a framework: file names from entry ids, `--fresh` on a
foreign folder, deletes outside the index's folder, short journal writes, a corrupt journal, a
broken plug-in, broken factory modules, and what `validate`/`status` tell the user."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from neuronperf import model_index
from neuronperf.errors import DeleteRefused, OutputWriteFailed
from neuronperf.results.journal import Journal
from neuronperf.results.lock import OutputDirLock
from neuronperf.results.samples import samples_relpath
from neuronperf.util.paths import safe_file_stem

pytestmark = pytest.mark.pure

REPO = Path(__file__).resolve().parent.parent


def snapshot(root: Path, skip: Path | None = None) -> dict[str, str]:
    """Every file below ``root`` (but not below ``skip``) -> sha256 of its bytes."""
    found = {}
    for path in sorted(root.rglob("*")):
        if skip is not None and (path == skip or skip in path.parents):
            continue
        if path.is_file() and not path.is_symlink():
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_dir():
            found[str(path.relative_to(root)) + "/"] = ""
    return found


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def spec_in(folder: Path, output_dir: str, factory: str = "neuronperf.zoo:mlp", extra: str = "") -> Path:
    return write(folder / "sweep.yaml", f"""
        version: 1
        name: hostile
        framework: torch
        device_type: cpu
        compiler: eager
        output_dir: {output_dir}
        models:
          - name: m
            factory: "{factory}"
            inputs: [[8]]
        {extra}
        benchmark: {{duration: 0.2, warmup: {{calls: 1}}}}
        """)


def one_line_error(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


# ---- file names from entry ids ----------------------------------------------------------------


@pytest.mark.parametrize("entry_id", ["../../../../tmp/evil", "org/model-name", "..", ".hidden", "a" * 400, "x\\y:z"])
def test_file_stems_never_leave_their_folder(tmp_path, entry_id):
    stem = safe_file_stem(entry_id, "0123456789abcdef")
    assert "/" not in stem and "\\" not in stem and not stem.startswith(".")
    assert len(stem) < 200 and stem.endswith("-01234567")
    relpath = samples_relpath(entry_id, "0123456789abcdef")
    assert os.path.dirname(relpath) == "samples"
    target = (tmp_path / relpath).resolve()
    assert tmp_path.resolve() in target.parents
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"x")  # a real file of that name can be made (no ENAMETOOLONG)


def test_readable_ids_keep_their_stem():
    """Plain ids map to the names earlier versions used, so existing caches stay hits."""
    assert safe_file_stem("mlp-bs4-p1", "0a1b2c3d4e5f") == "mlp-bs4-p1-0a1b2c3d"


# ---- --fresh on a folder neuronperf did not write ---------------------------------------------


def test_fresh_refuses_a_folder_that_neuronperf_did_not_write(tmp_path, cli, monkeypatch):
    repo = tmp_path / "repo"
    write(repo / "models" / "__init__.py", "VALUE = 1\n")
    write(repo / "logs" / "keep.txt", "mine\n")
    write(repo / "results.csv", "a,b\n1,2\n")
    spec = spec_in(repo, ".")
    before = snapshot(tmp_path)
    monkeypatch.chdir(repo)
    code, out, err = cli("run", str(spec), "--fresh")
    assert code == 2
    line = one_line_error(err)
    assert "--fresh refused" in line and str(repo) in line and "run.json" in line
    assert "models" in line and "logs" in line
    assert snapshot(tmp_path) == before, "nothing was removed or written"


def test_fresh_is_allowed_on_an_empty_or_missing_folder(tmp_path):
    from neuronperf.sweep.output_dir import check_fresh_allowed

    check_fresh_allowed(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".lock").write_text("")
    check_fresh_allowed(tmp_path / "empty")


def test_fresh_on_a_foreign_run_json_is_one_error(tmp_path, cli):
    folder = tmp_path / "other"
    write(folder / "run.json", "[1, 2]\n")
    write(folder / "models" / "x.txt", "precious\n")
    spec = spec_in(tmp_path, str(folder))
    before = snapshot(tmp_path)
    code, _, err = cli("run", str(spec), "--fresh")
    assert code == 2 and "not a neuronperf run file" in one_line_error(err)
    assert snapshot(tmp_path) == before


# ---- model_index.delete stays inside the index's folder ---------------------------------------


def test_delete_refuses_paths_outside_the_index_folder(tmp_path):
    project = tmp_path / "project"
    write(project / "models" / "own.pt", "own\n")
    write(tmp_path / "other_project" / "x.pt", "theirs\n")
    write(tmp_path / "srv" / "data" / "d.bin", "data\n")
    index = model_index.append(
        model_index.create("models/own.pt"),
        model_index.create("../other_project/x.pt"),
        model_index.create(str(tmp_path / "srv" / "data")),
    )
    path = model_index.save(index, str(project / "index.json"))
    before = snapshot(tmp_path)
    with pytest.raises(DeleteRefused) as refused:
        model_index.delete(path)
    message = str(refused.value)
    assert "outside the index's folder" in message and "allow_outside=True" in message
    assert "other_project" in message and "srv" in message and "own.pt" not in message
    assert snapshot(tmp_path) == before, "a refusal removes nothing"

    removed = model_index.delete(path, allow_outside=True)
    assert not (tmp_path / "other_project" / "x.pt").exists() and not (tmp_path / "srv" / "data").exists()
    assert str(project / "index.json") in removed


def test_cli_delete_needs_allow_outside(tmp_path, cli):
    write(tmp_path / "elsewhere" / "a.pt", "a\n")
    path = model_index.save(model_index.create("../elsewhere/a.pt"), str(tmp_path / "idx" / "index.json"))
    before = snapshot(tmp_path)
    code, _, err = cli("index", "delete", path, "--yes")
    assert code == 2 and "--allow-outside" in one_line_error(err)
    assert snapshot(tmp_path) == before
    code, out, _ = cli("index", "delete", path, "--yes", "--allow-outside")
    assert code == 0 and not (tmp_path / "elsewhere" / "a.pt").exists()


# ---- the journal: short writes, a full disk, corrupt or incomplete lines -----------------------


class ShortDisk:
    """``os.write`` as a nearly full disk does it, for one file only: up to ``room`` bytes in
    all, a short write when the next one does not fit, then ENOSPC. Every other fd is untouched."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, file_name: str, room: int):
        self.real_write = os.write
        self.file_name = file_name
        self.room = room
        self.refused = 0
        monkeypatch.setattr(os, "write", self.write)

    def _is_target(self, fd: int) -> bool:
        try:
            return os.readlink(f"/proc/self/fd/{fd}").endswith(self.file_name)
        except OSError:
            return False

    def write(self, fd: int, data: bytes) -> int:
        if not self._is_target(fd):
            return self.real_write(fd, data)
        if self.room <= 0:
            self.refused += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = self.real_write(fd, bytes(data[: self.room]))
        self.room -= n
        return n


def test_a_short_write_is_cut_off_and_named(tmp_path, monkeypatch):
    journal = Journal(str(tmp_path))
    journal.record_run("k1", "first", {"status": "ok", "x": 1})
    before = (tmp_path / "journal.jsonl").read_bytes()
    disk = ShortDisk(monkeypatch, "journal.jsonl", room=10)  # 10 bytes fit: a short write, then ENOSPC
    with pytest.raises(OutputWriteFailed) as failed:
        journal.record_run("k2", "second", {"status": "ok", "x": 2})
    assert str(failed.value) == f"{tmp_path / 'journal.jsonl'}: cannot be written: No space left on device"
    assert failed.value.exit_code == 3 and failed.value.out_of_space and disk.refused == 1
    assert (tmp_path / "journal.jsonl").read_bytes() == before, "the partial line was cut off again"
    monkeypatch.setattr(os, "write", disk.real_write)  # space came back
    journal.record_run("k3", "third", {"status": "ok", "x": 3})
    assert [r["id"] for r in Journal(str(tmp_path)).load()] == ["first", "third"]


def test_writes_that_the_disk_splits_are_completed(tmp_path, monkeypatch):
    """A network file system may write part of a line and take the rest in the next call."""
    real_write = os.write
    calls = []

    def halves(fd: int, data: bytes) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").endswith("journal.jsonl") and len(data) > 1:
            calls.append(len(data))
            return real_write(fd, bytes(data[: len(data) // 2]))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", halves)
    Journal(str(tmp_path)).record_run("k", "a", {"status": "ok", "note": "x" * 500})
    monkeypatch.setattr(os, "write", real_write)
    assert len(calls) > 3
    [record] = Journal(str(tmp_path)).load()
    assert record["row"]["note"] == "x" * 500


def test_a_corrupt_middle_line_is_one_located_error_in_status(tmp_path, cli):
    out = tmp_path / "out"
    spec = spec_in(tmp_path, str(out))
    journal = Journal(str(out))
    journal.record_run("k1", "a", {"status": "ok"})
    journal.record_run("k2", "b", {"status": "ok"})
    lines = (out / "journal.jsonl").read_bytes().splitlines(keepends=True)
    (out / "journal.jsonl").write_bytes(lines[0] + b'{"format": 1, "kind": "ru\n' + lines[1])
    code, _, err = cli("status", str(spec))
    line = one_line_error(err)
    assert code == 2 and f"{out / 'journal.jsonl'}:2: corrupt journal line" in line
    assert "delete that line" in line


@pytest.mark.parametrize("record", [
    {"format": 1, "kind": "run", "key": "k", "id": "a", "status": "ok"},  # no row
    {"format": 1, "kind": "run", "key": "k", "id": "a", "row": {}},  # no status
    {"format": 1, "kind": "compile", "id": "a", "status": "ok"},  # no key
])
def test_a_record_missing_a_key_is_one_located_error(tmp_path, cli, record):
    out = tmp_path / "out"
    spec = spec_in(tmp_path, str(out))
    write(out / "journal.jsonl", json.dumps(record) + "\n" + json.dumps({**record, "id": "b"}) + "\n")
    for command in (("status", str(spec)), ("run", str(spec))):
        code, _, err = cli(*command)
        assert code == 2 and f"{out / 'journal.jsonl'}:1:" in one_line_error(err)


def test_atomic_writes_name_the_file_they_could_not_write(tmp_path):
    from neuronperf.util.atomic import atomic_write_text

    (tmp_path / "a_file").write_text("x")
    with pytest.raises(OutputWriteFailed, match="a_file/results.csv: cannot be written"):
        atomic_write_text(str(tmp_path / "a_file" / "results.csv"), "x")


# ---- broken plug-ins and broken factory modules -----------------------------------------------


def plugin_dir(tmp_path: Path) -> Path:
    """A real installed-looking distribution whose backend module raises at import."""
    site = tmp_path / "site"
    write(site / "broken_np_backend.py", "raise RuntimeError('this plug-in is broken')\n")
    write(site / "broken_np_backend-1.0.dist-info" / "METADATA", "Metadata-Version: 2.1\nName: broken-np-backend\nVersion: 1.0\n")
    write(site / "broken_np_backend-1.0.dist-info" / "entry_points.txt",
          "[neuronperf.backends]\nbrokenfw = broken_np_backend:Backend\n")
    return site


def run_cli(*args: str, env_extra: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "neuronperf", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def test_a_broken_plugin_is_a_warning_unless_the_spec_needs_it(tmp_path):
    site = plugin_dir(tmp_path)
    env = {"PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    spec = write(tmp_path / "plugin.yaml", f"""
        version: 1
        framework: brokenfw
        device_type: cpu
        compiler: x
        output_dir: {tmp_path / 'out2'}
        models: [{{name: m, factory: "neuronperf.zoo:mlp", inputs: [[8]]}}]
        """)
    before = snapshot(tmp_path)
    asked = run_cli("run", str(spec), env_extra=env)
    assert asked.returncode == 2, asked.stderr
    line = one_line_error(asked.stderr)
    assert "brokenfw" in line and "broken_np_backend:Backend" in line and "RuntimeError: this plug-in is broken" in line
    assert snapshot(tmp_path) == before

    from neuronperf import backends

    sys.path.insert(0, str(site))
    try:
        backends._BROKEN.clear()
        backends._WARNED.clear()
        with pytest.warns(backends.BrokenBackendWarning, match="brokenfw.*RuntimeError"):
            found = backends.find_backend("torch", "cpu", "eager")
        assert found.name == "torch"
    finally:
        sys.path.remove(str(site))
        backends._BROKEN.pop("brokenfw", None)


def test_a_factory_module_that_raises_at_import_is_one_located_line(tmp_path, cli, monkeypatch):
    write(tmp_path / "pkg_raises_np.py", "raise RuntimeError('no GPU here, says the module')\n")
    write(tmp_path / "syntax_np.py", "def f(:\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for factory, expected in (("pkg_raises_np:f", "raised RuntimeError: no GPU here"),
                              ("syntax_np.py:f", "raised SyntaxError: invalid syntax")):
        spec = spec_in(tmp_path, str(tmp_path / "out"), factory=factory)
        code, _, err = cli("run", str(spec))
        line = one_line_error(err)
        assert code == 2 and "sweep.yaml:" in line and "models[0].factory" in line and expected in line
    assert not (tmp_path / "out").exists()


def test_the_spec_folder_goes_last_on_sys_path(tmp_path):
    """A yaml.py beside the spec does not shadow PyYAML for the factory that imports it."""
    write(tmp_path / "yaml.py", "raise ImportError('the shadow was imported')\n")
    write(tmp_path / "models_np.py", "import yaml\n\ndef f():\n    return yaml.__file__\n")
    code = (
        "import sys; from neuronperf.entries import ModelRef, freeze; from neuronperf.sources.factory import build_model;"
        f"where = build_model(ModelRef('m', 'models_np.py:f', freeze({{}}), base_dir={str(tmp_path)!r}));"
        f"assert sys.path[-1] == {str(tmp_path)!r}, sys.path; print(where)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    assert str(tmp_path) not in done.stdout and "yaml" in done.stdout


def test_plan_piped_into_head_stays_quiet(tmp_path):
    spec = write(tmp_path / "big.yaml", """
        version: 1
        framework: torch
        device_type: cpu
        models: [{name: m, factory: "neuronperf.zoo:mlp", inputs: [[8]]}]
        sweep: {batch_sizes: [1, 2, 3, 4, 5, 6, 7, 8], n_models: [1, 2, 3, 4], workers_per_model: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}
        """)
    done = subprocess.run(f"{sys.executable} -m neuronperf plan {spec} | head -2", shell=True,
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 2
    assert done.stderr == ""


# ---- what the user cannot see -----------------------------------------------------------------


def test_validate_reports_a_missing_factory_file(tmp_path, cli):
    spec = spec_in(tmp_path, "out", factory="nowhere.py:build")
    code, out, err = cli("validate", str(spec))
    line = one_line_error(err)
    assert code == 2 and "models[0].factory" in line and "'nowhere.py' does not exist" in line
    assert str(tmp_path / "nowhere.py") in line


def test_status_names_the_folder_and_the_run_that_holds_it(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = spec_in(tmp_path / "specs", "runs/here")
    code, out, _ = cli("status", str(spec))
    assert code == 0 and out.splitlines()[0] == f"output_dir: {tmp_path / 'runs' / 'here'}"
    with OutputDirLock(str(tmp_path / "runs" / "here")):
        code, out, _ = cli("status", str(spec))
        assert f"a neuronperf run is using it now (pid {os.getpid()})" in out
        code, out, _ = cli("status", str(spec), "--json")
        assert json.loads(out)["running"] == f"pid {os.getpid()}"
    code, out, _ = cli("status", str(spec))
    assert "using it now" not in out


# ---- resume identity and process identity -----------------------------------------------------


def test_the_fingerprint_covers_threads_quota_and_factory_libraries_without_importing_torch(tmp_path):
    spec = write(tmp_path / "bert.yaml", """
        version: 1
        framework: torch
        device_type: cuda
        models: [{name: b, factory: "neuronperf.zoo:bert", inputs: [{shape: [16], dtype: int64}]}]
        """)
    code = textwrap.dedent(f"""
        import json, os, sys
        from neuronperf.sweep.environments import library_versions
        from neuronperf.sweep.state import load_plan
        from neuronperf.results.environment import capture_environment, environment_fingerprint
        _, plan = load_plan({str(spec)!r})
        env = capture_environment(library_versions(plan), "cuda")
        assert "torch" not in sys.modules and "transformers" not in sys.modules
        print(json.dumps(environment_fingerprint(env)))
        """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60,
                          env=dict(os.environ, OMP_NUM_THREADS="3"))
    assert done.returncode == 0, done.stderr
    fingerprint = json.loads(done.stdout)
    assert fingerprint["threads.OMP_NUM_THREADS"] == "3" and "threads.NEURONPERF_CPU_THREADS" in fingerprint
    assert "versions.library/transformers" in fingerprint
    assert "cpu_quota" in fingerprint and fingerprint["usable_cores"] >= 1
    assert {"gpu.models", "gpu.driver", "gpu.cuda_runtime"} <= set(fingerprint)


def test_an_older_run_json_without_the_new_fields_stays_compatible():
    from neuronperf.results.environment import capture_environment, check_compatible

    now = capture_environment({"torch/eager": "2.3"})
    old = {k: v for k, v in now.items() if k not in ("threads", "cpu_quota", "usable_cores")}
    check_compatible(old, now)


def test_kill_tree_by_handle_leaves_a_reaped_pid_alone():
    from neuronperf.util import processes as procutil

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    handle = procutil.handle(gone.pid)
    gone.wait()  # reaped: the kernel may give its pid to anyone now
    assert handle is not None and procutil.kill_tree(handle) == []

    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        live_handle = procutil.handle(alive.pid)
        assert live_handle is not None
        assert procutil.kill_tree(live_handle, grace_s=0.5) == [alive.pid]
        assert alive.wait(5) is not None
    finally:
        alive.kill()


# ---- linear bookkeeping -------------------------------------------------------------------------


def test_results_are_rewritten_only_as_often_as_stays_linear(tmp_path, monkeypatch):
    """A rewrite that took 1 s is not repeated within the next 10 s; flush always writes, and the
    files are complete whenever they exist."""
    from neuronperf import results
    from neuronperf.results import files

    now = [0.0]
    real_write = files.write_results

    def slow_write(output_dir, rows):  # a rewrite that takes 1 s of the injected clock
        now[0] += 1.0
        return real_write(output_dir, rows)

    monkeypatch.setattr(files, "write_results", slow_write)
    writer = results.ResultsWriter(str(tmp_path), clock=lambda: now[0])
    rows = [{"id": "a", "status": "skipped"}]
    assert writer.update(rows) and writer.writes == 1
    now[0] += 5.0
    assert not writer.update(rows)
    now[0] += 5.0
    assert writer.update(rows) and writer.writes == 2
    writer.flush(rows + [{"id": "b", "status": "ok"}])
    assert writer.writes == 3
    assert [r["id"] for r in json.loads((tmp_path / "results.json").read_text())] == ["a", "b"]


def test_json_rows_are_one_per_line_and_strict(tmp_path):
    from neuronperf import results

    results.write_results(str(tmp_path), [{"id": "a", "x": float("nan")}, {"id": "b", "x": 1.5}])
    text = (tmp_path / "results.json").read_text()
    assert text.startswith("[\n{") and text.endswith("}\n]\n") and "NaN" not in text
    assert [r["x"] for r in json.loads(text)] == [None, 1.5]
