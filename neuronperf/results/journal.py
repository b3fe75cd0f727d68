"""The results journal: what finished, durably, for resume.

``journal.jsonl`` in an output_dir is the truth of a sweep: one JSON object per line, appended
(flushed and fsync'd) as each compile or run entry finishes, ok or not. A crash can tear only the
last line; ``load`` ignores such a line and the next append cuts it off first, so the file never
holds a broken line in the middle. An append the disk refuses half way (short write, disk full)
is cut off again and raised as ``OutputWriteFailed``. For each key the last record wins.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
from collections.abc import Mapping
from typing import Any, Optional

from neuronperf.errors import JournalError, OutputWriteFailed, UsageError
from neuronperf.util.atomic import fsync_dir, json_ready

#: Version of each journal line. Readers accept this and older versions.
JOURNAL_FORMAT = 1
JOURNAL_FILE = "journal.jsonl"


KINDS = ("compile", "run")


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def newer_format_error(where: str, what: str, version: int, supported: int) -> JournalError:
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
        self, key: str, entry_id: str, row: Mapping[str, Any], *, samples_file: Optional[str] = None,
        elapsed_s: Optional[float] = None,
    ) -> dict[str, Any]:
        """Durably record one finished run entry with its report row; return the record written.
        ``elapsed_s`` is how long the entry took, start-up to row (what a search's savings are
        estimated from); records written before it existed have none."""
        status = row.get("status")
        if not isinstance(status, str):
            raise UsageError(f"{entry_id}: a run record needs a row with a 'status'")
        fields: dict[str, Any] = {"row": dict(row), "samples_file": samples_file}
        if elapsed_s is not None:
            fields["elapsed_s"] = round(elapsed_s, 3)
        return self._append("run", key, entry_id, status, fields)

    def _append(self, kind: str, key: str, entry_id: str, status: str, fields: dict) -> dict[str, Any]:
        record = {"format": JOURNAL_FORMAT, "kind": kind, "key": key, "id": entry_id, "status": status}
        record.update(fields)
        record["time"] = utc_now()
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
                raise newer_format_error(f"{self.path}:{number}", "journal", version, JOURNAL_FORMAT)
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
