"""Every import path the documentation names resolves, and the paths documented before the stages
became folders keep working: users' scripts and plug-ins depend on them."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.pure

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]

#: Names the docs showed before the move (release 0.1 and earlier), by their old paths.
EARLIER_PATHS = [
    "neuronperf.core.run_entries", "neuronperf.core.Job", "neuronperf.core.Sink", "neuronperf.core.JobResult",
    "neuronperf.task.BenchmarkTask", "neuronperf.task.factory_loader", "neuronperf.task.BackendLoader",
    "neuronperf.task.LoadFnLoader", "neuronperf.task.FactoryLoader",
    "neuronperf.entries.BenchmarkSettings", "neuronperf.entries.CompileEntry", "neuronperf.entries.ModelRef",
    "neuronperf.entries.TensorSpec", "neuronperf.entries.Measurement", "neuronperf.entries.freeze",
    "neuronperf.executors.get_executor", "neuronperf.executors.EXECUTORS", "neuronperf.executors.base.Executor",
    "neuronperf.results.RowConfig", "neuronperf.results.load",
    "neuronperf.spec.load_spec", "neuronperf.plan.plan", "neuronperf.plan.planned_index", "neuronperf.plan.plan_json",
    "neuronperf.paths.safe_file_stem", "neuronperf.errors.ModelIndexError", "neuronperf.errors.DeleteRefused",
    "neuronperf.model_index.deletion_targets", "neuronperf.backends.base.Backend",
    "neuronperf.cli.spec_commands.format_plan_table",
    # The NeuronPerf API itself.
    "neuronperf.torch.compile", "neuronperf.torch.benchmark", "neuronperf.torch.evaluate",
    "neuronperf.tensorflow.compile", "neuronperf.tensorflow.benchmark", "neuronperf.cpu.benchmark",
    "neuronperf.compile", "neuronperf.benchmark", "neuronperf.print_reports", "neuronperf.write_csv",
    "neuronperf.write_json", "neuronperf.get_reports", "neuronperf.Timer", "neuronperf.set_verbosity",
    "neuronperf.timestamp_convert", "neuronperf.list_metrics", "neuronperf.register_metric",
    "neuronperf.register_metric_from_existing", "neuronperf.BaseEvalMetric", "neuronperf.__version__",
    "neuronperf.model_index.create", "neuronperf.model_index.save", "neuronperf.model_index.load",
    "neuronperf.model_index.append", "neuronperf.model_index.filter", "neuronperf.model_index.copy",
    "neuronperf.model_index.move", "neuronperf.model_index.delete",
    "neuronperf.zoo.mlp", "neuronperf.zoo.bert", "neuronperf.zoo.small_cnn", "neuronperf.zoo.gpt2",
]


def resolve(dotted: str) -> object:
    """Import the longest module prefix of ``dotted`` and look the rest up as attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError as e:
            if e.name is not None and not ".".join(parts[:cut]).startswith(e.name):
                raise  # a module that exists but imports something missing
            continue
        for attr in parts[cut:]:
            target = getattr(target, attr)
        return target
    raise ModuleNotFoundError(dotted)


def documented_paths() -> list[str]:
    found: set[str] = set()
    for page in DOCS:
        text = page.read_text(encoding="utf-8")
        for module, names in re.findall(r"^\s*from (neuronperf[\w.]*) import ([\w, ]+)$", text, re.M):
            found.update(f"{module}.{n.strip().split(' as ')[0]}" for n in names.split(",") if n.strip())
        found.update(re.findall(r"^\s*import (neuronperf[\w.]*)", text, re.M))
        # Inline references such as `neuronperf.results.load(path)`; a file path or a factory
        # string (`neuronperf.zoo:mlp`) is not an import path.
        found.update(m for m in re.findall(r"`(neuronperf(?:\.\w+)+)", text) if "/" not in m)
    return sorted(found)


@pytest.mark.parametrize("dotted", documented_paths())
def test_every_documented_name_resolves(dotted):
    resolve(dotted)


@pytest.mark.parametrize("dotted", EARLIER_PATHS)
def test_earlier_documented_paths_keep_working(dotted):
    resolve(dotted)


def test_the_moved_paths_are_the_same_objects():
    from neuronperf import core, paths, task
    from neuronperf.measure import entryloop
    from neuronperf.measure import task as measure_task
    from neuronperf.util import paths as util_paths

    assert core.run_entries is entryloop.run_entries and core.Sink is entryloop.Sink
    assert task.BenchmarkTask is measure_task.BenchmarkTask
    assert paths.safe_file_stem is util_paths.safe_file_stem


def test_backend_entry_points_and_factory_strings_resolve():
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split('[project.entry-points."neuronperf.backends"]')[1].split("\n[")[0]
    targets = re.findall(r'^[\w-]+ = "([\w.]+):(\w+)"', section, re.M)
    assert len(targets) >= 7
    for module, attr in targets:
        assert isinstance(getattr(importlib.import_module(module), attr), type)
    from neuronperf.spec.catalog import BUILTIN_BACKENDS

    for target in BUILTIN_BACKENDS.values():
        module, attr = target.split(":")
        assert isinstance(getattr(importlib.import_module(module), attr), type)
    from neuronperf.entries import ModelRef
    from neuronperf.sources.factory import resolve_factory

    assert callable(resolve_factory(ModelRef("mlp", "neuronperf.zoo:mlp")))


def test_importing_neuronperf_and_its_public_modules_imports_no_framework():
    code = (
        "import sys, neuronperf, neuronperf.torch, neuronperf.tensorflow, neuronperf.cpu, "
        "neuronperf.model_index, neuronperf.results, neuronperf.core, neuronperf.task; "
        "loaded = {'torch', 'tensorflow', 'onnxruntime', 'ray', 'transformers'} & set(sys.modules); "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
