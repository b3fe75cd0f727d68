"""The package as users get it: ``python -m build`` makes an sdist and a wheel that carry the JSON
Schema and ``py.typed``, ``twine check`` passes, and the wheel installed into a fresh virtual
environment (not editable) validates and runs the quick start.

Slow (a build, a venv, a torch install and a real sweep): run by ``nox -s wheel``, not by the
main ``tests`` session. This module imports nothing from the checkout's package on purpose.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.wheel, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
DIST_NAME = "neuronperf_sweep"  # the normalized form of neuronperf-sweep in file names
TORCH = "torch==2.13.0"  # the CPU build on this machine's disk, as in noxfile.py
SHIPPED = ("neuronperf/spec/schema.json", "neuronperf/py.typed", "neuronperf/_version.py")


def _run(*cmd: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    # A clean environment for the installed package: no PYTHONPATH pointing at the checkout.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(cmd)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--outdir", str(out), str(ROOT), cwd=ROOT)
    (wheel,) = out.glob(f"{DIST_NAME}-*.whl")
    (sdist,) = out.glob(f"{DIST_NAME}-*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


@pytest.fixture(scope="module")
def version(dists) -> str:
    return dists["wheel"].name.split("-")[1]


@pytest.fixture(scope="module")
def installed(dists, tmp_path_factory) -> Path:
    """A fresh venv with torch and the wheel: its bin folder."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.create(env_dir, with_pip=True, clear=True)
    bin_dir = env_dir / "bin"
    _run(str(bin_dir / "python"), "-m", "pip", "install", "--quiet", TORCH, str(dists["wheel"]), cwd=env_dir)
    return bin_dir


def test_the_version_comes_from_git(version):
    # setuptools-scm read the checkout's git metadata: a tag's version, or a dev release after it
    # (0.1.devN+gHASH before the first tag); not the fallback of a tree without git metadata.
    assert version != "0.0" and re.fullmatch(r"\d+(\.\d+)*((\.dev\d+)?\+g[0-9a-f]+(\.d\d{8})?)?", version), version


def test_the_wheel_carries_the_schema_py_typed_and_the_command(dists, version):
    with zipfile.ZipFile(dists["wheel"]) as wheel:
        names = set(wheel.namelist())
        for path in SHIPPED:
            assert path in names, f"{path} is not in the wheel"
        info = f"{DIST_NAME}-{version}.dist-info"
        metadata = wheel.read(f"{info}/METADATA").decode()
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
        schema = json.loads(wheel.read("neuronperf/spec/schema.json"))
    assert "Name: neuronperf-sweep" in metadata and f"Version: {version}" in metadata
    assert "Description-Content-Type: text/markdown" in metadata
    assert "neuronperf = neuronperf.cli:console_main" in entry_points
    assert "[neuronperf.backends]" in entry_points and "torch = neuronperf.backends.torch_backend:TorchBackend" in entry_points
    assert schema == json.loads((ROOT / "neuronperf" / "spec" / "schema.json").read_text())
    assert not any(n.startswith(("tests/", "docs/", "benchmarks/")) for n in names), "only the package is installed"


def test_the_sdist_carries_the_schema_and_py_typed(dists, version):
    with tarfile.open(dists["sdist"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for path in (*SHIPPED, "pyproject.toml", "README.md", "CHANGELOG.md"):
        assert path in names, f"{path} is not in the sdist"


def test_twine_check_passes(dists):
    result = _run(sys.executable, "-m", "twine", "check", "--strict", str(dists["wheel"]), str(dists["sdist"]), cwd=ROOT)
    assert result.stdout.count("PASSED") == 2, result.stdout


def test_the_installed_wheel_validates_and_runs_the_quick_start(installed, version, tmp_path):
    # From a folder outside the checkout, so that nothing but the installed package can be imported.
    where = _run(str(installed / "python"), "-c", "import neuronperf; print(neuronperf.__file__)", cwd=tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(installed.parent), where.stdout
    assert _run(str(installed / "neuronperf"), "--version", cwd=tmp_path).stdout.strip() == f"neuronperf {version}"
    schema = _run(str(installed / "neuronperf"), "schema", cwd=tmp_path).stdout
    assert json.loads(schema) == json.loads((ROOT / "neuronperf" / "spec" / "schema.json").read_text())

    quickstart = ROOT / "configs" / "quickstart.yaml"
    valid = _run(str(installed / "neuronperf"), "validate", str(quickstart), cwd=tmp_path)
    assert "ok (8 run entries)" in valid.stdout + valid.stderr

    spec = tmp_path / "quickstart.yaml"
    spec.write_text(quickstart.read_text().replace("name: quickstart", f"name: quickstart\noutput_dir: {tmp_path / 'out'}"))
    run = _run(str(installed / "neuronperf"), "run", str(spec), cwd=tmp_path)
    assert "quickstart: 8 ok, 0 failed" in run.stdout
    with open(tmp_path / "out" / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and all(r["status"] == "ok" and float(r["throughput_avg"]) > 0 for r in rows)
    run_info = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run_info["neuronperf_version"] == version
