"""The blocking client: ``evs.Client`` (corosync's libevs calls, pythonic names).

Theory of operation: a ``ClientSession`` holds the protocol state; this class only moves bytes
between it and a non-blocking Unix socket, and waits. A request is encoded, sent, and the
caller reads the socket until the session has its reply; events that arrive meanwhile are
buffered in the session, not lost. ``dispatch`` and ``events`` pop the buffer (reading more
when they may block).

``fileno()`` is an epoll descriptor watching two things: the socket, and an eventfd that this
client sets exactly while the session holds buffered events (it was read already, so the socket
alone would not show it). The descriptor is therefore readable whenever ``dispatch`` has work:
events in the buffer, bytes on the socket, or the end of the connection. (Bytes on the socket
may turn out to be no event, e.g. a RoomAgain; ``dispatch`` then returns 0.) Linux only, like
the daemon's peer credentials. Both are made at the first ``fileno()`` call, set to match the
buffer then: an application that only calls ``events``/``dispatch`` never pays the two
eventfd system calls per batch of events that keeping the flag costs.

Reading: every read lands in one buffer kept for the client's life and is copied out at its
length. (``recv(n)`` allocates ``n`` bytes per call; at 256 KiB that is a fresh ``mmap``, a
page fault per page written and an ``mremap`` and ``munmap`` after, three system calls more
than the read for every batch of events.)

Writing: once connected, the client asks the executive to take its requests from a pipe
(``UsePipe``, ``evs.client.pipe``): a small write to a pipe costs about half of one to a Unix
socket, which counts when every message is a write. Refused (a kernel that cannot read a pipe
without blocking) or turned off (``EVS_IPC_PIPE=0``), requests go to the socket as before.
Either way the socket carries everything the executive sends, and closing it ends the
connection.

Threads: a Client may be shared. One lock guards the session; the thread that needs input
reads the socket with the lock released while the others wait on a condition, so one thread
can sit in ``dispatch(BLOCKING)`` while others send, and ``close()`` from any thread ends it.
Callbacks run without the lock and may call the client.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import json
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final, TypeVar

from evs.client.pipe import ENV_PIPE, LOST_WAIT_S, new_request_pipe, pipe_lost_now, pipe_unread
from evs.client.session import ClientSession, window_full
from evs.errors import AccessDenied, EvsError, NotConnected, TryAgain
from evs.ipc.messages import MembershipReply, Ok, RekeyReply, Reply, StatusReply, Welcome
from evs.types import ConfigChange, Delivery, DispatchFlags, Event, Guarantee, Membership

__all__ = [
    "CLOSE_LINGER_S",
    "CONNECT_TIMEOUT_S",
    "DEFAULT_SOCKET",
    "ENV_SOCKET",
    "Client",
    "connect_error",
    "resolve_socket_path",
]

#: Where the daemon listens unless configured otherwise (api.md section 3, [ipc] socket).
DEFAULT_SOCKET: Final = "/run/evs/evs.sock"
#: Environment variable naming the socket when the caller gives none.
ENV_SOCKET: Final = "EVS_SOCKET"
#: Seconds to wait for the daemon's Welcome.
CONNECT_TIMEOUT_S: Final = 10.0
#: Most seconds ``close`` waits for the executive to read messages sent just before.
CLOSE_LINGER_S = 10.0
_READ_CHUNK: Final = 256 << 10
_R = TypeVar("_R", bound=Reply)
#: Group arguments taken as they are: a list or tuple is read at once (the session encodes the
#: message), a str or bytes is refused by the session as a single name.
_AS_GIVEN: Final = (list, tuple, str, bytes)
#: A send waiting for room in the socket looks at ``close()`` this often, seconds.
_WRITE_WAIT_S: Final = 0.25
#: Inside ``batch()``, messages are written once this many bytes of them wait (and at its end).
BATCH_BYTES: Final = 16 << 10


def resolve_socket_path(path: str | os.PathLike[str] | None) -> str:
    """``path``, else $EVS_SOCKET, else the default."""
    if path is not None:
        return os.fspath(path)
    return os.environ.get(ENV_SOCKET) or DEFAULT_SOCKET


def connect_error(path: str, exc: OSError) -> EvsError:
    """AccessDenied for a permission error, else NotConnected; both name the path."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return AccessDenied(f"cannot connect to the evs daemon at {path}: {reason}")
    return NotConnected(
        f"cannot connect to the evs daemon at {path}: {reason} "
        f"(is it running? the path comes from socket_path, ${ENV_SOCKET} or {DEFAULT_SOCKET})"
    )


def _writable(fd: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for room to write to ``fd`` (or its end: the write then
    says why). poll, not select: a descriptor number may be above select's 1024."""
    p = select.poll()
    p.register(fd, select.POLLOUT)
    return bool(p.poll(timeout * 1000))


def _pipe_closed(data: bytes | memoryview) -> int:
    raise BrokenPipeError(errno.EPIPE, "the request pipe is closed")


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + max(0.0, timeout)


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


class Client:
    """A handle on the local evs executive (see the module docstring)."""

    def __init__(
        self,
        socket_path: str | os.PathLike[str] | None = None,
        *,
        on_deliver: Callable[[Delivery], object] | None = None,
        on_confchg: Callable[[ConfigChange], object] | None = None,
        context: Any = None,
    ) -> None:
        #: Anything the application wants to keep with this handle (evs_context_get/set).
        self.context = context
        self.on_deliver = on_deliver
        self.on_confchg = on_confchg
        self.socket_path = resolve_socket_path(socket_path)
        self._session = ClientSession(os.getpid())
        self._queue = self._session.queue
        #: The handle's lock; ``_cond`` waits on it. The per-message paths take the lock itself:
        #: entering the Condition adds a Python-level call to every send and event.
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._reading = False
        self._writing = False
        self._closed = False
        self._flagged = False
        #: Threads inside ``batch()``: thread id -> depth of nesting.
        self._batching: dict[int, int] = {}
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            raise connect_error(self.socket_path, exc) from None
        sock.setblocking(False)
        self._sock = sock
        self._poll = select.poll()
        self._poll.register(sock.fileno(), select.POLLIN)
        self._buffer = bytearray(_READ_CHUNK)
        self._view = memoryview(self._buffer)
        #: fileno()'s epoll descriptor and the eventfd it watches: made at the first call.
        self._evfd = -1
        self._epoll: select.epoll | None = None
        #: The write end of the request pipe, or -1 while requests go to the socket; and
        #: the call that writes requests to whichever of the two they go to.
        self._wfd = -1
        self._wpipe: io.FileIO | None = None
        self._send_raw: Callable[[bytes | memoryview], int] = sock.send
        try:
            welcome = self._call(self._session.hello_id, Welcome, CONNECT_TIMEOUT_S)
        except BaseException:
            self.close()
            raise
        #: This node's id, the handle's id at the daemon, and the limits it announced.
        self.nodeid = welcome.nodeid
        self.handle_id = welcome.handle_id
        self.max_data = welcome.max_data
        try:
            self._use_pipe()
        except BaseException:
            self.close()
            raise

    def _use_pipe(self) -> None:
        """Ask the executive to read requests from a pipe: a small write to a pipe costs half
        of one to a Unix socket (merged into the pipe's page rather than a buffer of its own,
        which the reader also frees). The read end goes over the socket (SCM_RIGHTS) once the
        executive said Ok; refused, the socket stays."""
        if os.environ.get(ENV_PIPE, "1") == "0":
            return
        try:
            self._call(self._session.use_pipe(), Ok, CONNECT_TIMEOUT_S)
        except EvsError:
            if self._session.ended is not None:
                raise
            return
        r, w = new_request_pipe()
        try:
            deadline = time.monotonic() + CONNECT_TIMEOUT_S
            while True:
                try:
                    socket.send_fds(self._sock, [b"\0"], [r])
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise NotConnected(
                            f"the evs daemon at {self.socket_path} did not read for "
                            f"{CONNECT_TIMEOUT_S} s"
                        ) from None
                    _writable(self._sock.fileno(), _WRITE_WAIT_S)
                except OSError as exc:
                    raise connect_error(self.socket_path, exc) from None
            # Owned by a file object too: a client dropped without close() leaks nothing.
            self._wpipe = io.FileIO(w, "wb", closefd=True)
            self._wfd, w = w, -1
            self._send_raw = functools.partial(os.write, self._wfd)
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)

    # ---------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """evs_finalize: end the connection; safe from any thread, and more than once.

        Messages sent and not yet taken by the executive (see ``mcast_joined``) are not lost:
        the client closes its sending side and reads until the executive has read everything
        and closed too, for at most ``CLOSE_LINGER_S``. Without such messages it closes at once.
        """
        with self._cond:
            if self._closed:
                return
            if self._session.ended is None and self._session.pending_bytes:
                # A batch's messages not yet written (``batch``); bounded like the linger.
                self._send_pending(_deadline(CLOSE_LINGER_S))
            self._closed = True
            if self._session.ended is None and self._session.outstanding:
                self._linger()
            self._session.close()
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked reading
            while self._reading or self._writing:
                self._cond.wait(1.0)
            self._close_pipe()
            self._sock.close()
            if self._epoll is not None:
                self._epoll.close()
                os.close(self._evfd)
            self._cond.notify_all()

    def _linger(self) -> None:
        """Half-close, then read until the executive closes (it read all we sent) or timeout.

        Closing outright could make the executive's next write fail, and a transport that
        failed a write stops reading: messages still in its socket would be lost."""
        self._close_pipe()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)
        self._wait(lambda: False, _deadline(CLOSE_LINGER_S))

    def _close_pipe(self) -> None:
        wpipe, self._wpipe, self._wfd = self._wpipe, None, -1
        if wpipe is not None:
            self._send_raw = _pipe_closed  # a late write fails rather than reach the socket
            wpipe.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def fileno(self) -> int:
        """evs_fd_get: readable when ``dispatch`` has work (see the module docstring)."""
        with self._cond:
            if self._closed:
                raise NotConnected("this client is closed")
            if self._epoll is None:
                evfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
                ep = select.epoll()
                ep.register(self._sock.fileno(), select.EPOLLIN)
                ep.register(evfd, select.EPOLLIN)
                self._evfd, self._epoll = evfd, ep
                self._flag()  # events read before this call count too
            return self._epoll.fileno()

    def _recv(self) -> bytes:
        """One read into the client's buffer, copied out (``b""``: the daemon closed)."""
        n = self._sock.recv_into(self._buffer)
        return bytes(self._view[:n])

    # ---------------------------------------------------------------- I/O (lock held)

    def _send_pending(self, deadline: float | None = None) -> None:
        """Write the session's requests; while the socket is full, wait with the lock released.

        One writer at a time (frames must not interleave); ``close()`` from another thread
        ends a wait for a daemon that stopped reading (the write then fails: NotConnected), and
        so does ``deadline`` (``close`` writing a batch's rest)."""
        while self._writing:
            self._cond.wait()
        self._write(self._session.data_to_send(), deadline)

    def _write(self, data: bytes | memoryview, deadline: float | None = None) -> None:
        """``_send_pending``'s loop for ``data``, taken from the session already."""
        while data:
            try:
                n = self._send_raw(data)
            except BlockingIOError:
                self._writing = True
                out = self._wfd if self._wfd >= 0 else self._sock.fileno()  # read with the lock
                self._cond.release()
                try:
                    # In turns: a daemon that stopped reading never makes the socket writable,
                    # and close() must still end the wait.
                    while not _writable(out, _WRITE_WAIT_S):
                        if self._closed or (deadline is not None and time.monotonic() > deadline):
                            break
                finally:
                    self._cond.acquire()
                    self._writing = False
                    self._cond.notify_all()
                if self._closed:
                    self._session.connection_lost(
                        "this client was closed while a send waited for the evs daemon at "
                        f"{self.socket_path} to read"
                    )
                    return
                if deadline is not None and time.monotonic() > deadline:
                    self._session.connection_lost(
                        f"the evs daemon at {self.socket_path} did not read for "
                        f"{CLOSE_LINGER_S} s while this client closed: messages of its batch "
                        "were not all written"
                    )
                    return
                continue
            except OSError as exc:
                self._lost(exc)
                return
            if n == len(data):  # the usual case: the socket took it all at once
                return
            data = memoryview(data)[n:]

    def _lost(self, exc: OSError) -> None:
        """The socket failed; first read what the daemon said before it closed (e.g. why)."""
        for _ in range(64):
            try:
                # Not the shared buffer: another thread may be reading into it right now.
                data = self._sock.recv(_READ_CHUNK)
            except OSError:
                break
            self._session.receive_data(data)
            if not data:
                break
        self._session.connection_lost(
            f"the connection to the evs daemon at {self.socket_path} broke: {exc.strerror or exc}"
        )
        self._note_unread()

    def _note_unread(self) -> None:
        """The connection ended: requests still in the pipe once the executive let go of it
        were never read, so say they are lost (``pipe_lost``)."""
        if self._wfd < 0:
            return
        deadline = time.monotonic() + LOST_WAIT_S
        while (unread := pipe_lost_now(self._wfd)) is None and time.monotonic() < deadline:
            time.sleep(0.01)  # bounded: the executive reads or lets go within its grace
        if unread is None:
            unread = pipe_unread(self._wfd)  # an executive that stopped: not read either
        if unread:
            self._session.requests_lost(unread)

    def _read(self, timeout: float | None) -> None:
        """Read once, waiting up to ``timeout`` (None: forever) with the lock released."""
        self._reading = True
        self._cond.release()
        data: bytes | None = None
        error: OSError | None = None
        try:
            ms = None if timeout is None else max(0, int(timeout * 1000))
            if self._poll.poll(ms):
                try:
                    data = self._recv()
                except BlockingIOError:
                    pass
                except OSError as exc:
                    error = exc
        finally:
            self._cond.acquire()
            self._reading = False
        if error is not None:
            self._lost(error)
        elif data is not None:
            was = self._session.ended
            self._session.receive_data(data)
            if was is None and self._session.ended is not None:
                self._note_unread()
        self._flag()
        self._cond.notify_all()

    def _flag(self) -> None:
        """Keep the eventfd set exactly while events (or the end) wait in the session."""
        if self._closed or self._epoll is None:
            return
        want = self._session.events_waiting > 0 or self._session.ended is not None
        if want and not self._flagged:
            os.eventfd_write(self._evfd, 1)
            self._flagged = True
        elif not want and self._flagged:
            os.eventfd_read(self._evfd)
            self._flagged = False

    def _wait(self, ready: Callable[[], bool], deadline: float | None) -> bool:
        """Read until ``ready()`` or the connection ends; False if the deadline passed first.

        A deadline already passed still reads what the socket holds once, so a zero timeout
        means "what has arrived", not "what an earlier call happened to read"."""
        s = self._session
        polled = False
        while not ready() and s.ended is None:
            left = _remaining(deadline)
            if left is not None and left <= 0:
                if polled or self._reading:
                    return False
                polled = True
                self._read(0)
                continue
            if self._reading:
                self._cond.wait(left)
            else:
                self._read(left)
        return True

    def _drain(self) -> None:
        """Read what the socket holds now, without waiting."""
        for _ in range(64):
            if self._reading or self._session.ended is not None:
                return
            before = self._session.events_waiting
            self._read(0)
            if self._session.events_waiting == before:
                return

    def _call(self, rid: int, kind: type[_R], timeout: float | None = None) -> _R:
        """Send what is pending and wait for the reply to ``rid``; raise its error."""
        with self._cond:
            self._send_pending()
            if not self._wait(lambda: self._session.done(rid), _deadline(timeout)):
                self._session.connection_lost(
                    f"the evs daemon at {self.socket_path} did not answer within {timeout} s"
                )
            reply = self._session.result(rid)
        assert isinstance(reply, kind), reply
        return reply

    # ---------------------------------------------------------------- requests

    def join(self, groups: Iterable[str | bytes]) -> None:
        """evs_join: receive the messages of ``groups`` (str or bytes names)."""
        with self._cond:
            rid = self._session.join(groups)
        self._call(rid, Ok)

    def leave(self, groups: Iterable[str | bytes]) -> None:
        """evs_leave: stop receiving the messages of ``groups``."""
        with self._cond:
            rid = self._session.leave(groups)
        self._call(rid, Ok)

    def mcast_joined(
        self,
        data: bytes,
        guarantee: Guarantee = Guarantee.AGREED,
        *,
        block: bool = True,
        timeout: float | None = None,
    ) -> None:
        """evs_mcast_joined: send ``data`` to every group this handle has joined.

        Returns once the message is written to the executive (within the send window);
        ``timeout`` bounds the wait for room in the window (then TryAgain)."""
        self._mcast(None, data, guarantee, block, timeout)

    def mcast_groups(
        self,
        groups: Iterable[str | bytes],
        data: bytes,
        guarantee: Guarantee = Guarantee.AGREED,
        *,
        block: bool = True,
        timeout: float | None = None,
    ) -> None:
        """evs_mcast_groups: send ``data`` to ``groups``, joined or not."""
        self._mcast(groups, data, guarantee, block, timeout)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Send the messages multicast inside the block together: fewer writes, same order.

        Each ``mcast_joined``/``mcast_groups`` call of this thread inside the block queues its
        message (flow control as usual) and returns; they are written to the executive in one
        write per ``BATCH_BYTES`` of messages, and the rest when the block ends (also when it
        ends by an exception: a message the call accepted is sent). A full send window, any
        other request (join, leave, membership_get, ...), a send from another thread and
        ``close()`` write what is queued first, so the order of everything sent is kept. Why:
        a write to the executive costs more than encoding a small message (about 1.2 us of
        system call per message at 64 bytes), so a burst of small messages is cheaper written
        together; the price is that the first message of a batch waits for the block's end.
        """
        me = threading.get_ident()
        with self._lock:
            if self._closed:
                raise NotConnected("this client is closed")
            self._batching[me] = self._batching.get(me, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                depth = self._batching.pop(me) - 1
                if depth:
                    self._batching[me] = depth
                elif not self._closed and self._session.ended is None:
                    self._send_pending()
        if not depth and self._session.ended is not None and not self._closed:
            raise self._session.ended

    def _mcast(
        self,
        groups: Iterable[str | bytes] | None,
        data: bytes,
        guarantee: Guarantee,
        block: bool,
        timeout: float | None,
    ) -> None:
        """A windowed send; with the window full raise TryAgain (block=False) or wait."""
        # A list or tuple is read as it is (the session encodes the message at once); any other
        # iterable is read once here, since a full window tries the send again.
        names = groups if groups is None or type(groups) in _AS_GIVEN else list(groups)
        s = self._session
        with self._lock:
            if self._closed:  # closing: another thread is letting the executive read the rest
                raise NotConnected("this client is closed")
            if not s.send(names, data, guarantee):
                # The executive gives room back for what it read: a batch's messages go first.
                self._send_pending()
                self._send_when_room(names, data, guarantee, block, timeout)
            if (
                not self._batching
                or s.pending_bytes >= BATCH_BYTES
                or threading.get_ident() not in self._batching
            ):
                if self._writing:
                    self._send_pending()
                else:  # _send_pending without its wait: a call less per send
                    self._write(s.data_to_send())
            if s.ended is not None:  # the message may not have reached the executive
                raise s.ended

    def _send_when_room(
        self,
        names: Iterable[str | bytes] | None,
        data: bytes,
        guarantee: Guarantee,
        block: bool,
        timeout: float | None,
    ) -> None:
        """The window was full: read credits, and wait for room unless ``block`` is False
        (then TryAgain), until the send is queued or ``timeout`` passed (TryAgain)."""
        deadline = _deadline(timeout)
        s = self._session
        # The caller's list as it is now: the waits below release the lock.
        names = None if names is None else tuple(names)
        while not s.send(names, data, guarantee):
            if not self._reading:
                self._read(0)  # credits that came already
            if s.window_room(len(data)):
                continue
            if not block:
                raise TryAgain(window_full(s))
            if not self._wait(lambda: s.window_room(len(data)), deadline):
                raise TryAgain(f"{window_full(s)}, for {timeout} s")

    def membership_get(self) -> Membership:
        """evs_membership_get: this node and the members of the current configuration."""
        with self._cond:
            rid = self._session.membership_get()
        return self._call(rid, MembershipReply).membership

    def status(self) -> dict[str, Any]:
        """The executive's status (api.md section 3: nodeid, ring_id, state, members, ...)."""
        with self._cond:
            rid = self._session.status_get()
        value = json.loads(self._call(rid, StatusReply).text)
        if not isinstance(value, dict):
            raise NotConnected(f"the evs daemon sent a status that is not an object: {value!r}")
        return value

    def rekey(self, key: bytes = b"", *, members_only: bool = False) -> dict[str, Any]:
        """Start an online key rotation on the cluster (``evs rekey``; root or the daemon's
        uid only): ``key`` the new cluster key, empty for one the executive makes. Returns the
        new key id, its fingerprint and the required nodes; the rotation then completes on its
        own (``status()["crypto"]`` shows its progress)."""
        with self._cond:
            rid = self._session.rekey(bytes(key), members_only)
        value = json.loads(self._call(rid, RekeyReply).text)
        if not isinstance(value, dict):
            raise NotConnected(f"the evs daemon sent a rekey reply that is no object: {value!r}")
        return value

    # ---------------------------------------------------------------- events

    def _take(self) -> Event | None:
        """An event already read, or None: no deadline to compute and no read to start (the
        hot path of ``events()``, where most events arrive many to a read)."""
        with self._lock:
            queue = self._queue
            if not queue:
                return None
            ev = queue.popleft()
            if not queue:
                self._flag()
            return ev

    def _next(self, deadline: float | None, *, wait: bool = True) -> Event | None:
        """The next event; None if none came in time; the end of the connection raises."""
        ev = self._take()  # already read, the usual case: no wait
        if ev is not None:
            return ev
        with self._cond:
            s = self._session
            if wait:
                self._wait(lambda: s.events_waiting > 0, deadline)
            elif not s.events_waiting:
                self._drain()
            ev = s.next_event()
            self._flag()
            if ev is None and s.ended is not None:
                raise s.ended
            return ev

    def _run(self, ev: Event) -> None:
        if isinstance(ev, Delivery):
            if self.on_deliver is not None:
                self.on_deliver(ev)
        elif self.on_confchg is not None:
            self.on_confchg(ev)

    def dispatch(
        self, flags: DispatchFlags = DispatchFlags.ALL, timeout: float | None = None
    ) -> int:
        """evs_dispatch: run the callbacks of waiting events; returns how many ran.

        ONE waits (up to ``timeout``) for one event; ALL runs the events waiting now;
        ONE_NONBLOCKING runs one if one is waiting; BLOCKING runs events until ``close()``
        (then returns) or until ``timeout``. The end of the connection raises NotConnected
        once the events that came before it have run.
        """
        flags = DispatchFlags(flags)
        deadline = _deadline(timeout)
        if flags in (DispatchFlags.ALL, DispatchFlags.ONE_NONBLOCKING):
            with self._cond:
                if self._closed:
                    raise NotConnected("this client is closed")
                self._drain()
                todo = self._session.events_waiting
                self._flag()
                if todo == 0 and self._session.ended is not None:
                    raise self._session.ended
            if flags is DispatchFlags.ONE_NONBLOCKING:
                todo = min(todo, 1)
            for n in range(todo):
                ev = self._next(None, wait=False)
                if ev is None:
                    return n
                self._run(ev)
            return todo
        count = 0
        while True:
            try:
                ev = self._next(deadline)
            except NotConnected:
                if self._closed and flags is DispatchFlags.BLOCKING:
                    return count
                raise
            if ev is None:
                return count
            self._run(ev)
            count += 1
            if flags is DispatchFlags.ONE:
                return count

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Events as they come; stops after ``timeout`` s without one, or at ``close()``."""
        while True:
            ev = self._take()
            if ev is None:
                try:
                    ev = self._next(_deadline(timeout))
                except NotConnected:
                    if self._closed:
                        return
                    raise
                if ev is None:
                    return
            yield ev
