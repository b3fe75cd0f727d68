"""The safe file names' earlier import path (documented before the stages became folders): they
now live in ``neuronperf.util.paths``. Kept so that code written against it keeps working."""

from __future__ import annotations

from neuronperf.util.paths import MAX_ID_CHARS, safe_file_stem, safe_name

__all__ = ["MAX_ID_CHARS", "safe_file_stem", "safe_name"]
