"""An attacker's tools for tests against real executives: see what is on the wire, and put
datagrams on it under any source address.

``Capture`` is an AF_PACKET socket (root only) on one interface, or on every interface of a
network namespace, read by a thread: it keeps each IPv4 UDP datagram to the cluster's port with
the interface it came in on, its source and destination addresses and its payload. It skips
the outgoing copies (on ``lo`` every packet shows twice; on a bridge's namespace a frame shows
once coming in on the port of the host that sent it, which is what tells the real sender from
one that only wrote its address into the header).

``Injector`` is a raw IPv4 socket with IP_HDRINCL: the caller writes the IP header, so the
source address and port are whatever it says, e.g. a member's, and the receiving kernel
delivers the datagram as from that member (UDP checksum 0: none, allowed over IPv4).

``in_netns(name)`` runs the body with the calling thread in network namespace ``name`` (an
``ip netns`` name): a socket made inside stays in that namespace after the thread returns.
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

_ETH_P_ALL = 0x0003
_CLONE_NEWNET = 0x40000000
_SOL_PACKET = 263
_PACKET_STATISTICS = 6


@contextmanager
def in_netns(name: str) -> Iterator[None]:
    """The calling thread in network namespace ``name`` (``/run/netns/<name>``) until exit."""
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(target, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {name}: {os.strerror(err)}")
        try:
            yield
        finally:
            if libc.setns(home, _CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns back: {os.strerror(err)}")
    finally:
        os.close(target)
        os.close(home)


@dataclass(frozen=True)
class Frame:
    """One UDP datagram seen on the wire."""

    ifname: str
    source: str
    dest: str
    payload: bytes


class Capture:
    """UDP payloads to ``port`` seen on ``iface`` ("" for every interface), in a thread."""

    def __init__(self, port: int, iface: str = "lo", netns: str | None = None) -> None:
        self.port = port
        self.frames: list[Frame] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        if netns is None:
            self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
        else:
            with in_netns(netns):
                self._sock = socket.socket(
                    socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL)
                )
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        if iface:
            self._sock.bind((iface, 0))
        self._sock.settimeout(0.1)
        self.lost = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame, meta = self._sock.recvfrom(70000)
            except TimeoutError:
                continue
            if meta[2] == socket.PACKET_OUTGOING:
                continue  # the copy leaving an interface: keep the one coming in
            self._take(meta[0], frame[14:])  # lo frames carry a (zeroed) Ethernet header

    def _take(self, ifname: str, ip: bytes) -> None:
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != socket.IPPROTO_UDP:
            return
        ihl = (ip[0] & 0x0F) * 4
        _, dport, length, _ = struct.unpack_from("!HHHH", ip, ihl)
        if dport == self.port:
            got = Frame(
                ifname,
                socket.inet_ntoa(ip[12:16]),
                socket.inet_ntoa(ip[16:20]),
                ip[ihl + 8 : ihl + length],
            )
            with self._lock:
                self.frames.append(got)

    def taken(self) -> list[tuple[str, bytes]]:
        """(source address, payload) of every datagram so far."""
        with self._lock:
            return [(f.source, f.payload) for f in self.frames]

    def __len__(self) -> int:
        with self._lock:
            return len(self.frames)

    def seen(self, start: int = 0) -> list[Frame]:
        """The datagrams so far, from the ``start``-th on."""
        with self._lock:
            return self.frames[start:]

    def dropped(self) -> int:
        """Frames the kernel could not queue to this socket since the last call (tp_drops)."""
        raw = self._sock.getsockopt(_SOL_PACKET, _PACKET_STATISTICS, 8)
        _, drops = struct.unpack("II", raw)
        self.lost += drops
        return self.lost

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()


@contextmanager
def capture(port: int, iface: str = "lo", netns: str | None = None) -> Iterator[Capture]:
    if os.geteuid() != 0 or not hasattr(socket, "AF_PACKET"):
        pytest.skip("capturing traffic needs root and AF_PACKET")
    cap = Capture(port, iface, netns)
    try:
        yield cap
    finally:
        cap.close()


class Injector:
    """Sends UDP datagrams with any source address and port (a raw socket, IP_HDRINCL)."""

    def __init__(self, netns: str | None = None) -> None:
        if netns is None:
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        else:
            with in_netns(netns):
                self._sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.sent = 0

    def send(self, source: tuple[str, int], dest: tuple[str, int], payload: bytes) -> None:
        udp = struct.pack("!HHHH", source[1], dest[1], 8 + len(payload), 0) + payload
        ip = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,  # IPv4, 20-byte header
            0,
            20 + len(udp),
            0,  # id: the kernel fills it
            0x4000,  # don't fragment
            64,
            socket.IPPROTO_UDP,
            0,  # checksum: the kernel fills it
            socket.inet_aton(source[0]),
            socket.inet_aton(dest[0]),
        )
        self._sock.sendto(ip + udp, (dest[0], 0))
        self.sent += 1

    def close(self) -> None:
        self._sock.close()
