"""Totem wire messages as typed values (the codec in ``codec.py`` turns them into bytes).

The processor never touches raw bytes except through the codec: a datagram is decoded once
into one of these values, handled, and (for the tokens) edited and re-encoded. Tokens are
mutable because every hop rewrites a few fields; everything else is frozen.

Sequence numbers are u64 and start at 1 on every ring, so 0 means "nothing yet" (the token's
initial aru); this replaces corosync's u32 rollover arithmetic (protocol.md section 1).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple

from evs.types import Guarantee, RingId

__all__ = [
    "CommitEntry",
    "CommitToken",
    "Join",
    "Mcast",
    "MergeDetect",
    "Message",
    "MessageType",
    "OrfToken",
    "RtrEntry",
    "TokenHoldCancel",
]


class MessageType(enum.IntEnum):
    """The type byte of the common header."""

    ORF_TOKEN = 0
    MCAST = 1
    MERGE_DETECT = 2
    JOIN = 3
    COMMIT_TOKEN = 4
    TOKEN_HOLD_CANCEL = 5


@dataclass(frozen=True, slots=True)
class RtrEntry:
    """A retransmission request carried on the token: message ``seq`` of ring ``ring_id``."""

    ring_id: RingId
    seq: int


@dataclass(slots=True)
class OrfToken:
    """The ordering token, unicast to the successor on the ring (protocol.md section 2)."""

    #: Sender of this hop (rewritten at each hop).
    sender: int
    ring_id: RingId
    #: Incremented at every hop; receivers drop copies with token_seq <= the last seen.
    token_seq: int
    #: Highest sequence number assigned on the ring so far.
    seq: int
    #: All-received-up-to: a low-water mark over all processors.
    aru: int
    #: Who last pulled aru below seq (0: nobody).
    aru_addr: int
    #: Ring-wide count of queued, unsent packets.
    backlog: int
    #: Packets broadcast during the last rotation (flow control).
    fcc: int
    #: RECOVERY only: someone still has old-ring messages to re-send.
    retrans_flg: bool
    rtr_list: list[RtrEntry] = field(default_factory=list)


class Mcast(NamedTuple):
    """A data packet: one totem payload stamped with its ring and sequence number.

    ``encapsulated`` packets carry an old-ring ``Mcast`` (re-sent during RECOVERY) in
    ``inner``; their own ``payload`` is empty. A named tuple, not a frozen dataclass like the
    other messages: one is built per packet sent and per packet received, at a quarter of a
    frozen dataclass's cost (``evs.totem.events.Deliver`` says more).
    """

    sender: int
    ring_id: RingId
    seq: int
    #: Originator; retransmitters never change it.
    system_from: int
    guarantee: Guarantee
    payload: bytes
    inner: Mcast | None = None

    @property
    def encapsulated(self) -> bool:
        return self.inner is not None


@dataclass(frozen=True, slots=True)
class Join:
    """A membership JOIN; ``leave`` marks a graceful LEAVE (the sender is in failed_list)."""

    sender: int
    ring_seq: int
    proc_list: tuple[int, ...]
    failed_list: tuple[int, ...]
    leave: bool = False


@dataclass(frozen=True, slots=True)
class MergeDetect:
    """Sent by the representative of an idle ring so other rings can find it."""

    sender: int
    ring_id: RingId


@dataclass(frozen=True, slots=True)
class TokenHoldCancel:
    """Asks the representative to release a held token at once."""

    sender: int
    ring_id: RingId


@dataclass(frozen=True, slots=True)
class CommitEntry:
    """One member's line in the commit token, filled during the first rotation."""

    old_ring_id: RingId
    aru: int
    high_delivered: int
    received_flg: bool


@dataclass(slots=True)
class CommitToken:
    """The commit token: makes two rotations of the new ring before it is installed."""

    sender: int
    ring_id: RingId
    token_seq: int
    #: Number of entries filled so far (also the index of the next hop).
    memb_index: int
    #: New members in ascending order (= token order).
    addrs: tuple[int, ...]
    entries: list[CommitEntry | None]


Message = OrfToken | Mcast | Join | MergeDetect | TokenHoldCancel | CommitToken
