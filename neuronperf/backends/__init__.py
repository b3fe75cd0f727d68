"""Backend registry: backends register under the ``neuronperf.backends`` entry-point group.

Built-in backends are listed in ``neuronperf.spec.catalog`` as well, so that a source checkout that
was never installed still finds them. A third party adds one by declaring, in its own pyproject.toml::

    [project.entry-points."neuronperf.backends"]
    mybackend = "my_package.module:MyBackend"

Each registered backend is loaded on its own: one that cannot be imported or instantiated is a
``BrokenBackendWarning`` naming it and is left out; it is an error only where a sweep needs it.
"""

from __future__ import annotations

import importlib
import warnings
from functools import cache
from typing import Optional

from neuronperf.backends.base import Backend
from neuronperf.errors import BackendLoadFailed, BackendUnavailable, UsageError
from neuronperf.spec.catalog import BUILTIN_BACKENDS, ENTRY_POINT_GROUP, registered_backends


class BrokenBackendWarning(UserWarning):
    """A registered backend (a third-party plug-in) cannot be loaded; it is left out."""


#: Backends that failed to load: name -> why (loaded once per process, like the good ones).
_BROKEN: dict[str, str] = {}


@cache
def _load(name: str, ref: str) -> Backend:
    module_name, _, class_name = ref.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    backend = cls()
    if not isinstance(backend, Backend):
        raise TypeError(f"{ref} is not a neuronperf Backend")
    return backend


def get_backend(name: str) -> Backend:
    """Instantiate the backend registered as ``name`` (imports its module, not its framework).
    A registered backend that cannot be loaded is a ``BackendUnavailable`` naming it."""
    refs = registered_backends()
    if name not in refs:
        raise UsageError(f"unknown backend {name!r}; registered: {', '.join(sorted(refs))}")
    if name in _BROKEN:
        raise BackendLoadFailed(_BROKEN[name])
    try:
        return _load(name, refs[name])
    except Exception as e:  # a plug-in's own bug: whatever it raises, it is its problem alone
        _BROKEN[name] = (
            f"backend {name!r} ({refs[name]}, entry-point group {ENTRY_POINT_GROUP}) cannot be "
            f"loaded: {type(e).__name__}: {' '.join(str(e).split())}"
        )
        raise BackendLoadFailed(_BROKEN[name]) from None


def usable_backends(warn: bool = True) -> list[Backend]:
    """Every registered backend that loads. Each one that does not is a ``BrokenBackendWarning``
    naming it (once, unless ``warn`` is false), so that one broken plug-in does not break every
    sweep."""
    found = []
    for name in registered_backends():
        try:
            found.append(get_backend(name))
        except BackendLoadFailed as e:
            if warn:
                _warn_once(name, str(e))
    return found


_WARNED: set[str] = set()


def _warn_once(name: str, message: str) -> None:
    if name not in _WARNED:
        _WARNED.add(name)
        warnings.warn(f"{message}; it is ignored", BrokenBackendWarning, stacklevel=4)


def find_backend(framework: str, device_type: str, compiler: Optional[str] = None) -> Backend:
    """The backend serving ``framework`` on ``device_type`` (and ``compiler``, when given).
    Where none does and a plug-in could not be loaded, the error names it: it may be the one."""
    candidates = []
    # Warned about only once a backend is found: where none is, the error names them instead.
    for backend in usable_backends(warn=False):
        if backend.framework == framework and device_type in backend.device_types:
            if compiler is None or compiler in backend.compilers:
                for name, why in list(_BROKEN.items()):
                    _warn_once(name, why)
                return backend
            candidates.append(backend)
    if candidates:
        offered = sorted({c for b in candidates for c in b.compilers})
        raise UsageError(
            f"framework {framework!r} on {device_type!r} has no compiler {compiler!r}; "
            f"choose one of: {', '.join(offered)}"
        )
    broken = "".join(f"; {why}" for why in _BROKEN.values())
    raise BackendUnavailable(f"no backend serves framework {framework!r} on device_type {device_type!r}{broken}")


__all__ = [
    "BUILTIN_BACKENDS", "ENTRY_POINT_GROUP", "Backend", "BrokenBackendWarning", "find_backend", "get_backend",
    "registered_backends", "usable_backends",
]
