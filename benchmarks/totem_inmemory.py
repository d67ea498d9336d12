"""Protocol cost per delivered message per processor: the pure core, no simulator, no I/O.

N processors on a static ring exchange datagrams through an in-memory FIFO (no loss, no
delay model, no timers firing). Only time spent inside the core (``submit`` and ``receive``)
is counted, with a clock read around each call, and divided by messages x processors. Every
processor sends, so the ring is loaded from all sides.

The clock is ``time.perf_counter_ns`` (a vDSO read, tens of nanoseconds) unless ``--clock
process`` asks for ``time.process_time_ns``, a system call that costs about 460 ns on a KVM
guest: with it, half a clock call per interval lands inside the figure, a fixed cost that
flatters any comparison of a faster core with a slower one. Run it on an otherwise idle
machine; the wall clock counts whatever else the machine does.

    .venv/bin/python benchmarks/totem_inmemory.py [--nodes 5] [--messages 20000]
"""

from __future__ import annotations

import argparse
import time
from collections import deque

from evs.errors import TryAgain
from evs.totem.config import TotemConfig
from evs.totem.events import BROADCAST, Deliver
from evs.totem.processor import Processor
from evs.types import Guarantee


def run(
    nodes: int,
    size: int,
    messages: int,
    guarantee: Guarantee,
    netmtu: int = 1500,
    *,
    clock_name: str = "perf",
) -> tuple[float, int, float]:
    """Returns (core ns per message per processor, deliveries, wall seconds)."""
    ids = tuple(range(1, nodes + 1))
    procs = {n: Processor(TotemConfig(netmtu=netmtu), n, static_members=ids) for n in ids}
    wire: deque[tuple[int, bytes]] = deque()
    core_ns = 0
    clock = time.perf_counter_ns if clock_name == "perf" else time.process_time_ns
    per_node = messages // nodes
    left = dict.fromkeys(ids, per_node)
    payload = b"x" * size
    delivered = 0
    now = 0.0

    def route(n: int) -> None:
        nonlocal delivered
        p = procs[n]
        for dest, data in p.outbox:
            if dest == BROADCAST:
                wire.extend((d, data) for d in ids if d != n)
            else:
                wire.append((dest, data))
        p.outbox.clear()
        delivered += sum(1 for e in p.events if isinstance(e, Deliver))
        p.events.clear()

    def feed(n: int) -> None:
        nonlocal core_ns
        p = procs[n]
        t0 = clock()
        while left[n] and p.packer.queued_messages() < 256:
            try:
                p.submit(now, (b"bench",), payload, guarantee)
            except TryAgain:
                break
            left[n] -= 1
        core_ns += clock() - t0

    wall = time.perf_counter()
    for n in ids:
        feed(n)
        t0 = clock()
        procs[n].start(now)
        core_ns += clock() - t0
        route(n)
    target = per_node * nodes * nodes
    steps = 0
    while delivered < target and wire:
        dest, data = wire.popleft()
        now += 0.001
        feed(dest)
        t0 = clock()
        procs[dest].receive(now, data)
        core_ns += clock() - t0
        route(dest)
        steps += 1
        if steps > 50_000_000:
            raise RuntimeError("benchmark did not converge")
    if delivered < target:
        raise RuntimeError(f"only {delivered} of {target} deliveries")
    return core_ns / (per_node * nodes * nodes), delivered, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--messages", type=int, default=20000, help="for 100-byte messages")
    parser.add_argument("--netmtu", type=int, default=1500, help="datagram size (576..65507)")
    parser.add_argument(
        "--clock",
        choices=("perf", "process"),
        default="perf",
        help="perf_counter_ns (default) or process_time_ns (a system call per read)",
    )
    args = parser.parse_args()
    print(
        f"ring of {args.nodes} processors, every processor sending, netmtu {args.netmtu}; "
        f"time inside the core only ({args.clock} clock)"
    )
    for size, count in ((100, args.messages), (1024, args.messages), (65536, args.messages // 50)):
        for guarantee in (Guarantee.AGREED, Guarantee.SAFE):
            ns, deliveries, wall = run(
                args.nodes, size, count, guarantee, args.netmtu, clock_name=args.clock
            )
            print(
                f"{size:>6} B {guarantee.label:>6}: {ns / 1000:7.2f} us per message per "
                f"processor ({deliveries} deliveries, {wall:.1f} s wall)",
                flush=True,
            )


if __name__ == "__main__":
    main()
