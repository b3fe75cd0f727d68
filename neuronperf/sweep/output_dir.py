"""What a sweep owns in its output_dir, and what ``--fresh`` may remove.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from neuronperf import results
from neuronperf.errors import (
    UsageError,
)
from neuronperf.results.lock import LOCK_FILE
from neuronperf.util import nofollow

#: Files and folders a sweep writes into output_dir; `--fresh` removes exactly these.
OWNED_PATHS = (
    "journal.jsonl", "results.csv", "results.json", "run.json", "model_index.json",
    "models", "logs", "samples",
)


#: The folders of OWNED_PATHS whose entries are named after entries (scanned one level deep).
_ENTRY_FOLDERS = ("models", "logs", "samples")


def check_output_dir(output_dir: Path) -> None:
    """Refuse, before any work, an output_dir that others could turn against the run: one that
    is not the user's own (owned by another user, or writable by others without the sticky
    bit), or that holds a symbolic link where a sweep writes (its own files and folders, and the
    names directly inside ``models/``, ``logs/`` and ``samples/``). Every open checks again
    (``util.nofollow``), which is the guarantee; this makes the common case one line before
    anything starts. A folder that does not exist yet passes. ``output_dir`` is the path as the
    user gave it (not resolved): a link of another user on the way to it is refused too."""
    root = str(output_dir)
    nofollow.check_links_to(root)
    try:
        os.close(nofollow.open_folder(root))
    except FileNotFoundError:
        return
    for name in (LOCK_FILE, *OWNED_PATHS):
        path = os.path.join(root, name)
        nofollow.check_not_link(path)
        if name in _ENTRY_FOLDERS and os.path.isdir(path):
            nofollow.make_folders(root, name)  # the folder must be the user's own as well
            with os.scandir(path) as found:
                for item in found:
                    nofollow.check_not_link(item.path)


def check_fresh_allowed(output_dir: Path) -> None:
    """Refuse ``--fresh`` on a folder neuronperf did not write: it removes ``models/``, ``logs/``
    and ``samples/``, which in a foreign folder (``output_dir: .`` in a repository) are someone
    else's. Allowed where the folder is missing or empty, or holds neuronperf's ``run.json``."""
    try:
        present = sorted(p.name for p in output_dir.iterdir())
    except FileNotFoundError:
        return
    except OSError as e:
        raise UsageError(f"--fresh: cannot read {output_dir}: {e.strerror}") from None
    if not [name for name in present if name != ".lock"]:
        return
    if (output_dir / results.RUN_INFO).is_file():
        results.read_run_info(str(output_dir))  # a run.json that is not ours raises JournalError
        return
    owned = [name for name in OWNED_PATHS if name in present]
    at_risk = f" (it would remove {', '.join(owned)})" if owned else ""
    raise UsageError(
        f"--fresh refused: {output_dir} is not empty and has no {results.RUN_INFO}, so neuronperf did "
        f"not write it{at_risk}; point output_dir at a folder of its own"
    )


def remove_owned(output_dir: Path) -> None:
    for name in OWNED_PATHS:
        path = output_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif os.path.lexists(path):
            path.unlink()
