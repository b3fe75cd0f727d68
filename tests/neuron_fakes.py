"""Stand-ins for the AWS Neuron SDK and hardware, shared by the Neuron tests.

Neither can exist here. ``tests/data/neuron_sdk`` holds two stand-in ``torch_neuronx`` packages,
each with its dist-info so that ``importlib.metadata`` reads its version as it would AWS's: 2.9.x
(the PyTorch/XLA library: ``trace``, ``DataParallel``) and 2.14.x (TorchNeuron: ``.to("neuron")``,
``torch.compile(backend="neuron")``). ``tests/data/neuron_ls`` holds ``neuron-ls --json-output``
outputs of each instance family; ``install_neuron_ls`` puts a ``neuron-ls`` on PATH that prints
one, at the LNC its caller's ``NEURON_LOGICAL_NC_CONFIG`` asks for when there is a file for it.
"""

from __future__ import annotations

import importlib
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any, Optional

DATA = Path(__file__).parent / "data"
STANDINS = {"2.9": DATA / "neuron_sdk" / "torch_neuronx_2_9", "2.14": DATA / "neuron_sdk" / "torch_neuronx_2_14"}
NEURON_LS = DATA / "neuron_ls"
#: machine -> {LNC: fixture}; the first one listed is what the machine runs at by default.
MACHINES = {
    "inf1.xlarge": {1: "inf1.xlarge.json"},
    "inf2.xlarge": {1: "inf2.xlarge.json"},
    "trn1.2xlarge": {1: "trn1.2xlarge.json"},
    "trn2.48xlarge": {2: "trn2.48xlarge-lnc2.json", 1: "trn2.48xlarge-lnc1.json"},
    "trn3": {2: "trn3-4chip-lnc2.json"},
}


def use_torch_neuronx(monkeypatch: Any, version: str) -> Any:
    """Import the stand-in torch_neuronx ``version`` ("2.9" or "2.14") in this process, for the
    test's duration, and return it."""
    import torch

    # The 2.14 stand-in patches these on import; setting them to themselves first makes
    # monkeypatch put the originals back when the test ends.
    monkeypatch.setattr(torch.nn.Module, "to", torch.nn.Module.to)
    monkeypatch.setattr(torch.Tensor, "to", torch.Tensor.to)
    monkeypatch.setattr(torch, "compile", torch.compile)
    monkeypatch.syspath_prepend(str(STANDINS[version]))
    # setitem remembers whether a torch_neuronx was imported, so that the end of the test puts
    # that one back, or none
    monkeypatch.setitem(sys.modules, "torch_neuronx", None)
    del sys.modules["torch_neuronx"]
    return importlib.import_module("torch_neuronx")


def standin_pythonpath(version: str) -> str:
    """A PYTHONPATH entry that gives worker processes the stand-in ``version``."""
    return str(STANDINS[version])


def neuron_ls_devices(machine: str, lnc: Optional[int] = None) -> list[dict]:
    files = MACHINES[machine]
    name = files[lnc] if lnc is not None else next(iter(files.values()))
    return json.loads((NEURON_LS / name).read_text())


def install_neuron_ls(folder: Path, monkeypatch: Any, machine: str, busy: Optional[dict[int, list]] = None) -> None:
    """Put a ``neuron-ls`` on PATH that prints ``machine``'s devices; ``busy`` adds
    ``neuron_processes`` (device index -> [(pid, command), ...])."""
    outputs = {}
    for lnc in MACHINES[machine]:
        devices = neuron_ls_devices(machine, lnc)
        for index, processes in (busy or {}).items():
            devices[index]["neuron_processes"] = [
                {"pid": pid, "command": command, "neuron_runtime_version": "2.35.30.0"} for pid, command in processes
            ]
        path = folder / f"neuron-ls-{lnc}.json"
        path.write_text(json.dumps(devices))
        outputs[str(lnc)] = str(path)
    default = outputs[str(next(iter(MACHINES[machine])))]
    script = folder / "neuron-ls"
    script.write_text(
        f"#!{sys.executable}\nimport os, sys\n"
        "assert sys.argv[1:] in (['--json-output'], ['-j']), sys.argv\n"
        f"outputs = {outputs!r}\n"
        f"path = outputs.get(os.environ.get('NEURON_LOGICAL_NC_CONFIG', ''), {default!r})\n"
        "sys.stdout.write(open(path).read())\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")


def read_log(path: Path) -> list[dict]:
    """The calls a stand-in recorded into ``NEURONPERF_STANDIN_LOG``."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
