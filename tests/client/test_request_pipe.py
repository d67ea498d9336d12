"""Request pipes (``UsePipe``): a client's requests through a pipe, the socket for the rest.

Against a real IpcServer (conftest) with real pipes passed over real sockets (SCM_RIGHTS), and,
where the order of the loop's callbacks decides what a test sees, one ``_Connection`` driven by
hand inside a running loop (no callback runs unless the test yields).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import evs
from evs.client.async_client import _PipeWriter
from evs.client.pipe import ENV_PIPE, pipe_unread
from evs.daemon import ipc_server
from evs.daemon.ipc_server import IpcServer, _Connection
from evs.fuzz_targets.ipc import MemoryTransport
from evs.ipc.codec import FrameDecoder, encode
from evs.ipc.messages import (
    IPC_VERSION,
    Error,
    ErrorCode,
    Frame,
    Hello,
    Join,
    Mcast,
    MembershipGet,
    MembershipReply,
    Ok,
    UsePipe,
    Welcome,
)
from evs.types import Delivery, Guarantee

from .conftest import Daemon, FakeHost, wait_until


class RawClient:
    """The IPC protocol by hand: Hello on a real socket, then frames to the socket or a pipe."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.sock.settimeout(5)
        self.dec = FrameDecoder()
        self.r, self.w = os.pipe2(os.O_CLOEXEC)
        self.sock.sendall(encode(Hello(1, IPC_VERSION, os.getpid())))
        assert isinstance(self.reply(), Welcome)

    def reply(self) -> Frame:
        while (frame := next(self.dec, None)) is None:
            data = self.sock.recv(1 << 16)
            if not data:
                raise EOFError("the daemon closed the connection")
            self.dec.feed(data)
        return frame

    def ask(self, frame: Frame, *, pipe: bool = False) -> Frame:
        data = encode(frame)
        if pipe:
            os.write(self.w, data)
        else:
            self.sock.sendall(data)
        return self.reply()

    def use_pipe(self, d: Daemon) -> None:
        assert self.ask(UsePipe(2)) == Ok(2)
        socket.send_fds(self.sock, [b"\0"], [self.r])
        wait_until(lambda: d.run(lambda: all(c.piped for c in d.server._conns)))

    def close(self) -> None:
        self.sock.close()
        for fd in (self.r, self.w):
            if fd >= 0:
                os.close(fd)
        self.r = self.w = -1


def _piped(d: Daemon) -> list[bool]:
    return d.run(lambda: [conn.piped for conn in d.server._conns])


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _delivered(c: evs.Client) -> list[bytes]:
    c.membership_get()  # a round trip: everything sent before it is delivered by now
    return [e.data for e in c.events(timeout=0) if isinstance(e, Delivery)]


def _received(watcher: evs.Client, count: int) -> list[bytes]:
    """The data of the next ``count`` deliveries (fewer if none comes for 5 s)."""
    got: list[bytes] = []
    for ev in watcher.events(timeout=5):
        if isinstance(ev, Delivery):
            got.append(ev.data)
            if len(got) == count:
                break
    return got


def test_a_client_writes_its_requests_to_a_pipe(daemon: Daemon) -> None:
    with evs.Client(daemon.path) as c:
        assert c._wfd >= 0
        assert _piped(daemon) == [True]
        c.join(["g"])  # a request and its reply: through the pipe, back on the socket
        sent = [b"%d" % i * (i % 50 + 1) for i in range(2000)]
        for data in sent:
            c.mcast_joined(data)
        assert _delivered(c) == sent
        assert c.membership_get().members == (1,)
    wait_until(lambda: daemon.run(lambda: daemon.server.clients) == 0)
    assert daemon.counter("request pipes") == 1
    assert daemon.counter("request pipes refused") == 0


def test_evs_ipc_pipe_0_keeps_the_socket(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_PIPE, "0")
    with evs.Client(daemon.path) as c:
        assert c._wfd == -1
        assert _piped(daemon) == [False]
        c.join(["g"])
        c.mcast_joined(b"x")
        assert _delivered(c) == [b"x"]


def _offer(raw: RawClient, byte: bytes, fds: list[int]) -> None:
    assert raw.ask(UsePipe(2)) == Ok(2)
    socket.send_fds(raw.sock, [byte], fds)


@pytest.mark.parametrize(
    "offer",
    [
        "no descriptor",
        "other byte",
        "write end",
        "not a pipe",
        "two",
        "socket",
        "O_PATH FIFO",
        "read-write FIFO",
    ],
)
def test_what_is_not_a_pipes_read_end_ends_the_connection(
    daemon: Daemon, offer: str, tmp_path: Path
) -> None:
    """The byte after Ok must bring one descriptor, a pipe open for reading: anything else
    ends the connection (counted), and the server keeps no descriptor it was given."""
    os.mkfifo(tmp_path / "fifo")
    o_path = os.open(tmp_path / "fifo", os.O_PATH | os.O_CLOEXEC)  # fstat says FIFO
    rw = os.open(tmp_path / "fifo", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    fds_before = _open_fds()
    raw = RawClient(daemon.path)
    try:
        with open(__file__, "rb") as f:
            fds = {
                "no descriptor": [],
                "other byte": [raw.r],
                "write end": [raw.w],
                "not a pipe": [f.fileno()],
                "two": [raw.r, raw.r],
                "socket": [raw.sock.fileno()],
                "O_PATH FIFO": [o_path],
                "read-write FIFO": [rw],
            }[offer]
            _offer(raw, b"\1" if offer == "other byte" else b"\0", fds)
            bye = raw.reply()
        assert isinstance(bye, Error)
        assert bye.request_id == 0
        assert "UsePipe" in bye.message
        with pytest.raises(EOFError):
            raw.reply()
        assert daemon.counter("protocol errors") == 1
        assert daemon.counter("request pipes") == 0
    finally:
        raw.close()
    wait_until(lambda: daemon.run(lambda: daemon.server.clients) == 0)
    wait_until(lambda: _open_fds() == fds_before)  # the server kept none of them
    os.close(o_path)
    os.close(rw)


def test_the_end_of_the_socket_instead_of_the_pipe_ends_the_connection(daemon: Daemon) -> None:
    raw = RawClient(daemon.path)
    assert raw.ask(UsePipe(2)) == Ok(2)
    raw.close()
    wait_until(lambda: daemon.run(lambda: daemon.server.clients) == 0)
    assert daemon.run(lambda: len(daemon.host.service.handles)) == 0
    assert daemon.counter("protocol errors") == 0


def test_bytes_after_use_pipe_end_the_connection(daemon: Daemon) -> None:
    """UsePipe must be the last frame before the pipe's byte: a frame after it would be read
    out of order (it is counted, and the connection ends)."""
    raw = RawClient(daemon.path)
    try:
        raw.sock.sendall(encode(UsePipe(2)) + encode(MembershipGet(3)))
        assert raw.reply() == Ok(2)
        bye = raw.reply()
        assert isinstance(bye, Error)
        assert "last frame" in bye.message
        assert daemon.counter("protocol errors") == 1
    finally:
        raw.close()


def test_a_second_use_pipe_is_refused(daemon: Daemon) -> None:
    raw = RawClient(daemon.path)
    try:
        raw.use_pipe(daemon)
        reply = raw.ask(UsePipe(3), pipe=True)
        assert isinstance(reply, Error)
        assert reply.code == ErrorCode.INVALID_ARGUMENT
        assert "already" in reply.message
        assert isinstance(raw.ask(MembershipGet(4), pipe=True), MembershipReply)
        assert daemon.counter("request pipes refused") == 1
    finally:
        raw.close()


def test_a_piped_client_that_writes_to_its_socket_is_disconnected(daemon: Daemon) -> None:
    """Two streams into one decoder would interleave frames: once piped, the socket must stay
    silent, and a client that breaks that is cut off (counted), not misread."""
    raw = RawClient(daemon.path)
    try:
        raw.use_pipe(daemon)
        bye = raw.ask(MembershipGet(3))
        assert isinstance(bye, Error)
        assert bye.request_id == 0
        assert "may not use the socket" in bye.message
        with pytest.raises(EOFError):
            raw.reply()
        assert daemon.counter("protocol errors") == 1
    finally:
        raw.close()


def test_a_client_that_dies_leaves_no_message_of_its_pipe_behind(daemon: Daemon) -> None:
    """Windowed sends in the pipe when the client dies (its socket and pipe closed at once)
    all reach the ring, in order."""
    with evs.Client(daemon.path) as watcher:
        watcher.join(["g"])
        for round_ in range(5):
            raw = RawClient(daemon.path)
            raw.use_pipe(daemon)
            assert raw.ask(Join(3, (b"g",)), pipe=True) == Ok(3)
            sent = [b"%d-%d" % (round_, i) for i in range(300)]
            os.write(raw.w, b"".join(encode(Mcast(0, None, Guarantee.AGREED, m)) for m in sent))
            raw.close()
            assert _received(watcher, len(sent)) == sent


def test_a_client_that_makes_its_pipe_blocking_does_not_stall_the_executive(
    daemon: Daemon,
) -> None:
    """The pipe's blocking flag belongs to the open file the client shares with the server,
    so the client decides it (here: blocking, the pipe empty and its write end open when the
    connection ends). The server's reads never block on it."""
    raw = RawClient(daemon.path)  # its pipe is blocking
    try:
        raw.use_pipe(daemon)
        os.set_blocking(raw.r, True)
        raw.sock.close()  # the end of the connection: the server reads the pipe's rest
        wait_until(lambda: daemon.run(lambda: daemon.server.clients) == 0)
        with evs.Client(daemon.path) as other:  # the loop goes on
            assert other.membership_get().members == (1,)
    finally:
        raw.close()


def _send_unread(daemon: Daemon, c: evs.Client) -> None:
    """A message into ``c``'s pipe that its executive, which stops reading, never reads."""
    c.join(["g"])
    d_r = daemon.run(lambda: next(iter(daemon.server._conns))._pipe)
    daemon.run(lambda: daemon.loop.remove_reader(d_r))
    c.mcast_joined(b"x" * 100)


def test_lost_requests_are_reported_at_the_end_of_the_socket(daemon: Daemon) -> None:
    """The executive ends the connection after its last read of the pipe and before the
    client's write: the client learns it at the socket's end, and its error counts them."""
    c = evs.Client(daemon.path)
    try:
        _send_unread(daemon, c)

        def end() -> None:
            conn = next(iter(daemon.server._conns))
            conn._close_pipe()
            conn.disconnect(Error(0, ErrorCode.ERROR, "test"))

        daemon.run(end)
        with pytest.raises(evs.EvsError, match=r"bytes of requests written .* never read"):
            list(c.events(timeout=5))
    finally:
        c.close()


def test_a_write_the_executive_never_read_is_reported_lost(daemon: Daemon) -> None:
    """The executive closed its end of the pipe with bytes in it (it ended the connection
    between a client's writes): the client's next write fails, and its error counts them."""
    c = evs.Client(daemon.path)
    try:
        _send_unread(daemon, c)
        assert pipe_unread(c._wfd) > 100
        daemon.run(lambda: next(iter(daemon.server._conns))._close_pipe())  # and lets go
        with pytest.raises(evs.NotConnected, match=r"bytes of requests .* never read"):
            c.mcast_joined(b"y")
    finally:
        c.close()


# ------------------------------------------------------------------------------ by hand


def _by_hand(body: Callable[[_Connection, FakeHost, int], None]) -> None:
    """A connection of this process that said Hello and UsePipe, passed its pipe over a real
    socket pair and joined a group through it, driven inside a running loop without yielding
    to it (the pipe's reader callback never runs): ``body(conn, host, w)``."""

    async def run() -> None:
        host = FakeHost()
        server = IpcServer(host, "/nonexistent/evs-test.sock")
        host.server = server
        conn = _Connection(server)
        transport = MemoryTransport()
        conn.transport = transport  # type: ignore[assignment]
        conn.pid, conn.uid = os.getpid(), os.geteuid()
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        conn._rest = ours
        server._conns.add(conn)
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            conn.data_received(encode(Hello(1, IPC_VERSION, os.getpid())) + encode(UsePipe(2)))
            assert (conn.awaiting_pipe, transport.reading) == (True, False)
            socket.send_fds(theirs, [b"\0"], [r])
            conn._receive_pipe()
            assert (conn.piped, transport.reading) == (True, True)
            os.write(w, encode(Join(3, (b"g",))))
            conn._pipe_readable()
            body(conn, host, w)
        finally:
            os.close(r)
            if conn._pipe >= 0:
                conn._close_pipe()
            os.close(w)
            theirs.close()
            if conn._rest is not None:
                conn._rest.close()

    def stalled(signum: int, frame: object) -> None:
        raise TimeoutError("the server blocked on the pipe")

    # A read that blocks would hang this thread for good: an alarm turns it into a failure.
    previous = signal.signal(signal.SIGALRM, stalled)
    signal.setitimer(signal.ITIMER_REAL, 20.0)
    try:
        asyncio.run(run())
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_the_end_of_the_socket_first_reads_what_the_pipe_holds() -> None:
    """The socket's end may be seen before the pipe's bytes: the server reads them then."""

    def body(conn: _Connection, host: FakeHost, w: int) -> None:
        sent = [b"m%d" % i for i in range(500)]
        os.write(w, b"".join(encode(Mcast(0, None, Guarantee.AGREED, m)) for m in sent))
        before = host.numbers
        conn.connection_lost(None)
        assert host.numbers - before == len(sent)
        assert conn._pipe == -1  # read and closed

    _by_hand(body)


def test_the_pipe_is_read_once_its_connection_is_being_closed() -> None:
    """After a Goodbye (here: an overflow), sends already in the pipe are still taken."""

    def body(conn: _Connection, host: FakeHost, w: int) -> None:
        conn.disconnect(Error(0, ErrorCode.ERROR, "test"))
        assert conn.closing
        os.write(w, encode(Mcast(0, None, Guarantee.AGREED, b"late")))
        before = host.numbers
        conn._pipe_readable()
        assert host.numbers - before == 1
        if conn._abort_timer is not None:
            conn._abort_timer.cancel()

    _by_hand(body)


def test_a_pipe_closed_by_the_client_is_closed_by_the_server() -> None:
    def body(conn: _Connection, host: FakeHost, w: int) -> None:
        fd = conn._pipe
        os.close(os.dup(w))  # not the end yet: w is still open
        conn._pipe_readable()  # EAGAIN: nothing to read, nothing changes
        assert conn._pipe == fd
        nul = os.open(os.devnull, os.O_RDONLY)
        os.dup2(nul, w)  # the pipe's last writer is gone
        os.close(nul)
        conn._pipe_readable()
        assert conn._pipe == -1

    _by_hand(body)


@pytest.mark.pure_only("evs.daemon.ipc_server")  # a smaller PIPE_REST_READS
def test_reading_the_rest_of_a_pipe_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """At the end of a connection the pipe is read up to what it holds then, in a bounded
    number of reads: a pipe in packet mode (one write per read) full of one-byte writes, or
    a writer that keeps writing, does not hold the loop."""

    def body(conn: _Connection, host: FakeHost, w: int) -> None:
        for reads, expect in ((None, 200), (10, 10)):
            r, pw = os.pipe2(os.O_CLOEXEC | os.O_DIRECT)
            fcntl.fcntl(pw, fcntl.F_SETPIPE_SZ, 1 << 20)
            for _ in range(200):
                os.write(pw, b"\0")
            os.dup2(r, conn._pipe)  # the connection's pipe is now this one
            os.close(r)
            if reads is not None:
                monkeypatch.setattr(ipc_server, "PIPE_REST_READS", reads)
            fd = conn._pipe
            rest = conn._pipe_rest()
            assert len(rest) == expect
            assert conn._pipe == -1
            conn._pipe = os.dup(pw)  # something to close for the next round and at the end
            os.close(pw)
            del fd

    _by_hand(body)


def test_a_client_writing_while_another_thread_closes_it_loses_nothing(daemon: Daemon) -> None:
    """close() lingers until the executive has read the pipe: every message a sender thread
    got through before the close arrives."""
    with evs.Client(daemon.path) as watcher:
        watcher.join(["g"])
        c = evs.Client(daemon.path)
        sent: list[bytes] = []
        stop = threading.Event()

        def flood() -> None:
            try:
                for i in range(200_000):
                    if stop.is_set():
                        return
                    data = b"%d" % i
                    c.mcast_groups(["g"], data)
                    sent.append(data)
            except evs.NotConnected:
                pass

        sender = threading.Thread(target=flood)
        sender.start()
        wait_until(lambda: len(sent) > 2000, timeout=10)
        c.close()
        stop.set()
        sender.join(10)
        assert not sender.is_alive()
        assert _received(watcher, len(sent)) == sent


# ------------------------------------------------------------------------------ AsyncClient


def test_an_async_client_writes_its_requests_to_a_pipe(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main(piped: bool) -> None:
        async with evs.AsyncClient(daemon.path) as c:
            assert (c._pipe is not None) == piped
            await c.join(["g"])
            sent = [b"%d" % i * (i % 50 + 1) for i in range(2000)]
            for data in sent:
                await c.mcast_joined(data)
            got: list[bytes] = []
            async for ev in c.events(timeout=5):
                if isinstance(ev, Delivery):
                    got.append(ev.data)
                    if len(got) == len(sent):
                        break
            assert got == sent

    asyncio.run(main(True))
    monkeypatch.setenv(ENV_PIPE, "0")
    asyncio.run(main(False))


def _small_pipe() -> tuple[int, int]:
    r, w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 4096)
    return r, w


def test_the_async_pipe_writer_keeps_what_does_not_fit_in_order() -> None:
    """Writes beyond the pipe's room are kept and written as the reader makes room; ``drain``
    returns once all of it is in the pipe, and the reader sees every byte once, in order."""

    async def main() -> None:
        r, w = _small_pipe()
        pw = _PipeWriter(w)
        loop = asyncio.get_running_loop()
        read = bytearray()

        def readable() -> None:
            read.extend(os.read(r, 1000))  # slower than the writer: the backlog grows

        sent = [bytes([i]) * (i * 97 % 3000 + 1) for i in range(100)]
        for data in sent:
            pw.write(data)
        assert pw._backlog  # far more than 4 KiB
        loop.add_reader(r, readable)
        await asyncio.wait_for(pw.drain(), 10)
        assert not pw._backlog
        total = sum(map(len, sent))
        while len(read) < total:
            await asyncio.sleep(0.001)  # the reader callback empties the pipe
        loop.remove_reader(r)
        assert bytes(read) == b"".join(sent)
        pw.close()
        os.close(r)

    asyncio.run(main())


def test_a_cancelled_drain_leaves_the_other_waiters_and_close_ends_them() -> None:
    async def main() -> None:
        r, w = _small_pipe()
        pw = _PipeWriter(w)
        pw.write(bytes(10_000))  # nobody reads: a backlog that stays
        first = asyncio.create_task(pw.drain())
        second = asyncio.create_task(pw.drain())
        await asyncio.sleep(0.01)
        first.cancel()
        await asyncio.sleep(0.01)
        assert not second.done()  # the shared wait was not cancelled with the first waiter
        pw.close()  # drops the backlog: the waiter learns it was not written
        with pytest.raises(BrokenPipeError):
            await asyncio.wait_for(second, 5)
        with pytest.raises(BrokenPipeError):
            pw.write(b"more")
        os.close(r)

    asyncio.run(main())


def test_an_async_writer_whose_reader_is_gone_fails() -> None:
    async def main() -> None:
        r, w = _small_pipe()
        pw = _PipeWriter(w)
        pw.write(bytes(10_000))
        os.close(r)  # the executive closed its end: the kept bytes cannot go
        with pytest.raises(BrokenPipeError):
            await asyncio.wait_for(pw.drain(), 5)
        pw.close()

    asyncio.run(main())
