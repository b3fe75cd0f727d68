"""Typed errors raised by library code.

Library code never prints or exits: it raises one of these, and ``neuronperf.cli`` turns each
into a one-line message and an exit code (``exit_code`` below). Errors about user input carry
where the problem is, so the message can point at it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Optional


class NeuronPerfError(Exception):
    """Base of every error neuronperf raises on purpose."""

    #: The process exit code the CLI uses for this error (see design.md, "Exit codes").
    exit_code = 1


class UsageError(NeuronPerfError):
    """The command line or an API argument is wrong."""

    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One located problem in a user's file: ``FILE:LINE:COL: key.path: message``."""

    file: str
    line: int
    col: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class SpecError(NeuronPerfError):
    """A sweep spec is invalid. Holds every problem found in one pass, in file order."""

    exit_code = 2

    def __init__(self, problems: Iterable[Problem]):
        self.problems = tuple(sorted(problems, key=lambda p: (p.file, p.line, p.col, p.path)))
        super().__init__("\n".join(str(p) for p in self.problems))


class ModelIndexError(NeuronPerfError):
    """A model index file is missing, unreadable or malformed; the message names the file."""

    exit_code = 2


class DeleteRefused(ModelIndexError):
    """``model_index.delete`` refused to remove a path that is not safe to remove."""


class BackendUnavailable(NeuronPerfError):
    """A backend's framework or SDK is not installed, or the device is not present."""

    exit_code = 2


class BackendLoadFailed(BackendUnavailable, ImportError):
    """A registered backend (usually a third-party plug-in) cannot be imported or instantiated.
    Also an ``ImportError``: code that skips unimportable plug-ins keeps doing so."""


class ModelLoadError(NeuronPerfError):
    """A model factory could not be resolved or called."""

    exit_code = 2


class CompileFailed(NeuronPerfError):
    """One compile entry failed. The compile stage records it and goes on with the rest."""

    def __init__(self, entry_id: str, message: str, log_file: Optional[str] = None):
        self.entry_id = entry_id
        self.log_file = log_file
        suffix = f" (log: {log_file})" if log_file else ""
        super().__init__(f"{entry_id}: {message}{suffix}")


class OutputDirLocked(NeuronPerfError):
    """Another neuronperf process is running a sweep in the same output_dir."""

    exit_code = 2


class EnvironmentMismatch(NeuronPerfError):
    """output_dir holds results from another machine or toolchain."""

    exit_code = 2


class JournalError(NeuronPerfError):
    """The results journal (or another file neuronperf wrote) cannot be read."""

    exit_code = 2


class OutputWriteFailed(NeuronPerfError, OSError):
    """A file in output_dir could not be written (disk full, quota, read-only or vanished
    folder). The message names the file. Also an ``OSError``, so code that handles failed
    writes in general still sees it; its own exit code keeps it apart from "some entries
    failed" (1) and "the input is wrong" (2)."""

    exit_code = 3

    def __init__(self, path: str, error: OSError):
        self.path = path
        self.reason = error.strerror or str(error)
        super().__init__(f"{path}: cannot be written: {self.reason}")
        self.errno, self.strerror, self.filename = error.errno, self.reason, path

    def __str__(self) -> str:
        return f"{self.path}: cannot be written: {self.reason}"

    @property
    def out_of_space(self) -> bool:
        """The disk or the user's quota is full (space may come back; the request was fine)."""
        import errno

        return self.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG)


class UnsafeOutputDir(NeuronPerfError):
    """neuronperf refused to open something inside an output_dir: a symbolic link (never
    followed there), something that is not a regular file or folder where it expects one, or a
    folder another user owns or may write to (see docs/security.md). Nothing was opened or
    written through it. Not an ``OSError``: no handler of failed writes may take it for a full
    disk and go on."""

    exit_code = 2


class ProtocolError(NeuronPerfError):
    """A worker message or a copy's samples file could not be read: malformed, of an unknown
    type, or written by another version of neuronperf."""
