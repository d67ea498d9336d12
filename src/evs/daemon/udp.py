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

Batching (Linux UDP segmentation offload): between ``cork()`` and ``flush()`` (the executive
brackets each step's output with them) ``send`` only queues. ``flush`` then sends each
destination's queue in order, with one ``sendmsg`` per run of datagrams of one size (the last of
a run may be shorter), the size given as UDP_SEGMENT: the kernel cuts the run back into the same
datagrams, so the wire carries exactly what per-datagram ``sendto`` would have, for one trip
through the socket layer and the network stack instead of one per datagram. A token visit's
packets are all full-sized but the last, so a visit to one peer is mostly one call. A run holds
at most ``GSO_SEGMENTS_MAX`` datagrams and ``GSO_BYTES_MAX`` bytes (the kernel's limits).
Destinations go in the order their first datagram came, except in a light step (a unicast queued
last and at most as many other datagrams as there are peers, e.g. in "udpu" mode one multicast
to every peer: a low-load token visit that carries one message): there the unicast's peer (the
token's successor) goes last, so the others have the message before the successor wakes. A busy
visit's token, queued ahead of its packets (the core's ``token_ahead_min``), is not a light step
even when a retransmission came before it: the decision waits for ``flush``. Measured on two
CPUs: the woken successor often runs on the sender's CPU at once, and the copies still to send
then waited for its whole step. Segmentation cannot cut a datagram larger than the link's MTU (a
netmtu above it): the kernel refuses the run (EMSGSIZE, or EIO where the device cannot do it),
and the transport then sends that run datagram by datagram and every later one too ("tx_gso_off"
counts that), so nothing is lost to the attempt.

Receiving with UDP_GRO: the sockets ask the kernel to hand over a run of same-sized datagrams
from one source as one read (up to 64 KiB, with the datagram size in a control message); the
transport cuts it back into the datagrams before anything else sees them. The receive buffer
holds the largest such read, so nothing is cut short. Where the kernel has no UDP_GRO the
socket option fails and every read is one datagram, as before.

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
import struct
import sys
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

from evs.totem.config import IP_UDP_OVERHEAD
from evs.totem.events import BROADCAST

__all__ = ["BROADCAST", "IP_UDP_OVERHEAD", "UdpTransport"]

#: Preallocated receive buffer: larger than any UDP payload (65,507 bytes).
RECV_BUFFER_SIZE: Final = 65536
#: Datagrams read per wake-up before the loop gets a turn.
BATCH_MAX: Final = 512
DEFAULT_SOCKET_BUFFER: Final = 4 << 20
# Linux's SO_RCVBUFFORCE / SO_SNDBUFFORCE (asm-generic/socket.h); Python does not export them.
_FORCE: Final = {socket.SO_RCVBUF: 33, socket.SO_SNDBUF: 32} if sys.platform == "linux" else {}
#: A plain int: ``socket.MSG_TRUNC`` is an IntFlag member, and ``flags & member`` builds a new
#: enum value through the enum machinery, about a microsecond on every read.
_MSG_TRUNC: Final = int(getattr(socket, "MSG_TRUNC", 0))
#: Linux's UDP_SEGMENT and UDP_GRO (linux/udp.h); Python 3.11 does not export them.
UDP_SEGMENT: Final = 103
UDP_GRO: Final = 104
_LINUX: Final = sys.platform == "linux"
#: Datagrams per segmented send: the kernel's UDP_MAX_SEGMENTS (64 before Linux 6.x; 128 now).
GSO_SEGMENTS_MAX: Final = 64
#: Bytes per segmented send: one IP datagram's payload (65,535 - IP and UDP headers), rounded
#: down.
GSO_BYTES_MAX: Final = 65000
#: A segmented send refused with one of these means the path cannot segment: EMSGSIZE for a
#: datagram over the link's MTU (measured), EINVAL, EIO, ENOPROTOOPT or EOPNOTSUPP for a device
#: without checksum offload or a kernel without UDP_SEGMENT. A run is never over 64 KiB, so
#: EMSGSIZE cannot mean a datagram too large to send at all.
_GSO_REFUSED: Final = frozenset(
    {errno.EMSGSIZE, errno.EINVAL, errno.EIO, errno.ENOPROTOOPT, errno.EOPNOTSUPP}
)
#: Room for the UDP_GRO control message (an int).
_GRO_CMSG_SPACE: Final = socket.CMSG_SPACE(4) if hasattr(socket, "CMSG_SPACE") else 0

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
        offload: bool = True,
    ) -> None:
        """``port`` is the multicast group's port ("udp"); the unicast socket binds
        ``nodes[nodeid]``, whose host must be ``bind``. ``offload=False`` turns off UDP
        segmentation (sends) and UDP_GRO (reads)."""
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
        #: The most datagrams of a light step: one multicast to every peer and a token.
        self._light_step = len(self._peers) + 1
        self._buffer = bytearray(recv_buffer_size)
        self._view = memoryview(self._buffer)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unicast: socket.socket | None = None
        self._multicast: socket.socket | None = None
        self._gso = offload and _LINUX
        # GRO reads need room for a whole coalesced run; a smaller buffer (tests) reads singly.
        self._gro_wanted = offload and _LINUX and recv_buffer_size >= RECV_BUFFER_SIZE
        self._gro: set[socket.socket] = set()
        self._corked = False
        self._queued: dict[Address, list[bytes]] = {}
        #: The unicast's address while it is the last datagram queued (a token ending a step).
        self._unicast_last: Address | None = None
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
                "tx_gso_sends",
                "tx_gso_off",
                "rx_gro_reads",
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
        # Any: uvloop's remove_reader returns None where typeshed says bool, and the
        # compiled build (tools/compile.py) checks what a call returns against its type.
        loop: Any = self._loop
        if loop is not None and not loop.is_closed():
            for sock in (self._unicast, self._multicast):
                if sock is not None:
                    loop.remove_reader(sock.fileno())
        self._loop = None
        self._queued.clear()
        self._corked = False
        self._close_sockets()

    def _close_sockets(self) -> None:
        for sock in (self._unicast, self._multicast):
            if sock is not None:
                sock.close()
        self._unicast = self._multicast = None
        self._gro.clear()

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
            self._enable_gro(sock)
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
            self._enable_gro(sock)
        except BaseException:
            sock.close()
            raise
        return sock

    def _enable_gro(self, sock: socket.socket) -> None:
        """Ask for coalesced reads; a kernel without UDP_GRO leaves reads one datagram each."""
        if not self._gro_wanted or not _GRO_CMSG_SPACE:
            return
        try:
            sock.setsockopt(socket.IPPROTO_UDP, UDP_GRO, 1)
        except OSError:
            return
        self._gro.add(sock)

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
        gro = sock in self._gro
        batch: list[tuple[int, bytes]] = []
        rx_bytes = 0
        segment = 0
        reads = 0
        while reads < self.batch_max and len(batch) < self.batch_max:
            reads += 1
            try:
                if gro:
                    length, ancillary, flags, source = sock.recvmsg_into(
                        (buffer,), _GRO_CMSG_SPACE, _MSG_TRUNC
                    )
                    segment = _gro_segment(ancillary)
                    truncated = bool(flags & _MSG_TRUNC) or length > size
                else:
                    length, source = sock.recvfrom_into(buffer, 0, _MSG_TRUNC)
                    truncated = length > size or (not _MSG_TRUNC and length == size)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. a queued ICMP error; the socket stays usable
                _count_error(counters, "rx", exc)
                continue
            if truncated:
                counters["rx_truncated"] += 1
                continue
            sender = by_address.get(source)
            if sender is None:
                counters["rx_unknown_source"] += 1
                continue
            if sender == self.nodeid:
                counters["rx_own_echo" if multicast else "rx_from_self"] += 1
                continue
            rx_bytes += length
            if 0 < segment < length:
                # One read, several datagrams of ``segment`` bytes (the last may be shorter).
                counters["rx_gro_reads"] += 1
                if segment > mtu_payload:
                    last = length % segment
                    counters["rx_over_mtu"] += length // segment + (last > mtu_payload)
                for at in range(0, length, segment):
                    batch.append((sender, bytes(view[at : min(at + segment, length)])))
                continue
            if length > mtu_payload:
                counters["rx_over_mtu"] += 1
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
        if self._corked:
            self._unicast_last = unicast  # flush() decides whether the step is light

    def cork(self) -> None:
        """Queue what ``send`` is given until ``flush()`` (to send it in runs)."""
        self._corked = True

    def flush(self) -> None:
        """Send what was queued since ``cork()``: per destination in order, in runs."""
        self._corked = False
        queued = self._queued
        last = self._unicast_last
        self._unicast_last = None
        if not queued:
            return
        if (
            last is not None
            and len(queued) > 1
            and sum(map(len, queued.values())) <= self._light_step
        ):
            queued[last] = queued.pop(last)  # a light step: the token's peer last
        for address, datagrams in queued.items():
            if len(datagrams) == 1 or not self._gso:
                for data in datagrams:
                    self._send_one(data, address)
            else:
                self._send_runs(datagrams, address)
        queued.clear()

    def _sendto(self, data: bytes, address: Address) -> None:
        if self._corked:
            self._unicast_last = None  # set again by send() when this is a unicast
            queue = self._queued.get(address)
            if queue is None:
                self._queued[address] = [data]
            else:
                queue.append(data)
            return
        self._send_one(data, address)

    def _send_one(self, data: bytes, address: Address) -> None:
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

    def _send_runs(self, datagrams: list[bytes], address: Address) -> None:
        """Send ``datagrams`` in order, each run of one size (the last shorter) in one call."""
        count = len(datagrams)
        first = 0
        while first < count:
            segment = len(datagrams[first])
            total = segment
            end = first + 1
            while end < count and end - first < GSO_SEGMENTS_MAX:
                size = len(datagrams[end])
                if size > segment or total + size > GSO_BYTES_MAX:
                    break
                total += size
                end += 1
                if size < segment:
                    break  # only the last datagram of a run may be shorter
            if end - first == 1 or not self._gso:
                for data in datagrams[first:end]:
                    self._send_one(data, address)
            else:
                self._send_run(datagrams[first:end], segment, total, address)
            first = end

    def _send_run(self, run: list[bytes], segment: int, total: int, address: Address) -> None:
        sock = self._unicast
        if sock is None:
            raise RuntimeError("transport is not open")
        counters = self.counters
        try:
            sent = sock.sendmsg(
                run, [(socket.IPPROTO_UDP, UDP_SEGMENT, struct.pack("=H", segment))], 0, address
            )
        except OSError as exc:
            if exc.errno in _GSO_REFUSED:
                # This path cannot segment (say, a netmtu above the link's MTU): from now on
                # every datagram goes alone, this run included.
                self._gso = False
                counters["tx_gso_off"] += 1
                for data in run:
                    self._send_one(data, address)
                return
            for _ in run:  # each datagram of the run is lost, as with one sendto each
                _count_error(counters, "tx", exc)
            return
        counters["tx_gso_sends"] += 1
        counters["tx_datagrams"] += len(run)
        counters["tx_bytes"] += sent


def _gro_segment(ancillary: list[tuple[int, int, bytes]]) -> int:
    """The datagram size of a coalesced read (0: the read is one datagram)."""
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_UDP and kind == UDP_GRO and len(data) >= 2:
            return int.from_bytes(data[:4] if len(data) >= 4 else data[:2], sys.byteorder)
    return 0


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
