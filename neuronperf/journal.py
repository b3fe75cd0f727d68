"""The results journal, the output_dir lock, and the raw samples store.

``journal.jsonl`` in an output_dir is the truth of a sweep: one JSON object per line, appended
(flushed and fsync'd) as each compile or run entry finishes, ok or not. A crash can tear only the
last line; ``load`` ignores such a line and the next append cuts it off first, so the file never
holds a broken line in the middle. An append the disk refuses half way (short write, disk full)
is cut off again and raised as ``OutputWriteFailed``. For each key the last record wins.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import fcntl
import json
import os
from collections.abc import Mapping
from typing import Any, Optional

import numpy as np

from neuronperf.atomic import atomic_write_bytes, dumps_strict, fsync_dir, json_ready
from neuronperf.entries import CopyStats, Measurement, WorkerSamples
from neuronperf.errors import JournalError, OutputDirLocked, OutputWriteFailed, UsageError
from neuronperf.paths import safe_file_stem

#: Version of each journal line. Readers accept this and older versions.
JOURNAL_FORMAT = 1
#: Version of the samples folders (1: one .npz file per entry, before method 2) and of the lock file.
SAMPLES_FORMAT = 2
LOCK_FORMAT = 1
JOURNAL_FILE, LOCK_FILE, SAMPLES_DIR = "journal.jsonl", ".lock", "samples"
#: The file in an entry's samples folder that describes its repeats (format 2 on).
SAMPLES_HEADER = "entry.json"
KINDS = ("compile", "run")


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _newer_error(where: str, what: str, version: int, supported: int) -> JournalError:
    return JournalError(
        f"{where}: written by a newer neuronperf ({what} format {version}; this one reads up to "
        f"{supported}); upgrade neuronperf or use another output_dir"
    )


class Journal:
    """The append-only journal ``output_dir/journal.jsonl``. Appending assumes the caller holds
    the ``OutputDirLock``; reading needs no lock."""

    def __init__(self, output_dir: str):
        self.output_dir = output_dir
        self.path = os.path.join(output_dir, JOURNAL_FILE)
        self._tail_checked = False

    # ---- writing -------------------------------------------------------------------------

    def record_compile(
        self,
        key: str,
        entry_id: str,
        status: str,
        *,
        artifact: Optional[str] = None,
        compile_s: Optional[float] = None,
        compiler_version: Optional[str] = None,
        error: Optional[str] = None,
        log_file: Optional[str] = None,
        source: Optional[str] = None,
    ) -> dict[str, Any]:
        """Durably record one finished compile entry; return the record written. ``source`` is
        the digest of a ``file.py`` factory's file ("" for a package factory)."""
        return self._append(
            "compile",
            key,
            entry_id,
            status,
            {
                "artifact": artifact,
                "compile_s": compile_s,
                "compiler_version": compiler_version,
                "error": error,
                "log_file": log_file,
                "source": source,
            },
        )

    def record_run(
        self, key: str, entry_id: str, row: Mapping[str, Any], *, samples_file: Optional[str] = None
    ) -> dict[str, Any]:
        """Durably record one finished run entry with its report row; return the record written."""
        status = row.get("status")
        if not isinstance(status, str):
            raise UsageError(f"{entry_id}: a run record needs a row with a 'status'")
        return self._append("run", key, entry_id, status, {"row": dict(row), "samples_file": samples_file})

    def _append(self, kind: str, key: str, entry_id: str, status: str, fields: dict) -> dict[str, Any]:
        record = {"format": JOURNAL_FORMAT, "kind": kind, "key": key, "id": entry_id, "status": status}
        record.update(fields)
        record["time"] = _utc_now()
        record = json_ready(record)
        # One write() of one whole line: a crash leaves at most this line torn.
        line = (json.dumps(record, allow_nan=False) + "\n").encode("utf-8")
        try:
            os.makedirs(self.output_dir, exist_ok=True)
            if not self._tail_checked:
                self._cut_torn_tail()
                self._tail_checked = True
            created = not os.path.exists(self.path)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:  # read-only or vanished folder: say which file
            raise OutputWriteFailed(self.path, e) from None
        try:
            _append_whole(fd, line, self.path)
        finally:
            os.close(fd)
        if created:
            fsync_dir(self.output_dir)  # the new file's name must survive a power loss too
        return record

    def _cut_torn_tail(self) -> None:
        """Truncate an incomplete or unreadable last line (left by a crash mid-append), so that
        the next record starts on a fresh line and the torn one never sits mid-file."""
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return
        if not data:
            return
        body_end = len(data) - 1 if data.endswith(b"\n") else len(data)
        last_start = data.rfind(b"\n", 0, body_end) + 1
        complete = _parse_line(data[last_start:body_end]) is not None
        if complete and data.endswith(b"\n"):
            return
        with open(self.path, "r+b") as f:
            if complete:
                # The record was written whole and only its newline was lost: load() already
                # counts it, so end its line rather than drop it.
                f.seek(0, os.SEEK_END)
                f.write(b"\n")
            else:
                f.truncate(last_start)
            f.flush()
            os.fsync(f.fileno())

    # ---- reading -------------------------------------------------------------------------

    def exists(self) -> bool:
        """Whether the journal file exists (a fresh output_dir has none)."""
        return os.path.exists(self.path)

    def load(self) -> list[dict[str, Any]]:
        """Every record in file order; a torn last line is ignored, any other unreadable line is a
        ``JournalError`` naming ``file:line``."""
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        except OSError as e:
            raise JournalError(f"{self.path}: cannot be read: {e}") from None
        lines = data.split(b"\n")
        complete = data.endswith(b"\n")
        if complete:
            lines.pop()  # the empty string after the final newline
        records = []
        for number, raw in enumerate(lines, start=1):
            is_last = number == len(lines)
            record = _parse_line(raw)
            if record is None:
                if is_last:
                    continue  # torn by a crash mid-append: that entry simply did not finish
                raise JournalError(
                    f"{self.path}:{number}: corrupt journal line (not a JSON record); "
                    "fix or delete that line, or start over with --fresh"
                )
            version = record["format"]
            if version > JOURNAL_FORMAT:
                raise _newer_error(f"{self.path}:{number}", "journal", version, JOURNAL_FORMAT)
            problem = _record_problem(record)
            if problem:
                raise JournalError(
                    f"{self.path}:{number}: {problem}; fix or delete that line, or start over with --fresh"
                )
            records.append(_upgrade(record))
        return records

    def compiles(self) -> dict[str, dict[str, Any]]:
        """The latest compile record of each compile key."""
        return self._latest("compile")

    def runs(self) -> dict[str, dict[str, Any]]:
        """The latest run record of each run key."""
        return self._latest("run")

    def _latest(self, kind: str) -> dict[str, dict[str, Any]]:
        latest: dict[str, dict[str, Any]] = {}
        for record in self.load():
            if record["kind"] == kind:
                latest[record["key"]] = record
        return latest


def _append_whole(fd: int, line: bytes, path: str) -> None:
    """Append ``line`` completely and durably, or not at all.

    ``write`` may write less than asked (a full disk, a network file system); the rest is
    written in further calls. If the disk refuses the rest, the part already written is cut off
    again, so that no half line is left for a later record to follow, and ``OutputWriteFailed``
    names the file."""
    start = os.fstat(fd).st_size  # the caller holds the output_dir lock: nobody else appends
    written = 0
    try:
        while written < len(line):
            n = os.write(fd, line[written:])
            if n <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written += n
        os.fsync(fd)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, start)
            os.fsync(fd)
        raise OutputWriteFailed(path, e) from None


def _parse_line(raw: bytes) -> Optional[dict[str, Any]]:
    """The record on one line, or ``None`` if the line is not a versioned JSON object."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("format"), int):
        return None
    return record


def _record_problem(record: dict[str, Any]) -> Optional[str]:
    """What a parsed record lacks for the readers of the journal, or None. Checked on load so
    that a hand-edited or foreign line is one located error, not a ``KeyError`` later on."""
    if record.get("kind") not in KINDS or not isinstance(record.get("key"), str):
        return "journal record without a known 'kind' and a 'key'"
    if not isinstance(record.get("status"), str):
        return f"{record['kind']} record without a 'status'"
    if record["kind"] == "run" and not isinstance(record.get("row"), dict):
        return "run record without its 'row' object"
    return None


def _upgrade(record: dict[str, Any]) -> dict[str, Any]:
    """Bring a record of an older format up to ``JOURNAL_FORMAT`` (format 1 is the first)."""
    return record


# ---- the output_dir lock ---------------------------------------------------------------------


class OutputDirLock:
    """An exclusive lock on an output_dir (``flock`` on ``output_dir/.lock``), held by one
    neuronperf process at a time; the kernel releases it when the holder exits or is killed."""

    def __init__(self, output_dir: str):
        self.output_dir = output_dir
        self.path = os.path.join(output_dir, LOCK_FILE)
        self._fd: Optional[int] = None

    def acquire(self) -> OutputDirLock:
        """Take the lock, or raise ``OutputDirLocked`` naming the holder's pid."""
        if self._fd is not None:
            return self
        try:
            os.makedirs(self.output_dir, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise JournalError(f"{self.path}: cannot create the lock file: {e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_holder(fd)
            os.close(fd)
            raise OutputDirLocked(
                f"{self.output_dir} is in use by another neuronperf run ({holder}); "
                "wait for it to finish, or use another output_dir"
            ) from None
        info = {"format": LOCK_FORMAT, "pid": os.getpid(), "since": _utc_now()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock up (a no-op when not held)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # no stale pid for the next reader
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> OutputDirLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def lock_holder(output_dir: str) -> Optional[str]:
    """``"pid N"`` if a neuronperf run holds ``output_dir`` now, else None (for ``status``).
    Only tests the lock (a shared, non-blocking ``flock`` released at once); creates nothing."""
    try:
        fd = os.open(os.path.join(output_dir, LOCK_FILE), os.O_RDONLY)
    except OSError:
        return None  # no lock file: never run, or not readable; either way nobody we can see
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _read_holder(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        return f"pid {int(info['pid'])}"
    except (OSError, ValueError, KeyError, TypeError):
        # The holder took the lock but has not written its pid yet.
        return "pid unknown"


# ---- raw samples -----------------------------------------------------------------------------


def samples_relpath(entry_id: str, key: str) -> str:
    """Where an entry's samples go, relative to output_dir: the folder ``samples/<safe id>-<key[:8]>``
    (the id made safe for a file name: an id never reaches outside ``samples/``)."""
    return os.path.join(SAMPLES_DIR, safe_file_stem(entry_id, key))


def repeat_dir(samples_dir: str, repeat: int) -> str:
    """The folder of one repeat's copy files inside an entry's samples folder."""
    return os.path.join(samples_dir, f"repeat-{repeat}")


def write_samples_header(samples_dir: str, entry_id: str, key: str, measurements: Any) -> str:
    """Write ``entry.json`` beside the copy files that the workers wrote into ``samples_dir``:
    each repeat's window, status and per-thread and per-copy figures (the timings themselves
    stay in the workers' files, ``repeat-<r>/copy-<c>.npz``). Atomic; returns its path."""
    repeats = []
    for m in measurements:
        repeats.append({
            "status": m.status,
            "error": m.error,
            "window_start_ns": m.window_start_ns,
            "window_end_ns": m.window_end_ns,
            "workers": [
                {
                    "copy_idx": w.copy_idx,
                    "thread_idx": w.thread_idx,
                    "infer_ns_total": w.infer_ns_total,
                    "preprocess_ns_total": w.preprocess_ns_total,
                    "postprocess_ns_total": w.postprocess_ns_total,
                }
                for w in m.workers
            ],
            "copies": [json_ready(dataclasses.asdict(c)) for c in m.copies],
        })
    header = {"format": SAMPLES_FORMAT, "id": entry_id, "key": key, "repeats": repeats}
    path = os.path.join(samples_dir, SAMPLES_HEADER)
    atomic_write_bytes(path, dumps_strict(header).encode("utf-8"))
    return path


def load_repeats(path: str) -> tuple[Measurement, ...]:
    """Every repeat's ``Measurement`` from an entry's samples folder (or from a samples file of
    format 1, which held one repeat); the timings are int64 arrays. An unreadable or newer
    folder is a ``JournalError``."""
    from neuronperf.protocol import ProtocolError, copy_samples_path, read_copy_timings

    if os.path.isfile(path):
        return (_load_samples_v1(path),)
    header_path = os.path.join(path, SAMPLES_HEADER)
    try:
        with open(header_path, encoding="utf-8") as f:
            header = json.load(f)
        version = header.get("format")
        if not isinstance(version, int):
            raise ValueError("no format version")
        if version > SAMPLES_FORMAT:
            raise _newer_error(header_path, "samples", version, SAMPLES_FORMAT)
        out = []
        for r, repeat in enumerate(header["repeats"]):
            by_copy: dict[int, list[dict[str, Any]]] = {}
            for w in repeat["workers"]:
                by_copy.setdefault(int(w["copy_idx"]), []).append(w)
            workers = []
            for copy_idx, threads in sorted(by_copy.items()):
                timings = read_copy_timings(copy_samples_path(repeat_dir(path, r), copy_idx), len(threads))
                for w, (starts, latencies, tokens) in zip(threads, timings):
                    workers.append(WorkerSamples(start_ns=starts, latency_ns=latencies, token_ns=tokens, **w))
            out.append(Measurement(
                status=repeat["status"],
                error=repeat["error"],
                window_start_ns=repeat["window_start_ns"],
                window_end_ns=repeat["window_end_ns"],
                workers=tuple(workers),
                copies=tuple(CopyStats(**c) for c in repeat["copies"]),
            ))
    except JournalError:
        raise
    except FileNotFoundError as e:
        raise JournalError(f"{path}: samples not found ({e.filename})") from None
    except (OSError, ValueError, KeyError, TypeError, ProtocolError) as e:
        raise JournalError(f"{path}: not a readable neuronperf samples folder: {e}") from None
    return tuple(out)


def load_samples(path: str) -> Measurement:
    """The first repeat of ``load_repeats(path)`` (an entry measured once has only that one)."""
    return load_repeats(path)[0]


def _load_samples_v1(path: str) -> Measurement:
    """A samples file of format 1 (neuronperf before method 2): one compressed ``.npz``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            version = header.get("format")
            if version != 1:
                raise ValueError(f"format {version!r} is not a single-file samples format")
            workers = tuple(
                WorkerSamples(
                    start_ns=np.asarray(data[f"start_ns_{i}"], dtype=np.int64),
                    latency_ns=np.asarray(data[f"latency_ns_{i}"], dtype=np.int64),
                    **w,
                )
                for i, w in enumerate(header["workers"])
            )
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise JournalError(f"{path}: not a readable neuronperf samples file: {e}") from None
    return Measurement(
        status=header["status"],
        error=header["error"],
        window_start_ns=header["window_start_ns"],
        window_end_ns=header["window_end_ns"],
        workers=workers,
        copies=tuple(CopyStats(**c) for c in header["copies"]),
    )
