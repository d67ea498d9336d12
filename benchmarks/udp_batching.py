"""CPU per datagram with and without UDP segmentation (UDP_SEGMENT) and coalesced reads (UDP_GRO).

Why: an executive's work is mostly per datagram, and the kernel's part of it (one trip
through the socket layer and the network stack per ``sendto``, one wake-up and copy per
``recvfrom``) is the largest single item on the sending node (docs/benchmarks.md). The
transport sends a step's datagrams in runs and reads them coalesced where the kernel allows
(evs.daemon.udp); this measures what that saves on this machine's kernel.

How: two network namespaces joined by a veth pair (MTU 1500), a receiver in one and a sender
in the other, each a child process; the sender sends ``--count`` datagrams of ``--size``
bytes one per ``sendto`` or in runs of N per ``sendmsg``; the receiver reads with or without
UDP_GRO; last, one ``sendto`` per ``--big`` datagram, which the kernel cuts into IP fragments
(what a ``netmtu`` of 9000 costs on 1500-byte links). Each prints its CPU time (user + system)
per datagram. ``wire`` rows set ``gso_max_segs 1`` on the veth, so the kernel cuts each run
into datagrams before it leaves (as ``evs bench --netns`` does; a physical NIC without
segmentation offload behaves alike). Root only; the namespaces are removed at the end.

    .venv/bin/python benchmarks/udp_batching.py [--count 200000] [--size 1472] [--big 8972]
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import subprocess
import sys
import time

UDP_SEGMENT = 103
UDP_GRO = 104
PORT = 5599
NS = ("evsbatch-a", "evsbatch-b")
ADDR = ("10.231.0.1", "10.231.0.2")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _lab(wire: bool) -> None:
    for ns in NS:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        _ip("netns", "add", ns)
    _ip("link", "add", "ba", "netns", NS[0], "type", "veth", "peer", "name", "bb", "netns", NS[1])
    for ns, dev, addr in ((NS[0], "ba", ADDR[0]), (NS[1], "bb", ADDR[1])):
        _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
        if wire:
            _ip("-n", ns, "link", "set", dev, "gso_max_segs", "1")
        _ip("-n", ns, "link", "set", dev, "up")


def _teardown() -> None:
    for ns in NS:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def send(count: int, size: int, run: int) -> None:
    """Child: send ``count`` datagrams, ``run`` per call (1: plain sendto)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    dest = (ADDR[1], PORT)
    payload = b"x" * size
    parts = [payload] * run
    cmsg = [(socket.IPPROTO_UDP, UDP_SEGMENT, struct.pack("=H", size))]
    sent = 0
    t0 = time.process_time()
    while sent < count:
        try:
            if run == 1:
                s.sendto(payload, dest)
            else:
                s.sendmsg(parts, cmsg, 0, dest)
        except (BlockingIOError, OSError):
            time.sleep(0.0001)  # the socket buffer is full: let the receiver catch up
            continue
        sent += run
    print(f"{1e6 * (time.process_time() - t0) / sent:.2f}")


def receive(count: int, gro: bool) -> None:
    """Child: read until ``count`` datagrams came or 1 s passed without one."""
    r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    if gro:
        r.setsockopt(socket.IPPROTO_UDP, UDP_GRO, 1)
    r.bind((ADDR[1], PORT))
    r.settimeout(1.0)
    got = calls = 0
    cpu = 0.0
    buf = bytearray(65536)
    while got < count:
        t0 = time.process_time()
        try:
            n, anc, _, _ = r.recvmsg_into([buf], socket.CMSG_SPACE(4))
        except TimeoutError:
            break
        segment = n
        for level, kind, data in anc:
            if level == socket.IPPROTO_UDP and kind == UDP_GRO:
                segment = int.from_bytes(data[:4], sys.byteorder) or n
        cpu += time.process_time() - t0
        calls += 1
        got += -(-n // segment)
    print(f"{1e6 * cpu / max(got, 1):.2f} {got} {calls}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=1472, help="datagram bytes (<= 1472)")
    parser.add_argument(
        "--big",
        type=int,
        default=8972,
        help="also one sendto per datagram of this many bytes, which the kernel cuts into IP "
        "fragments for the 1500-byte link (a netmtu of 9000 on such links); 0: skip",
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        role, *rest = args.child
        if role == "send":
            send(args.count, args.size, int(rest[0]))
        else:
            receive(args.count, rest[0] == "gro")
        return
    if os.geteuid() != 0:
        sys.exit("udp_batching: needs root (it builds two network namespaces)")
    print(f"{args.count} datagrams of {args.size} B over a veth pair; CPU us per datagram")
    print(f"{'link':5} {'send':10} {'read':6} {'sender':>7} {'receiver':>9} {'reads':>8}")
    try:
        for wire in (False, True):
            _lab(wire)
            cases = [(run, gro, args.size) for run in (1, 8, 32) for gro in (False, True)]
            if args.big:
                cases.append((1, False, args.big))
            for run, gro, size in cases:
                read = "gro" if gro else "single"
                count = args.count if size == args.size else max(1, args.count // 5)
                child = [sys.executable, __file__, "--count", str(count), "--size", str(size)]
                child.append("--child")
                rx = subprocess.Popen(
                    ["ip", "netns", "exec", NS[1], *child, "recv", read],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                time.sleep(0.3)  # the receiver binds first
                tx = subprocess.run(
                    ["ip", "netns", "exec", NS[0], *child, "send", str(run)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                out, _ = rx.communicate(timeout=120)
                rx_us, got, calls = out.split()
                how = "sendto" if run == 1 else f"runs of {run}"
                if size != args.size:
                    how = f"{size} B"
                print(
                    f"{'wire' if wire else 'veth':5} {how:10} {read:6} "
                    f"{float(tx.stdout):7.2f} {float(rx_us):9.2f} {calls:>8} "
                    f"({got} datagrams arrived)"
                )
    finally:
        _teardown()


if __name__ == "__main__":
    main()
