"""The package's version, in one leaf module: every module that records it imports it from
here (never from the package ``__init__``, which imports the facades and so the stages)."""

from __future__ import annotations

try:
    # Written by setuptools-scm when the package is built or installed (from the git tag).
    from neuronperf._version import version as __version__
except ImportError:  # a source tree that was never built or installed: no version file yet
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
