"""Process-tree termination and exit-status wording for worker processes.

A worker may start processes of its own (a runtime daemon, a data loader, a model that shells
out). When a worker is stopped, all of them must go: ``kill_tree`` finds the worker's
descendants *before* killing anything (once a parent dies its children are re-parented and can no
longer be found through it), and also every process left in the worker's own process group
(workers make themselves group leaders, so orphans that stayed in the group are found too).
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Optional

import psutil

#: How long a process gets to exit after SIGTERM before it is sent SIGKILL.
DEFAULT_GRACE_S = 1.0


def descendants(pid: int) -> list[psutil.Process]:
    """The process ``pid`` and every process below it, plus the members of its process group."""
    found: dict[int, psutil.Process] = {}
    try:
        root = psutil.Process(pid)
        found[pid] = root
        for child in root.children(recursive=True):
            found[child.pid] = child
    except psutil.Error:
        pass
    for proc in _process_group(pid):
        found.setdefault(proc.pid, proc)
    found.pop(os.getpid(), None)  # never ourselves, whatever the group says
    return list(found.values())


def kill_tree(pid: int, grace_s: float = DEFAULT_GRACE_S) -> list[int]:
    """Stop ``pid`` and all its descendants: SIGTERM, then SIGKILL after ``grace_s`` seconds.

    Returns the pids that were alive when it started; all of them are gone when it returns
    (unless the kernel refused, e.g. a process stuck in uninterruptible I/O)."""
    procs = descendants(pid)
    if not procs:
        return []
    for proc in procs:
        _signal(proc, signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for proc in alive:
        _signal(proc, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=5.0)
    return [p.pid for p in procs]


def describe_exit(exitcode: Optional[int]) -> str:
    """Words for a ``multiprocessing`` exit code: ``SIGABRT (signal 6)`` or ``exit code 3``.

    A SIGKILL nobody in neuronperf sent usually comes from the kernel's out-of-memory killer,
    so that case says so."""
    if exitcode is None:
        return "an unknown exit status"
    if exitcode < 0:
        number = -exitcode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "signal"
        text = f"{name} (signal {number})"
        if number == signal.SIGKILL:
            text += ", killed from outside the worker; possibly by the out-of-memory killer"
        return text
    return f"exit code {exitcode}"


def _process_group(pgid: int) -> list[psutil.Process]:
    if not hasattr(os, "getpgid"):  # Windows has no process groups
        return []
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid:
                members.append(proc)
        except (OSError, psutil.Error):
            continue
    return members


def _signal(proc: psutil.Process, sig: int) -> None:
    with contextlib.suppress(psutil.Error):  # already gone, or not ours to signal
        proc.send_signal(sig)
