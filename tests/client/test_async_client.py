"""AsyncClient against the real IpcServer (its loop in a thread, ours in the test)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

import evs
from evs.client import async_client
from evs.totem.events import Sent
from evs.types import ConfigChange, Delivery, Guarantee

from .conftest import RING, Daemon


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


def test_try_again_room_again(daemon: Daemon) -> None:
    async def main() -> None:
        c = await evs.AsyncClient.connect(daemon.path)
        await c.join(["g"])
        daemon.run(lambda: setattr(daemon.host, "full", True))
        with pytest.raises(evs.TryAgain, match="0 of 8"):
            await c.mcast_joined(b"x", block=False)
        with pytest.raises(evs.TryAgain, match="no room"):
            await c.mcast_joined(b"x", timeout=0.02)
        blocked = asyncio.create_task(c.mcast_joined(b"y", timeout=5))
        counters = daemon.host.service.counters
        while daemon.run(lambda: counters["try again"]) < 3:
            await asyncio.sleep(0.005)

        def room() -> None:
            daemon.host.full = False
            daemon.host.step([Sent(999, RING)])

        daemon.run(room)
        await blocked
        await c.membership_get()  # a round trip: the delivery is buffered now
        got = [ev async for ev in c.events(timeout=0)]
        assert [e.data for e in got if isinstance(e, Delivery)] == [b"y"]
        await c.close()
        await c.close()

    run(main())


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


def test_reader_pauses_on_unread_events_but_replies_still_come(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(async_client, "EVENTS_BUFFERED_MAX", 2)

    async def main() -> None:
        async with evs.AsyncClient(daemon.path) as c:
            await c.join(["g"])

            def send() -> None:
                with evs.Client(daemon.path) as sender:
                    for i in range(10):
                        sender.mcast_groups(["g"], b"%d" % i)

            await asyncio.to_thread(send)
            assert (await c.membership_get()).members == (1,)  # not stuck behind the pause
            got = []
            async for ev in c:
                if isinstance(ev, Delivery):
                    got.append(ev.data)
                    if len(got) == 10:
                        break
            assert got == [b"%d" % i for i in range(10)]

    run(main())
