"""Why an incoming datagram was rejected before it reached the protocol.

Peer input never raises out of the core: the codec turns every malformed datagram into a
``DecodeError`` naming one ``DropReason``, and the processor counts and traces drops per reason
instead of crashing (style rule 6). The values are short stable strings so traces and counters
keep their meaning across releases; docs/wire.md lists the same reasons with the wire rules.
"""

from __future__ import annotations

import enum

__all__ = ["DecodeError", "DropReason"]


class DropReason(enum.Enum):
    """One reason the codec refuses a datagram (checked in the order listed in docs/wire.md)."""

    #: Shorter than the common header, so not even the type can be trusted.
    TOO_SHORT = "too_short"
    #: The first two bytes are not our magic: stray traffic or another protocol on the port.
    BAD_MAGIC = "bad_magic"
    #: A wire version this build cannot read (a mixed-version cluster).
    BAD_VERSION = "bad_version"
    #: Sent by a member of another cluster sharing the network or port.
    WRONG_CLUSTER = "wrong_cluster"
    #: The type byte names no message type.
    UNKNOWN_TYPE = "unknown_type"
    #: The body is shorter than its fixed part or than its counts require.
    TRUNCATED = "truncated"
    #: Bytes remain after a complete body (only a plain mcast payload may run to the end).
    TRAILING_BYTES = "trailing_bytes"
    #: A token carries more retransmission requests than MAX_RTR.
    TOO_MANY_RTR = "too_many_rtr"
    #: A node list (join lists, commit token members) is longer than MAX_PROCESSORS.
    LIST_TOO_LONG = "list_too_long"
    #: An mcast guarantee byte other than AGREED (2) or SAFE (3).
    BAD_GUARANTEE = "bad_guarantee"
    #: A commit token with no members, or whose memb_index exceeds its member count.
    BAD_COUNT = "bad_count"
    #: A boolean byte other than 0 or 1, or a join flag bit we do not define.
    BAD_FLAG = "bad_flag"
    #: A node id of 0 where a node is named (0 is reserved and never a processor).
    ZERO_NODEID = "zero_nodeid"
    #: Commit token members not strictly ascending (duplicates or wrong ring order).
    UNSORTED_MEMBERS = "unsorted_members"
    #: An absent commit entry whose fields are not all zero (keeps the encoding canonical).
    DIRTY_ABSENT_ENTRY = "dirty_absent_entry"
    #: An encapsulated mcast whose inner datagram is not an mcast.
    BAD_ENCAPSULATION = "bad_encapsulation"
    #: An encapsulated mcast whose inner mcast is itself encapsulated.
    NESTED_ENCAPSULATION = "nested_encapsulation"
    #: A sequence number (message, token or ring) at or above SEQ_LIMIT (2^62): no real ring
    #: gets there, and the core's own increments of such a value would overflow its u64 field.
    OUT_OF_RANGE = "out_of_range"


class DecodeError(Exception):
    """A datagram the codec refused; ``reason`` is for counters, ``detail`` for the log."""

    def __init__(self, reason: DropReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
