"""Files beside the store, written safely: never through a planted symbolic link, never left half
written, and with a clear word when the disk is full."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path
from typing import BinaryIO

EXIT_DISK_FULL = 75  # EX_TEMPFAIL: a runner's exit code when a full disk sent its run back to the queue

# ENOSPC: no space left; EDQUOT: over quota; EFBIG: over the file-size limit (RLIMIT_FSIZE).
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class LinkRefused(OSError):
    """A path beside the store is a symbolic link: writing through it would overwrite its target."""

    def __init__(self, path: str | Path):
        super().__init__(errno.ELOOP, f"{path} is a symbolic link; altui writes no file or folder beside its "
                                      "store through a link (remove the link)")

    def __str__(self) -> str:
        return str(self.strerror)


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether an error, or one it was raised from, says that the disk (or quota) is full."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
            return True
        if isinstance(exc, sqlite3.Error) and (getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
                                               or "database or disk is full" in str(exc)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def free_bytes(folder: str | Path) -> int:
    """Bytes an unprivileged process may still write on the file system of `folder`."""
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def can_allocate(folder: str | Path, size: int) -> bool:
    """Whether a file of `size` bytes fits in `folder` now: free space, but also a quota or a file-size
    limit, which statvfs does not show. The file is allocated (not written), then removed."""
    path = Path(folder) / f".altui-space-probe-{os.getpid()}"
    try:
        fd = open_fd(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except OSError as e:
        if is_disk_full(e):
            return False
        raise
    try:
        os.posix_fallocate(fd, 0, size)
        return True
    except OSError as e:
        if is_disk_full(e):
            return False
        if e.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # not supported here: free space has to do
            return True
        raise
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)


def open_fd(path: str | Path, flags: int, mode: int = 0o644) -> int:
    """os.open that refuses a symbolic link as the last component of `path`."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise LinkRefused(path) from None
        raise


def open_append(path: str | Path) -> BinaryIO:
    """A log file opened for appending (created if missing), never through a link."""
    return os.fdopen(open_fd(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "ab")


def make_dir(path: str | Path) -> Path:
    """Create a folder (and its parents) unless it is there; refuse one that is a symbolic link.
    Checked again after creating: a link planted in between is refused too."""
    path = Path(path)
    if path.is_symlink():
        raise LinkRefused(path)
    path.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        raise LinkRefused(path)
    return path


def fsync_dir(folder: str | Path) -> None:
    """Make the names in `folder` durable (a rename, a new or removed file): a file's own fsync does
    not; after a power loss the folder could show the old name."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except PermissionError:  # a folder we may write but not list: nothing to sync through
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF):  # a file system without it
            raise
    finally:
        os.close(fd)


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write `data` to `path.tmp`, fsync, rename over `path`, fsync the folder. On any error (a full
    disk) the partial temporary file is removed and the error raised: `path` is either the old file
    or the new one, and once this returns the new one survives a power loss (the caller may then
    delete what the new file replaces, e.g. the previous checkpoint)."""
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    fd = open_fd(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)
