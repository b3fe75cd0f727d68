"""File names derived from entry ids.

An entry id is made of free text (model names, parameter values such as ``org/model-name`` or
``../../tmp/x``). Rows, logs and ``--only`` keep the readable id; a file name built from it goes
through ``safe_file_stem``, so that it never gains a folder, a hidden-file dot or an unbounded
length, and the key keeps two ids that clean up alike apart.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_.+=-]")
#: File systems allow 255 bytes per name; this leaves room for the key, a prefix and a suffix.
MAX_ID_CHARS = 120


def safe_name(text: str) -> str:
    """``text`` with every character outside ``[A-Za-z0-9_.+=-]`` replaced by ``_``, with no
    leading dot and at most ``MAX_ID_CHARS`` long."""
    name = _UNSAFE.sub("_", text)[:MAX_ID_CHARS]
    if name.startswith("."):
        name = "_" + name[1:]  # never a hidden file, never "." or ".."
    return name or "_"


def safe_file_stem(entry_id: str, key: str) -> str:
    """The stem of a file that belongs to one entry: ``<safe id>-<key[:8]>``. The same for the
    same (id, key); never contains a path separator."""
    return f"{safe_name(entry_id)}-{safe_name(key[:8])}"
