"""Backend registry: backends register under the ``neuronperf.backends`` entry-point group.

Built-in backends are listed in ``neuronperf.catalog`` as well, so that a source checkout that
was never installed still finds them. A third party adds one by declaring, in its own pyproject.toml::

    [project.entry-points."neuronperf.backends"]
    mybackend = "my_package.module:MyBackend"
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Optional

from neuronperf.backends.base import Backend
from neuronperf.catalog import BUILTIN_BACKENDS, ENTRY_POINT_GROUP, registered_backends
from neuronperf.errors import BackendUnavailable, UsageError


@cache
def get_backend(name: str) -> Backend:
    """Instantiate the backend registered as ``name`` (imports its module, not its framework)."""
    refs = registered_backends()
    if name not in refs:
        raise UsageError(f"unknown backend {name!r}; registered: {', '.join(sorted(refs))}")
    module_name, _, class_name = refs[name].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls()  # type: ignore[no-any-return]


def find_backend(framework: str, device_type: str, compiler: Optional[str] = None) -> Backend:
    """The backend serving ``framework`` on ``device_type`` (and ``compiler``, when given)."""
    candidates = []
    for name in registered_backends():
        backend = get_backend(name)
        if backend.framework == framework and device_type in backend.device_types:
            if compiler is None or compiler in backend.compilers:
                return backend
            candidates.append(backend)
    if candidates:
        offered = sorted({c for b in candidates for c in b.compilers})
        raise UsageError(
            f"framework {framework!r} on {device_type!r} has no compiler {compiler!r}; "
            f"choose one of: {', '.join(offered)}"
        )
    raise BackendUnavailable(f"no backend serves framework {framework!r} on device_type {device_type!r}")


__all__ = ["BUILTIN_BACKENDS", "ENTRY_POINT_GROUP", "Backend", "find_backend", "get_backend", "registered_backends"]
