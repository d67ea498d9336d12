"""The contract of api.md section 1, run against both ways of hosting a processor:
``evs.Node`` (embedded, in this process) and ``evs daemon`` (a separate process). Each test
gets a two-node ring on loopback and a factory of clients per node; everything a client sees
must be the same whichever host serves it."""

from __future__ import annotations

import asyncio
import os
import select
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import evs
from evs.cli._cluster import LocalCluster, free_port
from evs.daemon.config_file import load_config, render_config
from evs.daemon.key_file import write_key_file

MakeClient = Callable[..., evs.Client]
NODES = (1, 2)


class Ring:
    """Two processors and a way to connect a client to either."""

    def __init__(self, paths: dict[int, str], stop: Callable[[int], None]) -> None:
        self.paths = paths
        self.stop = stop
        self.clients: list[evs.Client] = []

    def client(self, n: int, **kw: object) -> evs.Client:
        c = evs.Client(self.paths[n], **kw)  # type: ignore[arg-type]
        self.clients.append(c)
        return c


def _node_ring(tmp: Path) -> Iterator[Ring]:
    port = free_port()
    nodes = {n: (f"127.0.0.{n}", port) for n in NODES}
    running: dict[int, evs.Node] = {}
    key = tmp / "authkey"
    write_key_file(key)
    for n in NODES:
        d = tmp / f"n{n}"
        d.mkdir()
        text = render_config(
            n,
            nodes,
            socket=d / "unused.sock",
            state_dir=d / "state",
            port=port,
            token=1000,
            cipher="aes-256-gcm",  # the daemon ring below has the default, chacha20-poly1305
            key_file=key,
        )
        (d / "evs.toml").write_text(text)
        running[n] = evs.Node(load_config(d / "evs.toml"))
    ring = Ring({n: node.socket_path for n, node in running.items()}, lambda n: running[n].close())
    try:
        yield ring
    finally:
        for c in ring.clients:
            c.close()
        for node in running.values():
            node.close()


def _daemon_ring(tmp: Path) -> Iterator[Ring]:
    cluster = LocalCluster(tmp, nodes=len(NODES), token=1000)
    for n in NODES:
        cluster.start(n)

    def stop(n: int) -> None:
        cluster.terminate(n)
        cluster.wait(n)

    ring = Ring({n: cluster.socket(n) for n in NODES}, stop)
    try:
        yield ring
    finally:
        for c in ring.clients:
            c.close()
        cluster.stop_all()


@pytest.fixture(params=["node", "daemon"])
def ring(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ring]:
    make = _node_ring if request.param == "node" else _daemon_ring
    yield from make(tmp_path)


def next_event(c: evs.Client, timeout: float = 10.0) -> evs.Event:
    for ev in c.events(timeout=timeout):
        return ev
    raise AssertionError(f"no event within {timeout} s")


def wait_full_ring(c: evs.Client) -> evs.ConfigChange:
    """Events until a regular configuration of both nodes (the ring may still be forming)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        ev = next_event(c)
        if isinstance(ev, evs.ConfigChange) and not ev.transitional and ev.members == NODES:
            return ev
    raise AssertionError("no ring of both nodes within 15 s")


def deliveries(c: evs.Client, count: int, timeout: float = 10.0) -> list[evs.Delivery]:
    out: list[evs.Delivery] = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"only {len(out)} of {count} deliveries within {timeout} s"
        ev = next_event(c, left)
        if isinstance(ev, evs.Delivery):
            out.append(ev)
    return out


def test_first_join_gives_the_current_configuration_then_ordered_messages(ring: Ring) -> None:
    a, b = ring.client(1), ring.client(2)
    a.join(["g"])
    b.join([b"g"])
    conf_a, conf_b = wait_full_ring(a), wait_full_ring(b)
    assert conf_a.ring_id == conf_b.ring_id
    m = a.membership_get()
    assert m.local_nodeid == 1
    assert m.members == NODES
    late = ring.client(2)
    late.join(["g"])
    first = next_event(late)
    assert isinstance(first, evs.ConfigChange)
    assert (first.transitional, first.members, first.joined) == (False, NODES, NODES)
    for i in range(20):
        (a if i % 2 else b).mcast_joined(f"m{i}".encode(), evs.Guarantee.AGREED)
    got = [[d.data for d in deliveries(c, 20)] for c in (a, b, late)]
    assert got[0] == got[1] == got[2]
    assert sorted(got[0]) == sorted(f"m{i}".encode() for i in range(20))


def test_self_delivery_exactly_once_with_sender_node_pid_groups_and_guarantee(ring: Ring) -> None:
    a = ring.client(1)
    a.join(["x", "y"])
    wait_full_ring(a)
    a.mcast_groups(["x", "y"], b"both", evs.Guarantee.SAFE)
    a.mcast_groups(["x"], b"after", evs.Guarantee.AGREED)
    d1, d2 = deliveries(a, 2)
    assert d1 == evs.Delivery(1, os.getpid(), (b"x", b"y"), b"both", evs.Guarantee.SAFE)
    assert d2.data == b"after"
    assert list(a.events(timeout=0.3)) == []  # one copy each, though it joined both groups


def test_named_groups_reach_only_their_members_and_leave_stops_delivery(ring: Ring) -> None:
    sender, member, other = ring.client(1), ring.client(2), ring.client(2)
    sender.join(["s"])
    member.join(["g"])
    other.join(["h"])
    for c in (sender, member, other):
        wait_full_ring(c)
    sender.mcast_groups(["g"], b"to g", evs.Guarantee.AGREED)  # sender has not joined g
    sender.mcast_joined(b"to s", evs.Guarantee.AGREED)
    assert [d.data for d in deliveries(member, 1)] == [b"to g"]
    assert [d.data for d in deliveries(sender, 1)] == [b"to s"]
    member.leave(["g"])
    member.join(["h"])
    sender.mcast_groups(["g"], b"to g again", evs.Guarantee.AGREED)
    sender.mcast_groups(["h"], b"to h", evs.Guarantee.AGREED)
    assert [d.data for d in deliveries(member, 1)] == [b"to h"]
    assert [d.data for d in deliveries(other, 1)] == [b"to h"]


def test_fileno_dispatch_callbacks_and_context(ring: Ring) -> None:
    seen: list[evs.Event] = []
    c = ring.client(1, on_deliver=seen.append, on_confchg=seen.append, context={"k": 1})
    assert c.context == {"k": 1}
    c.context = "mine"
    assert c.context == "mine"
    assert c.dispatch(evs.DispatchFlags.ONE_NONBLOCKING) == 0
    c.join(["d"])
    r, _, _ = select.select([c.fileno()], [], [], 10)
    assert r, "fileno not readable with a configuration waiting"
    assert c.dispatch(evs.DispatchFlags.ONE) == 1
    assert isinstance(seen[0], evs.ConfigChange)
    c.mcast_joined(b"1")
    c.mcast_joined(b"2")
    deadline = time.monotonic() + 10
    while sum(isinstance(e, evs.Delivery) for e in seen) < 2 and time.monotonic() < deadline:
        select.select([c.fileno()], [], [], 1)
        c.dispatch(evs.DispatchFlags.ALL)
    assert [e.data for e in seen if isinstance(e, evs.Delivery)] == [b"1", b"2"]
    assert c.dispatch(evs.DispatchFlags.ALL) == 0


def test_errors_name_the_limit_and_closed_handles_are_not_connected(ring: Ring) -> None:
    c = ring.client(1)
    with pytest.raises(evs.InvalidArgument, match="64"):
        c.join(["x" * 65])
    with pytest.raises(evs.InvalidArgument, match="limit"):
        c.mcast_groups(["g"], bytes(2 << 20))
    with pytest.raises(evs.InvalidArgument):
        c.mcast_joined(b"no group joined")
    c.close()
    with pytest.raises(evs.NotConnected):
        c.join(["g"])


def test_flow_control_try_again_then_blocking_send_and_nothing_lost(ring: Ring) -> None:
    a, b = ring.client(1), ring.client(2)
    b.join(["f"])
    wait_full_ring(b)
    a.join(["f"])
    accepted = 0
    refused = False
    for _ in range(20_000):  # bounded: 64 KiB each fills the 2 MiB send queue quickly
        try:
            a.mcast_joined(accepted.to_bytes(4, "big") + bytes(65_000), block=False)
        except evs.TryAgain:
            refused = True
            break
        accepted += 1
    assert refused, "the send queue never filled"
    a.mcast_joined(accepted.to_bytes(4, "big"), timeout=30)  # blocks until there is room
    got = [int.from_bytes(d.data[:4], "big") for d in deliveries(b, accepted + 1, timeout=60)]
    assert got == list(range(accepted + 1))


def test_windowed_sends_held_for_room_all_arrive_in_order(ring: Ring) -> None:
    """Three senders each fill their send window (1 MiB) at once: together they outrun the
    core's send queue (2 MiB), so the executive holds messages for room, and every one of them
    still arrives, in each sender's order, also once the ring falls idle after the last."""
    b = ring.client(2)
    b.join(["w"])
    wait_full_ring(b)
    senders = [ring.client(1) for _ in range(3)]
    sent = [0, 0, 0]
    for k, a in enumerate(senders):
        for _ in range(200):  # bounded: the 1 MiB window holds 16 of these
            try:
                a.mcast_groups(
                    ["w"], bytes([k]) + sent[k].to_bytes(4, "big") + bytes(65_000), block=False
                )
            except evs.TryAgain:
                break
            sent[k] += 1
        assert 0 < sent[k] < 200, sent
    got = [
        (d.data[0], int.from_bytes(d.data[1:5], "big"))
        for d in deliveries(b, sum(sent), timeout=60)
    ]
    for k in range(3):
        assert [seq for s, seq in got if s == k] == list(range(sent[k]))
    with evs.Client(ring.paths[1]) as probe:
        assert probe.status()["counters"]["sends held for room"] > 0  # the path was taken


def test_a_stopped_peer_gives_transitional_then_regular_configuration(ring: Ring) -> None:
    a = ring.client(1)
    a.join(["t"])
    wait_full_ring(a)
    ring.stop(2)
    trans = next_event(a, 15)
    reg = next_event(a, 15)
    assert isinstance(trans, evs.ConfigChange)
    assert isinstance(reg, evs.ConfigChange)
    assert (trans.transitional, trans.members, trans.left) == (True, (1,), (2,))
    assert (reg.transitional, reg.members, reg.left, reg.joined) == (False, (1,), (), ())
    assert a.membership_get().members == (1,)


def test_async_client_has_the_same_operations(ring: Ring) -> None:
    async def main() -> list[bytes]:
        async with await evs.AsyncClient.connect(ring.paths[1]) as c:
            await c.join(["a"])
            got: list[bytes] = []
            async for ev in c:
                if isinstance(ev, evs.ConfigChange) and ev.members == NODES:
                    await c.mcast_joined(b"async 1")
                    await c.mcast_groups(["a"], b"async 2", evs.Guarantee.SAFE)
                elif isinstance(ev, evs.Delivery):
                    got.append(ev.data)
                    if len(got) == 2:
                        assert (await c.membership_get()).members == NODES
                        return got
        return []

    assert asyncio.run(asyncio.wait_for(main(), 20)) == [b"async 1", b"async 2"]
