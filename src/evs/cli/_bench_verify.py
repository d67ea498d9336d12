"""The per-message work of ``evs bench``'s clients: payloads, the stream verifier, the read loop.

Theory of operation: a benchmark's clients share the machine with the executives they
measure, so every microsecond a client spends on its own bookkeeping is taken from the system
under test (two CPUs carry seven processes at 64 bytes). corosync's ``cpgbench`` does that
bookkeeping in C; this module is the same work in Python that ``tools/compile.py`` compiles
with mypyc in the compiled build (it is one of ``evs._compiled.HOT_MODULES``), and that runs
as it is in the pure build. It checks exactly what it always checked, nothing less:

A payload is ``HEADER`` (magic, sender node id, per-sender sequence number, send time from
CLOCK_MONOTONIC in ns, a CRC-32 of those 24 bytes) followed by a body that is one of
``BODIES`` pseudo-random blocks picked by the sequence number. ``Verifier.check`` checks
everything about each message: the header's CRC, that the header names the node the executive
says sent it, that the sequence number is the next one of that sender (no gap, no duplicate,
FIFO), and that the body is the expected block, byte for byte (a ``memcmp``, cheaper than a
checksum and stronger). It folds (sender, seq) of every delivery into a chained 64-bit hash;
equal hashes and counts at every receiver mean the same total order. ``Reading.take`` is a
receiver's loop over its events: the receive time of each, the check, the window's count and
the latency samples.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import struct
import time
import zlib
from array import array
from collections.abc import Callable, Iterable
from typing import Any, Final

from evs.errors import TryAgain
from evs.types import Delivery

__all__ = [
    "BODIES",
    "HEADER",
    "MAGIC",
    "MIN_SIZE",
    "ORDER_BLOCK",
    "SEND_GRACE_S",
    "SEND_TIMEOUT_S",
    "VIOLATIONS_KEPT",
    "Payloads",
    "Reading",
    "Sending",
    "Verifier",
]

#: "EVB1": a payload of this benchmark.
MAGIC: Final = 0x45564231
_HEAD: Final = struct.Struct("<IIQQ")
_CRC: Final = struct.Struct("<I")
#: magic, sender node id, sequence number, CLOCK_MONOTONIC ns at send, CRC-32 of the 24 above.
HEADER: Final = struct.Struct("<IIQQI")
#: Bound once; typed where it is called, so the compiled compares are on C integers.
_HEADER_UNPACK: Final = HEADER.unpack_from
#: The smallest payload: a header and a few body bytes.
MIN_SIZE: Final = HEADER.size + 4
#: Distinct bodies per size; a message carries ``seq % BODIES``.
BODIES: Final = 16
#: A sender id is the node id in the low 16 bits and the sending client's index on that node
#: above (``--sender-clients``); each such stream has its own sequence numbers.
_NODE_MASK: Final = 0xFFFF
#: Entries (two per delivery: sender, seq) per block of the order hash (Verifier).
ORDER_BLOCK: Final = 8192
#: The order hash of no delivery at all.
_EMPTY_DIGEST: Final = hashlib.blake2b(digest_size=8).digest()
#: Violations kept word for word per receiver (all are counted).
VIOLATIONS_KEPT: Final = 10
#: A sender waits at most this long for room in its send window (``--count`` runs) ...
SEND_TIMEOUT_S: Final = 30.0
#: ... and in a timed run at most this long past the end of sending.
SEND_GRACE_S: Final = 5.0


class Payloads:
    """The deterministic bodies of one message size, shared by senders and receivers."""

    def __init__(self, size: int) -> None:
        if size < MIN_SIZE:
            raise ValueError(f"message size {size} is below the minimum of {MIN_SIZE} bytes")
        self.size = size
        rnd = random.Random(size)
        tail = size - HEADER.size
        #: The bodies that follow the header, one per ``seq % BODIES``.
        self.tails: list[bytes] = [rnd.randbytes(tail) for _ in range(BODIES)]

    def make(self, sender: int, seq: int, ts_ns: int) -> bytes:
        """The payload of message ``seq`` of ``sender`` stamped ``ts_ns``."""
        head = _HEAD.pack(MAGIC, sender, seq, ts_ns)
        return head + _CRC.pack(zlib.crc32(head)) + self.tails[seq % BODIES]


class Verifier:
    """Checks one receiver's delivery stream (see the module docstring).

    ``check`` returns the send stamp of a good message, or -1 after recording a violation. A
    receiver that found a violation keeps checking (so the count is complete) but its order
    hash no longer means anything.

    The order hash is folded in blocks: ``check`` appends sender and seq to an array and each
    full block (``ORDER_BLOCK`` entries) goes into a BLAKE2b chain, so a delivery costs an
    append rather than a 64-bit multiply on Python integers.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.next_seq: dict[int, int] = {}
        self.total = 0
        self.violation_count = 0
        self.violations: list[str] = []
        self._tails = Payloads(size).tails
        self._order: array[int] = array("Q")
        self._chain = b""

    @property
    def order_hash(self) -> int:
        """A 64-bit digest of every (sender, seq) delivered so far, in order. Reading it
        changes nothing: the blocks stay where they are, so equal streams give equal hashes
        however often each receiver looked."""
        return int.from_bytes(self._linked() or _EMPTY_DIGEST, "big")

    def _linked(self) -> bytes:
        """The chain with the entries not yet folded linked in (the chain itself if none)."""
        if not self._order:
            return self._chain
        return hashlib.blake2b(self._chain + self._order.tobytes(), digest_size=8).digest()

    def _fold(self) -> None:
        self._chain = self._linked()
        del self._order[:]

    def violation(self, text: str) -> None:
        self.violation_count += 1
        if len(self.violations) < VIOLATIONS_KEPT:
            self.violations.append(text)

    def check(self, nodeid: int, data: bytes) -> int:
        """Verify one delivery from executive ``nodeid``; returns its send stamp or -1."""
        self.total += 1
        n = self.total
        if len(data) != self.size:
            self.violation(f"delivery {n}: {len(data)} bytes, expected {self.size}")
            return -1
        fields: tuple[int, int, int, int, int] = _HEADER_UNPACK(data)
        magic, sender, seq, ts, crc = fields
        if magic != MAGIC or zlib.crc32(data[:24]) != crc:
            self.violation(f"delivery {n}: header corrupted (magic or CRC wrong)")
            return -1
        if sender & _NODE_MASK != nodeid:
            self.violation(
                f"delivery {n}: the header says sender {sender}, the executive says {nodeid}"
            )
            return -1
        next_seq = self.next_seq
        want = next_seq.get(sender, 0)
        if seq != want:
            kind = "a duplicate or reordering" if seq < want else "a gap"
            self.violation(
                f"delivery {n}: sender {sender} seq {seq}, expected {want} ({kind}; FIFO broken)"
            )
            if seq > want:
                next_seq[sender] = seq + 1
            return -1
        next_seq[sender] = seq + 1
        if not data.endswith(self._tails[seq % BODIES]):
            self.violation(f"delivery {n}: sender {sender} seq {seq}: body corrupted")
            return -1
        order = self._order
        order.append(sender)
        order.append(seq)
        if len(order) >= ORDER_BLOCK:
            self._fold()
        return ts

    def missing(self, sent: dict[int, int]) -> dict[int, int]:
        """Messages each sender sent that this receiver has not delivered (sender -> count)."""
        return {
            s: n - self.next_seq.get(s, 0) for s, n in sent.items() if self.next_seq.get(s, 0) < n
        }

    def finish(self, sent: dict[int, int]) -> None:
        """Record as violations the messages that never came and senders nobody announced."""
        for s, k in sorted(self.missing(sent).items()):
            self.violation(f"sender {s}: {k} of its {sent[s]} messages never delivered")
        for s in sorted(set(self.next_seq) - set(sent)):
            self.violation(f"deliveries from node {s}, which was not a sender")


class Reading:
    """A receiver's running tally over the measurement window ``[w0_ns, w1_ns)``.

    ``take`` reads events until the iterator ends or ``stop()`` (asked every 256 events) says
    so; deliveries go to the verifier, anything else is kept as text (a configuration change
    during a run is a finding). Every 32 events the live count goes to ``counter[slot]`` (the
    coordinator's progress line)."""

    def __init__(
        self,
        verifier: Verifier,
        w0_ns: int,
        w1_ns: int,
        now: Callable[[], int],
    ) -> None:
        self.verifier = verifier
        self.w0_ns = w0_ns
        self.w1_ns = w1_ns
        self.win_msgs = 0
        self.first_ns = 0
        self.last_ns = 0
        #: Receive time minus send stamp of every good delivery in the window, ns.
        self.lat: array[int] = array("q")
        self.other: list[str] = []
        self._now = now

    def take(
        self, events: Iterable[Any], counter: Any, slot: int, stop: Callable[[], bool]
    ) -> None:
        ver = self.verifier
        now = self._now
        w0_ns, w1_ns = self.w0_ns, self.w1_ns
        add_lat = self.lat.append
        for k, ev in enumerate(events, 1):
            t: int = now()
            if type(ev) is Delivery:
                ts = ver.check(ev.nodeid, ev.data)
                if w0_ns <= t < w1_ns:
                    self.win_msgs += 1
                    if not self.first_ns:
                        self.first_ns = t
                    self.last_ns = t
                    if ts >= 0:
                        add_lat(t - ts)
            else:
                self.other.append(str(ev))
            if k & 31 == 0:
                counter[slot] = ver.total
            if k & 255 == 0 and stop():
                break
        counter[slot] = ver.total


class Sending:
    """A sender's loop: ``run`` multicasts payloads of ``sender`` until ``stop_ns`` or
    ``limit`` messages, each stamped with its send time.

    Paced (``interval_ns``): message k is due at ``start_ns + k * interval_ns``, with no
    catching up in bursts after a stall. With ``per_batch`` > 0, that many messages at a time
    are sent inside ``batch()`` (``Client.batch``). A send blocks while the window is full, but
    not much past the end: a ring that stopped taking messages ends the run in bounded time,
    and ``stalled`` says why the sender stopped early."""

    def __init__(
        self,
        mcast: Callable[..., None],
        groups: list[str],
        payloads: Payloads,
        *,
        sender: int,
        now: Callable[[], int],
        who: str,
    ) -> None:
        self._mcast = mcast
        self._who = who
        self._groups = groups
        self._payloads = payloads
        self._now = now
        self.sender = sender
        #: Messages sent, and the time spent in the loop on them, ns.
        self.seq = 0
        self.busy_ns = 0
        self.stalled = ""

    def run(
        self,
        start_ns: int,
        stop_ns: int,
        *,
        limit: int,
        interval_ns: int,
        per_batch: int,
        batch: Callable[[], contextlib.AbstractContextManager[None]],
    ) -> None:
        mcast, groups, payloads, now, me = (
            self._mcast,
            self._groups,
            self._payloads,
            self._now,
            self.sender,
        )
        due_ns = start_ns
        done = False
        while not done and self.seq < limit:
            with batch() if per_batch else contextlib.nullcontext():
                for _ in range(min(per_batch or 1, limit - self.seq)):
                    t: int = now()
                    if interval_ns:
                        if due_ns > t:
                            time.sleep((due_ns - t) / 1e9)  # pacing, not synchronisation
                            t = now()
                        due_ns = max(due_ns + interval_ns, t)
                    if t >= stop_ns:
                        done = True
                        break
                    wait = min(SEND_TIMEOUT_S, (stop_ns - t) / 1e9 + SEND_GRACE_S)
                    try:
                        mcast(groups, payloads.make(me, self.seq, t), timeout=wait)
                    except TryAgain:
                        # Not sent (the window stayed full): stop, and say why.
                        self.stalled = (
                            f"{self._who}: its send window had no room for {wait:.1f} s after "
                            f"{self.seq} messages (the ring took nothing from it, or too "
                            "little); it stopped sending"
                        )
                        done = True
                        break
                    self.seq += 1
                    self.busy_ns += now() - t
