"""One artifact on disk: its compile key, where it lives, how it is built atomically and durably
(``compile_one``), and the side file that lets a rerun trust it (size and sha256, written only
after the artifact is complete and fsync'd).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Optional

import psutil

from neuronperf import plan as plan_stage
from neuronperf.backends.base import Backend
from neuronperf.entries import CompileEntry, stable_hash
from neuronperf.sources.factory import source_digest
from neuronperf.util import nofollow
from neuronperf.util.atomic import atomic_write_json, fsync_dir

#: Format 2 records the artifact's size and sha256; a format 1 side file means "rebuild".
META_FORMAT = 2
#: An artifact is built as ``.tmp-<pid of the building process>-<its final name>`` in the same
#: folder (so that the rename is atomic, and the suffix is the one savers check).
_TEMPORARY = re.compile(r"^\.tmp-(\d+)-.")


def compile_key(entry: CompileEntry, compiler_version: str) -> str:
    """Everything that changes an artifact: the entry's content, the compiler's version, and the
    source of a ``file.py:callable`` factory (editing your model file rebuilds its artifacts)."""
    return stable_hash({
        "entry": entry.key, "compiler_version": compiler_version, "source": source_digest(entry.model),
    })


def artifact_relpath(entry: CompileEntry, backend: Backend, key: str) -> Optional[str]:
    """Where ``entry``'s artifact lives under output_dir, or None when it has no artifact."""
    suffix = backend.artifact_suffix(entry.compiler)
    return None if suffix is None else plan_stage.artifact_relpath(entry, suffix, key)


def cached_meta(out: Path, relpath: str, key: str) -> Optional[dict[str, Any]]:
    """The side file of the artifact at ``out/relpath`` if it vouches for it (same compile key,
    and the bytes still have the recorded size and digest), else None: rebuild."""
    # Never through a link (UnsafeOutputDir): a planted side file could vouch for anything.
    nofollow.check_not_link(str(out / relpath))
    if not (out / relpath).exists():
        return None
    try:
        meta = json.loads(nofollow.read_bytes(str(out), relpath + ".meta.json"))
    except (OSError, ValueError):
        return None  # a damaged side file means "rebuild", never a crash
    if not isinstance(meta, dict) or meta.get("key") != key:
        return None
    # Existence is not enough: after a power loss an artifact can be there with zero or half
    # its bytes. It is reused only if it is exactly what was built (size first: it is cheap).
    # A side file from before sizes and digests were recorded cannot vouch for it: rebuild.
    size, sha256 = meta.get("size"), meta.get("sha256")
    if not isinstance(size, int) or not isinstance(sha256, str):
        return None
    try:
        if tree_size(out / relpath) != size or tree_digest(out / relpath) != sha256:
            return None
    except OSError:
        return None
    return meta


def _files_below(path: Path) -> list[Path]:
    """``path`` itself if it is a file, else every file below it, in a stable order."""
    if not path.is_dir() or path.is_symlink():
        return [path]
    return sorted((p for p in path.rglob("*") if not p.is_dir() or p.is_symlink()), key=lambda p: p.as_posix())


def tree_size(path: Path) -> int:
    """Bytes of an artifact: a file, or every file of a folder artifact (a SavedModel)."""
    return sum(p.lstat().st_size for p in _files_below(path))


def tree_digest(path: Path) -> str:
    """sha256 of an artifact: of a file's bytes, or of a folder's file names and bytes."""
    digest = hashlib.sha256()
    for file in _files_below(path):
        if file != path:
            digest.update(file.relative_to(path).as_posix().encode("utf-8") + b"\0")
        if file.is_symlink():
            digest.update(os.readlink(file).encode("utf-8"))
            continue
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def compile_one(backend: Backend, entry: CompileEntry, artifact_path: str) -> float:
    """Build one artifact in this process; return the wall seconds the backend took.

    The artifact is built under a temporary name and then renamed, so that a crash never leaves
    a half-written artifact under the name that the cache trusts.
    """
    # Same folder (rename stays atomic), same suffix (some savers check it).
    folder, name = os.path.split(artifact_path)
    os.makedirs(folder or ".", exist_ok=True)
    tmp_path = temporary_path(artifact_path)
    # The framework's save function writes through whatever is at this (predictable) name.
    nofollow.check_not_link(tmp_path)
    try:
        started = time.perf_counter()
        backend.compile(entry, Path(tmp_path))
        compile_s = time.perf_counter() - started
        # Durable before it gets the name the cache trusts: a power loss after the rename must
        # not leave a zero-length artifact behind (the side file's size and digest catch that
        # too, but then the compile is lost).
        fsync_tree(tmp_path)
        replace_path(tmp_path, artifact_path)
        fsync_dir(folder or ".")
    finally:
        remove_path(tmp_path)
    return compile_s


def fsync_tree(path: str) -> None:
    """fsync a file, or every file and folder of a folder artifact."""
    if not os.path.isdir(path):
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        return
    for folder, _, files in os.walk(path):
        for name in files:
            file = os.path.join(folder, name)
            if not os.path.islink(file):
                with open(file, "rb") as f:
                    os.fsync(f.fileno())
        fsync_dir(folder)


def replace_path(src: str, dst: str) -> None:
    remove_path(dst)
    os.replace(src, dst)


def remove_path(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)


def write_meta(out: Path, relpath: str, fields: dict[str, Any]) -> None:
    """Write the artifact's side file, after measuring its size and digest: call it only once the
    artifact is complete and fsync'd (``compile_one``), so it never vouches for bytes that a
    power loss could still take away. Raises ``OSError`` when the artifact cannot be read."""
    artifact = out / relpath
    size, sha256 = tree_size(artifact), tree_digest(artifact)
    atomic_write_json(str(out / (relpath + ".meta.json")),
                      {"format": META_FORMAT, **fields, "size": size, "sha256": sha256}, root=str(out))


def temporary_path(artifact_path: str, pid: Optional[int] = None) -> str:
    """Where the process ``pid`` (default: this one) builds ``artifact_path`` before renaming it."""
    folder, name = os.path.split(artifact_path)
    return os.path.join(folder, f".tmp-{os.getpid() if pid is None else pid}-{name}")


def remove_abandoned_temporaries(folder: str) -> list[str]:
    """Remove the half-built artifacts in ``folder`` whose building process is gone (a compile
    killed when its sweep stopped on a full disk, a run killed with -9); return their paths.

    A temporary stays while its process runs, so another live process building into the same
    folder keeps its work. A pid that now belongs to a process started after the temporary was
    last written is another process: the temporary is abandoned. On Neuron an artifact is hundreds
    of MB, so each failed attempt would otherwise leave one more behind."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    removed = []
    for name in sorted(names):
        found = _TEMPORARY.match(name)
        if found is None:
            continue
        path = os.path.join(folder, name)
        try:
            written = os.lstat(path).st_mtime
        except OSError:
            continue
        if _writer_alive(int(found.group(1)), written):
            continue
        remove_path(path)
        removed.append(path)
    return removed


def _writer_alive(pid: int, written: float) -> bool:
    """Whether process ``pid`` runs and could have written a file last modified at ``written``."""
    if pid == os.getpid():
        return True
    try:
        started = psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.Error:
        return True  # cannot tell (another user's process): keep the file
    # create_time is rounded to the clock tick; a second of slack never removes a live writer's file.
    return started <= written + 1.0
