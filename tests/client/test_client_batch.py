"""``Client.batch()``: messages multicast inside the block are written together, in order.

Against a real IpcServer on a real Unix socket (conftest). The client's request writer (its
pipe) is wrapped to count writes, so each test sees when bytes left, not only that they arrived.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

import evs
from evs.client.sync_client import BATCH_BYTES
from evs.types import Delivery

from .conftest import Daemon, FakeHost, SilentDaemon


class _CountedWrites:
    """A client's request writer (to its pipe or socket) that counts its writes."""

    def __init__(self, send: Callable[[bytes | memoryview], int]) -> None:
        self._send = send
        self.calls = 0

    def __call__(self, data: bytes | memoryview) -> int:
        self.calls += 1
        return self._send(data)


def _counted(c: evs.Client) -> _CountedWrites:
    counted = _CountedWrites(c._send_raw)
    c._send_raw = counted
    return counted


def _delivered(c: evs.Client) -> list[bytes]:
    c.membership_get()  # a round trip: everything sent before it is delivered by now
    return [e.data for e in c.events(timeout=0) if isinstance(e, Delivery)]


def test_a_batch_is_written_once_at_its_end_in_order(daemon: Daemon) -> None:
    with evs.Client(daemon.path) as c:
        c.join(["g"])
        counted = _counted(c)
        sent = [b"m%d" % i for i in range(50)]
        with c.batch():
            for data in sent:
                c.mcast_joined(data)
            assert counted.calls == 0  # queued, not written yet
        assert counted.calls == 1
        assert _delivered(c) == sent


def test_a_long_batch_is_written_every_batch_bytes(daemon: Daemon) -> None:
    with evs.Client(daemon.path) as c:
        c.join(["g"])
        counted = _counted(c)
        sent = [bytes([i]) * 1000 for i in range(3 * BATCH_BYTES // 1000)]
        with c.batch():
            for data in sent:
                c.mcast_joined(data)
            inside = counted.calls
        assert 2 <= inside <= 3  # one write per BATCH_BYTES of messages
        assert _delivered(c) == sent


def test_without_a_batch_every_message_is_written_at_once(daemon: Daemon) -> None:
    with evs.Client(daemon.path) as c:
        c.join(["g"])
        counted = _counted(c)
        for i in range(5):
            c.mcast_joined(b"%d" % i)
            assert counted.calls == i + 1


def test_a_batch_ended_by_an_exception_still_sends_what_it_accepted(daemon: Daemon) -> None:
    with evs.Client(daemon.path) as c:
        c.join(["g"])

        def fails() -> None:
            with c.batch():
                c.mcast_joined(b"a")
                c.mcast_joined(b"b")
                raise RuntimeError("the application failed")

        with pytest.raises(RuntimeError, match="application"):
            fails()
        assert _delivered(c) == [b"a", b"b"]


def test_nested_batches_write_at_the_outermost_end(daemon: Daemon) -> None:
    with evs.Client(daemon.path) as c:
        c.join(["g"])
        counted = _counted(c)
        with c.batch():
            c.mcast_joined(b"a")
            with c.batch():
                c.mcast_joined(b"b")
            assert counted.calls == 0
            c.mcast_joined(b"c")
        assert counted.calls == 1
        assert _delivered(c) == [b"a", b"b", b"c"]


def test_a_request_inside_a_batch_writes_the_messages_queued_before_it(daemon: Daemon) -> None:
    with evs.Client(daemon.path) as c:
        c.join(["g"])
        with c.batch():
            c.mcast_joined(b"a")
            c.mcast_joined(b"b")
            assert _delivered(c) == [b"a", b"b"]  # the round trip went after them


def test_another_threads_send_writes_the_batch_queued_before_it(daemon: Daemon) -> None:
    with evs.Client(daemon.path) as c:
        c.join(["g"])
        counted = _counted(c)
        with c.batch():
            c.mcast_joined(b"a")
            t = threading.Thread(target=c.mcast_joined, args=(b"b",))
            t.start()
            t.join(5)
            assert not t.is_alive()
            assert counted.calls == 1  # the other thread is not batching: both left
            c.mcast_joined(b"c")
        assert _delivered(c) == [b"a", b"b", b"c"]


def test_a_full_window_inside_a_batch_writes_the_batch_and_waits_for_room(
    sock_path: Path,
) -> None:
    """The executive gives room back only for messages it has read: a batch that filled the
    window must be written before the send waits, or the wait never ends (TryAgain here)."""
    d = Daemon(sock_path, FakeHost(send_window=1000))  # 6 messages of 100 bytes (164 each)
    try:
        with evs.Client(d.path) as c:
            c.join(["g"])
            sent = [b"%02d" % i + bytes(98) for i in range(30)]
            with c.batch():
                for data in sent:
                    c.mcast_joined(data, timeout=5)
            assert _delivered(c) == sent
    finally:
        d.stop()


def test_close_inside_a_batch_sends_what_it_queued(daemon: Daemon) -> None:
    with evs.Client(daemon.path) as listener:
        listener.join(["g"])
        sender = evs.Client(daemon.path)
        with sender.batch():
            for i in range(10):
                sender.mcast_groups(["g"], b"m%d" % i)
            sender.close()
        with pytest.raises(evs.NotConnected, match="closed"):
            sender.mcast_groups(["g"], b"late")
        got: list[bytes] = []
        for e in listener.events(timeout=5):
            if isinstance(e, Delivery):
                got.append(e.data)
                if len(got) == 10:
                    break
        assert got == [b"m%d" % i for i in range(10)]


def test_a_batch_of_a_closed_client_says_so(daemon: Daemon) -> None:
    c = evs.Client(daemon.path)
    c.close()
    with pytest.raises(evs.NotConnected, match="closed"), c.batch():
        pass


# ---------------------------------------------------------------- AsyncClient.batch


def _run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 10))


def _count_writes(c: evs.AsyncClient) -> list[int]:
    """Sizes of the client's request writes from now on (each one passed on)."""
    writer = c._pipe
    assert writer is not None  # the request pipe
    sizes: list[int] = []
    write = writer.write

    def counted(data: bytes) -> None:
        sizes.append(len(data))
        write(data)

    writer.write = counted  # type: ignore[method-assign]
    return sizes


async def _adelivered(c: evs.AsyncClient) -> list[bytes]:
    await c.membership_get()  # a round trip: everything sent before it is delivered by now
    got: list[bytes] = []
    while (ev := await c.next_event(timeout=0)) is not None:
        if isinstance(ev, Delivery):
            got.append(ev.data)
    return got


def test_an_async_batch_is_written_once_at_its_end_in_order(daemon: Daemon) -> None:
    async def main() -> None:
        async with evs.AsyncClient(daemon.path) as c:
            await c.join(["g"])
            writes = _count_writes(c)
            sent = [b"m%d" % i for i in range(50)]
            async with c.batch():
                for data in sent:
                    await c.mcast_joined(data)
                assert writes == []
            assert len(writes) == 1
            assert await _adelivered(c) == sent
            writes.clear()
            for i in range(3):  # outside a batch: one write per message again
                await c.mcast_joined(b"%d" % i)
            assert len(writes) == 3

    _run(main())


def test_an_async_batch_is_per_task_and_kept_in_order(daemon: Daemon) -> None:
    async def main() -> None:
        async with evs.AsyncClient(daemon.path) as c:
            await c.join(["g"])
            writes = _count_writes(c)
            async with c.batch():
                await c.mcast_joined(b"a")
                await asyncio.create_task(c.mcast_joined(b"b"))  # not batching: both leave
                assert len(writes) == 1
                await c.mcast_joined(b"c")
            assert await _adelivered(c) == [b"a", b"b", b"c"]

    _run(main())


def test_an_async_batch_that_fills_the_window_writes_and_waits(sock_path: Path) -> None:
    d = Daemon(sock_path, FakeHost(send_window=1000))

    async def main() -> None:
        async with evs.AsyncClient(d.path) as c:
            await c.join(["g"])
            sent = [b"%02d" % i + bytes(98) for i in range(30)]
            async with c.batch():
                for data in sent:
                    await c.mcast_joined(data, timeout=5)
            assert await _adelivered(c) == sent

    try:
        _run(main())
    finally:
        d.stop()


def test_an_async_batch_ended_by_an_exception_or_close_still_sends(daemon: Daemon) -> None:
    async def main() -> None:
        async with evs.AsyncClient(daemon.path) as listener:
            await listener.join(["g"])
            sender = await evs.AsyncClient.connect(daemon.path)

            async def fails() -> None:
                async with sender.batch():
                    await sender.mcast_groups(["g"], b"a")
                    raise RuntimeError("the application failed")

            with pytest.raises(RuntimeError, match="application"):
                await fails()
            async with sender.batch():
                await sender.mcast_groups(["g"], b"b")
                await sender.close()
            with pytest.raises(evs.NotConnected, match="closed"):
                async with sender.batch():
                    pass
            got: list[bytes] = []
            while len(got) < 2:
                ev = await listener.next_event(timeout=5)
                assert ev is not None, got
                if isinstance(ev, Delivery):
                    got.append(ev.data)
            assert got == [b"a", b"b"]

    _run(main())


@pytest.mark.parametrize("pipe", [True, False])
def test_close_gives_up_writing_a_batch_to_a_daemon_that_stopped_reading(
    sock_path: Path, monkeypatch: pytest.MonkeyPatch, pipe: bool
) -> None:
    """A batch's rest waits for room in the socket at close(); a daemon that never reads
    again must not hang close() past the linger bound."""
    from evs.client import sync_client  # noqa: PLC0415

    monkeypatch.setattr(sync_client, "CLOSE_LINGER_S", 0.5)
    d = SilentDaemon(sock_path, 1 << 30, pipe=pipe)  # a window far larger than any buffer
    try:
        c = d.connect()
        monkeypatch.setattr(sync_client, "BATCH_BYTES", 1 << 40)  # nothing written before close
        with c.batch():
            for _ in range(300):  # 18 MB: far more than the socket's buffers hold
                c.mcast_groups(["g"], bytes(60_000))
            assert c._session.pending_bytes > 17_000_000
            started = time.monotonic()
            closing = threading.Thread(target=c.close)  # a hang fails the test, not the run
            closing.start()
            closing.join(5)
            hung = closing.is_alive()
            if hung:  # end the write (it fails once the daemon's side is gone), then fail
                d.hang_up()
                closing.join(5)
            assert not hung, "close() hung on a daemon that stopped reading"
            assert time.monotonic() - started < 3
        assert c.closed
    finally:
        d.close()
