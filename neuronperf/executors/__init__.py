"""Executor registry: ``get_executor("local")`` runs entries on this machine,
``get_executor("ray", address=...)`` on the nodes of a Ray cluster.

Executors are found by name in ``EXECUTORS`` and imported on first use, so that a remote
executor's framework (Ray) is imported only when it is asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

from neuronperf.errors import BackendUnavailable, UsageError
from neuronperf.executors.base import Executor

#: name -> "module:Class"
EXECUTORS = {
    "local": "neuronperf.executors.local:LocalExecutor",
    "ray": "neuronperf.executors.ray:RayExecutor",
}


def get_executor(name: str = "local", **options: Any) -> Executor:
    """A new executor registered as ``name``, built with ``options`` (e.g. ``start_method``)."""
    if name not in EXECUTORS:
        raise UsageError(f"unknown executor {name!r}; choose one of: {', '.join(EXECUTORS)}")
    module_name, _, class_name = EXECUTORS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise BackendUnavailable(f"executor {name!r} is not available: {e}") from None
    cls = getattr(module, class_name)
    try:
        return cls(**options)  # type: ignore[no-any-return]
    except TypeError as e:
        raise UsageError(f"executor {name!r}: {e}") from None


__all__ = ["EXECUTORS", "Executor", "get_executor"]
