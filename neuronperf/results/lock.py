"""One run per output_dir at a time: an advisory lock on ``output_dir/.lock`` that names its holder,
and a clear error for a second run. The lock file is opened without following links, in a
folder that must be the user's own (``util.nofollow``): taking the lock is where a run first
refuses an output_dir that others could turn against it.
"""

from __future__ import annotations

import fcntl
import json
import os
from typing import Optional

from neuronperf.errors import JournalError, OutputDirLocked
from neuronperf.results.journal import utc_now
from neuronperf.util import nofollow

LOCK_FORMAT = 1
LOCK_FILE = ".lock"


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
            fd = nofollow.open_file(self.output_dir, LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644, create_folders=True)
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
        info = {"format": LOCK_FORMAT, "pid": os.getpid(), "since": utc_now()}
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
        fd = nofollow.open_file(output_dir, LOCK_FILE, os.O_RDONLY)
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
