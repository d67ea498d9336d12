"""The ordering state of one ring: sort queue, aru, delivery and freeing marks.

Theory of operation. Every ring numbers its packets from 1, so everything that counts
sequence numbers belongs to one ring and to nothing else. ``RingOrdering`` is that state,
created fresh whenever the processor starts a new ring (install, recovery, an abandoned
attempt): "reset" is "make a new object", so no counter can leak from one ring into the
next. The processor owns exactly one at a time (``Processor.ring``); when a change begins, the
last regular ring's ordering is frozen into an ``OldRing`` snapshot that RECOVERY reads and
never writes.

Marks, for one ring, always in this order (``invariants.py`` checks them after every input):

    last_released <= my_high_delivered <= my_aru <= my_high_seq_received   (OPERATIONAL)

``last_released``: freed, everyone has it; ``my_high_delivered``: handed to the application;
``my_aru``: every seq up to it is held; ``my_high_seq_received``: the highest seq held. The
sort queue ``rq`` holds packets above ``last_released`` and at most ``sort_queue_slots``
above it. In RECOVERY only re-sent (wrapped) packets are freed, so ``last_released`` may pass
``my_high_delivered`` there; install puts both at the recovery's install seq.

The methods are leaf helpers over this state alone: they take the numbers they need and
return what they decided, and the processor does the sending and the delivering.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from evs.totem.messages import Mcast, OrfToken, RtrEntry
from evs.types import RingId

__all__ = ["LOSS_MEMORY_VISITS", "OldRing", "RingOrdering"]

#: Retransmission requests one token may carry (protocol.md section 2).
RTR_MAX: Final = 30
#: For how many token visits, the one that saw it included, a sign of loss makes the ring
#: count as lossy.
LOSS_MEMORY_VISITS: Final = 16


class RingOrdering:
    """Sequence bookkeeping of the ring a processor is on (one object per ring)."""

    __slots__ = (
        "cancel_sent",
        "held_token",
        "last_released",
        "loss_visits",
        "miss",
        "my_aru",
        "my_aru_count",
        "my_high_delivered",
        "my_high_seq_received",
        "my_last_aru",
        "my_last_seq",
        "my_pbl",
        "my_prev_aru",
        "my_seq_unchanged",
        "my_token_seq",
        "my_trc",
        "rotation_dev_ms",
        "rotation_ms",
        "rq",
        "token_resends",
        "visit_at",
    )

    def __init__(self) -> None:
        #: Sort queue: seq -> (packet, its datagram for retransmission).
        self.rq: dict[int, tuple[Mcast, bytes]] = {}
        self.my_aru = 0
        self.my_high_seq_received = 0
        self.my_high_delivered = 0
        self.last_released = 0
        #: Token hop counter of the last token accepted (duplicates are at or below it).
        self.my_token_seq = 0
        #: The token's aru at this visit and at the one before (safe delivery, freeing).
        self.my_last_aru = 0
        self.my_prev_aru = 0
        #: The token's seq at the last visit, and for how many visits it has not moved.
        self.my_last_seq = -1
        self.my_seq_unchanged = 0
        #: Visits for which the token's aru stayed put while we held it down.
        self.my_aru_count = 0
        #: What this processor added to the token's fcc and backlog at its last visit.
        self.my_trc = 0
        self.my_pbl = 0
        #: Visits for which each hole has been missing (miss_count_const).
        self.miss: dict[int, int] = {}
        #: The token the representative holds on an idle ring, after the visit that decided
        #: to hold it; None while the token moves.
        self.held_token: OrfToken | None = None
        #: A TOKEN_HOLD_CANCEL was sent for the current idle period.
        self.cancel_sent = False
        #: Token rotation as seen here (time between two busy visits): smoothed, and its mean
        #: deviation; negative until the first sample (the adaptive retransmit timeout).
        self.rotation_ms = -1.0
        self.rotation_dev_ms = 0.0
        #: When the last busy visit began (negative: none, or it was idle).
        self.visit_at = -1.0
        #: Re-sends of the token last forwarded (doubles the wait; zero when forwarded).
        self.token_resends = 0
        #: Visits left during which the ring counts as lossy (the token goes out in
        #: ``token_copies_on_loss`` copies); renewed by every visit that sees loss.
        self.loss_visits = 0

    @property
    def holding(self) -> bool:
        """The representative is holding the token on an idle ring."""
        return self.held_token is not None

    def note_visit(self, now: float, *, busy: bool) -> None:
        """Sample the rotation at a token visit (TCP's smoothed round trip, Jacobson's gains).

        Only the interval between two busy visits is a sample: an idle ring's rotation holds
        the representative's hold. A rotation during which this processor re-sent the token is
        no sample either (Karn's rule): it measures the loss, not the ring.
        """
        if busy and self.visit_at >= 0.0 and self.token_resends == 0:
            sample = now - self.visit_at
            if self.rotation_ms < 0.0:
                self.rotation_ms = sample
                self.rotation_dev_ms = sample / 2.0
            else:
                error = sample - self.rotation_ms
                self.rotation_ms += error / 8.0
                self.rotation_dev_ms += (abs(error) - self.rotation_dev_ms) / 4.0
        self.visit_at = now if busy else -1.0

    def store(self, seq: int, held: tuple[Mcast, bytes], window: int) -> bool:
        """Keep packet ``seq`` in the sort queue; False for a duplicate or out of window."""
        if seq <= self.last_released or seq > self.last_released + window or seq in self.rq:
            return False
        self.rq[seq] = held
        self.my_high_seq_received = max(self.my_high_seq_received, seq)
        if seq == self.my_aru + 1:
            self.update_aru()
        return True

    def update_aru(self) -> None:
        aru = self.my_aru
        rq = self.rq
        while aru + 1 in rq:
            aru += 1
        self.my_aru = aru

    def release(self, upto: int) -> None:
        """Free every packet up to ``upto`` (protocol.md section 4.5)."""
        if upto <= self.last_released:
            return
        rq = self.rq
        for seq in range(self.last_released + 1, upto + 1):
            if seq in rq:  # compiled, ``in`` and ``del`` are C calls; pop(k, None) a method call
                del rq[seq]
        self.last_released = upto

    def release_wrapped(self, upto: int) -> None:
        """RECOVERY: free re-sent packets up to ``upto``, stopping at the first plain one.

        Wrapped packets carry old-ring messages (unwrapped when they arrived); a plain one was
        sent by a member that already installed and is still to be delivered here.
        """
        rq = self.rq
        seq = self.last_released
        while seq < upto:
            held = rq.get(seq + 1)
            if held is None or held[0].inner is None:
                break
            del rq[seq + 1]
            seq += 1
        self.last_released = seq

    def request_missing(
        self, ring_id: RingId, tok_seq: int, rtr: list[RtrEntry], threshold: int, window: int
    ) -> int:
        """Add holes missing for ``threshold`` visits to ``rtr``; returns how many were added.

        The scan is bounded by the sort-queue window, whatever seq the token claims.
        """
        if self.my_aru >= tok_seq:
            if self.miss:
                self.miss = {}
            return 0
        if len(rtr) >= RTR_MAX:
            return 0
        listed = {e.seq for e in rtr if e.ring_id == ring_id}
        limit = min(tok_seq, self.last_released + window)
        miss = self.miss
        rq = self.rq
        added = 0
        for seq in range(self.my_aru + 1, limit + 1):
            if len(rtr) >= RTR_MAX:
                break
            if seq in rq:
                continue
            count = miss.get(seq, 0) + 1
            miss[seq] = count
            if count >= threshold and seq not in listed:
                rtr.append(RtrEntry(ring_id, seq))
                added += 1
        for seq in [s for s in miss if s <= self.my_aru]:
            del miss[seq]
        return added

    def freeze(self, ring_id: RingId, members: tuple[int, ...]) -> OldRing:
        """The frozen snapshot RECOVERY works from once this ring is left."""
        return OldRing(
            ring_id=ring_id,
            members=members,
            # Handed over, not copied: this ordering object is dropped right after freezing.
            rq=self.rq,
            aru=self.my_aru,
            high_seq_received=self.my_high_seq_received,
            high_delivered=self.my_high_delivered,
            last_released=self.last_released,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class OldRing:
    """The last regular ring as it stood when COMMIT was first entered (never changes).

    A late old-ring packet must not change what we told the commit token, or the
    transitional members would deliver different sets; so the snapshot is read-only.
    """

    ring_id: RingId
    members: tuple[int, ...]
    #: The old sort queue, read-only by type: seq -> (packet, datagram).
    rq: Mapping[int, tuple[Mcast, bytes]]
    aru: int
    high_seq_received: int
    high_delivered: int
    last_released: int
