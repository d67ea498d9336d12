"""AsyncClient against the real IpcServer (its loop in a thread, ours in the test)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterable, Coroutine
from pathlib import Path
from typing import Any

import pytest

import evs
from evs.client import async_client
from evs.types import ConfigChange, Delivery, Event, Guarantee

from .conftest import RING, Daemon, FakeHost, wait_until


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 10))


def test_join_mcast_and_async_for(daemon: Daemon) -> None:
    async def main() -> None:
        async with evs.AsyncClient(daemon.path, context=3) as c:
            assert c.context == 3
            assert c.nodeid == 1
            assert (await c.membership_get()).members == (1,)
            await c.join(["g"])
            await c.mcast_joined(b"one")
            await c.mcast_groups(["g"], b"two", Guarantee.SAFE)
            got: list[evs.Event] = []
            async for ev in c:
                got.append(ev)
                if len(got) == 3:
                    break
            assert got == [
                ConfigChange(RING, False, (1,), (), (1,)),
                Delivery(1, os.getpid(), (b"g",), b"one", Guarantee.AGREED),
                Delivery(1, os.getpid(), (b"g",), b"two", Guarantee.SAFE),
            ]
            assert await c.next_event(timeout=0.01) is None
            assert (await c.status())["state"] == "operational"
            with pytest.raises(evs.InvalidArgument, match="not a member"):
                await c.leave(["other"])
        assert c.closed

    run(main())


def test_full_window_try_again_then_credit(sock_path: Path) -> None:
    d = Daemon(sock_path, FakeHost(send_window=1000))

    async def main() -> None:
        c = await evs.AsyncClient.connect(d.path)
        await c.join(["g"])
        d.run(lambda: setattr(d.host, "full", True))
        for i in range(6):
            await c.mcast_joined(b"%d" % i + bytes(99), block=False)
        with pytest.raises(evs.TryAgain, match="the send window is 1000 bytes"):
            await c.mcast_joined(b"x", block=False)
        with pytest.raises(evs.TryAgain, match=r"for 0\.02 s"):
            await c.mcast_joined(b"x", timeout=0.02)
        blocked = asyncio.create_task(c.mcast_joined(b"y", timeout=5))
        done, _ = await asyncio.wait([blocked], timeout=0.2)
        assert not done, "a blocking send must wait while the window is full"

        def room() -> None:
            d.host.full = False
            d.host.step([])

        d.run(room)
        await blocked
        await c.membership_get()  # a round trip: the deliveries are buffered now
        got = [ev async for ev in c.events(timeout=0)]
        assert [e.data[:1] for e in got if isinstance(e, Delivery)] == [
            b"0",
            b"1",
            b"2",
            b"3",
            b"4",
            b"5",
            b"y",
        ]
        await c.close()
        await c.close()

    try:
        run(main())
    finally:
        d.stop()


def test_close_lingers_for_sent_messages_and_cancelling_it_still_closes(sock_path: Path) -> None:
    d = Daemon(sock_path)

    async def main() -> None:
        c = await evs.AsyncClient.connect(d.path)
        await c.join(["g"])
        d.run(lambda: setattr(d.host, "full", True))
        await c.mcast_joined(b"held", block=False)  # held: no credit comes back
        d.loop.call_soon_threadsafe(time.sleep, 1.0)  # the executive stalls for a second
        closing = asyncio.create_task(c.close())
        await asyncio.sleep(0)  # close() half-closed and now waits for the executive
        assert not closing.done()
        with pytest.raises(evs.NotConnected, match="closed"):
            await c.mcast_joined(b"late", block=False)
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
        assert c._reader_task is not None
        await asyncio.wait([c._reader_task], timeout=5)
        assert c._reader_task.done()
        assert c._writer is not None
        assert c._writer.is_closing()
        await c.close()  # again: nothing to do

    try:
        run(main())
        # What the client sent before closing was taken, once the executive woke.
        wait_until(lambda: d.run(lambda: d.host.windows.waiting) == 1)
    finally:
        d.stop()


def test_errors(daemon: Daemon, tmp_path: Path) -> None:
    async def main() -> None:
        with pytest.raises(evs.NotConnected, match="No such file"):
            await evs.AsyncClient.connect(tmp_path / "none.sock")
        c = await evs.AsyncClient.connect(daemon.path)
        await c.join(["g"])
        await asyncio.to_thread(daemon.stop)
        with pytest.raises(evs.NotConnected, match="shutting down"):
            async for _ in c:
                pass
        with pytest.raises(evs.NotConnected, match="shutting down"):
            await c.membership_get()
        await c.close()

    run(main())


def _send_numbered(daemon: Daemon, n: int) -> None:
    """Messages b"0", b"1", ... to group g from a blocking client of its own."""
    with evs.Client(daemon.path) as sender:
        for i in range(n):
            sender.mcast_groups(["g"], b"%d" % i)


async def _numbered(events: AsyncIterable[Event], n: int) -> list[bytes]:
    """The data of the first ``n`` deliveries (fewer if the stream ends first)."""
    got: list[bytes] = []
    async for ev in events:
        if isinstance(ev, Delivery):
            got.append(ev.data)
            if len(got) == n:
                break
    return got


def test_iterating_events_wakes_the_paused_reader(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads of about one delivery each, at most two events buffered: iterating alone (no
    request in between) must let the reader go on, or the stream stops after two events."""
    monkeypatch.setattr(async_client, "EVENTS_BUFFERED_MAX", 2)
    monkeypatch.setattr(async_client, "_READ_CHUNK", 40)

    async def main() -> None:
        async with evs.AsyncClient(daemon.path) as c:
            await c.join(["g"])
            await asyncio.to_thread(_send_numbered, daemon, 50)
            assert await _numbered(c.events(timeout=5.0), 50) == [b"%d" % i for i in range(50)]

    run(main())


def test_reader_pauses_on_unread_events_but_replies_still_come(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(async_client, "EVENTS_BUFFERED_MAX", 2)

    async def main() -> None:
        async with evs.AsyncClient(daemon.path) as c:
            await c.join(["g"])

            await asyncio.to_thread(_send_numbered, daemon, 10)
            assert (await c.membership_get()).members == (1,)  # not stuck behind the pause
            got = await _numbered(c, 10)
            assert got == [b"%d" % i for i in range(10)]

    run(main())
