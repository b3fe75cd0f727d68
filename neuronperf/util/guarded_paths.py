"""Which paths a deletion must never touch: the filesystem root, the home folder, the working
directory and a model index's own folder, and every folder above them. Paths are compared with
the folders above them resolved but a final symlink kept, so removing a link never reaches its
target."""

from __future__ import annotations

import os
from typing import Optional


def physical(path: str) -> str:
    """``path`` with every folder above it resolved, but the last component kept: a symlink at
    the end stays a symlink, so deleting it unlinks the link and never touches its target."""
    head, tail = os.path.split(path)
    if tail in ("", ".", ".."):
        return os.path.realpath(path)
    return os.path.join(os.path.realpath(head), tail)


def guarded_folders(index_folder: Optional[str]) -> list[tuple[str, str, str]]:
    """(folder, its description, description of a folder above it) that delete never removes,
    each both as spelled and with symlinks resolved, so a link that *is* such a folder counts."""
    named = []
    if index_folder is not None:  # an in-memory index's folder is the cwd, guarded below
        named.append((index_folder, "the index's own folder", "a folder above the index's folder"))
    home = os.path.expanduser("~")
    if home != "~":
        named.append((os.path.abspath(home), "the home folder", "a folder above the home folder"))
    named.append((os.getcwd(), "the working directory", "a folder above the working directory"))
    guarded = []
    for folder, what, above in named:
        guarded.append((folder, what, above))
        guarded.append((os.path.realpath(folder), what, above))
    return guarded


def refusal_reason(path: str, guarded: list[tuple[str, str, str]]) -> Optional[str]:
    """Why ``path`` (as ``physical`` gives it) must not be removed, or None if it may be.

    A symlink is judged by where the link itself is, not by what it points at: removing it only
    unlinks it.
    """
    if os.path.dirname(path) == path:
        return "the filesystem root"
    for folder, what, above in guarded:
        if os.path.normcase(path) == os.path.normcase(folder):
            return what
        if is_within(folder, path):
            return above
    return None


def is_within(path: str, folder: str) -> bool:
    """True if ``path`` is strictly inside ``folder`` (both absolute and resolved)."""
    path, folder = os.path.normcase(path), os.path.normcase(folder)
    return path != folder and path.startswith(folder.rstrip(os.sep) + os.sep)
