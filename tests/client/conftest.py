"""A real IpcServer on a real Unix socket, over a fake host whose core echoes every message.

The server's asyncio loop runs in a thread, so tests drive the blocking ``Client`` from the
main thread (and ``AsyncClient`` from their own loop) while ``Daemon.run`` executes host-side
steps (feed events, pump) in the server's loop. Waits are on conditions with bounded time.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

import evs
from evs.daemon.ipc_server import IpcServer
from evs.errors import TryAgain
from evs.ipc.codec import FrameDecoder, encode
from evs.ipc.messages import IPC_VERSION, Error, ErrorCode, Frame, Ok, UsePipe, Welcome
from evs.runtime.send_window import SEND_WINDOW, SendWindows
from evs.runtime.service import HANDLE_QUEUE_BYTES, EvsService
from evs.totem.events import CoreEvent, Deliver, Sent
from evs.types import ConfigChange, Guarantee, RingId

RING = RingId(4, 1)
T = TypeVar("T")


class FakeHost:
    """A ServiceHost whose core delivers each submitted message at once, to this node."""

    def __init__(
        self,
        *,
        handle_queue_bytes: int = HANDLE_QUEUE_BYTES,
        send_window: int = SEND_WINDOW,
        reader_hold_ms: float = 0.0,
    ) -> None:
        self.nodeid = 1
        self.service = EvsService(
            1, self.submit, handle_queue_bytes=handle_queue_bytes, reader_hold_ms=reader_hold_ms
        )
        self.windows = SendWindows(self.service, send_window)
        self.server: IpcServer | None = None
        #: submit raises TryAgain while set (a full send queue).
        self.full = False
        self.queued: list[CoreEvent] = []
        self.numbers = 0
        self.after_requests = 0
        self.service.feed([ConfigChange(RING, False, (1,), (), (1,))])

    def submit(self, groups: Sequence[bytes], payload: bytes, guarantee: Guarantee) -> int:
        if self.full:
            raise TryAgain("the send queue is full: 0 of 8 messages free")
        n = self.numbers
        self.numbers += 1
        self.queued += [Deliver(1, tuple(groups), payload, guarantee, RING), Sent(n, RING)]
        return n

    def after_request(self) -> None:
        self.after_requests += 1
        self.step([])

    def step(self, events: list[CoreEvent]) -> None:
        """One step of the runtime: the core's events to the service, then the server pumps."""
        if self.service.readers_due:  # as the executive does; the give-up timer is not here
            self.service.check_readers(time.monotonic() * 1000.0)
        if not self.full:
            self.windows.drain()
        events = self.queued + events
        self.queued = []
        self.service.feed(events)
        assert self.server is not None
        self.server.pump()

    def status(self) -> dict[str, Any]:
        return {
            "nodeid": 1,
            "ring_id": str(RING),
            "state": "operational",
            "members": [1],
            "counters": dict(self.service.counters),
        }


class Daemon:
    """IpcServer + FakeHost on an asyncio loop of their own, in a thread."""

    def __init__(self, path: Path, host: FakeHost | None = None, **server_kw: Any) -> None:
        self.path = path
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.host = host or FakeHost()
        self.server = IpcServer(self.host, path, **server_kw)
        self.host.server = self.server
        self.stopped = False
        self.call(self.server.start())

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` in the server's loop (host and service are not thread-safe)."""

        async def wrapper() -> T:
            return fn()

        return self.call(wrapper())

    def counter(self, name: str) -> int:
        return self.run(lambda: self.server.counters[name])

    def handle_pids(self) -> list[int]:
        """The pids of the open handles, as the service recorded them."""
        return self.run(lambda: [h.pid for h in self.host.service.handles.values()])

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.call(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class SilentDaemon:
    """A daemon that answers one client's Hello with a Welcome and its UsePipe (taking the pipe
    with ``pipe``, refusing it otherwise), and never reads again: the client's writes fill the
    pipe or the socket, as with an executive that stopped reading."""

    def __init__(self, path: Path, send_window: int, *, pipe: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.send_window = send_window
        self.pipe = pipe
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(1)
        self.held: list[socket.socket] = []
        self.pipes: list[int] = []

    def connect(self) -> evs.Client:
        """A client of this daemon, its Welcome received."""
        server = threading.Thread(target=self._serve)
        server.start()
        client = evs.Client(str(self.path))
        server.join(5)
        assert (client._wfd >= 0) == self.pipe
        return client

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        self.held.append(conn)
        dec = FrameDecoder()

        def take() -> Frame:
            while (frame := next(dec, None)) is None:
                dec.feed(conn.recv(4096))
            return frame

        hello = take()
        welcome = Welcome(hello.request_id, IPC_VERSION, 1, 1, self.send_window, 64, 32, 1 << 31)
        conn.sendall(encode(welcome))
        use = take()
        assert isinstance(use, UsePipe)
        if self.pipe:
            conn.sendall(encode(Ok(use.request_id)))
            _, fds, _, _ = socket.recv_fds(conn, 1, 1)
            self.pipes += fds
        else:
            conn.sendall(encode(Error(use.request_id, ErrorCode.ACCESS_DENIED, "no pipes here")))

    def hang_up(self) -> None:
        """Close the daemon's side: a write the client waits on then fails."""
        for conn in self.held:
            conn.close()
        self.held.clear()
        for fd in self.pipes:
            os.close(fd)
        self.pipes.clear()

    def close(self) -> None:
        self.hang_up()
        self.listener.close()


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll a condition (bounded); the test fails if it never holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


@pytest.fixture
def sock_path() -> Iterator[Path]:
    # Short: a Unix socket path is limited to 107 bytes, pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="evs-", dir="/tmp") as d:
        yield Path(d) / "run" / "evs.sock"


@pytest.fixture
def daemon(sock_path: Path) -> Iterator[Daemon]:
    d = Daemon(sock_path)
    yield d
    d.stop()
