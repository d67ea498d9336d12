"""The executive's state directory: the numbers that must survive a restart.

Theory of operation: the core must never form a ring whose sequence number it used before
(corosync's ``ring_id_create_or_load``/``store``), so before a commit token leaves, the driver
calls ``store_ring_seq`` and waits for it. A message id names the sender's incarnation, so a
restarted executive takes a new one with ``next_incarnation`` and never repeats an id. With
wire security on, every start takes a boot id with ``next_boot_id``: it is half of each sealed
datagram's nonce, so it must grow on every start, even after 2**32 restarts would wrap the
incarnation; a wall-clock floor keeps it growing when the directory was lost.

Each number lives in its own small text file (decimal digits and a newline). A write goes to a
temporary file in the same directory, which is written, fsynced, renamed over the old file, and
then the directory itself is fsynced so the rename is on disk too. rename() is atomic on POSIX
file systems, so after a crash at any point the file holds either the old number or the new
one, never a mixture or a prefix; a stale temporary file left by a crash is simply overwritten
by the next write and never read. A file that does not parse is therefore not a torn write but
damage from outside, and loading refuses it rather than guessing (a guessed 0 could repeat a
ring sequence the cluster has seen).

The directory is created with mode 0700 (it is nobody else's business) and held with an
exclusive ``flock`` on its ``lock`` file for the object's life, so two executives configured with
the same directory cannot both run: the second is refused with the holder's pid, which the
holder writes into the lock file. The kernel drops the lock when the process dies, so a crash
leaves no stale lock behind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from types import TracebackType

__all__ = ["StateDir", "StateDirError"]

RING_SEQ_FILE = "ring_seq"
INCARNATION_FILE = "incarnation"
BOOT_ID_FILE = "boot_id"
LOCK_FILE = "lock"
_RING_SEQ_MAX = (1 << 64) - 1  # u64 on the wire
_INCARNATION_MAX = (1 << 32) - 1  # u32 in the service header
_BOOT_ID_MAX = (1 << 32) - 1  # u32 in the sealed datagram's header


class StateDirError(Exception):
    """The state directory is unusable: held by another daemon, corrupt, or not writable."""


class StateDir:
    """The persisted numbers of one executive; holds the directory's lock until ``close``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StateDirError(
                f"state directory {self.path}: cannot create: {_why(exc)}"
            ) from None
        if not self.path.is_dir():
            raise StateDirError(f"state directory {self.path}: exists and is not a directory")
        self._lock_fd: int | None = self._lock()

    # ------------------------------------------------------------------------- locking

    def _lock(self) -> int:
        lock_path = self.path / LOCK_FILE
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateDirError(
                f"state directory {self.path}: cannot open lock: {_why(exc)}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                who = f"pid {holder}" if holder else "another process"
                raise StateDirError(
                    f"state directory {self.path} is in use by {who}: "
                    "two executives cannot share one state directory"
                ) from None
            raise StateDirError(f"state directory {self.path}: cannot lock: {_why(exc)}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def close(self) -> None:
        """Release the lock (idempotent); the numbers stay on disk."""
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # no pid left behind to mislead a reader
            os.close(fd)  # closing the last descriptor drops the flock

    def __enter__(self) -> StateDir:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------------- numbers

    def load_ring_seq(self) -> int:
        """The last stored ring sequence number, 0 if none was ever stored."""
        return self._load(RING_SEQ_FILE, _RING_SEQ_MAX)

    def store_ring_seq(self, seq: int) -> None:
        """Store ``seq`` durably: when this returns, it survives a crash or power loss."""
        if not 0 <= seq <= _RING_SEQ_MAX:
            raise ValueError(f"ring sequence must be 0..{_RING_SEQ_MAX}, got {seq}")
        self._store(RING_SEQ_FILE, seq)

    def next_incarnation(self) -> int:
        """Take a new incarnation number (1, 2, ...), stored durably before it is returned.

        After 2**32 - 1 restarts it wraps to 1: ids only need to differ from recent ones.
        """
        current = self._load(INCARNATION_FILE, _INCARNATION_MAX)
        number = current % _INCARNATION_MAX + 1
        self._store(INCARNATION_FILE, number)
        return number

    def next_boot_id(self, floor: int = 0) -> int:
        """Take a boot id larger than any taken before and at least ``floor``, stored durably
        before it is returned.

        The executive passes the wall clock in seconds as ``floor``: if the file is lost, the
        next id is still larger than the ones peers saw (unless the clock went back), so they
        neither refuse the node as a stale boot nor see a nonce again. Never wraps: raises
        StateDirError when the u32 space is used up (in the year 2106 at one start a second).
        """
        previous = self._load(BOOT_ID_FILE, _BOOT_ID_MAX)
        number = max(previous + 1, floor)
        if number > _BOOT_ID_MAX:
            raise StateDirError(
                f"state file {self.path / BOOT_ID_FILE}: boot ids used up ({previous}); "
                "make a new cluster key (evs keygen) and remove the file"
            )
        self._store(BOOT_ID_FILE, number)
        return number

    def _load(self, name: str, limit: int) -> int:
        self._check_open()
        path = self.path / name
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise StateDirError(f"state file {path}: cannot read: {_why(exc)}") from None
        digits = raw[:-1]
        if not (
            raw.endswith(b"\n") and digits.isdigit() and digits.isascii() and len(digits) <= 20
        ):
            raise StateDirError(
                f"state file {path} is corrupt ({raw[:40]!r}, expected a number and a newline); "
                "refusing to guess: repair it, or remove it to restart the count from 0"
            )
        value = int(digits)
        if value > limit:
            raise StateDirError(f"state file {path} is corrupt: {value} is above {limit}")
        return value

    def _store(self, name: str, value: int) -> None:
        self._check_open()
        final = self.path / name
        temp = self.path / f".{name}.tmp"  # one writer (we hold the lock): a fixed name is safe
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                _write_all(fd, f"{value}\n".encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, final)
            _fsync_dir(self.path)
        except OSError as exc:
            raise StateDirError(f"state file {final}: cannot store {value}: {_why(exc)}") from None

    def _check_open(self) -> None:
        if self._lock_fd is None:
            raise StateDirError(f"state directory {self.path} was closed")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (the directory entry is the directory's data)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)
