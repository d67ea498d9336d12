"""The cluster key file: written by ``evs keygen``, read by the executive at start-up.

Theory of operation: the file holds nothing but the raw key, 32..4096 random bytes (no format
to get wrong, as corosync's authkey). Whoever can read it can join the ring and read every
message, so reading refuses a file that is not a regular file, that group or others have any
access to, or that belongs to neither this user nor root; each refusal names the file and the
fix. Error texts never contain key bytes.

Writing makes the key in a temporary file in the target's directory, created with mode 0400
from the start (never readable by others, not even briefly), fsyncs it, and then links it into
place: ``os.link`` fails when the target exists, so without ``force`` an existing key is never
replaced, even by a racing writer; with ``force`` ``os.replace`` swaps it atomically. The
directory is fsynced last, so after a crash the target holds the old key or the new one.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from evs.crypto import KEY_BYTES_DEFAULT, KEY_BYTES_MAX, KEY_BYTES_MIN

__all__ = [
    "KeyFileError",
    "KeyFileExists",
    "read_key_file",
    "write_key_file",
    "write_private_file",
]


class KeyFileError(Exception):
    """The key file cannot be used (or written); the message names the file and the reason."""


class KeyFileExists(KeyFileError):
    """Refused to replace an existing key file without ``force``."""


def read_key_file(path: str | Path) -> bytes:
    """The key in ``path``, after checking who may read it."""
    path = Path(path)
    try:
        # O_NONBLOCK: a FIFO planted there must not hang the start-up (no effect on a file)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        raise KeyFileError(f"key file {path}: cannot open: {_why(exc)}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"key file {path}: not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise KeyFileError(
                f"key file {path}: mode {mode:04o} lets group or others at the key; "
                f"make it private (chmod 0400 {path})"
            )
        if info.st_uid not in (os.geteuid(), 0):
            raise KeyFileError(
                f"key file {path}: owned by uid {info.st_uid}, neither this user "
                f"({os.geteuid()}) nor root"
            )
        if not KEY_BYTES_MIN <= info.st_size <= KEY_BYTES_MAX:
            raise KeyFileError(
                f"key file {path}: {info.st_size} bytes, a key must be "
                f"{KEY_BYTES_MIN}..{KEY_BYTES_MAX} (make one with evs keygen)"
            )
        key = os.read(fd, KEY_BYTES_MAX + 1)
    except OSError as exc:
        raise KeyFileError(f"key file {path}: cannot read: {_why(exc)}") from None
    finally:
        os.close(fd)
    if len(key) != info.st_size:
        raise KeyFileError(f"key file {path}: short read ({len(key)} of {info.st_size} bytes)")
    return key


def write_key_file(path: str | Path, size: int = KEY_BYTES_DEFAULT, *, force: bool = False) -> None:
    """Write ``size`` random bytes to ``path`` with mode 0400, atomically."""
    if not KEY_BYTES_MIN <= size <= KEY_BYTES_MAX:
        raise KeyFileError(f"key size must be {KEY_BYTES_MIN}..{KEY_BYTES_MAX} bytes, got {size}")
    write_private_file(path, os.urandom(size), force=force)


def write_private_file(
    path: str | Path, data: bytes, *, force: bool = False, what: str = "key file"
) -> None:
    """Write ``data`` to ``path`` with mode 0400, atomically (the key files of a rotation too)."""
    path = Path(path)
    if not force and os.path.lexists(path):
        raise KeyFileExists(f"{what} {path} exists; use --force to replace it")
    parent = path.parent
    temp = parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        fd = os.open(
            temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o400
        )
    except OSError as exc:
        raise KeyFileError(f"{what} {path}: cannot create in {parent}: {_why(exc)}") from None
    try:
        try:
            os.fchmod(fd, 0o400)  # the umask may have taken bits away, never added: be exact
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if force:
            os.replace(temp, path)
        else:
            try:
                os.link(temp, path)
            except FileExistsError:
                raise KeyFileExists(f"{what} {path} exists; use --force to replace it") from None
        _fsync_dir(parent)
    except OSError as exc:
        raise KeyFileError(f"{what} {path}: cannot write: {_why(exc)}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)
