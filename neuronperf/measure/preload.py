"""What the forkserver imports before it forks any worker: what ``NEURONPERF_PRELOAD`` lists,
so every worker starts with the sweep's libraries already loaded. (The forkserver imports
``neuronperf.measure.forkserver_preload``, which calls ``preload_from_environment``; importing this
module itself imports nothing, so the driver can read ``VARIABLE`` from it.)

The variable holds ``module`` or ``module:name,name`` items separated by ``;``: the names are
looked up too, because libraries such as transformers load a model's code only when its name is
first touched (``from transformers import BertModel``). The driver fills it from the factories'
own import statements (``factory.worker_preload``) before it starts the forkserver. A library
that fails to import is skipped here: the worker that needs it reports the error.
"""

from __future__ import annotations

import importlib
import os

VARIABLE = "NEURONPERF_PRELOAD"


def preload(spec: str) -> list[str]:
    """Import every item of ``spec``; return the items that failed (for tests and messages)."""
    failed = []
    for item in filter(None, (part.strip() for part in spec.split(";"))):
        module_name, _, names = item.partition(":")
        try:
            module = importlib.import_module(module_name)
            for name in filter(None, names.split(",")):
                getattr(module, name)
        except Exception:  # a library's own failure shows in the worker that uses it
            failed.append(item)
    return failed



def preload_from_environment() -> list[str]:
    """``preload`` what ``NEURONPERF_PRELOAD`` lists."""
    return preload(os.environ.get(VARIABLE, ""))
