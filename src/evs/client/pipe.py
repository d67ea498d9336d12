"""The request pipe's pieces that both clients use, and the executive too (``UsePipe``).

Theory of operation: a client makes an anonymous pipe (``new_request_pipe``), passes its read
end to the executive over the socket and writes its requests to the write end. Both sides ask
the kernel how much the pipe holds (``pipe_unread``): the executive to bound what it reads at
the end of a connection, a client to tell, once the connection ended, what the executive never
read (``pipe_lost_now``). Nothing here blocks. (I/O, so not in the sans-I/O ``evs.ipc``; the
executive may import the client layer.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import sys
import termios
from typing import Final

__all__ = [
    "ENV_PIPE",
    "LOST_WAIT_S",
    "PIPE_BYTES",
    "new_request_pipe",
    "pipe_lost_now",
    "pipe_unread",
]

#: Environment variable: "0" keeps a client's requests on the socket (no request pipe).
ENV_PIPE: Final = "EVS_IPC_PIPE"
#: Most seconds the end of a connection waits for the executive to read or let go of the
#: request pipe (it reads it to the end at most 2 s after its Goodbye).
LOST_WAIT_S: Final = 2.5
#: Capacity asked for the request pipe, bytes. Linux caps it at fs.pipe-max-size, and counts
#: it against the user's fs.pipe-user-pages-soft (64 MiB): 256 clients of one user before its
#: new pipes, in any program, get the smallest size.
PIPE_BYTES: Final = 256 << 10


def new_request_pipe() -> tuple[int, int]:
    """A client's request pipe, (read end, write end): the write end non-blocking (a client
    waits for room itself), both closed on exec, ``PIPE_BYTES`` asked for."""
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        os.set_blocking(w, False)
        with contextlib.suppress(OSError):  # the user's pipe pages ran out: the default size
            fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except BaseException:
        os.close(r)
        os.close(w)
        raise
    return r, w


def pipe_unread(fd: int) -> int:
    """Bytes in the pipe ``fd`` belongs to that no reader took (0 if that cannot be told)."""
    try:
        return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, bytes(4)), sys.byteorder)
    except OSError:
        return 0


def pipe_lost_now(fd: int) -> int | None:
    """Bytes of the request pipe ``fd`` that the executive will never read, at the end of
    the connection: 0 once the pipe is empty, what it holds once the executive let go of it
    (no reader left), None while it may still read (it reads the pipe to its end first)."""
    unread = pipe_unread(fd)
    if not unread:
        return 0
    p = select.poll()
    p.register(fd, 0)  # no events asked: only POLLERR, no reader left
    if not p.poll(0):
        return None
    return pipe_unread(fd)
