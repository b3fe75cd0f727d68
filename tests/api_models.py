"""Top-level models and callbacks for the Python API tests.

Worker processes import these by name, so they live in a module rather than in test files.
Callbacks leave marker files in the folder named by ``NEURONPERF_TEST_MARKERS`` (workers inherit
the parent's environment), so a test can see that each ran, where, and with what.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from typing import Any

import torch

MARKERS_ENV = "NEURONPERF_TEST_MARKERS"
FEATURES = 100


class TinyMLP(torch.nn.Module):
    """A small real network; deterministic weights so two processes build the same model."""

    def __init__(self, features: int = FEATURES, hidden: int = 16):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.fc1 = torch.nn.Linear(features, hidden)
        self.fc2 = torch.nn.Linear(hidden, 4)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class FixedBatchMLP(TinyMLP):
    """Like TinyMLP, but its trace bakes in the batch size: the artifact for batch size b fails
    on an input of any other batch size. Proves that each artifact gets the input it was built for."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # int() turns the traced size into a constant of the graph (on purpose).
        batch = int(x.shape[0])
        return super().forward(x.reshape(batch, FEATURES))


class TwoInputModel(torch.nn.Module):
    """Takes two tensors (a tuple input is passed as two arguments)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * 2 + b


class SleepyModel:
    """A plain-Python model (no framework) for neuronperf.cpu.benchmark: 2 ms per call."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, x: Any) -> Any:
        self.calls += 1
        time.sleep(0.002)
        return x


def load_tiny_mlp(filename: str, device_id: int = 0) -> Any:
    """A ``load_fn`` for neuronperf.benchmark: TorchScript from ``filename``."""
    _mark("load_fn", {"filename": filename, "device_id": device_id})
    return torch.jit.load(filename)


def save_scripted(model: Any, example: Any, filename: str, **kwargs: Any) -> None:
    """A ``compile_fn`` for neuronperf.compile: trace and save; records its keyword arguments."""
    _mark("compile_fn", {"filename": filename, "shape": list(example.shape), **kwargs})
    # TorchScript is what Neuron SDKs produce; torch's deprecation notice is noise here.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.trace(model, example), filename)


def failing_compile_fn(model: Any, example: Any, filename: str, **kwargs: Any) -> None:
    """A ``compile_fn`` that fails for batch size 2 only."""
    if kwargs["batch_size"] == 2:
        raise RuntimeError("no kernel for batch size 2")
    save_scripted(model, example, filename, **kwargs)


# ---- callbacks: each leaves a marker file (once per process, to keep the timed calls cheap) -----


def env_setup(copy_idx: int, config: dict) -> None:
    _mark("env_setup", {
        "copy_idx": copy_idx,
        "entry_id": config.get("entry_id"),
        "NEURON_RT_VISIBLE_CORES": os.environ.get("NEURON_RT_VISIBLE_CORES"),
        "model_loaded": False,
    })
    # setup_fn checks this: env_setup_fn must run before the model loads, in the same process.
    os.environ["NEURONPERF_TEST_ENV_SETUP_RAN"] = "1"


def setup(copy_idx: int, config: dict, model: Any) -> None:
    _mark("setup", {
        "copy_idx": copy_idx,
        "model_type": type(model).__name__,
        "env_setup_ran_first": os.environ.get("NEURONPERF_TEST_ENV_SETUP_RAN") == "1",
    })


def preprocess(x: Any) -> Any:
    _mark_once("preprocess", {"shape": list(x.shape)})
    return x * 1.0


def postprocess(output: Any) -> Any:
    _mark_once("postprocess", {"shape": list(output.shape)})
    return output


_MARKED: set = set()


def _mark_once(kind: str, data: dict) -> None:
    if kind not in _MARKED:
        _MARKED.add(kind)
        _mark(kind, data)


def _mark(kind: str, data: dict) -> None:
    folder = os.environ.get(MARKERS_ENV)
    if not folder:
        return
    path = os.path.join(folder, f"{kind}-{os.getpid()}-{time.monotonic_ns()}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"pid": os.getpid(), **data}, f)


def read_markers(folder: str, kind: str) -> list[dict]:
    """Every marker of ``kind`` in ``folder``, in no particular order."""
    found = []
    for name in sorted(os.listdir(folder)):
        if name.startswith(kind + "-") and name.endswith(".json"):
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                found.append(json.load(f))
    return found
