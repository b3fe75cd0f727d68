"""Hostile inputs and lost disks in real sweeps: ids that look like paths, a disk that fills up
mid-sweep, truncated artifacts, a broken plug-in, and what `run`/`status` show the user."""

from __future__ import annotations

import csv
import errno
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from test_hostile_inputs import REPO, plugin_dir, snapshot, write

pytestmark = pytest.mark.slow

FACTORY = """
import torch

def build(features=8, variant="", fail=False):
    if fail:
        raise RuntimeError("this model cannot be built")
    torch.manual_seed(len(variant))
    return torch.nn.Sequential(torch.nn.Linear(features, features), torch.nn.ReLU()).eval()
"""


def sweep(folder: Path, output_dir: str, *, compiler: str = "eager", params: str = "", kwargs: str = "{}",
          batch_sizes: str = "[1]", duration: float = 0.2) -> Path:
    write(folder / "idmodels.py", FACTORY)
    params_line = f"params: {params}" if params else ""
    return write(folder / "sweep.yaml", f"""
        version: 1
        name: hostile
        framework: torch
        device_type: cpu
        compiler: {compiler}
        output_dir: {output_dir}
        models:
          - name: m
            factory: "idmodels.py:build"
            kwargs: {kwargs}
            {params_line}
            inputs: [[8]]
        sweep: {{batch_sizes: {batch_sizes}}}
        benchmark: {{duration: {duration}, warmup: {{calls: 2}}, timeout: 60}}
        """)


def run_cli(*args: str, cwd: Path | None = None, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, **(env_extra or {}))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(REPO)]))
    return subprocess.run([sys.executable, "-m", "neuronperf", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_ids_that_look_like_paths_write_only_inside_output_dir(tmp_path):
    escape = f"../../../../tmp/evil-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "work" / "out"
    spec = sweep(tmp_path / "work", str(out), compiler="torchscript",
                 params=f'{{variant: ["{escape}", "org/model-name"]}}', kwargs='{variant: "$variant"}')
    before = snapshot(tmp_path, skip=out)
    done = run_cli("run", str(spec))
    assert done.returncode == 0, done.stderr
    assert snapshot(tmp_path, skip=out) == before, "nothing outside output_dir was written"
    assert not list(Path("/tmp").glob(escape.rsplit("/", 1)[1] + "*"))
    rows = read_csv(out / "results.csv")
    assert {r["status"] for r in rows} == {"ok"} and len(rows) == 2
    ids = [r["id"] for r in rows]
    assert any(escape in i for i in ids) and any("org/model-name" in i for i in ids), "rows keep the readable id"
    for folder in ("models", "logs", "samples"):
        names = [p.name for p in (out / folder).iterdir()]
        assert len(names) >= 2 and all("/" not in n and not n.startswith("..") for n in names), names
    records = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    for record in records:
        for key in ("samples_file", "log_file", "artifact"):
            if record.get(key):
                assert (out / record[key]).resolve().is_relative_to(out.resolve())


class FillingDisk:
    """``os.write`` on a disk that fills up while the journal grows: the journal's first
    ``whole`` appends fit, the next fits half way, then every write is ENOSPC until ``free``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, whole: int):
        self.real_write = os.write
        self.whole = whole
        self.full = False
        monkeypatch.setattr(os, "write", self.write)

    def write(self, fd: int, data: bytes) -> int:
        try:
            is_journal = os.readlink(f"/proc/self/fd/{fd}").endswith("journal.jsonl")
        except OSError:
            is_journal = False
        if not is_journal:
            return self.real_write(fd, data)
        if self.full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if self.whole == 0:
            self.full = True
            return self.real_write(fd, bytes(data[: len(data) // 2]))
        self.whole -= 1
        return self.real_write(fd, data)

    def free(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(os, "write", self.real_write)


def test_a_disk_that_fills_mid_sweep_stops_with_one_line_and_a_rerun_completes(tmp_path, cli, monkeypatch):
    out = tmp_path / "out"
    spec = sweep(tmp_path, str(out), batch_sizes="[1, 2, 3]")
    before = snapshot(tmp_path, skip=out)
    # Three compile records (eager: nothing built) and one run record fit; the second run record does not.
    disk = FillingDisk(monkeypatch, whole=4)
    code, stdout, stderr = cli("run", str(spec))
    disk.free(monkeypatch)
    assert code == 3, stderr
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("neuronperf: error:")]
    assert errors == [
        f"neuronperf: error: {out / 'journal.jsonl'}: cannot be written: No space left on device; the sweep "
        "stopped, finished entries are kept: free some space and rerun to go on"
    ]
    assert "hostile: 1 ok, 0 failed, 0 reused, 1 run, 2 not measured" in stdout
    journal = (out / "journal.jsonl").read_text()
    assert journal.endswith("\n") and len(journal.splitlines()) == 4, "the half-written line was cut off"
    assert [r["status"] for r in read_csv(out / "results.csv")] == ["ok", "skipped", "skipped"]
    assert snapshot(tmp_path, skip=out) == before

    code, stdout, stderr = cli("run", str(spec))
    assert code == 0, stderr
    assert "1 of 3 entries reused; running 2" in stderr
    assert "hostile: 3 ok, 0 failed, 1 reused, 2 run" in stdout
    assert [r["status"] for r in read_csv(out / "results.csv")] == ["ok", "ok", "ok"]


def test_a_truncated_or_altered_artifact_is_rebuilt_not_reused(tmp_path):
    from test_compile import _entry

    from neuronperf.compilation.jobs import compile_all

    out = tmp_path / "out"
    entry = _entry(batch_size=2)
    [first] = compile_all([entry], str(out), jobs=1)
    assert first.ok, first.error
    artifact = out / first.artifact
    meta = json.loads((out / (first.artifact + ".meta.json")).read_text())
    assert meta["size"] == artifact.stat().st_size and len(meta["sha256"]) == 64
    good = artifact.read_bytes()
    before = snapshot(tmp_path, skip=out)

    [again] = compile_all([entry], str(out), jobs=1)
    assert again.reused, "an intact artifact is a cache hit"
    artifact.write_bytes(b"")  # what a power loss after the rename can leave
    [rebuilt] = compile_all([entry], str(out), jobs=1)
    assert not rebuilt.reused and rebuilt.ok and artifact.stat().st_size == len(good)
    flipped = bytearray(artifact.read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF  # same size, other bytes
    artifact.write_bytes(bytes(flipped))
    [rebuilt] = compile_all([entry], str(out), jobs=1)
    assert not rebuilt.reused and rebuilt.ok
    assert snapshot(tmp_path, skip=out) == before


def test_a_broken_plugin_does_not_break_a_sweep(tmp_path):
    site = plugin_dir(tmp_path)
    out = tmp_path / "out"
    spec = sweep(tmp_path, str(out))
    before = snapshot(tmp_path, skip=out)
    done = run_cli("run", str(spec), env_extra={"PYTHONPATH": str(site)})
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("neuronperf: warning")]
    assert len(warnings) == 1 and "neuronperf: warning: backend 'brokenfw'" in warnings[0]
    assert "RuntimeError: this plug-in is broken; it is ignored" in warnings[0]
    assert "Traceback" not in done.stderr
    assert snapshot(tmp_path, skip=out) == before


def test_run_names_its_output_dir_and_logs_relative_to_the_user(tmp_path):
    spec = sweep(tmp_path / "specs", "runs/x", compiler="torchscript", kwargs="{fail: true}")
    done = run_cli("run", str(spec), cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines()[0] == f"hostile: output_dir {tmp_path / 'runs' / 'x'}"
    [failed] = [line for line in done.stderr.splitlines() if "compile m-bs1" in line]
    log = failed.rsplit("(log: ", 1)[1].rstrip(")")
    assert log.startswith("runs/x/logs/") and (tmp_path / log).is_file()
    assert "this model cannot be built" in (tmp_path / log).read_text()
    assert f"compile log of m-bs1-p1: {log}" in done.stdout


def test_status_says_why_a_measured_entry_must_run_again(tmp_path, cli):
    out = tmp_path / "out"
    spec = sweep(tmp_path, str(out))
    code, _, err = cli("run", str(spec))
    assert code == 0, err
    code, stdout, _ = cli("status", str(spec))
    assert "done" in stdout and "changed" not in stdout

    with open(tmp_path / "idmodels.py", "a") as f:
        f.write("\n# an edit\n")
    code, stdout, _ = cli("status", str(spec))
    [line] = [line for line in stdout.splitlines() if line.startswith("m-bs1")]
    assert line.split()[1] == "todo" and line.endswith("(model source changed since measured)")

    spec.write_text(spec.read_text().replace("duration: 0.2", "duration: 0.3"))
    write(tmp_path / "idmodels.py", FACTORY)  # the source as measured again
    code, stdout, _ = cli("status", str(spec), "--json")
    [entry] = json.loads(stdout)["entries"]
    assert entry == {"id": entry["id"], "status": "todo", "why": "benchmark or runtime settings changed since measured"}


def test_a_thread_setting_change_is_an_environment_mismatch(tmp_path):
    out = tmp_path / "out"
    spec = sweep(tmp_path, str(out))
    first = run_cli("run", str(spec), env_extra={"OMP_NUM_THREADS": "1"})
    assert first.returncode == 0, first.stderr
    again = run_cli("run", str(spec), env_extra={"OMP_NUM_THREADS": "2"})
    assert again.returncode == 2
    assert "threads.OMP_NUM_THREADS '1' (saved) vs '2' (now)" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
