"""The Totem processor: one sans-I/O state machine per executive.

Theory of operation. Inputs are ``start``, ``receive`` (a datagram), ``handle_timer`` and
``submit`` (an application message); each takes ``now`` in milliseconds from the driver's
monotonic clock. Outputs accumulate in ``outbox`` (datagrams: destination node id or
``BROADCAST``), ``events`` (deliveries, configuration changes, notices) and the timer table
(``next_deadline``). The driver drains both lists after every input. Nothing here reads a
clock, a socket or a random source, so the simulator replays a run exactly.

The operational ring follows protocol.md section 4: the token orders messages, carries the
all-received-up-to mark and the retransmission requests, and bounds what each visit may send.
Agreed messages are delivered as soon as everything before them is held; safe messages wait
until the token showed them received on two successive visits. Membership (GATHER, COMMIT)
lives in ``membership.py`` and RECOVERY in ``recovery.py``; they share this object's state.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Final

from evs.totem import membership, recovery
from evs.totem.codec import (
    DecodeError,
    cluster_id_for,
    decode,
    encode,
    encode_mcast,
    interned_ring_id,
)
from evs.totem.config import TotemConfig
from evs.totem.events import (
    BROADCAST,
    CoreEvent,
    Deliver,
    GatherReason,
    MembState,
    Notice,
    PersistRingSeq,
    Sent,
)
from evs.totem.groups import Packer, Unpacker
from evs.totem.messages import (
    CommitToken,
    Join,
    Mcast,
    MergeDetect,
    OrfToken,
    RtrEntry,
    TokenHoldCancel,
)
from evs.totem.ordering import LOSS_MEMORY_VISITS, OldRing, RingOrdering
from evs.totem.timers import Timer, Timers
from evs.types import ConfigChange, Guarantee, RingId

__all__ = ["TRANSITIONS", "Processor"]

_SAFE: Final = Guarantee.SAFE
_new_tuple = tuple.__new__
_RECOVERING: Final = (MembState.COMMIT, MembState.RECOVERY)
_O, _G, _C, _R = MembState.OPERATIONAL, MembState.GATHER, MembState.COMMIT, MembState.RECOVERY
#: Membership transitions (protocol.md section 5.1): any state may fall back to GATHER;
#: COMMIT is reached only from GATHER, RECOVERY only from COMMIT, and OPERATIONAL only by
#: installing a recovered ring. ``enter_state`` refuses anything else.
TRANSITIONS: Final[dict[MembState, frozenset[MembState]]] = {
    _O: frozenset({_G}),
    _G: frozenset({_G, _C}),
    _C: frozenset({_G, _R}),
    _R: frozenset({_G, _O}),
}
#: The token's backlog and fcc are u32 on the wire; sums of a peer's value and ours are
#: clamped here rather than overflowing the field (a hostile value must not make us raise).
_U32_MAX: Final = (1 << 32) - 1


class Processor:
    """A Totem single-ring processor (ordering, membership, recovery and message groups)."""

    def __init__(
        self,
        config: TotemConfig,
        nodeid: int,
        *,
        ring_seq: int = 0,
        static_members: Sequence[int] | None = None,
    ) -> None:
        if not 0 < nodeid < 1 << 32:
            raise ValueError(f"nodeid must be 1..2^32-1, got {nodeid}")
        self.config = config
        # Read on every packet: copied out of the (uncompiled, frozen) config once.
        self._pause_after = config.token / 2
        self._sort_queue_slots = config.sort_queue_slots
        self.nodeid = nodeid
        self.cluster_id = cluster_id_for(config.cluster_name)
        self.static = static_members is not None
        self.outbox: list[tuple[int, bytes]] = []
        self.events: list[CoreEvent] = []
        self.stats: Counter[str] = Counter()
        self.drops: Counter[str] = Counter()
        self.timers = Timers()
        self.started = False

        self.state = MembState.OPERATIONAL
        self.ring_id = interned_ring_id(RingId(seq=ring_seq, rep=nodeid))
        self.memb_list: tuple[int, ...] = (nodeid,)
        #: The same members as a set: who may originate messages on the current ring.
        self.member_set: frozenset[int] = frozenset(self.memb_list)
        self.successor = nodeid
        self._static_members = tuple(sorted(set(static_members or ())))
        #: Highest ring seq seen anywhere; new rings are numbered above it.
        self.token_ring_id_seq = ring_seq

        #: Ordering state of the current ring; a new ring gets a new object.
        self.ring = RingOrdering()
        self.orf_token_discard = False
        #: The last token (or commit token) sent, and where, for retransmission.
        self.token_copy: bytes | None = None
        self.token_copy_dest = nodeid
        #: The ring seq a commit token copy depends on (it is re-sent only through a
        #: PersistRingSeq event), or None when the copy is an ORF token.
        self.token_copy_persist: int | None = None
        self.failed_to_recv = False
        #: When a stall of this process was last detected (drops stale JOINs after it).
        self.paused_at = -1e18

        self.packer = Packer(
            config.payload_max,
            queue_bytes_max=config.queue_bytes_max,
            max_message_size=config.max_message_size,
            queue_messages_max=config.queue_messages_max,
        )
        self.unpacker = Unpacker(max_message_size=config.max_message_size)
        self.memb = membership.MembershipState(nodeid)
        self.rec = recovery.RecoveryState()

    # ------------------------------------------------------------------ inputs

    def start(self, now: float) -> None:
        """Bring the processor up: a static ring installs at once, otherwise form one."""
        if self.started:
            return
        self.started = True
        if self.static:
            self._install_static(now)
        else:
            membership.startup(self, now)

    def receive(self, now: float, data: bytes) -> None:
        """Handle one datagram from the network; malformed input is a counted drop."""
        if not self.started:
            self.drops["not started"] += 1
            return
        self._detect_pause(now)
        try:
            msg = decode(data, self.cluster_id)
        except DecodeError as exc:
            self.drops[exc.reason.name.lower()] += 1
            return
        if isinstance(msg, Mcast):
            self._on_mcast(now, msg, data)
        elif isinstance(msg, OrfToken):
            self.on_token(now, msg)
        elif isinstance(msg, Join):
            membership.on_join(self, now, msg)
        elif isinstance(msg, CommitToken):
            membership.on_commit_token(self, now, msg)
        elif isinstance(msg, MergeDetect):
            membership.on_merge_detect(self, now, msg)
        else:
            self._on_hold_cancel(now, msg)

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now``."""
        self._detect_pause(now)
        # One at a time: a handler may re-arm or cancel a timer that was also due.
        while (timer := self.timers.pop_next_due(now)) is not None:
            self._fire(now, timer)

    def submit(self, now: float, groups: Sequence[bytes], data: bytes, guarantee: Guarantee) -> int:
        """Queue an application message; raises TryAgain or InvalidArgument.

        Returns the message's local number; a ``Sent`` event with it follows once the
        message is wholly on the ring.
        """
        number = self.packer.submit(groups, data, guarantee)
        if self.state is MembState.OPERATIONAL and self.started:
            self._request_token_release(now)
        return number

    def leave(self, now: float) -> None:
        """Leave gracefully: tell the others (so they need not wait for a timeout), then stop.

        The LEAVE goes out twice, since a lost one would cost the others a token timeout.
        """
        if self.started and not self.static:
            membership.send_leave(self)
            membership.send_leave(self)
        self.timers = Timers()
        self.started = False

    def _detect_pause(self, now: float) -> None:
        """A timer overdue by half a token timeout means this process was stalled.

        What queued up meanwhile is old news: JOINs read in the next ``join`` ms are
        dropped (protocol.md 5.10), so a stalled processor does not act on a membership
        round that ended while it slept.
        """
        due = self.timers.next_deadline()
        if due is not None and now - due > self._pause_after:
            self.paused_at = now
            self.stats["pause detected"] += 1
            self.notice("pause", f"stalled for about {now - due:.0f} ms past a timer")

    def next_deadline(self) -> float | None:
        """The earliest time at which ``handle_timer`` must be called, or None."""
        return self.timers.next_deadline()

    # ------------------------------------------------------------------ helpers for drivers

    def has_received(self, ring_id: RingId, seq: int) -> bool:
        """Whether this processor holds (or has released) message ``seq`` of ``ring_id``."""
        if ring_id != self.ring_id:
            return False
        return seq <= self.ring.last_released or seq in self.ring.rq

    @property
    def members(self) -> tuple[int, ...]:
        return self.memb_list

    # ------------------------------------------------------------------ outputs

    def broadcast(self, data: bytes) -> None:
        self.outbox.append((BROADCAST, data))

    def unicast(self, dest: int, data: bytes) -> None:
        self.outbox.append((dest, data))

    def notice(self, kind: str, detail: str) -> None:
        self.events.append(Notice(kind, detail))

    # ------------------------------------------------------------------ state

    def enter_state(self, new: MembState) -> None:
        """The one place the membership state changes; the table says what is allowed."""
        if new not in TRANSITIONS[self.state]:
            raise AssertionError(f"illegal membership transition {self.state} -> {new}")
        self.state = new

    # ------------------------------------------------------------------ ring install

    def _install_static(self, now: float) -> None:
        members = self._static_members
        if self.nodeid not in members:
            raise ValueError(f"static ring {members} does not contain node {self.nodeid}")
        self.install_ring(RingId(seq=self.ring_id.seq, rep=members[0]), members)
        self.events.append(
            ConfigChange(ring_id=self.ring_id, transitional=False, members=members, joined=members)
        )
        self.timers.arm(Timer.TOKEN, now + self.config.token)
        if self.nodeid == members[0]:
            self.on_token(now, self.initial_token(retrans_flg=False))

    def install_ring(self, ring_id: RingId, members: tuple[int, ...]) -> None:
        """Make ``ring_id`` the current ring with a fresh, empty ordering state."""
        self.ring_id = interned_ring_id(ring_id)
        self.token_ring_id_seq = max(self.token_ring_id_seq, ring_id.seq)
        self.set_members(members)
        self.ring = RingOrdering()

    def set_members(self, members: tuple[int, ...]) -> None:
        """The members of the ring this processor is on (or forming), and its successor."""
        self.memb_list = members
        self.member_set = frozenset(members)
        idx = members.index(self.nodeid)
        self.successor = members[(idx + 1) % len(members)]

    def initial_token(self, *, retrans_flg: bool) -> OrfToken:
        """The first ORF token of a ring, created by its representative."""
        return OrfToken(
            sender=self.nodeid,
            ring_id=self.ring_id,
            token_seq=self.ring.my_token_seq + 1,
            seq=0,
            aru=0,
            aru_addr=self.nodeid,
            backlog=0,
            fcc=0,
            retrans_flg=retrans_flg,
        )

    # ------------------------------------------------------------------ MCAST

    def _on_mcast(self, now: float, msg: Mcast, data: bytes) -> None:
        ring_id = msg.ring_id
        # ``is`` first: the codec hands out one RingId object per ring, so the usual case
        # costs no tuple comparison.
        if ring_id is not self.ring_id and ring_id != self.ring_id:
            membership.on_foreign(self, now, msg.system_from, ring_id)
            return
        if msg.system_from not in self.member_set:
            # Only members originate on a ring: a forged originator must not get a
            # reassembly buffer (or anything else) of its own.
            self.drops["mcast from a non-member"] += 1
            return
        if msg.inner is not None and self.state not in _RECOVERING:
            # Old-ring messages are re-sent only while a new ring recovers; stored on an
            # operational ring, one would be re-sent wrapped twice at the next change.
            self.drops["encapsulated mcast outside recovery"] += 1
            return
        if not self.ring.store(msg.seq, (msg, data), self._sort_queue_slots):
            self.stats["mcast duplicate or outside window"] += 1
            return
        if msg.inner is not None:
            # Recovery packets carry an old-ring message: it joins the saved old ring now,
            # so the new ring's copy can be freed like any other packet.
            recovery.on_recovered(self, msg.inner)
        elif self.state is MembState.OPERATIONAL:
            self.deliver()

    # ------------------------------------------------------------------ token

    def on_token(self, now: float, tok: OrfToken) -> None:
        """Token receipt in the order of protocol.md section 4.2."""
        if self.orf_token_discard or self.state in (MembState.GATHER, MembState.COMMIT):
            self.stats["token discarded outside ring"] += 1
            return
        if tok.ring_id is not self.ring_id and tok.ring_id != self.ring_id:
            self.stats["token of another ring"] += 1
            return
        ring = self.ring
        if tok.token_seq <= ring.my_token_seq:
            self.stats["token duplicate"] += 1
            return
        if tok.seq < ring.my_high_seq_received or tok.aru > tok.seq:
            # Every message of the ring was stamped from the token, so an honest token's seq
            # covers all we hold; numbering from a lower one would reuse sequence numbers.
            self.drops["token seq below messages held"] += 1
            return
        cfg = self.config
        if tok.seq == ring.my_last_seq:
            ring.my_seq_unchanged += 1
            if not self.timers.running(Timer.MERGE_DETECT) and not self.static:
                self.timers.arm(Timer.MERGE_DETECT, now + cfg.merge)
        else:
            ring.my_seq_unchanged = 0
            ring.cancel_sent = False
            self.timers.cancel(Timer.MERGE_DETECT)
        ring.my_last_seq = tok.seq
        ring.note_visit(now, busy=self._busy(ring))
        operational = self.state is MembState.OPERATIONAL
        if operational:
            ring.release(min(tok.aru, ring.my_last_aru, ring.my_high_delivered))
        elif self.state is MembState.RECOVERY:
            ring.release_wrapped(min(tok.aru, ring.my_last_aru))
        ring.my_prev_aru = ring.my_last_aru
        ring.my_last_aru = tok.aru

        allowed, backlog = self._fcc_calculate(tok)
        # Requests on the token (or our own holes) mean the network loses datagrams now.
        lossy = bool(tok.rtr_list)
        sent_rtr = self._retransmit(tok, allowed)
        allowed -= sent_rtr
        requested = ring.request_missing(
            self.ring_id, tok.seq, tok.rtr_list, cfg.miss_count_const, cfg.sort_queue_slots
        )
        self.stats["retransmit requested"] += requested
        if lossy or requested:
            ring.loss_visits = LOSS_MEMORY_VISITS
        elif ring.loss_visits:
            ring.loss_visits -= 1
        allowed = self._within_sort_queue(tok, allowed)
        first_new = len(self.outbox)
        if operational:
            sent_new = self._send_new(tok, allowed)
        else:
            sent_new = recovery.send_queued(self, tok, allowed)
        self._account(tok, sent_rtr + sent_new, backlog)
        self.stats["mcast retransmitted"] += sent_rtr

        self._set_aru(tok)
        if tok.aru == ring.my_prev_aru and tok.aru_addr != 0:
            ring.my_aru_count += 1
        else:
            ring.my_aru_count = 0
        if ring.my_aru_count > cfg.fail_recv_const and tok.aru_addr == self.nodeid:
            self.notice("failed to receive", f"aru stuck at {tok.aru} for {ring.my_aru_count}")
            ring.my_aru_count = 0
            if not self.static:
                self.failed_to_recv = True
                membership.enter_gather(self, now, GatherReason.FAILED_TO_RECEIVE, fail_self=True)
                return

        ring.my_token_seq = tok.token_seq
        tok.token_seq += 1
        if self.state is MembState.RECOVERY:
            recovery.on_token(self, now, tok)  # may install: then we are OPERATIONAL below
        forwarded_at = len(self.outbox)
        self._forward(now, tok)
        if operational and sent_new >= cfg.token_ahead_min > 0:
            self._token_ahead(first_new, forwarded_at)
        if self.state is MembState.OPERATIONAL:
            self.deliver()

    def _token_ahead(self, first_new: int, forwarded_at: int) -> None:
        """Move the token (and its copies) ahead of this visit's new packets in the outbox.

        The successor then takes the token while the packets are still arriving, rather than
        after all of them: it passes the token on and the ring's next visits overlap this
        one's delivery (an accelerated ring). Nothing else changes: the token's seq already
        covers the packets, and a member that has the token before them sees them as holes
        for a moment, which it asks for only after ``miss_count_const`` visits, the same as
        any reordering by the network. Retransmissions stay ahead of the token.
        """
        out = self.outbox
        token = out[forwarded_at:]
        if token:  # empty when the token is held (an idle ring)
            del out[forwarded_at:]
            out[first_new:first_new] = token

    def _forward(self, now: float, tok: OrfToken) -> None:
        cfg = self.config
        tok.sender = self.nodeid
        data = encode(tok, self.cluster_id)
        self.token_copy = data
        self.token_copy_dest = self.successor
        self.token_copy_persist = None
        ring = self.ring
        hold = self._may_hold(tok)
        self.timers.arm(Timer.TOKEN, now + cfg.token)
        ring.token_resends = 0  # a new token: its re-sends (and their back-off) start afresh
        if hold:
            ring.held_token = tok
            self.timers.cancel(Timer.TOKEN_RETRANSMIT)
            self.timers.arm(Timer.HOLD, now + cfg.hold_ms)
            self.stats["token held"] += 1
            return
        ring.held_token = None
        self.timers.cancel(Timer.HOLD)
        self.unicast(self.successor, data)
        if ring.loss_visits and cfg.token_copies_on_loss > 1:
            # A lossy ring: more copies, so a token is lost only if all of them are (the
            # successor drops the extra ones by token_seq).
            for _ in range(cfg.token_copies_on_loss - 1):
                self.unicast(self.successor, data)
            self.stats["token sent in copies"] += 1
        self.timers.arm(Timer.TOKEN_RETRANSMIT, now + self.token_retransmit_timeout())

    def _may_hold(self, tok: OrfToken) -> bool:
        """Whether the representative keeps this token on an idle ring (protocol.md 4.6).

        Idle means no new message for ``seqno_unchanged_const`` visits, nothing queued here,
        no retransmission request and every member holding everything (the token's aru at
        its seq): a member still missing messages asks for them a visit at a time, so holding
        the token would ration its catching up to one visit's requests per hold period (seed
        20132: 5,600 messages at 30 per 180 ms). Requests answered before the token got back
        leave no trace in ``rtr_list``; the aru still shows them.
        """
        return (
            self.nodeid == self.ring_id.rep
            and self.ring.my_seq_unchanged > self.config.seqno_unchanged_const
            and self.state is MembState.OPERATIONAL
            and not self.packer.queued_messages()
            and not tok.rtr_list
            and tok.aru == tok.seq
        )

    def _busy(self, ring: RingOrdering) -> bool:
        """Whether the ring carries traffic: its seq moved within half the hold threshold.

        On an idle ring the representative is about to hold the token (its seq unchanged for
        ``seqno_unchanged_const`` visits; every member's count is within two visits of its
        own), so the others must not take the held token for a lost one: they keep the fixed
        ``token_retransmit``, and a rotation that included a hold is no sample.
        """
        return ring.my_seq_unchanged < self.config.seqno_unchanged_const // 2

    def token_retransmit_timeout(self) -> float:
        """How long the ORF token just sent may stay away before it is sent again.

        About one rotation on a busy ring (the sender's copy is re-sent when the token should
        have come back round and has not), clamped between ``token_retransmit_min`` and
        ``token_retransmit``, and doubled per re-send of the same token so a slow successor
        that is alive is not flooded. Without a rotation sample yet, or on an idle ring, the
        fixed ``token_retransmit``. A copy the successor already had is dropped there as a
        duplicate (``token_seq``), so an early re-send costs one small datagram.
        """
        cfg = self.config
        ceiling = cfg.token_retransmit_ms
        ring = self.ring
        if ring.rotation_ms < 0.0 or not self._busy(ring):
            return ceiling
        wait = max(cfg.token_retransmit_min_ms, ring.rotation_ms + 4.0 * ring.rotation_dev_ms)
        wait *= 2.0 ** min(ring.token_resends, 32)
        return min(ceiling, wait)

    def send_token_copy(self) -> None:
        """(Re-)send the last token; a commit token only ever leaves inside PersistRingSeq.

        The ring seq a commit token names must be durable before the token leaves (a restart
        must never reuse a ring id). The datagram travels in the event itself, so a driver
        cannot send it without seeing the request to persist first: the rule is structural,
        not an ordering convention between ``events`` and ``outbox``.
        """
        data = self.token_copy
        assert data is not None
        if self.token_copy_persist is None:
            self.unicast(self.token_copy_dest, data)
        else:
            self.events.append(
                PersistRingSeq(self.token_copy_persist, ((self.token_copy_dest, data),))
            )

    def _release_held_token(self, now: float) -> None:
        """Send the held token on; if this processor has messages queued, with them."""
        ring = self.ring
        tok = ring.held_token
        if tok is None or self.token_copy is None:
            return
        ring.held_token = None
        self.timers.cancel(Timer.HOLD)
        if self.state is MembState.OPERATIONAL and self.packer.queued_messages():
            self._visit_held(now, tok)
            return
        self.send_token_copy()
        self.timers.arm(Timer.TOKEN_RETRANSMIT, now + self.token_retransmit_timeout())

    def _visit_held(self, now: float, tok: OrfToken) -> None:
        """The holder's own messages leave with the held token, not a rotation later.

        The token never left since our last visit, so a second visit now is the same as that
        visit having had these messages already: stamp and send them, account for them in
        the token's fcc, backlog and aru as the visit would have, and forward the token. The
        safe-delivery marks (``my_last_aru``, ``my_prev_aru``) come only from received
        tokens and stay as they are: this visit shows nothing about the other members.
        """
        ring = self.ring
        allowed, backlog = self._fcc_calculate(tok)
        # One visit's allowance (max_messages, or a lone sender's window) for both parts.
        allowed = self._within_sort_queue(tok, max(0, allowed - ring.my_trc))
        sent = self._send_new(tok, allowed)
        self._account(tok, ring.my_trc + sent, backlog)  # both parts: one visit's share
        self._set_aru(tok)
        self.stats["held token visits"] += 1
        self._forward(now, tok)
        self.deliver()

    def _within_sort_queue(self, tok: OrfToken, allowed: int) -> int:
        """``allowed``, or 0 if sending that many could outrun the others' sort queues."""
        cfg = self.config
        if self.ring.last_released + cfg.sort_queue_slots - allowed - cfg.window_size < tok.seq:
            return 0
        return allowed

    def _account(self, tok: OrfToken, sent: int, backlog: int) -> None:
        """Flow control: this visit's packets and backlog replace our last visit's share."""
        ring = self.ring
        tok.fcc = min(_U32_MAX, max(0, tok.fcc + sent - ring.my_trc))
        tok.backlog = min(_U32_MAX, max(0, tok.backlog + backlog - ring.my_pbl))
        ring.my_trc = sent
        ring.my_pbl = backlog

    def _set_aru(self, tok: OrfToken) -> None:
        """Lower the token's aru to ours, or raise it if we were the one holding it down."""
        my_aru = self.ring.my_aru
        if my_aru < tok.aru or tok.aru_addr in (self.nodeid, 0):
            tok.aru = my_aru
            tok.aru_addr = 0 if my_aru == tok.seq else self.nodeid

    def _request_token_release(self, now: float) -> None:
        """New data on an idle ring: get the token moving again (protocol.md section 4.6).

        The holder itself sends its messages with the held token (``_visit_held``) when the
        HOLD timer fires, armed for now: everything submitted before the driver next runs
        the timers rides the same visit. A later submit never pushes that visit back, or a
        steady trickle of submits could keep the token held until the token timer fired.
        """
        ring = self.ring
        if ring.holding:
            ring.my_seq_unchanged = 0
            due = self.timers.deadline(Timer.HOLD)
            if due is None or due > now:
                self.timers.arm(Timer.HOLD, now)
        elif ring.my_seq_unchanged >= self.config.seqno_unchanged_const and not ring.cancel_sent:
            ring.cancel_sent = True
            self.broadcast(encode(TokenHoldCancel(self.nodeid, self.ring_id), self.cluster_id))

    def _on_hold_cancel(self, now: float, msg: TokenHoldCancel) -> None:
        if msg.ring_id != self.ring_id or self.state is not MembState.OPERATIONAL:
            return
        self.ring.my_seq_unchanged = 0
        self._release_held_token(now)

    def _fcc_calculate(self, tok: OrfToken) -> tuple[int, int]:
        """Flow control: how many packets this visit may send, and this node's backlog."""
        cfg = self.config
        ring = self.ring
        pbl = ring.my_pbl
        if self.state is MembState.RECOVERY:
            backlog = len(self.rec.retrans_queue)
        else:
            packer = self.packer
            backlog = packer.backlog_packets()
            if tok.backlog <= pbl and packer.mostly_large():
                # A lone sender of large messages: no other member had anything queued at its
                # last visit, so nobody is kept waiting if we take the part of the window the
                # others did not use since our last visit (the window still caps a rotation;
                # max_messages is there to share it, and there is no one to share it with). A
                # member that queues something adds it to the token's backlog at its visit, and
                # from our next visit on the usual rule applies again. Small messages (under a
                # quarter of a packet on average) keep max_messages: their visits cost per
                # message, and measured, bigger visits of 64-byte messages cost 5-10 % of the
                # throughput (docs/protocol.md).
                return max(0, cfg.window_size - max(0, tok.fcc - ring.my_trc)), backlog
        allowed = min(cfg.max_messages, max(0, cfg.window_size - tok.fcc))
        total = tok.backlog + backlog - pbl
        if total > 0:
            share = cfg.window_size * pbl // total
            if share > 0:
                allowed = min(allowed, share)
        return allowed, backlog

    def _retransmit(self, tok: OrfToken, allowed: int) -> int:
        """Answer retransmission requests we can serve, within ``allowed``."""
        if not tok.rtr_list:
            return 0
        ring_id = self.ring_id
        rq = self.ring.rq
        sent = 0
        keep: list[RtrEntry] = []
        for entry in tok.rtr_list:
            if entry.ring_id != ring_id:
                continue  # stale request of another ring: nobody here can serve it
            held = rq.get(entry.seq)
            if held is not None and sent < allowed:
                self.broadcast(held[1])
                sent += 1
            else:
                keep.append(entry)
        tok.rtr_list = keep
        return sent

    def _send_new(self, tok: OrfToken, allowed: int) -> int:
        """Stamp and broadcast up to ``allowed`` new packets (batched per visit)."""
        sent = 0
        packer = self.packer
        ring_id = self.ring_id
        ring = self.ring
        rq = ring.rq
        me = self.nodeid
        cid = self.cluster_id
        events = self.events
        new_tuple = _new_tuple
        sent_cls = Sent
        while sent < allowed:
            item = packer.next_packet()
            if item is None:
                break
            payload, guarantee, completed = item
            seq = tok.seq + 1
            tok.seq = seq
            data = encode_mcast(me, ring_id, seq, me, guarantee, payload, cid)
            # tuple.__new__: a named tuple's own __new__ is interpreted Python, even compiled.
            rq[seq] = (new_tuple(Mcast, (me, ring_id, seq, me, guarantee, payload, None)), data)
            ring.my_high_seq_received = seq
            self.broadcast(data)
            sent += 1
            for number in completed:
                events.append(new_tuple(sent_cls, (number, ring_id)))
        if sent:
            ring.update_aru()
            self.stats["mcast sent"] += sent
        return sent

    # ------------------------------------------------------------------ delivery

    def safe_bound(self, ring: RingOrdering) -> int:
        """Highest seq a safe message may be delivered at: every member held it at two
        successive token visits (protocol.md section 4.3)."""
        # Two-argument min()s: compiled, those are compares; min() of three is a generic call.
        bound = min(ring.my_aru, ring.my_last_aru)
        return min(bound, ring.my_prev_aru)

    def deliver(self) -> None:
        """Deliver, in sequence order, every message the rules allow (section 4.3)."""
        ring = self.ring
        seq = ring.my_high_delivered + 1
        aru = ring.my_aru
        if seq > aru:
            return
        safe_bound = self.safe_bound(ring)
        rq = ring.rq
        ring_id = self.ring_id
        while seq <= aru:
            msg = rq[seq][0]
            if msg.guarantee is _SAFE and seq > safe_bound:
                break
            self.deliver_packet(msg, ring_id=ring_id, transitional=False)
            seq += 1
        ring.my_high_delivered = seq - 1

    def deliver_packet(self, msg: Mcast, *, ring_id: RingId, transitional: bool) -> None:
        """Unpack one ordered packet into application deliveries."""
        sender = msg.system_from
        guarantee = msg.guarantee
        seq = msg.seq
        # tuple.__new__ skips the named tuple's Python-level __new__ (0.18 -> 0.10 us a
        # delivery); the fields are the class's, in its order.
        # Locals, not globals: compiled, each global is a module-dict lookup per delivery. The
        # list's own append, not a bound method: compiled, that is a C call, not a generic one.
        events = self.events
        new_tuple = _new_tuple
        cls = Deliver
        for groups, data in self.unpacker.feed(sender, msg.payload, guarantee):
            events.append(
                new_tuple(cls, (sender, groups, data, guarantee, ring_id, transitional, seq))
            )

    # ------------------------------------------------------------------ recovery decisions

    def recovery_plan(self, old: OldRing, token: CommitToken) -> recovery.RecoveryPlan:
        """What RECOVERY will do for this commit token (a pure decision, see recovery.py)."""
        return recovery.plan_recovery(self.nodeid, old, token)

    def install_plan(self, rec: recovery.RecoveryState) -> recovery.InstallPlan:
        """What install delivers, in order (a pure decision, see recovery.py)."""
        assert rec.old is not None
        assert rec.plan is not None
        return recovery.plan_install(
            rec.old,
            rec.recovered,
            rec.plan,
            has_regular=rec.has_regular,
            new_ring_id=self.ring_id,
            new_members=self.memb_list,
        )

    # ------------------------------------------------------------------ timers

    def _fire(self, now: float, timer: Timer) -> None:
        if timer is Timer.TOKEN_RETRANSMIT:
            if self.token_copy is not None and self.state is not MembState.GATHER:
                self.send_token_copy()
                self.stats["token retransmitted"] += 1
                if self.token_copy_persist is None:  # an ORF token: adaptive, backing off
                    self.ring.token_resends += 1
                    wait = self.token_retransmit_timeout()
                else:  # a commit token: membership keeps the fixed timer
                    wait = self.config.token_retransmit_ms
                self.timers.arm(Timer.TOKEN_RETRANSMIT, now + wait)
        elif timer is Timer.HOLD:
            self._release_held_token(now)
        elif timer is Timer.TOKEN:
            self.stats["token lost"] += 1
            if self.static:
                self.notice("token lost", "static ring: keep retransmitting")
                self.timers.arm(Timer.TOKEN, now + self.config.token)
            else:
                membership.on_token_loss(self, now)
        elif timer is Timer.MERGE_DETECT:
            membership.on_merge_timer(self, now)
        elif timer is Timer.JOIN:
            membership.on_join_timer(self, now)
        elif timer is Timer.CONSENSUS:
            membership.on_consensus_timer(self, now)
