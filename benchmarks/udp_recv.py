"""Receive cost of the UDP transport: CPU microseconds per datagram, and loss, under a flood.

A sender process (node 1 on 127.0.0.1) sends ``--count`` datagrams of ``--size`` bytes to a
receiver (node 2 on 127.0.0.2) as fast as it can (or at ``--rate`` datagrams per second, in
bursts of 64). The receiver is this process's asyncio loop with a ``UdpTransport`` whose
callback only counts; its CPU time (``time.process_time``, so idle waits do not count) divided
by the datagrams received is the cost per datagram. ``--stock`` runs the same receiver on
asyncio's own ``create_datagram_endpoint`` for comparison. Loss is what the kernel dropped
because the receiver fell behind (its socket buffer overflowed) plus send errors.

    PYTHONPATH=src .venv/bin/python benchmarks/udp_recv.py [--count 200000] [--size 1400]
        [--rate 0] [--rcvbuf 4194304] [--stock]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import time
from typing import Any

from evs.daemon.udp import UdpTransport

SENDER = ("127.0.0.1", 0)
RECEIVER = ("127.0.0.2", 0)
BURST = 64


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((RECEIVER[0], 0))
        return int(probe.getsockname()[1])


def nodes(port: int) -> dict[int, tuple[str, int]]:
    return {1: (SENDER[0], port), 2: (RECEIVER[0], port)}


def flood(port: int, count: int, size: int, rate: float, out: Any) -> None:
    """The sender process: a transport of its own, sending without a running loop."""
    sender = UdpTransport("udpu", SENDER[0], port, nodes(port), 1, lambda batch: None)
    sender.open(asyncio.new_event_loop())
    payload = b"\xa5" * size
    gap = BURST / rate if rate > 0 else 0.0
    start = time.perf_counter()
    for i in range(count):
        sender.send(2, payload)
        if gap and i % BURST == BURST - 1:
            next_burst = start + (i + 1) / BURST * gap
            while time.perf_counter() < next_burst:
                time.sleep(max(0.0, min(0.001, next_burst - time.perf_counter())))
    out.send(dict(sender.counters, seconds=time.perf_counter() - start))
    sender.close()


class Counter(asyncio.DatagramProtocol):
    """The stock asyncio receiver, for comparison."""

    def __init__(self) -> None:
        self.count = 0

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.count += 1


async def receive(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    received = [0]

    def on_datagrams(batch: list[tuple[int, bytes]]) -> None:
        received[0] += len(batch)

    loop = asyncio.get_running_loop()
    transport: UdpTransport | None = None
    stock: asyncio.DatagramTransport | None = None
    proto = Counter()
    if args.stock:
        stock, _ = await loop.create_datagram_endpoint(
            lambda: proto, local_addr=(RECEIVER[0], port)
        )
        sock = stock.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
    else:
        transport = UdpTransport(
            "udpu", RECEIVER[0], port, nodes(port), 2, on_datagrams, rcvbuf=args.rcvbuf
        )
        transport.open(loop)

    def count() -> int:
        return proto.count if args.stock else received[0]

    parent, child = multiprocessing.Pipe()
    sender = multiprocessing.Process(
        target=flood, args=(port, args.count, args.size, args.rate, child)
    )
    cpu = time.process_time()
    wall = time.perf_counter()
    sender.start()
    # Poll (this is a benchmark): done when the sender has exited and nothing more arrives.
    seen, quiet_since = -1, time.perf_counter()
    while sender.is_alive() or time.perf_counter() - quiet_since < 0.3:
        await asyncio.sleep(0.02)
        if count() != seen:
            seen, quiet_since = count(), time.perf_counter()
    cpu = time.process_time() - cpu
    wall = quiet_since - wall
    sent = parent.recv()
    sender.join()
    result = {
        "receiver": "asyncio DatagramProtocol" if args.stock else "UdpTransport",
        "sent": sent["tx_datagrams"],
        "send_errors": sum(v for k, v in sent.items() if k.startswith("tx_error_")),
        "received": seen,
        "loss_pct": 100.0 * (1 - seen / args.count),
        "us_cpu_per_datagram": 1e6 * cpu / max(seen, 1),
        "send_seconds": sent["seconds"],
        "receive_rate_per_s": seen / wall if wall > 0 else 0.0,
    }
    if transport is not None:
        result["rcvbuf"] = transport.counters["rcvbuf"]
        result["wakeups"] = transport.counters["rx_wakeups"]
        result["max_batch"] = transport.counters["rx_batch_max"]
        transport.close()
    if stock is not None:
        stock.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=1400)
    parser.add_argument("--rate", type=float, default=0.0, help="datagrams/s; 0: flood")
    parser.add_argument("--rcvbuf", type=int, default=4 << 20)
    parser.add_argument("--stock", action="store_true", help="asyncio's DatagramProtocol")
    args = parser.parse_args()
    result = asyncio.run(receive(args))
    width = max(map(len, result))
    for key, value in result.items():
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        print(f"{key:<{width}}  {shown}")


if __name__ == "__main__":
    main()
