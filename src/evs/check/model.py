"""The checker's picture of a trace: epochs, sends, and where each node's log ends.

Theory of operation: each node's log is replayed once (``history.py``) into ``Epoch`` records,
one per regular configuration an incarnation installed, holding what it delivered there
(regular part, then the transitional part), what it sent there, and how the epoch ended: the
next regular configuration, a crash (or restart), or the end of the log. Every cross-node
property works on these records and on the table of sends, never on raw events again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["CRASH", "END", "NEXT", "OPEN", "Epoch", "History", "NodeEnd", "SendRec"]

Event = dict[str, Any]

#: How an epoch ended: the node installed its next regular configuration, it crashed
#: (or restarted), or its log ended while it was still in the configuration.
NEXT, CRASH, END, OPEN = "next", "crash", "end", "open"


@dataclass(eq=False, slots=True)
class Epoch:
    """One regular configuration as lived by one incarnation of one node."""

    node: int
    inc: int
    ring: str
    members: frozenset[int]
    event: Event
    #: The incarnation's first configuration (a handle may join it mid-stream).
    first: bool
    delivered: list[str] = field(default_factory=list)
    deliver_events: list[Event] = field(default_factory=list)
    #: Length of the regular part of ``delivered``; the rest was delivered in the
    #: transitional configuration. None while no transitional configuration is installed.
    n_reg: int | None = None
    trans_event: Event | None = None
    trans_members: frozenset[int] | None = None
    next_ring: str | None = None
    ended: str = OPEN
    sends: list[str] = field(default_factory=list)
    #: For each send, how many messages the node had delivered in this epoch before it.
    send_cuts: list[int] = field(default_factory=list)
    #: Indexes into ``delivered`` of SAFE deliveries, regular and transitional.
    safe_reg: list[int] = field(default_factory=list)
    safe_trans: list[int] = field(default_factory=list)

    @property
    def reg_len(self) -> int:
        return len(self.delivered) if self.n_reg is None else self.n_reg

    def regular(self) -> list[str]:
        return self.delivered if self.n_reg is None else self.delivered[: self.n_reg]

    def transitional(self) -> list[str]:
        return [] if self.n_reg is None else self.delivered[self.n_reg :]

    def label(self) -> str:
        return f"node {self.node}" + (f" (incarnation {self.inc})" if self.inc else "")


@dataclass(eq=False, slots=True)
class SendRec:
    """The one send of a message: who, in which configuration, and the epoch it belongs to."""

    node: int
    ring: str | None
    event: Event
    epoch: Epoch | None


@dataclass(eq=False, slots=True)
class NodeEnd:
    """Where a node's log leaves it: down (crashed), or in an epoch (maybe transitional)."""

    down: bool
    epoch: Epoch | None
    in_trans: bool
    last: Event | None


@dataclass(slots=True)
class History:
    """Everything the cross-node properties need, built in one pass over the logs."""

    nodes: set[int] = field(default_factory=set)
    epochs: list[Epoch] = field(default_factory=list)
    by_ring: dict[str, list[Epoch]] = field(default_factory=dict)
    epoch_at: dict[tuple[int, str], Epoch] = field(default_factory=dict)
    sends: dict[str, SendRec] = field(default_factory=dict)
    #: Deliveries before any configuration (already reported as 2.3).
    loose: list[Event] = field(default_factory=list)
    #: Deliveries of a node's own message logged before its send appeared.
    early_self: list[Event] = field(default_factory=list)
    ends: dict[int, NodeEnd] = field(default_factory=dict)
    reg_members: dict[str, tuple[frozenset[int], Event]] = field(default_factory=dict)
    _canon: dict[str, tuple[str, int]] = field(default_factory=dict)

    def ring(self, raw: str) -> str:
        """The canonical form of a ring id string ("01.8" and "1.8" are the same ring)."""
        hit = self._canon.get(raw)
        if hit is None:
            hit = self._add_ring(raw)
        return hit[0]

    def ring_seq(self, raw: str) -> int:
        hit = self._canon.get(raw)
        if hit is None:
            hit = self._add_ring(raw)
        return hit[1]

    def _add_ring(self, raw: str) -> tuple[str, int]:
        rep, _, seq = raw.partition(".")
        hit = (f"{int(rep)}.{int(seq)}", int(seq))
        self._canon[raw] = hit
        return hit

    def transitional_groups(self) -> dict[tuple[str, str], list[Epoch]]:
        """Epochs that went c -> t -> c', keyed by (c, c'): one transitional config per key."""
        groups: dict[tuple[str, str], list[Epoch]] = {}
        for e in self.epochs:
            if e.trans_members is not None and e.next_ring is not None:
                groups.setdefault((e.ring, e.next_ring), []).append(e)
        return groups
