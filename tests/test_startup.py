"""Start-up behaviour (issue 13), checked by what runs where, never by timing: the sweep driver
imports no framework or user code, the forkserver starts once with the models' libraries
preloaded and serves every entry, and commands with nothing to do import no framework."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from neuronperf.entries import ModelRef
from neuronperf.measure.preload import preload
from neuronperf.sources.factory import worker_preload

MODEL = '''
import os
import sys

# Recorded before this file's own imports run: preloaded by the forkserver, or not.
PRELOADED = "hypothesis" in sys.modules

import hypothesis  # noqa: E402,F401  (a library only this model uses)
import torch  # noqa: E402


def build(features: int = 8, log: str = ""):
    with open(log, "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "preloaded": PRELOADED}) + "\\n")
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(features, features)).eval()


import json  # noqa: E402
'''


def write_sweep(folder: Path) -> Path:
    (folder / "model.py").write_text(MODEL)
    spec = folder / "sweep.yaml"
    spec.write_text(textwrap.dedent(f"""
        version: 1
        name: startup
        framework: torch
        device_type: cpu
        compiler: eager
        output_dir: {folder / 'out'}
        models:
          - name: m
            factory: "model.py:build"
            kwargs: {{log: "{folder / 'loads.jsonl'}"}}
            inputs: [{{shape: [8]}}]
        sweep: {{batch_sizes: [1, 2, 3]}}
        benchmark: {{duration: 0.2, warmup: 2, timeout: 60}}
    """))
    return spec


DRIVER = """
import json, sys
from neuronperf.cli import main
code = main(sys.argv[1:])
heavy = [m for m in sys.modules if m in ("torch", "transformers", "hypothesis") or m.startswith("neuronperf_user_")]
print(json.dumps({"code": code, "heavy": heavy}))
"""


def run_driver(*argv: str) -> dict:
    done = subprocess.run([sys.executable, "-c", DRIVER, *argv], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
def test_the_driver_imports_no_framework_and_one_preloaded_forkserver_serves_every_entry(tmp_path):
    spec = write_sweep(tmp_path)
    first = run_driver("run", str(spec))
    assert first == {"code": 0, "heavy": []}  # the factory was checked in a worker process
    loads = [json.loads(line) for line in (tmp_path / "loads.jsonl").read_text().splitlines()]
    assert len(loads) == 3, loads  # one worker per entry; the factory check never calls the factory
    assert len({w["pid"] for w in loads}) == 3  # a fresh process for every entry...
    assert len({w["ppid"] for w in loads}) == 1  # ... forked by the one forkserver
    assert all(w["preloaded"] for w in loads)  # which had imported the model's libraries before

    # Nothing to do: run, status, validate and plan import no framework and no user code.
    for argv in (("run", str(spec)), ("status", str(spec)), ("validate", str(spec)), ("plan", str(spec))):
        assert run_driver(*argv) == {"code": 0, "heavy": []}, argv


@pytest.mark.pure
def test_preload_items_come_from_the_factories_imports_not_from_running_them(tmp_path):
    (tmp_path / "helpers.py").write_text("X = 1\n")
    (tmp_path / "model.py").write_text(textwrap.dedent("""
        import os, json
        import yaml
        from helpers import X
        from jsonschema import Draft202012Validator, validators
        import definitely_not_installed_anywhere
        raise RuntimeError("never executed by worker_preload")
        def build():
            import numpy  # inside a function: not preloaded
    """))
    refs = [ModelRef("m", "model.py:build", base_dir=str(tmp_path)), ModelRef("z", "neuronperf.zoo:bert"),
            ModelRef("mlp", "neuronperf.zoo:mlp")]
    items = worker_preload(refs)
    assert "yaml" in items and "jsonschema:Draft202012Validator,validators" in items
    modules = {i.split(":")[0] for i in items}
    assert not modules & {"os", "json", "helpers", "definitely_not_installed_anywhere", "numpy"}
    assert ("transformers" in items) == (__import__("importlib").util.find_spec("transformers") is not None)


@pytest.mark.pure
def test_preload_skips_what_fails_and_looks_names_up():
    assert preload("json:dumps;definitely_not_installed_anywhere;json:no_such_name") == [
        "definitely_not_installed_anywhere", "json:no_such_name"]

