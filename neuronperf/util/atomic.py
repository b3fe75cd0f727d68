"""Atomic, durable file writes and strict JSON.

A file written here is, at every moment, either its old complete version or its new complete
version: the bytes go to a temporary file in the same folder, which is flushed, fsync'd and then
renamed over the target (``os.replace`` is atomic within one file system). The folder is fsync'd
too, so the rename itself survives a power loss. A write that fails (a full disk) leaves the old
file and raises ``OutputWriteFailed`` naming the target.

Inside an output_dir, pass its path as ``root``: the write is then made relative to folder
descriptors, never through a symbolic link (``neuronperf.util.nofollow``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import tempfile
from typing import Any, Optional

from neuronperf.errors import OutputWriteFailed
from neuronperf.util import nofollow


def fsync_dir(path: str) -> None:
    """Make a rename or file creation inside ``path`` durable (no-op where folders cannot be
    opened, as on Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the rename is still atomic
    finally:
        os.close(fd)


def atomic_write_bytes(path: str, data: bytes, *, root: Optional[str] = None) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never a mix.
    With ``root`` (a folder that holds ``path``), no link below ``root`` is followed."""
    if root is not None:
        try:
            nofollow.write_atomic(root, relative_to(path, root), data)
        except OSError as e:
            raise OutputWriteFailed(path, e) from None
        return
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        # The temporary name starts with a dot so that a crash leftover is hidden and never taken
        # for a result; it lives in the same folder because a rename across file systems copies.
        fd, tmp_path = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise OutputWriteFailed(path, e) from None
    try:
        with os.fdopen(fd, "wb") as tmp:
            # mkstemp makes the file 0600; results are shared files, so keep the mode of the
            # file being replaced, or the usual mode for a new file.
            os.fchmod(tmp.fileno(), _mode_for(path))
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_path, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp_path)
        if isinstance(e, OSError) and not isinstance(e, OutputWriteFailed):
            # A full disk says "No space left on device" without a file name: name the target.
            raise OutputWriteFailed(path, e) from None
        raise
    fsync_dir(folder)


def relative_to(path: str, root: str) -> str:
    """``path`` relative to ``root``; a ``ValueError`` if it is not below it."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    if rel == os.curdir or rel == os.pardir or rel.startswith(os.pardir + os.sep):
        raise ValueError(f"{path} is not inside {root}")
    return rel


def _mode_for(path: str) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return nofollow.default_file_mode()


def atomic_write_text(path: str, text: str, *, root: Optional[str] = None) -> None:
    """``atomic_write_bytes`` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"), root=root)


def json_ready(value: Any) -> Any:
    """A deep copy of ``value`` that strict JSON can hold: NaN and infinities become ``None``,
    tuples and numpy arrays become lists, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    # numpy arrays (raw timings) and scalars, without importing numpy here.
    if getattr(value, "ndim", 0) and callable(getattr(value, "tolist", None)):
        return json_ready(value.tolist())
    item = getattr(value, "item", None)
    if callable(item):
        return json_ready(item())
    return str(value)


def dumps_strict(value: Any, *, indent: int | None = None) -> str:
    """JSON text with no NaN/Infinity tokens, so every JSON parser accepts it."""
    return json.dumps(json_ready(value), indent=indent, allow_nan=False)


def atomic_write_json(path: str, value: Any, *, indent: int | None = 2, root: Optional[str] = None) -> None:
    """Write ``value`` as strict JSON (NaN -> null), atomically, with a final newline."""
    atomic_write_text(path, dumps_strict(value, indent=indent) + "\n", root=root)
