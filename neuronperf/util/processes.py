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
import threading
from collections.abc import Mapping
from typing import Callable, Optional, Union

import psutil

#: How long a process gets to exit after SIGTERM before it is sent SIGKILL.
DEFAULT_GRACE_S = 1.0


def adopt_environment(driver_env: Mapping[str, str], *overrides: Mapping[str, str]) -> None:
    """Make this worker's environment exactly the driver's as it was when the worker was asked
    for, then apply ``overrides`` (a copy's devices). A forkserver child inherits the server's
    environment as it was when the server started: a variable the driver set since would be
    missing, and one it removed since (``TORCH_DEVICE_BACKEND_AUTOLOAD``, a test's) still there.
    Every kind of worker (measuring, evaluating, a call of the driver's) starts with this."""
    os.environ.clear()
    os.environ.update(driver_env)
    for extra in overrides:
        os.environ.update(extra)


def handle(pid: int) -> Optional[psutil.Process]:
    """A handle on the process ``pid`` that remembers its identity (its create time), taken
    right after starting it: ``kill_tree(handle)`` then never signals a later process that the
    kernel gave the same pid once this one was reaped. None if it is already gone."""
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def descendants(target: Union[int, psutil.Process]) -> list[psutil.Process]:
    """The process and every process below it, plus the members of its process group.

    ``target`` is a pid, or better a ``handle``: where the process it names has exited and its
    pid went to another process, that other process and its group are left alone."""
    found: dict[int, psutil.Process] = {}
    root: Optional[psutil.Process]
    if isinstance(target, psutil.Process):
        pid = target.pid
        root = target if target.is_running() else None  # is_running() compares create times
    else:
        pid, root = target, handle(target)
    if root is not None:
        found[pid] = root
        try:
            for child in root.children(recursive=True):
                found[child.pid] = child
        except psutil.Error:
            pass
    # The group's members outlive its leader (orphans). While any member lives, the kernel
    # gives nobody the group's number as a pid; so a live process with that pid that is not
    # the root means the group is gone and the number belongs to a stranger.
    if root is not None or not psutil.pid_exists(pid):
        for proc in _process_group(pid):
            found.setdefault(proc.pid, proc)
    found.pop(os.getpid(), None)  # never ourselves, whatever the group says
    return list(found.values())


def kill_tree(target: Union[int, psutil.Process], grace_s: float = DEFAULT_GRACE_S) -> list[int]:
    """Stop a process and all its descendants: SIGTERM, then SIGKILL after ``grace_s`` seconds.
    ``target`` is a pid or, safe against pid reuse, a ``handle`` (see ``descendants``).

    Returns the pids that were alive when it started; all of them are gone when it returns
    (unless the kernel refused, e.g. a process stuck in uninterruptible I/O)."""
    procs = descendants(target)
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


#: How often a child checks that its parent is still alive.
PARENT_CHECK_INTERVAL_S = 0.5


def become_group_leader() -> None:
    """Put this process in a process group of its own: a terminal's Ctrl-C then reaches only
    the parent (which stops its children itself), and the parent can still find what this
    process started after it was orphaned."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpgid(0, 0)


def exit_with_parent(parent_pid: int, exit_code: int) -> Callable[[], None]:
    """Exit, with every process this one started, as soon as the parent dies without stopping
    us (SIGKILL, power loss of a container...): nothing keeps running unattended.

    A thread polls the parent; the function returned stops it (a worker stops it before its
    measured window, where nothing but the measured calls may run, and watches its pipe to the
    parent instead)."""
    try:
        parent_created = psutil.Process(parent_pid).create_time()
    except psutil.Error:
        os._exit(exit_code)
    stopped = threading.Event()

    def watch() -> None:
        while not stopped.wait(PARENT_CHECK_INTERVAL_S):
            try:
                alive = psutil.Process(parent_pid).create_time() == parent_created
            except psutil.Error:
                alive = False
            if not alive:
                kill_children()
                os._exit(exit_code)

    threading.Thread(target=watch, name="neuronperf-parent-watch", daemon=True).start()
    return stopped.set


def kill_children() -> None:
    """SIGKILL every process this one started (and theirs)."""
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            child.kill()
