"""Send-to-deliver latency on one node's own client, the ring idle between messages or not.

Why: at low load pyevs's latency is a few process wake-ups (client, executive, executive,
client) more than protocol; on a virtual machine a wake-up after an idle stretch costs far
more than one on a busy CPU. This separates the two: real executives on loopback
(``LocalCluster``, crypto off), a client on node 1 sends one 64-byte message and waits until
a client on node 1 delivers it, then sleeps ``--gap`` seconds; it prints the median and the
90th percentile of the round, and the median time of the ``mcast_groups`` call alone.
``--raw`` measures the floor instead: a bare 70-byte round trip over a socketpair to a forked
process waiting in ``epoll``, with the same sleeps.

    .venv/bin/python benchmarks/idle_latency.py [--nodes 1] [--gap 0.05] [--count 200] [--raw]
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import statistics
import struct
import tempfile
import time
from pathlib import Path

import evs
from evs.cli._cluster import LocalCluster


def wait_for_ring(tx: evs.Client, nodes: int, who: str) -> None:
    """Until ``tx``'s configuration has ``nodes`` members (20 s at most), then 1 s more: past
    the ring's first configuration changes."""
    deadline = time.monotonic() + 20
    while len(tx.membership_get().members) != nodes:
        if time.monotonic() > deadline:
            raise SystemExit(f"{who}: the ring did not form in 20 s")
        time.sleep(0.05)
    time.sleep(1.0)


def ping(
    tx: evs.Client, rx: evs.Client, count: int, gap: float, who: str
) -> tuple[list[float], list[float]]:
    """``count`` rounds of: ``tx`` sends one 64-byte message to group g, ``rx`` (joined to g)
    delivers it, then ``gap`` seconds of sleep. Returns each round's send-to-deliver time and
    each ``mcast_groups`` call's time, in seconds."""
    rounds: list[float] = []
    calls: list[float] = []
    for i in range(count):
        t0 = time.monotonic()
        tx.mcast_groups(["g"], struct.pack("!I", i) + bytes(60))
        calls.append(time.monotonic() - t0)
        for e in rx.events(timeout=5):
            if isinstance(e, evs.Delivery):
                break
        else:
            raise SystemExit(f"{who}: message {i} not delivered in 5 s")
        rounds.append(time.monotonic() - t0)
        time.sleep(gap)
    return rounds, calls


def raw(gap: float, count: int) -> None:
    """The floor: a round trip between two processes, no pyevs code on the path."""
    a, b = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the echoing peer
        a.close()
        ep = select.epoll()
        ep.register(b.fileno(), select.EPOLLIN)
        while True:
            ep.poll()
            data = b.recv(100)
            if not data:
                os._exit(0)
            b.send(data)
    b.close()
    sends: list[float] = []
    rounds: list[float] = []
    for _ in range(count):
        time.sleep(gap)
        t0 = time.perf_counter()
        a.sendall(bytes(70))
        t1 = time.perf_counter()
        a.recv(100)
        sends.append(t1 - t0)
        rounds.append(time.perf_counter() - t0)
    a.close()
    os.waitpid(pid, 0)
    print(
        f"raw socketpair, {gap * 1000:g} ms between messages, {count} messages: round trip "
        f"p50 {statistics.median(rounds) * 1e6:.0f} us, "
        f"send p50 {statistics.median(sends) * 1e6:.0f} us"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between messages")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--raw", action="store_true", help="the bare socket round trip only")
    args = parser.parse_args()
    if args.raw:
        raw(args.gap, args.count)
        return
    with tempfile.TemporaryDirectory(prefix="evs-idle-") as root:
        cluster = LocalCluster(Path(root), nodes=args.nodes, cipher="none")
        try:
            for n in cluster.ids:
                cluster.start(n)
            with evs.Client(cluster.socket(1)) as rx, evs.Client(cluster.socket(1)) as tx:
                rx.join(["g"])
                wait_for_ring(tx, args.nodes, "idle_latency")
                rounds, calls = ping(tx, rx, args.count, args.gap, "idle_latency")
        finally:
            cluster.stop_all()
    rounds.sort()
    print(
        f"{args.nodes} node(s), {args.gap * 1000:g} ms between messages, {args.count} messages: "
        f"p50 {statistics.median(rounds) * 1e6:.0f} us, "
        f"p90 {rounds[int(0.9 * (len(rounds) - 1))] * 1e6:.0f} us, "
        f"mcast call p50 {statistics.median(calls) * 1e6:.0f} us"
    )


if __name__ == "__main__":
    main()
