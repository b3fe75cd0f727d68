"""Content digests of the files a model comes from (a checkpoint folder, a saved artifact), for
entry identities: a model's identity follows what is in its files, never where they are."""

from __future__ import annotations

import hashlib
import os

_remembered: dict[tuple[str, tuple[tuple[str, int, int], ...]], str] = {}


def content_digest(path: str) -> str:
    """A sha256 over the relative path and bytes of every file under ``path`` (or of ``path``
    itself when it is a file); hidden files and folders are left out (a ``.git``, an editor's
    state is not the model). Remembered in this process per (path, sizes, modification times),
    so a plan and the run that follows hash a multi-GB checkpoint once."""
    path = os.path.abspath(path)
    listing = _listing(path)
    key = (path, listing)
    if key not in _remembered:
        digest = hashlib.sha256()
        for rel, _, _ in listing:
            digest.update(rel.encode("utf-8") + b"\0")
            with open(path if rel == "." else os.path.join(path, rel), "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):  # noqa: B023 - f is this iteration's
                    digest.update(block)
            digest.update(b"\0")
        _remembered[key] = digest.hexdigest()[:16]
    return _remembered[key]


def _listing(path: str) -> tuple[tuple[str, int, int], ...]:
    if os.path.isfile(path):
        stat = os.stat(path)
        return ((".", stat.st_size, stat.st_mtime_ns),)
    files = []
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            full = os.path.join(root, name)
            try:
                stat = os.stat(full)
            except OSError:  # vanished while listed: not part of the model
                continue
            files.append((os.path.relpath(full, path).replace(os.sep, "/"), stat.st_size, stat.st_mtime_ns))
    return tuple(files)
