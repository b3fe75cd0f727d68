"""The package's version, in one leaf module: every module that records it imports it from
here (never from the package ``__init__``, which imports the facades and so the stages)."""

from __future__ import annotations

import importlib


def _built_version() -> str:
    # ``_version.py`` is written by setuptools-scm when the package is built or installed (from
    # the git tag). It is looked up by name: a fresh checkout has no such file, and a static
    # ``from neuronperf._version import`` would then read, to import analysers, as an import of
    # the package itself (and so of every stage).
    try:
        return str(importlib.import_module("neuronperf._version").version)
    except ImportError:  # a source tree that was never built or installed
        return "0.0.0+unknown"


__version__ = _built_version()

__all__ = ["__version__"]
