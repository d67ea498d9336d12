"""UdpTransport on real loopback sockets: udpu, batching, drops, send errors; udp multicast in
a private network namespace.

Ordering on one loopback socket is FIFO, so a test that expects a datagram to be dropped
sends a good "marker" datagram after it and waits for the marker: by then the drop is counted.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from pathlib import Path
from typing import Any

import pytest
from udp_helpers import Inbox, free_port, opened, run_in_namespace

from evs.daemon.udp import BROADCAST, UdpTransport

HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
HERE = Path(__file__).resolve().parent
SRC = str(HERE.parents[1] / "src")


def ring(port: int, **kwargs: Any) -> tuple[list[UdpTransport], list[Inbox]]:
    """Three udpu transports, nodes 1..3 on 127.0.0.1..3, and their inboxes."""
    nodes = {i + 1: (host, port) for i, host in enumerate(HOSTS)}
    inboxes = [Inbox() for _ in HOSTS]
    transports = [
        UdpTransport("udpu", host, port, nodes, i + 1, inboxes[i], **kwargs)
        for i, host in enumerate(HOSTS)
    ]
    return transports, inboxes


def run(coro: Any) -> None:
    asyncio.run(coro)


def test_udpu_broadcast_and_unicast() -> None:
    async def body() -> None:
        (t1, t2, t3), (in1, in2, in3) = ring(free_port(HOSTS))
        with opened([t1, t2, t3]):
            t1.send(BROADCAST, b"to all")
            assert await in2.wait_count(1) == [(1, b"to all")]
            assert await in3.wait_count(1) == [(1, b"to all")]
            t2.send(3, b"token")
            t3.send(1, b"back")
            assert await in3.wait_count(2) == [(1, b"to all"), (2, b"token")]
            assert await in1.wait_count(1) == [(3, b"back")]
            assert in2.datagrams == [(1, b"to all")]  # the unicast to 3 did not reach 2
            assert t1.counters["tx_datagrams"] == 2  # one sendto per other node
            assert t1.counters["tx_bytes"] == 12
            assert t3.counters["rx_datagrams"] == 2
            assert t3.counters["rx_bytes"] == 11
            assert t1.counters["rcvbuf"] > 0
            assert t1.counters["sndbuf"] > 0

    run(body())


def test_a_waiting_flood_is_drained_in_one_batch() -> None:
    async def body() -> None:
        (t1, t2, t3), (_, in2, _) = ring(free_port(HOSTS))
        with opened([t1, t2, t3]):
            wakeups = t2.counters["rx_wakeups"]
            for i in range(100):  # all queued before the loop gets a turn
                t1.send(2, i.to_bytes(2, "big"))
            got = await in2.wait_count(100)
            assert [int.from_bytes(d, "big") for _, d in got] == list(range(100))
            assert len(in2.batches) == 1
            assert t2.counters["rx_batch_max"] == 100
            assert t2.counters["rx_wakeups"] == wakeups + 1

    run(body())


def test_batches_are_bounded_for_fairness() -> None:
    async def body() -> None:
        (t1, t2, t3), (_, in2, _) = ring(free_port(HOSTS), batch_max=8)
        with opened([t1, t2, t3]):
            for i in range(20):
                t1.send(2, bytes([i]))
            await in2.wait_count(20)
            assert [len(b) for b in in2.batches] == [8, 8, 4]
            assert t2.counters["rx_batch_max"] == 8

    run(body())


class _RecordingSocket(socket.socket):
    """A UDP socket that records what the transport sends instead of sending it."""

    def __init__(self) -> None:
        super().__init__(socket.AF_INET, socket.SOCK_DGRAM)
        self.sent: list[tuple[str, bytes]] = []

    def sendto(self, data: Any, address: Any) -> int:  # type: ignore[override]
        self.sent.append((address[0], bytes(data)))
        return len(data)

    def sendmsg(self, buffers: Any, ancdata: Any = (), flags: int = 0, address: Any = None) -> int:
        self.sent += [(address[0], bytes(b)) for b in buffers]
        return sum(len(b) for b in buffers)


def _record_flush(t: UdpTransport, sends: list[tuple[int, bytes]]) -> list[tuple[str, list[bytes]]]:
    """Cork, send, flush; return each destination's datagrams in the order they went out.

    The transport's own send paths run (compiled too); only its socket records instead of
    sending. Consecutive datagrams to one destination are grouped."""
    recorder = _RecordingSocket()
    t._unicast = recorder
    try:
        t.cork()
        for dest, data in sends:
            t.send(dest, data)
        t.flush()
    finally:
        t._unicast = None
        recorder.close()
    out: list[tuple[str, list[bytes]]] = []
    for address, data in recorder.sent:
        if out and out[-1][0] == address:
            out[-1][1].append(data)
        else:
            out.append((address, [data]))
    return out


def test_a_light_step_sends_the_token_successor_its_copy_last() -> None:
    """One message and the token (low load): the peer that only needs the message has it
    before the successor, whose wake-up could otherwise hold the rest of the step up."""
    (t1, _, _), _ = ring(free_port(HOSTS))
    assert _record_flush(t1, [(BROADCAST, b"m"), (2, b"token")]) == [
        ("127.0.0.3", [b"m"]),
        ("127.0.0.2", [b"m", b"token"]),
    ]


def test_a_loaded_step_keeps_the_order_datagrams_came_in() -> None:
    (t1, _, _), _ = ring(free_port(HOSTS))
    assert _record_flush(t1, [(BROADCAST, b"m1"), (BROADCAST, b"m2"), (2, b"token")]) == [
        ("127.0.0.2", [b"m1", b"m2", b"token"]),
        ("127.0.0.3", [b"m1", b"m2"]),
    ]
    assert _record_flush(t1, [(3, b"alone")]) == [("127.0.0.3", [b"alone"])]


def test_a_token_ahead_of_a_visits_packets_keeps_its_place_after_a_retransmission() -> None:
    """A busy visit's token goes ahead of its new packets (token_ahead_min); with a
    retransmission before it the step looked light when the token was queued, but it is not:
    the successor's token must leave before the packets, not after every other peer's."""
    (t1, _, _), _ = ring(free_port(HOSTS))
    sends = [(BROADCAST, b"rtr"), (2, b"token")] + [(BROADCAST, b"p%d" % i) for i in range(5)]
    assert _record_flush(t1, sends) == [
        ("127.0.0.2", [b"rtr", b"token", b"p0", b"p1", b"p2", b"p3", b"p4"]),
        ("127.0.0.3", [b"rtr", b"p0", b"p1", b"p2", b"p3", b"p4"]),
    ]
    # The same start without the packets is a light step again.
    assert _record_flush(t1, [(BROADCAST, b"m"), (2, b"token")])[-1] == (
        "127.0.0.2",
        [b"m", b"token"],
    )


def test_unknown_sources_are_dropped_and_counted() -> None:
    async def body() -> None:
        port = free_port(HOSTS)
        (t1, t2, t3), (_, in2, _) = ring(port)
        with (
            opened([t1, t2, t3]),
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as wrong_port,
        ):
            stranger.bind(("127.0.0.9", 0))
            wrong_port.bind(("127.0.0.1", 0))  # a known host, but not the node's port
            stranger.sendto(b"intruder", ("127.0.0.2", port))
            wrong_port.sendto(b"intruder", ("127.0.0.2", port))
            t1.send(2, b"marker")
            assert await in2.wait_count(1) == [(1, b"marker")]
            assert t2.counters["rx_unknown_source"] == 2
            assert t2.counters["rx_datagrams"] == 1

    run(body())


def test_own_address_is_ignored() -> None:
    async def body() -> None:
        (t1, t2, t3), (_, in2, _) = ring(free_port(HOSTS))
        with opened([t1, t2, t3]):
            assert t2._unicast is not None
            t2._unicast.sendto(b"myself", t2.address)  # cannot happen through send()
            t1.send(2, b"marker")
            assert await in2.wait_count(1) == [(1, b"marker")]
            assert t2.counters["rx_from_self"] == 1

    run(body())


def test_truncated_datagrams_are_dropped_and_counted() -> None:
    async def body() -> None:
        (t1, t2, t3), (_, in2, _) = ring(free_port(HOSTS), recv_buffer_size=1024)
        with opened([t1, t2, t3]):
            t1.send(2, b"x" * 1025)
            t1.send(2, b"y" * 1024)  # exactly fills the buffer: whole, kept
            t1.send(2, b"marker")
            got = await in2.wait_count(2)
            assert got == [(1, b"y" * 1024), (1, b"marker")]
            assert t2.counters["rx_truncated"] == 1

    run(body())


def test_datagram_over_own_mtu_is_delivered_but_counted() -> None:
    async def body() -> None:
        (t1, t2, t3), (_, in2, _) = ring(free_port(HOSTS), netmtu=576)
        with opened([t1, t2, t3]):
            t1.send(2, b"z" * 548)  # 576 - 28: fits
            t1.send(2, b"z" * 549)
            await in2.wait_count(2)
            assert t2.counters["rx_over_mtu"] == 1

    run(body())


def test_send_errors_are_counted_never_raised() -> None:
    async def body() -> None:
        port = free_port(HOSTS)
        (t1, t2, _), (_, in2, _) = ring(port)
        with opened([t1, t2]):  # node 3 never opened: nothing listens on its port
            t1.send(3, b"into the void")
            t1.send(2, b"x" * 70000)  # larger than any UDP datagram
            t1.send(2, b"marker")
            assert await in2.wait_count(1) == [(1, b"marker")]
            assert t1.counters["tx_error_EMSGSIZE"] == 1
            assert t1.counters["tx_datagrams"] == 2
            t1.send(1, b"self")  # the driver loops these back; the transport refuses them
            t1.send(99, b"stranger")
            assert t1.counters["tx_unknown_destination"] == 2

    run(body())


class FailingSocket:
    """Stands in for the unicast socket: every sendto fails with the next error."""

    def __init__(self, errors: list[OSError]) -> None:
        self.errors = errors

    def sendto(self, data: bytes, address: tuple[str, int]) -> int:
        raise self.errors.pop(0)


def test_each_send_error_counted_by_errno_name() -> None:
    (t1, _, _), _ = ring(9)
    errors: list[OSError] = [
        OSError(errno.ENOBUFS, "No buffer space available"),
        BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable"),
        ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
        OSError(errno.EHOSTUNREACH, "No route to host"),
        OSError(errno.ENOBUFS, "No buffer space available"),
    ]
    t1._unicast = FailingSocket(errors)  # type: ignore[assignment]
    t1.send(BROADCAST, b"a")  # two sends: one per other node
    t1.send(2, b"b")
    t1.send(3, b"c")
    t1.send(2, b"d")
    assert {k: v for k, v in t1.counters.items() if k.startswith("tx_")} == {
        "tx_datagrams": 0,
        "tx_bytes": 0,
        "tx_unknown_destination": 0,
        "tx_gso_sends": 0,
        "tx_gso_off": 0,
        "tx_error_ENOBUFS": 2,
        "tx_error_EAGAIN": 1,
        "tx_error_ECONNREFUSED": 1,
        "tx_error_EHOSTUNREACH": 1,
    }


def test_bind_failure_names_address_and_port() -> None:
    async def body() -> None:
        port = free_port(HOSTS)
        (t1, _, _), _ = ring(port)
        (again, _, _), _ = ring(port)
        with opened([t1]):
            with pytest.raises(
                OSError, match=f"cannot bind the UDP unicast socket to 127.0.0.1:{port}: "
            ) as info:
                again.open()
            assert info.value.errno == errno.EADDRINUSE
            assert again._unicast is None  # nothing left open

    run(body())


def test_close_is_idempotent_and_stops_reading() -> None:
    async def body() -> None:
        (t1, t2, t3), (_, in2, in3) = ring(free_port(HOSTS))
        with opened([t1, t2, t3]):
            t2.close()
            t2.close()
            t1.send(BROADCAST, b"after close")
            assert await in3.wait_count(1) == [(1, b"after close")]
            assert in2.datagrams == []
            with pytest.raises(RuntimeError, match="not open"):
                t2.send(1, b"x")

    run(body())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "tcp"}, 'mode must be "udpu" or "udp"'),
        ({"nodeid": 7}, r"node 7 is not in the node list \[1, 2\]"),
        ({"bind": "127.0.0.2"}, "node 1's address 127.0.0.1 is not bind 127.0.0.2"),
        ({"mode": "udp"}, '"udp" mode needs a multicast mcast_addr, got None'),
        ({"mode": "udp", "mcast_addr": "10.0.0.1"}, "needs a multicast mcast_addr"),
        ({"nodes": {1: ("127.0.0.1", 9), 2: ("127.0.0.1", 9)}}, "addresses unique"),
    ],
)
def test_constructor_refuses_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {
        "mode": "udpu",
        "bind": "127.0.0.1",
        "port": 9,
        "nodes": {1: ("127.0.0.1", 9), 2: ("127.0.0.2", 9)},
        "nodeid": 1,
        "on_datagrams": Inbox(),
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        UdpTransport(**args)


# ----------------------------------------------------------------------- "udp" (multicast)


def test_udp_multicast_mode_in_a_network_namespace() -> None:
    result = run_in_namespace(
        "ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo",
        "udp_mcast_body.py",
    )
    # Node 1 multicast once; nodes 2, 3 and 4 (a second executive on 127.0.0.1) got it.
    assert result["received"] == {
        "1": [[4, "token"]],
        "2": [[1, "hello"]],
        "3": [[1, "hello"]],
        "4": [[1, "hello"]],
    }
    assert result["runs_received"] == {"1": True, "2": True, "4": True}
    c3 = result["counters"]["3"]
    assert c3["tx_datagrams"] == 4
    assert c3["tx_gso_sends"] + c3["tx_gso_off"] == 1  # segmented, or refused once
    c1 = result["counters"]["1"]
    assert c1["tx_datagrams"] == 1  # one sendto for the whole group
    assert c1["rx_own_echo"] == 1  # its own copy came back and was ignored
    assert result["counters"]["4"]["rx_own_echo"] == 0
    assert result["ttl"] == 1
    assert result["loop"] == 1
