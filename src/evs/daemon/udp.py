"""The UDP transport of the executive: datagrams in and out, knowing nothing of the protocol.

Theory of operation
-------------------
Receiving: asyncio's stock ``DatagramProtocol`` (Python 3.11) reads each datagram into a fresh
256 KiB buffer, about 38 us a datagram, and loses most of a flood. This transport instead
registers its non-blocking sockets with ``loop.add_reader`` and, on each wake-up, drains as
many datagrams as are waiting (at most ``batch_max``, so one busy socket cannot starve the
loop's timers and IPC clients) with ``recvfrom_into`` into one preallocated buffer, then hands
the whole batch to ``on_datagrams`` in a single call as ``(source node id, bytes)`` pairs.
``MSG_TRUNC`` makes Linux return a datagram's real length even when it did not fit, so a
datagram larger than the buffer is recognised, dropped and counted instead of being passed
on cut short. A source address that is not in the node list is dropped and counted: only the
configured processors may speak (what they say is the core's business). Datagrams from this
node's own address are ignored: in "udp" mode these are its own multicasts coming back.

Sending: ``send(dest, data)`` with ``dest`` a node id unicasts to that node's address; with
``dest == BROADCAST`` (0) it reaches every other node, by one ``sendto`` per node in "udpu"
mode or one ``sendto`` to the multicast group in "udp" mode. UDP is lossy and the protocol
retransmits, so a send error (ENOBUFS, EAGAIN on a full socket buffer, ECONNREFUSED,
EHOSTUNREACH ...) drops the datagram and is counted by errno name; it is never raised.

Sockets: one unicast socket bound to this node's address, ``nodes[nodeid]`` (its host must
be ``bind``), receives the unicasts (the token) and sends everything, so peers always see a
datagram come from the address the node list gives for its sender. In "udp" mode a second
socket, bound to ``(mcast_addr, port)`` with SO_REUSEADDR (several executives on one host
each get a copy), joins the group on the interface of ``bind`` and only receives.

Multicast TTL and loop ("udp" mode): multicasts leave through the interface of ``bind``
(IP_MULTICAST_IF) with ``ttl`` as their IP TTL (IP_MULTICAST_TTL; the default 1 keeps them
on the local subnet, raise it only if the ring spans routers that forward multicast).
IP_MULTICAST_LOOP is on, so several executives on one host hear each other's multicasts;
each ignores its own copy by source address. On loopback, multicast needs
``ip link set lo multicast on`` and a route ``ip route add 224.0.0.0/4 dev lo``.

Socket buffers: SO_RCVBUF/SO_SNDBUF are asked for ``rcvbuf``/``sndbuf`` bytes, first with the
*FORCE variants (root may exceed net.core.rmem_max/wmem_max), falling back silently; the
sizes the kernel reports afterwards are in ``counters`` ("rcvbuf", "sndbuf"; Linux reports
twice the usable size).

``on_datagrams`` runs inside the loop's reader callback: it should only hand the batch on
(to the driver) and return; an exception it raises goes to the loop's exception handler and
the transport keeps reading.

``counters`` (plain ints, for ``evs status``): rx_datagrams, rx_bytes, rx_wakeups,
rx_batch_max, rx_truncated, rx_unknown_source, rx_own_echo (own multicasts), rx_from_self
(own unicast address, should not happen), rx_over_mtu (delivered, but longer than this node's
netmtu allows: a peer's netmtu differs), tx_datagrams, tx_bytes, tx_unknown_destination,
rcvbuf, sndbuf, plus ``rx_error_<ERRNO>`` and ``tx_error_<ERRNO>`` as they happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import socket
import sys
from collections.abc import Callable, Mapping
from typing import Literal

from evs.totem.config import IP_UDP_OVERHEAD
from evs.totem.events import BROADCAST

__all__ = ["BROADCAST", "IP_UDP_OVERHEAD", "UdpTransport"]

#: Preallocated receive buffer: larger than any UDP payload (65,507 bytes).
RECV_BUFFER_SIZE = 65536
#: Datagrams read per wake-up before the loop gets a turn.
BATCH_MAX = 512
DEFAULT_SOCKET_BUFFER = 4 << 20
# Linux's SO_RCVBUFFORCE / SO_SNDBUFFORCE (asm-generic/socket.h); Python does not export them.
_FORCE = {socket.SO_RCVBUF: 33, socket.SO_SNDBUF: 32} if sys.platform == "linux" else {}
_MSG_TRUNC = getattr(socket, "MSG_TRUNC", 0)

Address = tuple[str, int]
OnDatagrams = Callable[[list[tuple[int, bytes]]], None]


class UdpTransport:
    """Datagrams between the processors of one node list, over "udpu" or "udp" (multicast)."""

    def __init__(  # noqa: PLR0917 - the positional signature is the one the executive uses
        self,
        mode: Literal["udpu", "udp"],
        bind: str,
        port: int,
        nodes: Mapping[int, Address],
        nodeid: int,
        on_datagrams: OnDatagrams,
        *,
        mcast_addr: str | None = None,
        ttl: int = 1,
        rcvbuf: int = DEFAULT_SOCKET_BUFFER,
        sndbuf: int = DEFAULT_SOCKET_BUFFER,
        netmtu: int = 1500,
        recv_buffer_size: int = RECV_BUFFER_SIZE,
        batch_max: int = BATCH_MAX,
    ) -> None:
        """``port`` is the multicast group's port ("udp"); the unicast socket binds
        ``nodes[nodeid]``, whose host must be ``bind``."""
        if mode not in ("udpu", "udp"):
            raise ValueError(f'mode must be "udpu" or "udp", got {mode!r}')
        if nodeid not in nodes or nodeid == BROADCAST:
            raise ValueError(f"node {nodeid} is not in the node list {sorted(nodes)}")
        self.nodes = {n: (str(ipaddress.IPv4Address(h)), p) for n, (h, p) in nodes.items()}
        if len(set(self.nodes.values())) != len(self.nodes) or BROADCAST in self.nodes:
            raise ValueError("node ids must be nonzero and node addresses unique")
        self.address = self.nodes[nodeid]
        if self.address[0] != str(ipaddress.IPv4Address(bind)):
            raise ValueError(f"node {nodeid}'s address {self.address[0]} is not bind {bind}")
        if mode == "udp" and (
            mcast_addr is None or not ipaddress.IPv4Address(mcast_addr).is_multicast
        ):
            raise ValueError(f'"udp" mode needs a multicast mcast_addr, got {mcast_addr!r}')
        self.mode = mode
        self.bind = bind
        self.port = port
        self.nodeid = nodeid
        self.on_datagrams = on_datagrams
        self.mcast_addr = mcast_addr
        self.ttl = ttl
        self.rcvbuf = rcvbuf
        self.sndbuf = sndbuf
        self.netmtu = netmtu
        self.batch_max = batch_max
        self._by_address = {addr: n for n, addr in self.nodes.items()}
        self._peers = [addr for n, addr in sorted(self.nodes.items()) if n != nodeid]
        self._buffer = bytearray(recv_buffer_size)
        self._view = memoryview(self._buffer)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unicast: socket.socket | None = None
        self._multicast: socket.socket | None = None
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "rx_datagrams",
                "rx_bytes",
                "rx_wakeups",
                "rx_batch_max",
                "rx_truncated",
                "rx_unknown_source",
                "rx_own_echo",
                "rx_from_self",
                "rx_over_mtu",
                "tx_datagrams",
                "tx_bytes",
                "tx_unknown_destination",
                "rcvbuf",
                "sndbuf",
            ),
            0,
        )

    # ---------------------------------------------------------------------------- lifecycle

    def open(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Create and bind the sockets and start reading; OSError names what failed to bind."""
        if self._loop is not None:
            raise RuntimeError("transport already open")
        loop = loop or asyncio.get_running_loop()
        try:
            self._unicast = self._open_unicast()
            if self.mode == "udp":
                self._multicast = self._open_multicast()
        except BaseException:
            self._close_sockets()
            raise
        self._loop = loop
        loop.add_reader(self._unicast.fileno(), self._on_readable, self._unicast, False)
        if self._multicast is not None:
            loop.add_reader(self._multicast.fileno(), self._on_readable, self._multicast, True)

    def close(self) -> None:
        """Stop reading and close the sockets (idempotent)."""
        if self._loop is not None and not self._loop.is_closed():
            for sock in (self._unicast, self._multicast):
                if sock is not None:
                    self._loop.remove_reader(sock.fileno())
        self._loop = None
        self._close_sockets()

    def _close_sockets(self) -> None:
        for sock in (self._unicast, self._multicast):
            if sock is not None:
                sock.close()
        self._unicast = self._multicast = None

    def _open_unicast(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            self._buffers(sock)
            if self.mode == "udp":
                iface = socket.inet_aton(self.address[0])
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, iface)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, self.ttl)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            _bind(sock, self.address, "unicast")
        except BaseException:
            sock.close()
            raise
        return sock

    def _open_multicast(self) -> socket.socket:
        assert self.mcast_addr is not None  # checked in __init__
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._buffers(sock, send=False)
            _bind(sock, (self.mcast_addr, self.port), "multicast")
            mreq = socket.inet_aton(self.mcast_addr) + socket.inet_aton(self.address[0])
            try:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            except OSError as exc:
                raise OSError(
                    exc.errno,
                    f"cannot join multicast group {self.mcast_addr} on the interface of "
                    f"{self.address[0]}: {exc.strerror}",
                ) from None
        except BaseException:
            sock.close()
            raise
        return sock

    def _buffers(self, sock: socket.socket, *, send: bool = True) -> None:
        self.counters["rcvbuf"] = _set_buffer(sock, socket.SO_RCVBUF, self.rcvbuf)
        if send:
            self.counters["sndbuf"] = _set_buffer(sock, socket.SO_SNDBUF, self.sndbuf)

    # ------------------------------------------------------------------------------ receive

    def _on_readable(self, sock: socket.socket, multicast: bool) -> None:
        """Drain up to ``batch_max`` waiting datagrams, then hand them over in one call."""
        counters = self.counters
        by_address = self._by_address
        buffer, view, size = self._buffer, self._view, len(self._buffer)
        mtu_payload = self.netmtu - IP_UDP_OVERHEAD
        batch: list[tuple[int, bytes]] = []
        rx_bytes = 0
        for _ in range(self.batch_max):
            try:
                length, source = sock.recvfrom_into(buffer, 0, _MSG_TRUNC)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. a queued ICMP error; the socket stays usable
                _count_error(counters, "rx", exc)
                continue
            if length > size or (not _MSG_TRUNC and length == size):
                counters["rx_truncated"] += 1
                continue
            sender = by_address.get(source)
            if sender is None:
                counters["rx_unknown_source"] += 1
                continue
            if sender == self.nodeid:
                counters["rx_own_echo" if multicast else "rx_from_self"] += 1
                continue
            if length > mtu_payload:
                counters["rx_over_mtu"] += 1
            rx_bytes += length
            batch.append((sender, bytes(view[:length])))
        counters["rx_wakeups"] += 1
        if not batch:
            return
        counters["rx_datagrams"] += len(batch)
        counters["rx_bytes"] += rx_bytes
        counters["rx_batch_max"] = max(counters["rx_batch_max"], len(batch))
        self.on_datagrams(batch)

    # --------------------------------------------------------------------------------- send

    def send(self, dest: int, data: bytes) -> None:
        """Send ``data`` to node ``dest``, or to every other node if ``dest`` is BROADCAST.

        Never raises for network trouble: a datagram that cannot leave is counted and dropped.
        """
        if dest == BROADCAST:
            if self.mode == "udp":
                assert self.mcast_addr is not None
                self._sendto(data, (self.mcast_addr, self.port))
            else:
                for address in self._peers:
                    self._sendto(data, address)
            return
        unicast = self.nodes.get(dest)
        if unicast is None or dest == self.nodeid:
            self.counters["tx_unknown_destination"] += 1
            return
        self._sendto(data, unicast)

    def _sendto(self, data: bytes, address: Address) -> None:
        sock = self._unicast
        if sock is None:
            raise RuntimeError("transport is not open")
        try:
            sent = sock.sendto(data, address)
        except OSError as exc:  # BlockingIOError (EAGAIN) included: the socket buffer is full
            _count_error(self.counters, "tx", exc)
            return
        self.counters["tx_datagrams"] += 1
        self.counters["tx_bytes"] += sent


def _bind(sock: socket.socket, address: Address, what: str) -> None:
    try:
        sock.bind(address)
    except OSError as exc:
        raise OSError(
            exc.errno,
            f"cannot bind the UDP {what} socket to {address[0]}:{address[1]}: {exc.strerror}",
        ) from None


def _set_buffer(sock: socket.socket, option: int, size: int) -> int:
    """Ask for ``size`` bytes (forcing past the sysctl cap if privileged); return the result."""
    force = _FORCE.get(option)
    try:
        if force is None:
            raise PermissionError
        sock.setsockopt(socket.SOL_SOCKET, force, size)
    except OSError:
        # On failure keep the default: a smaller buffer only means more loss under load.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, size)
    return sock.getsockopt(socket.SOL_SOCKET, option)


def _count_error(counters: dict[str, int], direction: str, exc: OSError) -> None:
    name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    key = f"{direction}_error_{name}"
    counters[key] = counters.get(key, 0) + 1
