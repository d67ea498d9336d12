"""The executive's Unix-socket server: clients in, service calls and event frames out.

Theory of operation: one ``asyncio.Protocol`` per client connection, no protocol knowledge
beyond the IPC frames (style rule 13). A connection is checked with SO_PEERCRED when it is
accepted (root, the daemon's own uid, ``allowed_uids`` and ``allowed_gids`` pass; the one
administrator's request, ``Rekey``, is served to root and the daemon's uid only); it must then
say Hello, which opens its handle in the ``EvsService`` with the peer's pid. Every wake-up's
bytes are decoded into requests, each request becomes one service call and one reply (a
windowed Mcast, request id 0, gets none: see ``evs.runtime.send_window``), and once the batch is
done the host runs the core (``after_request``) and the server ``pump``s: events of every
handle that has some become DeliverNote/ConfChgNote frames, handles that may retry a TryAgain
get RoomAgain, windowed senders get their SendCredit, and each client gets one write.

Back-pressure both ways: the server takes events from a handle only while the client's
transport buffer is under ``client_queue_bytes``; the rest waits in the handle's queue (bounded
by the service) until the transport drains (``resume_writing``). A client that never reads
therefore fills its handle queue, the service marks it overflowed, and the server says Goodbye
with the reason and disconnects it; the ring never waits. A client that only lags is waited
for by its own node (``EvsService.check_readers``, run by the host at every step): the server
asks the host for a step as soon as such a client's socket drains or its connection ends, so
held senders go on at once. A malformed or oversized frame or a disconnect in mid-frame is
counted in ``counters`` and ends only that connection. The handle is closed however the
connection ends.

Request pipes: a client may ask (``UsePipe``) to write its requests to a pipe instead of the
socket, since a small write to a pipe costs half as much. The server answers Ok, stops reading
the socket's stream and takes the next byte itself, with the pipe's read end passed along it
(SCM_RIGHTS; asyncio's transports cannot receive descriptors, so it reads that byte from its
own descriptor of the socket, ``_rest``); the descriptor must be a FIFO open for reading. The
pipe is then read with the loop's reader callback into the same decoder. From then on the
socket must stay silent; its end still ends the connection, and what the pipe holds then is
read first (bounded). Passing the descriptor needs no rights over the client's process, and the
server holds nothing the client did not hold itself.

Use from the daemon (the host owns the service, the core and the loop)::

    server = IpcServer(host, cfg.ipc.socket, allowed_uids=..., allowed_gids=...)
    await server.start()          # ServerStartError: path held by a live daemon, not a socket
    ...                           # after every runtime step that fed events to host.service:
    server.pump()
    ...
    await server.close()          # Goodbye to every client, socket file removed

``server.counters`` can go into the status reply's ``counters``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import stat
import struct
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final, Protocol, cast

from evs.client.pipe import pipe_unread
from evs.errors import EvsError, InvalidArgument
from evs.ipc.codec import (
    DATA_MAX,
    FRAME_MAX,
    FrameDecoder,
    FrameError,
    encode,
    encode_delivery_fields,
)
from evs.ipc.messages import (
    IPC_VERSION,
    ConfChgNote,
    Error,
    ErrorCode,
    Frame,
    Goodbye,
    Hello,
    Join,
    Leave,
    Mcast,
    MembershipGet,
    MembershipReply,
    Ok,
    Rekey,
    RekeyReply,
    RoomAgain,
    SendCredit,
    StatusGet,
    StatusReply,
    UsePipe,
    Welcome,
    error_code,
    mcast_cost,
)
from evs.runtime.send_window import SendWindows
from evs.runtime.service import GROUP_NAME_MAX, GROUPS_PER_HANDLE_MAX, EvsService, Handle, Queued
from evs.types import Guarantee

__all__ = [
    "CLIENT_QUEUE_BYTES",
    "SOCKET_MODE",
    "IpcServer",
    "ServerStartError",
    "ServiceHost",
    "peer_credentials",
]

log = logging.getLogger("evs.daemon.ipc")

#: Bytes the server lets wait in one client's transport before it stops taking its events.
CLIENT_QUEUE_BYTES: Final = 4 << 20
#: Mode of the socket file: owner and group may connect.
SOCKET_MODE: Final = 0o660
#: Seconds a disconnected client has to read its Goodbye before the socket is cut.
GOODBYE_GRACE_S: Final = 2.0
_CRED: Final = struct.Struct("3i")


#: Most reads of a client's request pipe once its connection ended.
PIPE_REST_READS: Final = 1024
#: One read of a request pipe, bytes (every connection of the server reads into one buffer).
PIPE_READ: Final = 256 << 10


def _pipe_problem(fd: int) -> str:
    """Why ``fd`` cannot be a request pipe ("" if it can): a pipe or FIFO open for reading.
    (F_GETPIPE_SZ answers only for a pipe really opened: not for a descriptor made with
    O_PATH, which fstat would call a FIFO.)"""
    try:
        fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)
    except OSError:
        return "the descriptor is not a pipe"
    try:
        mode = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
    except OSError as exc:
        return f"the descriptor cannot be inspected: {exc.strerror or exc}"
    if mode != os.O_RDONLY:
        return "the descriptor is not the pipe's read end"
    return ""


_NOWAIT: list[bool] = []


def _nowait_reads() -> bool:
    """Whether this kernel reads a pipe with RWF_NOWAIT. The pipe's O_NONBLOCK belongs to the
    open file the client shares with the server, and the client may clear it: only a read
    that cannot block whatever that flag says keeps a client from stalling the loop."""
    if not _NOWAIT:
        r, w = os.pipe()
        try:
            os.preadv(r, [bytearray(1)], -1, os.RWF_NOWAIT)
            ok = False  # an empty pipe cannot be read: a kernel that says so otherwise
        except BlockingIOError:
            ok = True
        except (OSError, AttributeError):
            ok = False
        finally:
            os.close(r)
            os.close(w)
        _NOWAIT.append(ok)
    return _NOWAIT[0]


def _read_nowait(fd: int, view: memoryview) -> int:
    """One read of the pipe ``fd`` into ``view``, never blocking (BlockingIOError: empty)."""
    return os.preadv(fd, [view], -1, os.RWF_NOWAIT)


def _encode_event(ev: Queued) -> bytes:
    """A queued event's notification frame (most are deliveries, queued as their fields: no
    Delivery and no note object for those)."""
    if isinstance(ev, tuple):
        return encode_delivery_fields(ev)
    return encode(ConfChgNote(ev))


class ServiceHost(Protocol):
    """What the server needs from the daemon around it."""

    service: EvsService
    #: Windowed sends (request id 0): the host drains them before each step of the runtime.
    windows: SendWindows
    nodeid: int

    def after_request(self) -> None:
        """Run the core's outputs now (sends, timers, events), after a batch of requests."""

    def status(self) -> dict[str, Any]:
        """JSON-able status for StatusGet (api.md section 3 fields)."""


class ServerStartError(Exception):
    """The socket cannot be set up (path in use by a live daemon, not a socket, ...)."""


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the peer of a Unix socket, from the kernel (Linux SO_PEERCRED)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size)
    pid, uid, gid = _CRED.unpack(raw)
    return pid, uid, gid


class IpcServer:
    """The Unix-socket server of one executive (see the module docstring)."""

    def __init__(
        self,
        host: ServiceHost,
        path: str | os.PathLike[str],
        *,
        allowed_uids: Iterable[int] = (),
        allowed_gids: Iterable[int] = (),
        client_queue_bytes: int = CLIENT_QUEUE_BYTES,
        goodbye_grace_s: float = GOODBYE_GRACE_S,
        credentials: Callable[[socket.socket], tuple[int, int, int]] = peer_credentials,
    ) -> None:
        if client_queue_bytes < 1:
            raise ValueError(f"client_queue_bytes must be positive, got {client_queue_bytes}")
        self.host = host
        self.path = Path(path)
        self.allowed_uids = frozenset(allowed_uids)
        self.allowed_gids = frozenset(allowed_gids)
        self.client_queue_bytes = client_queue_bytes
        self.goodbye_grace_s = goodbye_grace_s
        #: (pid, uid, gid) of a connected socket's peer; tests stand in for other users.
        self.credentials = credentials
        self.counters: dict[str, int] = {
            "connections accepted": 0,
            "connections refused": 0,
            "requests": 0,
            "malformed frames": 0,
            "oversized frames": 0,
            "disconnects mid-frame": 0,
            "protocol errors": 0,
            "version mismatches": 0,
            "overflow disconnects": 0,
            "windowed sends refused": 0,
            "internal errors": 0,
            "admin requests refused": 0,
            "request pipes": 0,
            "request pipes refused": 0,
        }
        self._server: asyncio.AbstractServer | None = None
        self._inode: int | None = None
        self._conns: set[_Connection] = set()
        self._by_handle: dict[int, _Connection] = {}
        self._dirty: set[_Connection] = set()
        self._all_gone: asyncio.Event | None = None
        #: Where request pipes are read (one loop, one read at a time).
        self.pipe_view = memoryview(bytearray(PIPE_READ))
        #: ``close`` has begun: connections ending now are not news for the host.
        self.stopping = False

    @property
    def clients(self) -> int:
        """Connections currently open (including ones still saying Goodbye)."""
        return len(self._conns)

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Listen on ``path`` (mode 0660), replacing a stale socket file, never a live one."""
        path = self.path
        self._clear_stale(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(path))
            os.chmod(path, SOCKET_MODE)  # before listen(): nobody can connect in between
            self._inode = os.stat(path).st_ino
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            self._server = await loop.create_unix_server(lambda: _Connection(self), sock=sock)
        except OSError as exc:
            sock.close()
            raise ServerStartError(f"cannot listen on {path}: {exc.strerror or exc}") from exc
        log.info("IPC server listening on %s", path)

    @staticmethod
    def _clear_stale(path: Path) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ServerStartError(
                f"{path} exists and is not a socket: remove it or set another [ipc] socket"
            )
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError as exc:
            if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                raise ServerStartError(f"cannot check {path}: {exc.strerror}") from exc
        else:
            raise ServerStartError(
                f"another evs daemon is listening on {path}: stop it first, "
                "or set another [ipc] socket"
            )
        finally:
            probe.close()
        log.info("removing stale socket %s", path)
        path.unlink(missing_ok=True)

    async def close(self, reason: str = "the evs daemon is shutting down") -> None:
        """Stop listening, say Goodbye to every client, wait for them (bounded), remove the file."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            conn.disconnect(Goodbye(reason))
        if self._conns:
            self._all_gone = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_gone.wait(), self.goodbye_grace_s + 1.0)
            for conn in list(self._conns):
                conn.abort()
            await asyncio.sleep(0)  # their connection_lost (the pipes' rest) runs now
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
            self._remove_socket_file()

    def _remove_socket_file(self) -> None:
        """Unlink the socket file if it is still ours (a successor may have replaced it)."""
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:
                self.path.unlink()

    def _forget(self, conn: _Connection) -> None:
        self._conns.discard(conn)
        self._dirty.discard(conn)
        if not self._conns and self._all_gone is not None:
            self._all_gone.set()

    def allowed(self, uid: int, gid: int) -> bool:
        return uid in (0, os.geteuid()) or uid in self.allowed_uids or gid in self.allowed_gids

    # ---------------------------------------------------------------- events out

    def pump(self) -> None:
        """Move the service's new events and room-again notices to the clients; one write each.

        The host calls this after every step of the runtime; the server also calls it after
        each batch of requests.
        """
        service = self.host.service
        for h in service.take_ready():
            conn = self._by_handle.get(h.id)
            if conn is None:
                continue
            if h.overflowed is not None:
                self.counters["overflow disconnects"] += 1
                log.warning("disconnecting handle %d (pid %d): %s", h.id, h.pid, h.overflowed)
                conn.disconnect(Goodbye(h.overflowed))
            else:
                conn.fill()
        for h in service.take_room_again():
            conn = self._by_handle.get(h.id)
            if conn is not None:
                conn.queue(encode(RoomAgain()))
        for h, amount in self.host.windows.take_credits():
            conn = self._by_handle.get(h.id)
            if conn is not None:
                conn.queue(encode(SendCredit(amount)))
        while self._dirty:
            self._dirty.pop().flush()


class _Connection(asyncio.Protocol):
    """One client: decoder, handle, output batch, write-side flow state."""

    def __init__(self, server: IpcServer) -> None:
        self.server = server
        self.service = server.host.service
        self.decoder = FrameDecoder()
        self.handle: Handle | None = None
        self.transport: asyncio.Transport | None = None
        self.pid = 0
        self.uid = -1
        self.out: list[bytes] = []
        self.out_bytes = 0
        self.paused = False
        self.closing = False
        #: Windowed sends taken in the current read (``accept_windowed`` counts them).
        self.windowed_taken = 0
        self._abort_timer: asyncio.TimerHandle | None = None
        self._rest: socket.socket | None = None
        #: The read end of the client's request pipe (UsePipe), or -1; ``piped``: the client
        #: switched to it, so its socket carries nothing more; ``awaiting_pipe``: the stream
        #: is paused for the byte that brings the pipe.
        self._pipe = -1
        self.piped = False
        self.awaiting_pipe = False

    # ---------------------------------------------------------------- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is not an asyncio.Transport subclass, so no isinstance).
        self.transport = cast(asyncio.Transport, transport)
        transport = self.transport
        server = self.server
        server._conns.add(self)
        transport.set_write_buffer_limits(
            high=server.client_queue_bytes, low=server.client_queue_bytes // 4
        )
        try:
            sock = transport.get_extra_info("socket")
            self.pid, uid, gid = server.credentials(sock)
            self.uid = uid
            # Our own descriptor of the connection: what the client sent before a failed write
            # made the transport stop reading is still read from it (connection_lost).
            self._rest = socket.socket(fileno=os.dup(sock.fileno()))
            self._rest.setblocking(False)
        except (OSError, AttributeError, struct.error) as exc:
            self.refuse(f"cannot read the peer's credentials: {exc}")
            return
        if not server.allowed(uid, gid):
            self.refuse(
                f"uid {uid} (gid {gid}) may not use this evs daemon: it accepts root, "
                f"uid {os.geteuid()}, and the [ipc] allowed_uids and allowed_gids"
            )
            return
        server.counters["connections accepted"] += 1

    def refuse(self, reason: str) -> None:
        self.server.counters["connections refused"] += 1
        log.warning("refused an IPC client: %s", reason)
        self.disconnect(Error(0, ErrorCode.ACCESS_DENIED, reason))

    def data_received(self, data: bytes) -> None:
        if self.piped:  # the decoder is the pipe's now: these bytes are dropped
            if not self.closing:
                self.server.counters["protocol errors"] += 1
                self.disconnect(
                    Error(
                        0, ErrorCode.ERROR, "a client that writes to a pipe may not use the socket"
                    )
                )
            return
        self._received(data)

    def _pipe_readable(self) -> None:
        """The request pipe has bytes (or its end): the same path as the socket's bytes."""
        view = self.server.pipe_view
        try:
            n = _read_nowait(self._pipe, view)
        except BlockingIOError:
            return
        except OSError:
            n = 0
        if n == 0:  # the client closed its end: its socket's end follows
            self._close_pipe()
            return
        try:
            self._received(bytes(view[:n]))
        except Exception as exc:  # as a transport would: this connection ends, not the loop
            self.server.counters["internal errors"] += 1
            log.exception("IPC request pipe read failed")
            self._close_pipe()
            self.disconnect(Error(0, ErrorCode.ERROR, f"internal error of the evs daemon: {exc}"))

    def _close_pipe(self) -> None:
        fd, self._pipe = self._pipe, -1
        if fd >= 0:
            asyncio.get_running_loop().remove_reader(fd)
            os.close(fd)

    def _pipe_rest(self) -> bytes:
        """What the request pipe holds at the end of the connection. Bounded in bytes (what it
        holds now, at most a window and a frame: all a client may have sent unanswered) and in
        reads (a pipe in packet mode returns one write a read), so a writer that keeps writing,
        say a child that inherited the descriptor, does not hold the loop."""
        fd = self._pipe
        if fd < 0:
            return b""
        limit = min(pipe_unread(fd), self.server.host.windows.window + FRAME_MAX)
        chunks: list[bytes] = []
        view = self.server.pipe_view
        total = 0
        try:
            for _ in range(PIPE_REST_READS):
                if total >= limit:
                    break
                n = _read_nowait(fd, view[: min(len(view), limit - total)])
                if n == 0:
                    break
                chunks.append(bytes(view[:n]))
                total += n
        except OSError:  # EAGAIN: all read
            pass
        self._close_pipe()
        return b"".join(chunks)

    def _received(self, data: bytes) -> None:
        if self.closing:
            # Being disconnected: no more replies, but messages already sent within the
            # window were accepted by the client's library and must not be lost.
            if self.take_windowed(data):
                self.server.host.after_request()
            return
        server = self.server
        handled = 0
        try:
            decoder = self.decoder
            decoder.feed(data)
            if self.handle is None:  # Hello first: every frame through request()
                for frame in decoder:
                    handled += 1
                    if not self.request(frame):
                        break
            else:
                # Windowed sends go straight to the window; other frames come back here.
                self.windowed_taken = 0
                try:
                    while (other := decoder.take_mcasts(self.accept_windowed)) is not None:
                        handled += 1
                        if not self.request(other):
                            break
                finally:
                    handled += self.windowed_taken
        except FrameError as exc:
            key = "oversized frames" if exc.oversize else "malformed frames"
            server.counters[key] += 1
            log.warning("IPC client pid %d sent a bad frame: %s", self.pid, exc.reason)
            self.disconnect(Error(0, ErrorCode.INVALID_ARGUMENT, f"bad frame: {exc.reason}"))
        if self.awaiting_pipe and self.decoder.buffered:
            # Bytes after UsePipe in the stream: the pipe's byte would be read out of order.
            self._stop_awaiting_pipe()
            server.counters["protocol errors"] += 1
            self.disconnect(Error(0, ErrorCode.ERROR, "UsePipe must be the last frame sent"))
        taken = self._rest_of_read()
        if handled or taken:
            server.counters["requests"] += handled
            server.host.after_request()
            server.pump()
        self.flush()

    def _rest_of_read(self) -> int:
        """Once closing, the rest of the read the connection ended in: its windowed sends are
        taken now, as they would be had they come in the next read, and the decoder keeps no
        more than the frame in progress (its one-frame bound), or nothing without a handle."""
        if not self.closing or not self.decoder.buffered:
            return 0
        if self.handle is None:
            self.decoder = FrameDecoder()
            return 0
        return self.take_windowed(b"")

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_awaiting_pipe()
        rest = self._read_rest()
        if self.piped:  # the stream is the pipe's (the socket's bytes are not requests)
            rest = self._pipe_rest()
        if rest and self.take_windowed(rest):
            self.server.host.after_request()
        if self.decoder.buffered and not self.closing:
            self.server.counters["disconnects mid-frame"] += 1
        self.closing = True
        if self._abort_timer is not None:
            self._abort_timer.cancel()
        self.release_handle()
        self.server._forget(self)
        if self.service.sends_held and not self.server.stopping:
            self.server.host.after_request()  # the reader held for may be this one

    def _read_rest(self) -> bytes:
        """What is still in the socket (after a failed write the transport stops reading)."""
        sock, self._rest = self._rest, None
        if sock is None:
            return b""
        chunks: list[bytes] = []
        try:
            # First: from now on a client's write fails (EPIPE) instead of landing unread.
            sock.shutdown(socket.SHUT_RD)
            while True:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
        except OSError:  # EAGAIN: all read; a reset: nothing more to read either
            pass
        finally:
            sock.close()
        return b"".join(chunks)

    def take_windowed(self, data: bytes) -> int:
        """Accept the windowed sends in ``data`` of a connection that is ending; no replies."""
        h = self.handle
        if h is None:
            return 0
        taken = refused = 0
        try:
            self.decoder.feed(data)
            for frame in self.decoder:
                if not (isinstance(frame, Mcast) and frame.request_id == 0):
                    continue
                # One refused send is one refusal: the frames after it are still read, so
                # the decoder keeps at most the frame in progress.
                try:
                    self.server.host.windows.mcast(
                        h, frame.groups, frame.data, frame.guarantee, mcast_cost(len(frame.data))
                    )
                except InvalidArgument as exc:
                    self.server.counters["windowed sends refused"] += 1
                    if not refused:  # one line per read, however many it refuses
                        log.warning("IPC client pid %d, ending: send refused: %s", self.pid, exc)
                    refused += 1
                else:
                    taken += 1
        except FrameError:
            pass  # already counted and answered when the stream broke
        return taken

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.flush()
        if self.service.sends_held and not self.closing and not self.server.stopping:
            # The client read: its queue shrank. The host re-checks now rather than at the
            # ring's next step, which may be a token hold away when only this node sends.
            self.server.host.after_request()

    # ---------------------------------------------------------------- requests

    def request(self, frame: Frame) -> bool:
        """Serve one request; False once the connection is being closed."""
        server = self.server
        service = self.service
        rid = frame.request_id
        h = self.handle
        if h is None:
            return self.hello(frame)
        reply: Frame
        try:
            if isinstance(frame, Join):
                service.join(h, frame.groups)
                reply = Ok(rid)
            elif isinstance(frame, Leave):
                service.leave(h, frame.groups)
                reply = Ok(rid)
            elif isinstance(frame, Mcast):
                if rid == 0:
                    return self.accept_windowed(frame.groups, frame.guarantee, frame.data)
                service.mcast(h, frame.groups, frame.data, frame.guarantee)
                reply = Ok(rid)
            elif isinstance(frame, MembershipGet):
                reply = MembershipReply(rid, service.membership())
            elif isinstance(frame, StatusGet):
                reply = StatusReply(rid, json.dumps(server.host.status()))
            elif isinstance(frame, Rekey):
                reply = self.rekey(frame)
            elif isinstance(frame, UsePipe):
                reply = self.use_pipe(frame)
            elif isinstance(frame, Hello):
                reply = Error(rid, ErrorCode.INVALID_ARGUMENT, "Hello was already received")
            else:
                server.counters["protocol errors"] += 1
                self.disconnect(
                    Error(0, ErrorCode.ERROR, f"a client may not send {type(frame).__name__}")
                )
                return False
        except EvsError as exc:
            reply = Error(rid, error_code(exc), str(exc))
        except Exception as exc:  # a bug below us must not take the daemon down
            server.counters["internal errors"] += 1
            log.exception("IPC request %s failed", type(frame).__name__)
            self.disconnect(Error(0, ErrorCode.ERROR, f"internal error of the evs daemon: {exc}"))
            return False
        self.queue(encode(reply))
        return not self.awaiting_pipe  # the byte with the pipe comes next: stop here

    def rekey(self, frame: Rekey) -> Frame:
        """An administrator's request: root and the daemon's own uid only."""
        rid = frame.request_id
        if self.uid not in (0, os.geteuid()):
            self.server.counters["admin requests refused"] += 1
            log.warning("refused a key rotation request of uid %d (pid %d)", self.uid, self.pid)
            return Error(
                rid,
                ErrorCode.ACCESS_DENIED,
                f"only root and uid {os.geteuid()} may rotate the key (this is uid {self.uid})",
            )
        start = getattr(self.server.host, "rekey", None)
        if start is None:
            return Error(rid, ErrorCode.ERROR, "this evs daemon cannot rotate keys")
        return RekeyReply(rid, json.dumps(start(frame.key, frame.members_only)))

    def use_pipe(self, frame: UsePipe) -> Frame:
        """Get ready to take the client's pipe: pause the stream and wait for its next byte
        (``_receive_pipe``). Refused, the client goes on writing to its socket."""
        rid = frame.request_id
        rest, t = self._rest, self.transport
        reason = ""
        if self.piped or self.awaiting_pipe:
            reason = "this client writes to a pipe already"
        elif rest is None or t is None:
            reason = "this connection cannot pass descriptors"
        elif not _nowait_reads():
            reason = "this kernel cannot read a pipe without blocking (RWF_NOWAIT)"
        if reason or rest is None or t is None:
            self.server.counters["request pipes refused"] += 1
            return Error(rid, ErrorCode.INVALID_ARGUMENT, reason)
        self.awaiting_pipe = True
        t.pause_reading()
        asyncio.get_running_loop().add_reader(rest.fileno(), self._receive_pipe)
        return Ok(rid)

    def _stop_awaiting_pipe(self) -> None:
        if self.awaiting_pipe:
            self.awaiting_pipe = False
            if self._rest is not None:
                asyncio.get_running_loop().remove_reader(self._rest.fileno())

    def _receive_pipe(self) -> None:
        """The byte after the Ok to UsePipe, with the pipe's read end (SCM_RIGHTS)."""
        rest, t = self._rest, self.transport
        if rest is None or t is None or not self.awaiting_pipe:
            return
        try:
            data, fds, flags, _ = socket.recv_fds(rest, 1, 1)
        except BlockingIOError:
            return
        except OSError:
            data, fds, flags = b"", [], 0
        self._stop_awaiting_pipe()
        if not data:  # the client closed instead: the transport reads the end
            for fd in fds:
                os.close(fd)
            t.resume_reading()
            return
        fd = fds[0] if len(fds) == 1 else -1
        problem = _pipe_problem(fd) if fd >= 0 else "no descriptor came with the byte"
        if data != b"\0" or flags & socket.MSG_CTRUNC:
            problem = "one byte 0 with one descriptor was expected"
        if problem:
            for other in fds:
                os.close(other)
            self.server.counters["protocol errors"] += 1
            self.disconnect(Error(0, ErrorCode.ERROR, f"UsePipe: {problem}"))
            return
        try:
            asyncio.get_running_loop().add_reader(fd, self._pipe_readable)
        except Exception as exc:  # the loop would not watch it: this connection ends
            os.close(fd)
            self.server.counters["internal errors"] += 1
            log.exception("IPC request pipe not watched")
            self.disconnect(Error(0, ErrorCode.ERROR, f"UsePipe: the pipe cannot be read: {exc}"))
            return
        self._pipe = fd
        self.piped = True
        self.server.counters["request pipes"] += 1
        t.resume_reading()

    def accept_windowed(
        self, groups: tuple[bytes, ...] | None, guarantee: Guarantee, data: bytes
    ) -> bool:
        """One windowed send (``take_mcasts``'s callback, and ``request``'s for those that
        come in the read that carried Hello): no reply; a refusal means the client broke the
        protocol and ends the connection."""
        h = self.handle
        assert h is not None  # only called once Hello made the handle
        self.windowed_taken += 1
        try:
            self.server.host.windows.mcast(h, groups, data, guarantee, mcast_cost(len(data)))
        except InvalidArgument as exc:
            self.server.counters["windowed sends refused"] += 1
            log.warning("IPC client pid %d: windowed send refused: %s", self.pid, exc)
            self.disconnect(Error(0, ErrorCode.INVALID_ARGUMENT, f"a send was refused: {exc}"))
            return False
        except Exception as exc:  # a bug below us must not take the daemon down
            self.server.counters["internal errors"] += 1
            log.exception("IPC windowed send failed")
            self.disconnect(Error(0, ErrorCode.ERROR, f"internal error of the evs daemon: {exc}"))
            return False
        return True

    def hello(self, frame: Frame) -> bool:
        server = self.server
        if not isinstance(frame, Hello):
            server.counters["protocol errors"] += 1
            self.disconnect(
                Error(0, ErrorCode.ERROR, f"the first request must be Hello, not {frame}"[:200])
            )
            return False
        if frame.version != IPC_VERSION:
            server.counters["version mismatches"] += 1
            self.disconnect(
                Error(
                    frame.request_id,
                    ErrorCode.ERROR,
                    f"the client speaks IPC version {frame.version} and this evs daemon "
                    f"speaks version {IPC_VERSION}: use a library of the daemon's release",
                )
            )
            return False
        service = self.service
        h = service.open_handle(self.pid or frame.pid)
        self.handle = h
        server._by_handle[h.id] = self
        welcome = Welcome(
            frame.request_id,
            IPC_VERSION,
            server.host.nodeid,
            h.id,
            min(service.max_data, DATA_MAX),
            GROUP_NAME_MAX,
            GROUPS_PER_HANDLE_MAX,
            server.host.windows.window,
        )
        self.queue(encode(welcome))
        return True

    # ---------------------------------------------------------------- output

    def queue(self, frame: bytes) -> None:
        if self.closing:
            return
        self.out.append(frame)
        self.out_bytes += len(frame)
        self.server._dirty.add(self)

    def fill(self) -> None:
        """Take the handle's events while the transport has room under the high-water mark."""
        h = self.handle
        t = self.transport
        if h is None or t is None or self.closing:
            return
        budget = self.server.client_queue_bytes - t.get_write_buffer_size() - self.out_bytes
        if not h.events or budget <= 0:
            return
        try:
            self.out_bytes += h.take_encoded(_encode_event, budget, self.out)
        except FrameError as exc:
            self.server.counters["internal errors"] += 1
            self.out_bytes = sum(map(len, self.out))
            self.disconnect(Goodbye(f"an event cannot be sent over IPC: {exc.reason}"))
            return
        self.server._dirty.add(self)

    def flush(self) -> None:
        """Write the batch; while the transport keeps up, keep feeding it the handle's backlog."""
        t = self.transport
        while t is not None and not self.closing:
            if not self.out:
                h = self.handle
                if self.paused or h is None or not h.events:
                    break
                self.fill()
                if not self.out:
                    break
            t.write(b"".join(self.out))
            self.out.clear()
            self.out_bytes = 0
        self.server._dirty.discard(self)

    def disconnect(self, last: Frame) -> None:
        """Send ``last`` (Goodbye or a connection-level Error), then close; abort if unread."""
        if self.closing or self.transport is None:
            return
        self.flush()
        self.closing = True
        if self.handle is not None:
            self.service.mute(self.handle)  # kept for its last sends; released when lost
        t = self.transport
        t.write(encode(last))
        t.close()
        loop = asyncio.get_running_loop()
        self._abort_timer = loop.call_later(self.server.goodbye_grace_s, t.abort)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def release_handle(self) -> None:
        h = self.handle
        if h is not None:
            self.handle = None
            self.server._by_handle.pop(h.id, None)
            self.service.close_handle(h)
