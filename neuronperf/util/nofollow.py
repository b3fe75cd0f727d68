"""Files and folders inside an output_dir, opened without following symbolic links.

Whoever can put a symbolic link into a folder that neuronperf writes to could make it truncate
or overwrite any file its user can write (a ``.lock`` that points at ``~/.bashrc``). So below a
*root* (the output_dir as the user named it, or a folder inside it that a parent process opened
this way and handed down), every folder is opened relative to a descriptor of the folder above
it, and every file relative to a descriptor of its folder, with ``O_NOFOLLOW``. A symbolic link
is refused (``UnsafeOutputDir``), never followed, and so is anything that is not a regular file
or a folder where one is expected (a FIFO would block a write, a device would take it).

To be written to, a folder must be the user's own: owned by the effective user, and not writable
by other users unless it has the sticky bit (then they may add names, but not rename or remove
the user's; what they add is refused here because of its owner). A group-writable folder whose
group holds nobody but its owner (a user-private group, as ``umask 002`` makes) counts as the
user's own. A file opened to be written in place (the lock, the journal, a log) must be owned by
the user too. Reading refuses links and odd file types but checks no owner: reading someone
else's results is fine.

The root itself is reached the ordinary way, links included: the user chose that path.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from typing import Any, BinaryIO, Optional

from neuronperf.errors import UnsafeOutputDir

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # opening a planted FIFO must fail, not wait for a reader
_FOLDER_FLAGS = os.O_RDONLY | _DIRECTORY | _CLOEXEC

#: The mode of the folders neuronperf makes (less the umask): never writable by others, so that a
#: permissive umask (002 on Debian and Ubuntu, 000 in some containers) does not make a folder
#: that the next open refuses.
FOLDER_MODE = 0o755

_REMEDY = "remove it, or use another output_dir"
_OWN_FOLDER = "use an output_dir of your own"


def parts(rel: str) -> list[str]:
    """The names of a relative path, without empty and ``.`` parts; ``..`` is refused (a path
    below a root never leaves it)."""
    names = []
    for part in rel.replace(os.sep, "/").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise ValueError(f"{rel!r} leaves the folder it is relative to")
        names.append(part)
    return names


def open_folder(root: str, rel: str = "", *, create: bool = False, writing: bool = True) -> int:
    """A descriptor of the folder ``root/rel`` (close it), every folder below ``root`` opened
    without following links and, when ``writing``, checked to be the user's own (``root``
    too). ``create`` makes missing folders. Raises ``UnsafeOutputDir``, or ``OSError``
    (``FileNotFoundError`` when a folder is missing)."""
    try:
        fd = os.open(root, _FOLDER_FLAGS)
    except FileNotFoundError:
        if not create:
            raise
        os.makedirs(root, mode=FOLDER_MODE, exist_ok=True)
        fd = os.open(root, _FOLDER_FLAGS)
    path = root
    try:
        if writing:
            check_folder(os.fstat(fd), path)
        for name in parts(rel):
            path = os.path.join(path, name)
            below = _open_child_folder(fd, name, path, create)
            os.close(fd)
            fd = below
            if writing:
                check_folder(os.fstat(fd), path)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def folder(root: str, rel: str = "", *, create: bool = False, writing: bool = True) -> Iterator[int]:
    """``open_folder`` as a context manager that closes the descriptor."""
    fd = open_folder(root, rel, create=create, writing=writing)
    try:
        yield fd
    finally:
        os.close(fd)


def make_folders(root: str, rel: str) -> None:
    """Create the folders of ``rel`` below ``root`` (and ``root``), refusing links on the way."""
    os.close(open_folder(root, rel, create=True))


def open_file(root: str, rel: str, flags: int, mode: int = 0o644, *, create_folders: bool = False) -> int:
    """A descriptor of the regular file ``root/rel`` opened with ``flags`` (close it); its folders
    as ``open_folder`` opens them, made when ``create_folders``. A link, a FIFO, a device or a
    folder there is refused, and so is a file of another user when ``flags`` write."""
    names = parts(rel)
    if not names:
        raise ValueError("open_file needs the name of a file below its root")
    writing = bool(flags & (os.O_WRONLY | os.O_RDWR))
    path = os.path.join(root, *names)
    with folder(root, "/".join(names[:-1]), create=create_folders, writing=writing) as parent:
        try:
            fd = os.open(names[-1], flags | _NOFOLLOW | _CLOEXEC | _NONBLOCK, mode, dir_fd=parent)
        except FileNotFoundError:
            raise
        except OSError:
            refusal = _refusal(parent, names[-1], path, "a regular file")
            if refusal is not None:
                raise refusal from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise _not_expected(path, st, "a regular file")
            if writing:
                _check_owner(st, path, "a file")
        except BaseException:
            os.close(fd)
            raise
        return fd


def read_bytes(root: str, rel: str) -> bytes:
    """The bytes of the regular file ``root/rel`` (``FileNotFoundError`` when it is missing)."""
    fd = open_file(root, rel, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def write_atomic(root: str, rel: str, data: bytes) -> None:
    """Replace the file ``root/rel`` with ``data``, atomically and durably (``atomic_file``)."""
    with atomic_file(root, rel) as f:
        f.write(data)


@contextlib.contextmanager
def atomic_file(root: str, rel: str) -> Iterator[BinaryIO]:
    """A binary file to write that replaces ``root/rel`` when the block ends without an error:
    a temporary file is created beside the target (``O_EXCL``, never through a link), written,
    fsync'd and renamed over it, all relative to the folder's descriptor, which is fsync'd
    last; on an error the temporary is removed and the target left as it was. A link or a
    non-regular file at the target is refused rather than replaced. The folders are made.
    Writes go through ``os.write`` in a loop: one the disk takes only part of is continued, and
    one it refuses raises ``OSError`` (``ENOSPC``)."""
    names = parts(rel)
    if not names:
        raise ValueError("atomic_file needs the name of a file below its root")
    name, path = names[-1], os.path.join(root, *names)
    with folder(root, "/".join(names[:-1]), create=True) as parent:
        try:
            existing: Optional[os.stat_result] = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if existing is not None and not stat.S_ISREG(existing.st_mode):
            raise _not_expected(path, existing, "a regular file")
        # Keep the mode of the file being replaced (results are shared files), else the usual one.
        mode = stat.S_IMODE(existing.st_mode) if existing is not None else default_file_mode()
        fd, tmp = _create_temporary(parent, name)
        try:
            with io.BufferedWriter(_FdWriter(fd), buffer_size=1 << 20) as f:
                os.fchmod(fd, mode)
                yield f
                f.flush()
                os.fsync(fd)
            os.replace(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=parent)
            raise
        with contextlib.suppress(OSError):  # some file systems refuse fsync on a folder
            os.fsync(parent)


def check_not_link(path: str) -> None:
    """Raise ``UnsafeOutputDir`` if ``path`` is a symbolic link (for a name that code outside
    neuronperf, a framework's save function, is about to write through)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise _not_expected(path, st, "a file or a folder")


def remove(root: str, rel: str) -> None:
    """Remove the file or folder tree ``root/rel`` if it is there; a link there is refused."""
    names = parts(rel)
    path = os.path.join(root, *names)
    try:
        parent = open_folder(root, "/".join(names[:-1]))
    except FileNotFoundError:
        return  # nor is the folder it would be in
    with contextlib.closing(_Descriptor(parent)):
        try:
            st = os.stat(names[-1], dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            raise _not_expected(path, st, "a folder")
        if stat.S_ISDIR(st.st_mode):
            # rmtree itself never follows a link below the folder it removes.
            shutil.rmtree(path)
        else:
            os.unlink(names[-1], dir_fd=parent)


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data``: a write the disk takes only part of (network file systems, a
    filling disk) is continued; one that takes nothing is ``ENOSPC``."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[n:]


def default_file_mode() -> int:
    """The mode a new file gets: 0666 less the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def check_links_to(path: str) -> None:
    """Refuse a path to a root that goes through a symbolic link of another user (root's are
    trusted): whoever owns a link chooses where it leads, so a link pre-created in ``/tmp`` under
    the name of your output_dir could send a run's files into any folder of yours. Links of your
    own on the way (``runs -> /data/runs``) are followed, and so are their targets' links, each
    checked the same way. Stops quietly at the first missing name (what is made later is yours)."""
    geteuid = getattr(os, "geteuid", None)
    if geteuid is None:
        return
    trusted = {geteuid(), 0}
    pending = parts(os.path.abspath(path).lstrip(os.sep))
    current, hops = os.sep, 0
    while pending:
        name = pending.pop(0)
        if name == os.pardir:
            current = os.path.dirname(current)
            continue
        candidate = os.path.join(current, name)
        try:
            st = os.lstat(candidate)
        except OSError:
            return
        if not stat.S_ISLNK(st.st_mode):
            current = candidate
            continue
        if st.st_uid not in trusted:
            raise UnsafeOutputDir(
                f"{candidate} is a symbolic link of another user ({_user_name(st.st_uid)}), who chooses where "
                f"it leads: {_OWN_FOLDER}")
        hops += 1
        if hops > 40:
            return  # a loop: opening the folder says so
        target = os.readlink(candidate)
        if os.path.isabs(target):
            current = os.sep
        pending = [p for p in target.replace(os.sep, "/").split("/") if p not in ("", os.curdir)] + pending


def check_folder(st: os.stat_result, path: str) -> None:
    """Raise ``UnsafeOutputDir`` unless the folder ``st`` describes is the user's own (see the
    module docstring)."""
    _check_owner(st, path, "a folder")
    mode = st.st_mode
    if mode & stat.S_ISVTX:
        return  # others may add names, but not rename or remove ours
    writable_by = None
    if mode & stat.S_IWOTH:
        writable_by = "every user"
    elif mode & stat.S_IWGRP and not _private_group(st.st_gid, st.st_uid):
        writable_by = f"the members of group {_group_name(st.st_gid)}"
    if writable_by is not None:
        raise UnsafeOutputDir(
            f"{path}: writable by {writable_by} (mode {stat.S_IMODE(mode):04o}), who could plant links "
            f"in it that redirect neuronperf's writes: `chmod go-w` it, or {_OWN_FOLDER}"
        )


# ---- helpers ---------------------------------------------------------------------------------


def _open_child_folder(parent: int, name: str, path: str, create: bool) -> int:
    try:
        return os.open(name, _FOLDER_FLAGS | _NOFOLLOW, dir_fd=parent)
    except FileNotFoundError:
        if not create:
            raise
    except OSError:
        refusal = _refusal(parent, name, path, "a folder")
        if refusal is not None:
            raise refusal from None
        raise
    with contextlib.suppress(FileExistsError):  # made meanwhile: opened and checked below
        os.mkdir(name, FOLDER_MODE, dir_fd=parent)
    try:
        return os.open(name, _FOLDER_FLAGS | _NOFOLLOW, dir_fd=parent)
    except OSError:
        refusal = _refusal(parent, name, path, "a folder")
        if refusal is not None:
            raise refusal from None
        raise


def _refusal(parent: int, name: str, path: str, expected: str) -> Optional[UnsafeOutputDir]:
    """Why ``name`` could not be opened as ``expected``, if what is there is the reason."""
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except OSError:
        return None
    wanted_dir = expected == "a folder"
    if stat.S_ISLNK(st.st_mode) or stat.S_ISDIR(st.st_mode) != wanted_dir or not (
            stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        return _not_expected(path, st, expected)
    return None


def _not_expected(path: str, st: os.stat_result, expected: str) -> UnsafeOutputDir:
    if stat.S_ISLNK(st.st_mode):
        return UnsafeOutputDir(
            f"{path} is a symbolic link; neuronperf follows none inside an output_dir (one could make "
            f"it overwrite the file it points to): {_REMEDY}"
        )
    return UnsafeOutputDir(f"{path} is {_kind(st.st_mode)}, where neuronperf expects {expected}: {_REMEDY}")


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISREG, "a regular file"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")):
        if test(mode):
            return name
    return "not a regular file"


def _check_owner(st: os.stat_result, path: str, what: str) -> None:
    geteuid = getattr(os, "geteuid", None)
    if geteuid is None or st.st_uid == geteuid():
        return
    raise UnsafeOutputDir(
        f"{path}: owned by another user ({_user_name(st.st_uid)}); {what} that someone else controls "
        f"could redirect neuronperf's writes: {_OWN_FOLDER}"
    )


class _Descriptor:
    """Closes a descriptor (for ``contextlib.closing``)."""

    def __init__(self, fd: int):
        self.fd = fd

    def close(self) -> None:
        os.close(self.fd)


class _FdWriter(io.RawIOBase):
    """A raw binary stream over a descriptor that writes with ``os.write``; the buffered writer
    around it writes what a short write left over, and a write of nothing is ``ENOSPC``. It
    closes the descriptor when closed."""

    def __init__(self, fd: int):
        super().__init__()
        self.fd = fd

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return os.lseek(self.fd, offset, whence)

    def write(self, data: Any) -> int:
        n = os.write(self.fd, data)
        if n <= 0 and len(memoryview(data)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return n

    def close(self) -> None:
        if not self.closed:
            os.close(self.fd)
        super().close()


def _create_temporary(parent: int, name: str) -> tuple[int, str]:
    """A new file ``.<name>.<random>.tmp`` in ``parent``; its dot hides a crash leftover."""
    for _ in range(100):
        tmp = f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600, dir_fd=parent), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no unused temporary name beside {name}")


_PRIVATE_GROUPS: dict[tuple[int, int], bool] = {}


def _private_group(gid: int, uid: int) -> bool:
    """Whether group ``gid`` holds nobody but user ``uid``: no other listed member, and no other
    user whose primary group it is (a user-private group)."""
    if (gid, uid) not in _PRIVATE_GROUPS:
        try:
            import grp
            import pwd

            owner = pwd.getpwuid(uid).pw_name
            members = grp.getgrgid(gid).gr_mem
            private = all(m == owner for m in members) and all(
                p.pw_uid == uid for p in pwd.getpwall() if p.pw_gid == gid)
        except (ImportError, KeyError):
            private = False
        _PRIVATE_GROUPS[(gid, uid)] = private
    return _PRIVATE_GROUPS[(gid, uid)]


def _user_name(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name}, uid {uid}"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _group_name(gid: int) -> str:
    try:
        import grp

        return grp.getgrgid(gid).gr_name
    except (ImportError, KeyError):
        return str(gid)
