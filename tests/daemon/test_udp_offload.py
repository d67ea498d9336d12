"""UdpTransport's batched sends (UDP segmentation) and coalesced reads (UDP_GRO).

What must hold: a corked step's datagrams reach every peer as exactly the datagrams that
were sent, in order, whether the receiver reads them coalesced or one by one; runs are cut
where the kernel needs them cut; a path that cannot segment costs nothing (each datagram goes
alone, for good); a failed run is counted per datagram like failed sendto calls.

Real loopback sockets for the first group, a recording stand-in socket for the run
boundaries and the errors, and a private network namespace for a link whose MTU is below
the datagrams (the kernel's own refusal, not a simulated one).
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from udp_helpers import Inbox, free_port, opened, run_in_namespace

from evs.daemon.udp import BROADCAST, GSO_BYTES_MAX, GSO_SEGMENTS_MAX, UDP_SEGMENT, UdpTransport

HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
HERE = Path(__file__).resolve().parent
SRC = str(HERE.parents[1] / "src")


def ring(
    port: int, offload: tuple[bool, bool, bool] = (True, True, True)
) -> tuple[list[UdpTransport], list[Inbox]]:
    nodes = {i + 1: (host, port) for i, host in enumerate(HOSTS)}
    inboxes = [Inbox() for _ in HOSTS]
    transports = [
        UdpTransport("udpu", host, port, nodes, i + 1, inboxes[i], offload=offload[i])
        for i, host in enumerate(HOSTS)
    ]
    return transports, inboxes


def datagrams(sizes: list[int]) -> list[bytes]:
    """Distinct contents, so a reordered, merged or cut datagram cannot go unnoticed."""
    return [bytes([i % 251]) * size for i, size in enumerate(sizes)]


# One visit's worth: full packets, a shorter last one, then a run of another size, a token.
SIZES = [1472] * 9 + [700] + [1200] * 3 + [90]


@pytest.mark.parametrize("receiver_offload", [True, False], ids=["gro", "plain"])
def test_a_corked_step_arrives_as_the_same_datagrams(receiver_offload: bool) -> None:
    async def body() -> None:
        (t1, t2, t3), (_, in2, in3) = ring(free_port(HOSTS), (True, receiver_offload, True))
        sent = datagrams(SIZES)
        with opened([t1, t2, t3]):
            t1.cork()
            for data in sent:
                t1.send(BROADCAST, data)
            t1.send(2, b"token")
            assert in2.datagrams == []  # nothing left before flush
            t1.flush()
            assert [d for _, d in await in2.wait_count(len(sent) + 1)] == [*sent, b"token"]
            assert [d for _, d in await in3.wait_count(len(sent))] == sent
            # Per peer two calls: the 1472s ended by the 700, then the 1200s ended by the
            # 90. The token to node 2 comes after the 90, which ended that run: a sendto.
            assert t1.counters["tx_gso_sends"] == 4
            assert t1.counters["tx_datagrams"] == 2 * len(sent) + 1
            assert t1.counters["tx_bytes"] == 2 * sum(SIZES) + 5
            assert t2.counters["rx_datagrams"] == len(sent) + 1
            if receiver_offload:
                assert t2.counters["rx_gro_reads"] >= 1  # the kernel did coalesce
            else:
                assert t2.counters["rx_gro_reads"] == 0

    asyncio.run(body())


def test_sends_outside_cork_go_at_once() -> None:
    async def body() -> None:
        (t1, t2, t3), (_, in2, _) = ring(free_port(HOSTS))
        with opened([t1, t2, t3]):
            t1.send(2, b"now")
            assert await in2.wait_count(1) == [(1, b"now")]
            assert t1.counters["tx_gso_sends"] == 0
            t1.cork()
            t1.flush()  # nothing queued: nothing sent
            assert t1.counters["tx_datagrams"] == 1

    asyncio.run(body())


def test_close_forgets_what_was_queued() -> None:
    async def body() -> None:
        (t1, t2, t3), _ = ring(free_port(HOSTS))
        with opened([t1, t2, t3]):
            t1.cork()
            t1.send(2, b"never")
            t1.close()
            t1.flush()  # nothing left to send, so no "not open" error either
            assert t1.counters["tx_datagrams"] == 0

    asyncio.run(body())


class RecordingSocket:
    """Stands in for the unicast socket: records calls; sendmsg may fail with given errors."""

    def __init__(self, sendmsg_errors: list[OSError] | None = None) -> None:
        self.calls: list[tuple[str, list[int], int]] = []
        self.sendmsg_errors = sendmsg_errors or []

    def sendto(self, data: bytes, address: tuple[str, int]) -> int:
        self.calls.append(("sendto", [len(data)], 0))
        return len(data)

    def sendmsg(
        self, buffers: list[bytes], ancillary: list[tuple[int, int, bytes]], flags: int, addr: Any
    ) -> int:
        if self.sendmsg_errors:
            raise self.sendmsg_errors.pop(0)
        ((level, kind, value),) = ancillary
        assert (level, kind) == (socket.IPPROTO_UDP, UDP_SEGMENT)
        self.calls.append(("sendmsg", [len(b) for b in buffers], int.from_bytes(value, "little")))
        return sum(len(b) for b in buffers)


def corked(t: UdpTransport, sizes: list[int], dest: int = 2) -> None:
    t.cork()
    for data in datagrams(sizes):
        t.send(dest, data)
    t.flush()


def test_runs_are_cut_where_the_kernel_needs() -> None:
    (t1, _, _), _ = ring(9)
    sock = RecordingSocket()
    t1._unicast = sock  # type: ignore[assignment]
    # A longer datagram starts a new run; a shorter one ends the run it joins.
    corked(t1, [100, 100, 100, 40, 100, 100, 200, 200, 300])
    assert sock.calls == [
        ("sendmsg", [100, 100, 100, 40], 100),
        ("sendmsg", [100, 100], 100),
        ("sendmsg", [200, 200], 200),
        ("sendto", [300], 0),
    ]
    sock.calls.clear()
    corked(t1, [10] * (GSO_SEGMENTS_MAX + 3))  # the kernel's segment count
    assert [(kind, len(sizes)) for kind, sizes, _ in sock.calls] == [
        ("sendmsg", GSO_SEGMENTS_MAX),
        ("sendmsg", 3),
    ]
    sock.calls.clear()
    big = 20_000
    corked(t1, [big] * 4)  # the kernel's bytes per call
    per_call = GSO_BYTES_MAX // big
    assert [len(sizes) for _, sizes, _ in sock.calls] == [per_call, 4 - per_call]
    assert all(sum(sizes) <= GSO_BYTES_MAX for _, sizes, _ in sock.calls)
    sock.calls.clear()
    corked(t1, [50])  # one datagram: a plain sendto
    assert sock.calls == [("sendto", [50], 0)]
    # Every datagram was counted once.
    assert t1.counters["tx_datagrams"] == 9 + GSO_SEGMENTS_MAX + 3 + 4 + 1


@pytest.mark.parametrize("code", [errno.EMSGSIZE, errno.EINVAL, errno.EIO])
def test_a_path_that_cannot_segment_sends_singly_for_good(code: int) -> None:
    (t1, _, _), _ = ring(9)
    sock = RecordingSocket([OSError(code, os.strerror(code))])
    t1._unicast = sock  # type: ignore[assignment]
    corked(t1, [100, 100, 60])
    assert sock.calls == [("sendto", [100], 0), ("sendto", [100], 0), ("sendto", [60], 0)]
    assert t1.counters["tx_gso_off"] == 1
    assert t1.counters["tx_datagrams"] == 3
    sock.calls.clear()
    corked(t1, [100, 100])  # not tried again
    assert [kind for kind, _, _ in sock.calls] == ["sendto", "sendto"]
    assert t1.counters["tx_gso_off"] == 1


def test_a_failed_run_counts_each_datagram_by_errno() -> None:
    (t1, _, _), _ = ring(9)
    sock = RecordingSocket([OSError(errno.ENOBUFS, "No buffer space available")])
    t1._unicast = sock  # type: ignore[assignment]
    corked(t1, [100, 100, 100])
    assert t1.counters["tx_error_ENOBUFS"] == 3
    assert t1.counters["tx_datagrams"] == 0
    assert t1.counters["tx_gso_off"] == 0  # a full buffer says nothing about the path
    corked(t1, [100, 100])
    assert sock.calls == [("sendmsg", [100, 100], 100)]


def test_offload_off_sends_one_datagram_per_call() -> None:
    (t1, _, _), _ = ring(9, (False, True, True))
    sock = RecordingSocket()
    t1._unicast = sock  # type: ignore[assignment]
    corked(t1, [100, 100, 100])
    assert [kind for kind, _, _ in sock.calls] == ["sendto"] * 3


def test_a_link_mtu_below_the_datagrams_falls_back_in_a_namespace() -> None:
    """The kernel itself refuses to segment 3000-byte datagrams over a 1500-byte link."""
    result = run_in_namespace("ip link set lo up && ip link set lo mtu 1500", "udp_offload_body.py")
    assert result["same"] is True  # every datagram arrived whole and in order
    assert result["tx_gso_off"] == 1
    assert result["tx_gso_sends"] == 0
    assert result["small_runs_after"] == 0  # segmentation stays off after the refusal
