"""The asyncio client: ``evs.AsyncClient``, the same operations as ``Client`` as coroutines.

Theory of operation: the same ``ClientSession`` as the blocking client, around an asyncio
Unix stream. One reader task feeds every byte from the daemon to the session and wakes the
coroutines waiting on it (a broadcast ``asyncio.Event``, replaced at each wake-up). Requests
write their frame and wait for their reply. Events wait in the session for ``next_event`` or
``async for``; while ``EVENTS_BUFFERED_MAX`` of them are unread and no request waits for a
reply, the reader stops reading, so an application that does not consume events pushes back
on the daemon (which then cuts it off at its bound) instead of growing this process's memory.

As ``Client`` does, once connected the client asks to write its requests to a pipe
(``UsePipe``: half the system time per small write), written by ``_PipeWriter`` on this loop;
refused, or with ``EVS_IPC_PIPE=0``, they go to the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import json
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterable
from types import TracebackType
from typing import Any, TypeVar

from evs.client.pipe import ENV_PIPE, LOST_WAIT_S, new_request_pipe, pipe_lost_now, pipe_unread
from evs.client.session import ClientSession, window_full
from evs.client.sync_client import (
    BATCH_BYTES,
    CLOSE_LINGER_S,
    CONNECT_TIMEOUT_S,
    connect_error,
    resolve_socket_path,
)
from evs.errors import EvsError, NotConnected, TryAgain
from evs.ipc.messages import MembershipReply, Ok, RekeyReply, Reply, StatusReply, Welcome
from evs.types import Event, Guarantee, Membership

__all__ = ["EVENTS_BUFFERED_MAX", "AsyncClient"]

#: Unread events after which the reader stops reading (unless a reply is awaited).
EVENTS_BUFFERED_MAX = 4096
_READ_CHUNK = 256 << 10
_R = TypeVar("_R", bound=Reply)


class _PipeWriter:
    """The request pipe's writing end on the running loop: written at once while the pipe has
    room, the rest kept in order and written by the loop's writer callback as the executive
    reads. ``drain`` waits until nothing is kept (the session's send window bounds it)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        #: Owns the descriptor: a client dropped without close() leaks nothing.
        self._file = io.FileIO(fd, "wb", closefd=True)
        self._loop = asyncio.get_running_loop()
        self._backlog = bytearray()
        self._drained: asyncio.Future[None] | None = None
        #: Why writing failed (the executive closed its end), raised by every later call.
        self.error: OSError | None = None
        #: Bytes kept for writing that were dropped instead (the write failed, or close).
        self.dropped = 0

    def write(self, data: bytes) -> None:
        if self.error is not None:
            raise self.error
        if self._backlog:
            self._backlog += data
            return
        try:
            n = os.write(self.fd, data)
        except BlockingIOError:
            n = 0
        except OSError as exc:
            self.error = exc
            raise
        if n < len(data):
            self._backlog += memoryview(data)[n:]
            self._loop.add_writer(self.fd, self._writable)

    def _writable(self) -> None:
        try:
            n = os.write(self.fd, self._backlog)
        except BlockingIOError:
            return
        except OSError as exc:
            self.error = exc
            n = len(self._backlog)  # nothing of it will be written
            self.dropped += n
        del self._backlog[:n]
        if not self._backlog:
            self._loop.remove_writer(self.fd)
            self._wake()

    def _wake(self) -> None:
        done, self._drained = self._drained, None
        if done is not None and not done.done():
            done.set_result(None)

    async def drain(self) -> None:
        if self._backlog:
            if self._drained is None:
                self._drained = self._loop.create_future()
            # Shared by every waiting task: one of them cancelled must not cancel the others.
            await asyncio.shield(self._drained)
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Close the pipe (what is kept is dropped: ``drain`` first to keep it)."""
        if self.fd < 0:
            return
        if self._backlog:
            self._loop.remove_writer(self.fd)
            self.dropped += len(self._backlog)
            self._backlog.clear()
        self._file.close()
        self.fd = -1
        if self.error is None:
            self.error = BrokenPipeError(errno.EPIPE, "the request pipe is closed")
        self._wake()


class AsyncClient:
    """A handle on the local evs executive for asyncio programs.

    ``client = await AsyncClient.connect(path)`` or ``async with AsyncClient(path) as client``.
    """

    def __init__(
        self, socket_path: str | os.PathLike[str] | None = None, *, context: Any = None
    ) -> None:
        #: Anything the application wants to keep with this handle.
        self.context = context
        self.socket_path = resolve_socket_path(socket_path)
        self._session = ClientSession(os.getpid())
        self._writer: asyncio.StreamWriter | None = None
        #: The request pipe once the executive took it; None: requests go to the socket.
        self._pipe: _PipeWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._awaiting = 0
        self._closed = False
        #: Tasks inside ``batch()``: task -> depth of nesting.
        self._batching: dict[asyncio.Task[Any], int] = {}
        self.nodeid = 0
        self.handle_id = 0
        self.max_data = 0

    @classmethod
    async def connect(
        cls, socket_path: str | os.PathLike[str] | None = None, *, context: Any = None
    ) -> AsyncClient:
        client = cls(socket_path, context=context)
        await client.open()
        return client

    async def open(self) -> None:
        """Connect and say Hello; NotConnected or AccessDenied if that fails."""
        try:
            reader, writer = await asyncio.open_unix_connection(self.socket_path)
        except OSError as exc:
            raise connect_error(self.socket_path, exc) from None
        self._writer = writer
        self._reader_task = asyncio.create_task(self._read_loop(reader))
        try:
            welcome = await asyncio.wait_for(
                self._call(self._session.hello_id, Welcome), CONNECT_TIMEOUT_S
            )
        except TimeoutError:
            await self.close()
            raise NotConnected(
                f"the evs daemon at {self.socket_path} did not answer within {CONNECT_TIMEOUT_S} s"
            ) from None
        except BaseException:
            await self.close()
            raise
        self.nodeid = welcome.nodeid
        self.handle_id = welcome.handle_id
        self.max_data = welcome.max_data
        try:
            await self._use_pipe()
        except BaseException:
            await self.close()
            raise

    async def _use_pipe(self) -> None:
        """Ask the executive to read requests from a pipe (see ``Client._use_pipe``)."""
        writer = self._writer
        if os.environ.get(ENV_PIPE, "1") == "0" or writer is None:
            return
        try:
            await asyncio.wait_for(self._call(self._session.use_pipe(), Ok), CONNECT_TIMEOUT_S)
        except TimeoutError:
            raise NotConnected(
                f"the evs daemon at {self.socket_path} did not answer within {CONNECT_TIMEOUT_S} s"
            ) from None
        except EvsError:
            if self._session.ended is not None:
                raise
            return
        r, w = new_request_pipe()
        # The transport cannot pass a descriptor: a descriptor of its own socket can (the
        # transport has nothing buffered: the Ok came after the executive read UsePipe).
        sock = socket.socket(fileno=os.dup(writer.get_extra_info("socket").fileno()))
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + CONNECT_TIMEOUT_S
            while True:
                try:
                    socket.send_fds(sock, [b"\0"], [r])
                    break
                except BlockingIOError:
                    if loop.time() > deadline:
                        raise NotConnected(
                            f"the evs daemon at {self.socket_path} did not read for "
                            f"{CONNECT_TIMEOUT_S} s"
                        ) from None
                    await asyncio.sleep(0.01)  # a byte into a socket just drained: rare
                except OSError as exc:
                    raise connect_error(self.socket_path, exc) from None
            self._pipe, w = _PipeWriter(w), -1
        finally:
            sock.close()
            os.close(r)
            if w >= 0:
                os.close(w)

    async def close(self) -> None:
        """End the connection; events not yet read are dropped. Safe more than once.

        Messages sent and not yet taken by the executive are not lost: as ``Client.close``,
        it half-closes and waits (at most ``CLOSE_LINGER_S``) until the executive closes."""
        if self._closed:
            return
        s = self._session
        writer = self._writer
        pipe = self._pipe
        if s.ended is None and s.pending_bytes and writer is not None:
            with contextlib.suppress(OSError):  # a batch's messages (``batch``): buffered first
                if pipe is not None:
                    pipe.write(s.data_to_send())
                else:
                    writer.write(s.data_to_send())
        self._closed = True  # from here on, requests raise NotConnected (see _send)
        try:
            if s.ended is None and s.outstanding and writer is not None:
                with contextlib.suppress(OSError, TimeoutError):
                    await asyncio.wait_for(self._linger(writer, pipe), CLOSE_LINGER_S)
        finally:  # even if cancelled while lingering: nothing stays open
            s.close()
            self._wake()
            if self._reader_task is not None:
                self._reader_task.cancel()
            if pipe is not None:
                pipe.close()
            if writer is not None:
                writer.close()
        if self._reader_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
        if writer is not None:
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _linger(self, writer: asyncio.StreamWriter, pipe: _PipeWriter | None) -> None:
        """Everything written, the sending side closed, wait until the executive closes."""
        if pipe is not None:
            await pipe.drain()
            pipe.close()
        if writer.can_write_eof():
            writer.write_eof()
        self._awaiting += 1
        self._wake()
        await self._until(lambda: False)

    async def __aenter__(self) -> AsyncClient:
        if self._writer is None:
            await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    # ---------------------------------------------------------------- plumbing

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _until(self, ready: Callable[[], bool]) -> None:
        """Wait until ``ready()`` or the connection ends."""
        while not ready() and self._session.ended is None:
            await self._changed.wait()

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        s = self._session
        try:
            while s.ended is None:
                await self._until(
                    lambda: self._awaiting > 0 or s.events_waiting < EVENTS_BUFFERED_MAX
                )
                try:
                    data = await reader.read(_READ_CHUNK)
                except OSError as exc:
                    s.connection_lost(
                        f"the connection to the evs daemon at {self.socket_path} broke: "
                        f"{exc.strerror or exc}"
                    )
                    await self._note_unread()
                    break
                s.receive_data(data)
                if self._ended():  # by this read: Goodbye, an Error or the end of the socket
                    await self._note_unread()
                self._wake()
        finally:
            self._wake()

    def _ended(self) -> bool:
        return self._session.ended is not None

    async def _note_unread(self) -> None:
        """The connection ended: requests still in the pipe once the executive let go of it,
        or kept for it, were never read: say so (see ``Client._note_unread``)."""
        pipe = self._pipe
        if pipe is None:
            return
        unread: int | None = 0
        if pipe.fd >= 0:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + LOST_WAIT_S
            while (unread := pipe_lost_now(pipe.fd)) is None and loop.time() < deadline:
                await asyncio.sleep(0.01)
            if unread is None:
                unread = pipe_unread(pipe.fd)
        if unread or pipe.dropped:
            self._session.requests_lost((unread or 0) + pipe.dropped)

    async def _send(self) -> None:
        if self._closed and self._session.ended is None:
            raise NotConnected("this client is closed")
        data = self._session.data_to_send()
        writer = self._writer
        if writer is None or not data:
            return
        pipe = self._pipe
        try:
            if pipe is not None:
                pipe.write(data)
                await pipe.drain()
            else:
                writer.write(data)
                await writer.drain()
        except OSError as exc:
            self._session.connection_lost(
                f"the connection to the evs daemon at {self.socket_path} broke: "
                f"{exc.strerror or exc}"
            )
            await self._note_unread()
            self._wake()

    async def _call(self, rid: int, kind: type[_R]) -> _R:
        self._awaiting += 1
        self._wake()  # a paused reader must read for us
        try:
            await self._send()
            await self._until(lambda: self._session.done(rid))
        finally:
            self._awaiting -= 1
        reply = self._session.result(rid)
        assert isinstance(reply, kind), reply
        return reply

    # ---------------------------------------------------------------- requests

    async def join(self, groups: Iterable[str | bytes]) -> None:
        await self._call(self._session.join(groups), Ok)

    async def leave(self, groups: Iterable[str | bytes]) -> None:
        await self._call(self._session.leave(groups), Ok)

    async def mcast_joined(
        self,
        data: bytes,
        guarantee: Guarantee = Guarantee.AGREED,
        *,
        block: bool = True,
        timeout: float | None = None,
    ) -> None:
        await self._mcast(None, data, guarantee, block, timeout)

    async def mcast_groups(
        self,
        groups: Iterable[str | bytes],
        data: bytes,
        guarantee: Guarantee = Guarantee.AGREED,
        *,
        block: bool = True,
        timeout: float | None = None,
    ) -> None:
        await self._mcast(list(groups), data, guarantee, block, timeout)

    async def _mcast(
        self,
        groups: list[str | bytes] | None,
        data: bytes,
        guarantee: Guarantee,
        block: bool,
        timeout: float | None,
    ) -> None:
        """A windowed send; with the window full raise TryAgain (block=False) or wait."""
        s = self._session
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not s.send(groups, data, guarantee):
            # The executive gives room back for what it read: a batch's messages go first.
            await self._send()
            if not block:
                raise TryAgain(window_full(s))
            left = None if deadline is None else deadline - loop.time()
            self._awaiting += 1
            self._wake()  # a paused reader must read the credits for us
            try:
                await asyncio.wait_for(self._until(lambda: s.window_room(len(data))), left)
            except TimeoutError:
                raise TryAgain(f"{window_full(s)}, for {timeout} s") from None
            finally:
                self._awaiting -= 1
        batching = self._batching
        if not batching or s.pending_bytes >= BATCH_BYTES or asyncio.current_task() not in batching:
            await self._send()
        if s.ended is not None:  # the message may not have reached the executive
            raise s.ended

    @contextlib.asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        """Send the messages multicast inside the block together (see ``Client.batch``).

        Per task: this task's sends inside ``async with client.batch():`` queue and are
        written once per ``BATCH_BYTES`` and when the block ends (also by an exception or a
        cancellation); another task's send, any request, a full window and ``close()`` write
        what is queued first, so the order is kept.
        """
        if self._closed:
            raise NotConnected("this client is closed")
        task = asyncio.current_task()
        assert task is not None  # a coroutine of a running loop
        self._batching[task] = self._batching.get(task, 0) + 1
        depth = 0
        try:
            yield
        finally:
            depth = self._batching.pop(task) - 1
            if depth:
                self._batching[task] = depth
            elif not self._closed and self._session.ended is None:
                await self._send()
        if not depth and self._session.ended is not None and not self._closed:
            raise self._session.ended

    async def membership_get(self) -> Membership:
        reply = await self._call(self._session.membership_get(), MembershipReply)
        return reply.membership

    async def status(self) -> dict[str, Any]:
        """The executive's status (api.md section 3)."""
        value = json.loads((await self._call(self._session.status_get(), StatusReply)).text)
        if not isinstance(value, dict):
            raise NotConnected(f"the evs daemon sent a status that is not an object: {value!r}")
        return value

    async def rekey(self, key: bytes = b"", *, members_only: bool = False) -> dict[str, Any]:
        """Start an online key rotation (see ``evs.Client.rekey``)."""
        reply = await self._call(self._session.rekey(bytes(key), members_only), RekeyReply)
        value = json.loads(reply.text)
        if not isinstance(value, dict):
            raise NotConnected(f"the evs daemon sent a rekey reply that is no object: {value!r}")
        return value

    # ---------------------------------------------------------------- events

    async def next_event(self, timeout: float | None = None) -> Event | None:
        """The next event; None after ``timeout`` s without one; NotConnected at the end."""
        s = self._session
        if not s.events_waiting and s.ended is None:
            try:
                await asyncio.wait_for(self._until(lambda: s.events_waiting > 0), timeout)
            except TimeoutError:
                return None
        ev = s.next_event()
        if ev is None:
            assert s.ended is not None
            raise s.ended
        if s.events_waiting == EVENTS_BUFFERED_MAX - 1:
            self._wake()  # the reader may read again
        return ev

    def __aiter__(self) -> AsyncIterator[Event]:
        return self.events()

    async def events(self, timeout: float | None = None) -> AsyncIterator[Event]:
        """Events as they come; ends after ``timeout`` s without one, or at ``close()``."""
        queue = self._session.queue
        while True:
            if queue:  # already read (most come many to a read): next_event without an await
                taken = queue.popleft()
                if len(queue) == EVENTS_BUFFERED_MAX - 1:
                    self._wake()  # the reader may read again
                yield taken
                continue
            try:
                ev = await self.next_event(timeout)
            except NotConnected:
                if self._closed:
                    return
                raise
            if ev is None:
                return
            yield ev
