"""GATHER and COMMIT: agreeing on the next ring (protocol.md sections 5.1 to 5.5, 5.9).

Theory of operation. A processor that suspects a change (token lost, foreign traffic, a JOIN)
enters GATHER and broadcasts a JOIN with two sets: who it wants in the next ring (``proc``)
and who it believes failed (``failed``). Sets only grow and every change is re-announced, so
connected processors converge; when every member of ``proc - failed`` has sent sets identical
to ours, that is consensus, and the lowest id creates a commit token. The commit token
circulates twice over the new ring: the first rotation collects each member's old-ring
position (for recovery), the second moves everyone into RECOVERY (``recovery.py``).

Functions here take the ``Processor`` and mutate its state; they never touch I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from evs.totem import recovery
from evs.totem.codec import MAX_PROCESSORS, encode
from evs.totem.events import GatherEntered, GatherReason, MembState
from evs.totem.messages import CommitEntry, CommitToken, Join, MergeDetect
from evs.totem.timers import Timer
from evs.types import RingId

if TYPE_CHECKING:
    from evs.totem.processor import Processor

__all__ = ["MembershipState"]

#: Ring ids of our own past rings remembered to recognise late packets as stale, not foreign.
RING_HISTORY: Final = 32
#: How far above the highest ring seq we know a peer's ring seq may be. Each ring formation
#: adds 4, so an honest peer is never 2^32 ahead; a forged JOIN or commit token that is
#: must not drag every later ring number up toward the end of the u64 range.
RING_SEQ_LEAP: Final = 1 << 32


class MembershipState:
    """The gather sets and commit bookkeeping of one processor."""

    __slots__ = (
        "commit_token_seq",
        "consensus",
        "failed",
        "gather_reason",
        "gather_started",
        "heard",
        "my_entry",
        "my_index",
        "new_members",
        "orf_sent",
        "past_rings",
        "proc",
    )

    def __init__(self, nodeid: int) -> None:
        self.proc: set[int] = {nodeid}
        self.failed: set[int] = set()
        self.consensus: set[int] = {nodeid}
        self.new_members: tuple[int, ...] = ()
        self.my_index = 0
        #: Highest commit-token hop counter seen for the ring being formed.
        self.commit_token_seq = -1
        #: The representative sent the new ring's first ORF token (send it once only).
        self.orf_sent = False
        self.gather_reason = GatherReason.STARTUP
        #: When the current membership round began (GATHER entered from another state).
        self.gather_started = 0.0
        #: When a JOIN was last received from each processor of ``proc`` (no one else).
        self.heard: dict[int, float] = {}
        #: Our own line in the commit token being circulated (checked on its return).
        self.my_entry: CommitEntry | None = None
        self.past_rings: list[RingId] = []

    def candidates(self) -> list[int]:
        return sorted(self.proc - self.failed)

    def consensus_reached(self) -> bool:
        return all(node in self.consensus for node in self.proc - self.failed)

    def remember_ring(self, ring_id: RingId) -> None:
        self.past_rings.append(ring_id)
        del self.past_rings[:-RING_HISTORY]


def startup(p: Processor, now: float) -> None:
    """First interface-up: a singleton pseudo-ring above the persisted seq, then GATHER."""
    p.ring_id = RingId(seq=p.token_ring_id_seq + 1, rep=p.nodeid)
    p.token_ring_id_seq = p.ring_id.seq
    p.set_members((p.nodeid,))
    enter_gather(p, now, GatherReason.STARTUP)


def enter_gather(
    p: Processor, now: float, reason: GatherReason, *, fail_self: bool = False
) -> None:
    """(Re-)enter GATHER: announce our sets and restart the consensus round (section 5.2)."""
    m = p.memb
    if p.state in (MembState.COMMIT, MembState.RECOVERY):
        recovery.abandon(p)
    if p.state in (MembState.COMMIT, MembState.RECOVERY):
        # The failed set that led to the abandoned ring is stale: start this round afresh,
        # or members that installed it (and reset theirs) and members that did not would
        # keep re-failing a processor that is back (an A/B livelock, protocol.md 10.10).
        m.failed = set()
    if p.state is not MembState.GATHER:
        p.notice("gather", f"entering GATHER from {p.state.value}: {reason.value}")
        m.gather_started = now
    p.stats[f"gather: {reason.value}"] += 1
    p.events.append(GatherEntered(reason, p.state))
    m.gather_reason = reason
    p.enter_state(MembState.GATHER)
    p.orf_token_discard = True
    p.ring.held_token = None
    m.proc.add(p.nodeid)
    if fail_self:
        m.failed.add(p.nodeid)
    m.consensus = {p.nodeid}
    m.commit_token_seq = -1
    m.orf_sent = False
    p.timers.cancel(Timer.TOKEN, Timer.TOKEN_RETRANSMIT, Timer.MERGE_DETECT, Timer.HOLD)
    if p.config.send_join and reason is not GatherReason.JOIN:
        # Large rings: spread the first JOINs over send_join ms so they do not all collide.
        # The spread comes from the node id (the core has no randomness of its own).
        spread = (p.nodeid * 2654435761 % 1024) / 1024 * p.config.send_join
        p.timers.arm(Timer.JOIN, now + spread)
    else:
        send_join(p)
        p.timers.arm(Timer.JOIN, now + p.config.join)
    p.timers.arm(Timer.CONSENSUS, now + p.config.consensus_ms)


def send_join(p: Processor) -> None:
    m = p.memb
    join = Join(
        sender=p.nodeid,
        ring_seq=p.ring_id.seq,
        proc_list=tuple(sorted(m.proc)),
        failed_list=tuple(sorted(m.failed)),
    )
    p.broadcast(encode(join, p.cluster_id))
    p.stats["join sent"] += 1


def send_leave(p: Processor) -> None:
    """Announce a graceful leave: we are absent from proc and listed as failed."""
    m = p.memb
    join = Join(
        sender=p.nodeid,
        ring_seq=p.ring_id.seq,
        proc_list=tuple(sorted(m.proc - {p.nodeid})),
        failed_list=tuple(sorted(m.failed | {p.nodeid})),
        leave=True,
    )
    p.broadcast(encode(join, p.cluster_id))


# ---------------------------------------------------------------------- JOIN


def on_join(p: Processor, now: float, join: Join) -> None:
    """Handle a JOIN according to our state (section 5.3)."""
    if join.sender == p.nodeid:
        return
    if now - p.paused_at < p.config.join:
        p.stats["join dropped after a pause"] += 1
        return
    reason = _implausible(p, join)
    if reason:
        p.drops[reason] += 1
        return
    p.token_ring_id_seq = max(p.token_ring_id_seq, join.ring_seq)
    _handle_join(p, now, join)
    if join.sender in p.memb.proc:
        p.memb.heard[join.sender] = now


def _implausible(p: Processor, join: Join) -> str:
    """Why a decodable JOIN cannot come from an honest peer ("" if it can)."""
    if join.ring_seq > p.token_ring_id_seq + RING_SEQ_LEAP:
        return "join ring seq leaps too far"
    proc, failed = set(join.proc_list), set(join.failed_list)
    if not join.leave and join.sender not in proc:
        # An honest processor always wants itself in the next ring unless it is leaving;
        # failing such a sender would put a processor outside proc into the failed set.
        return "join sender outside its proc list"
    if not failed <= proc | {join.sender}:
        # Honest failed sets are subsets of proc (a LEAVE adds only its sender): so ours stay
        # subsets too, and both stay within MAX_PROCESSORS, the most a JOIN can carry.
        return "join failed list outside its proc list"
    if len(p.memb.proc | proc) > MAX_PROCESSORS:
        return "join would exceed the processor limit"
    return ""


def _handle_join(p: Processor, now: float, join: Join) -> None:
    state = p.state
    if state is MembState.OPERATIONAL:
        if p.nodeid in join.failed_list and not join.leave:
            p.stats["join ignored: lists me as failed"] += 1
            return
        if join.sender in p.memb_list and join.ring_seq < p.ring_id.seq:
            p.stats["join ignored: stale"] += 1
            return
        _process_join(p, now, join, from_operational=True)
    elif state is MembState.GATHER:
        _process_join(p, now, join, from_operational=False)
    elif join.sender in p.memb.new_members and (
        join.ring_seq >= p.ring_id.seq or (state is MembState.COMMIT and _disagrees(p, join))
    ):
        # A member of the ring being formed gave up on it, or never took it because it
        # wants a processor we left out (it refuses our commit token): so do we.
        enter_gather(p, now, GatherReason.JOIN)
        _process_join(p, now, join, from_operational=False)
    else:
        p.stats["join ignored in commit/recovery"] += 1


def _disagrees(p: Processor, join: Join) -> bool:
    m = p.memb
    proc, failed = set(join.proc_list), set(join.failed_list)
    if proc <= m.proc and failed <= m.failed:
        return False  # sets only grow: this JOIN is older than the round we committed to
    if (proc - failed) - set(m.new_members):
        p.stats["commit abandoned: a member wants another membership"] += 1
        return True
    return False


def _process_join(p: Processor, now: float, join: Join, *, from_operational: bool) -> None:
    m = p.memb
    proc = set(join.proc_list)
    failed = set(join.failed_list)
    sender = join.sender
    if proc == m.proc and failed == m.failed:
        if from_operational:
            enter_gather(p, now, GatherReason.JOIN)
        if not join.leave:
            m.consensus.add(sender)
        _maybe_commit(p, now)
        return
    if proc <= m.proc and failed <= m.failed:
        if from_operational:
            enter_gather(p, now, GatherReason.JOIN)
        return
    if sender in m.failed:
        p.stats["join ignored: sender failed"] += 1
        return
    before = (len(m.proc), len(m.failed))
    m.proc |= proc
    if p.nodeid in failed and not join.leave:
        m.failed.add(sender)
    elif sender in _old_members(p):
        m.failed |= failed - {p.nodeid}
    if not from_operational and (len(m.proc), len(m.failed)) == before:
        # Nothing we adopt (a stranger's failed set): re-entering would only restart the
        # consensus timer, and a stream of such JOINs would then postpone it forever.
        p.stats["join ignored: nothing adopted"] += 1
        return
    enter_gather(p, now, GatherReason.JOIN)
    _maybe_commit(p, now)


def _old_members(p: Processor) -> tuple[int, ...]:
    return p.rec.old.members if p.rec.old is not None else p.memb_list


def _maybe_commit(p: Processor, now: float) -> None:
    m = p.memb
    if p.state is not MembState.GATHER or not m.consensus_reached():
        return
    if p.failed_to_recv:
        # We could not receive on the old ring: form a singleton and heal by merging later.
        m.proc = {p.nodeid}
        m.failed = set()
        p.failed_to_recv = False
        _create_commit_token(p, now)
    elif m.candidates() and m.candidates()[0] == p.nodeid:
        _create_commit_token(p, now)


# ---------------------------------------------------------------------- commit token


def _create_commit_token(p: Processor, now: float) -> None:
    """The representative starts the new ring (section 5.4)."""
    addrs = tuple(p.memb.candidates())
    ring_id = RingId(seq=max(p.token_ring_id_seq, p.ring_id.seq) + 4, rep=p.nodeid)
    token = CommitToken(
        sender=p.nodeid,
        ring_id=ring_id,
        token_seq=0,
        memb_index=0,
        addrs=addrs,
        entries=[None] * len(addrs),
    )
    p.stats["commit token created"] += 1
    _enter_commit(p, now, token)


def on_commit_token(p: Processor, now: float, token: CommitToken) -> None:
    """Commit token receipt: join the new ring, or move on to RECOVERY (section 5.5)."""
    m = p.memb
    n = len(token.addrs)
    if p.nodeid not in token.addrs:
        p.stats["commit token not for us"] += 1
        return
    if p.state is MembState.GATHER:
        if (
            token.memb_index < n
            and token.addrs[token.memb_index] == p.nodeid
            and list(token.addrs) == m.candidates()
            and p.ring_id.seq < token.ring_id.seq <= p.token_ring_id_seq + RING_SEQ_LEAP
        ):
            _enter_commit(p, now, token)
        else:
            p.stats["commit token refused in gather"] += 1
        return
    if token.ring_id != p.ring_id or token.token_seq <= m.commit_token_seq:
        p.stats["commit token duplicate or stale"] += 1
        return
    if token.memb_index != n or any(e is None for e in token.entries):
        p.stats["commit token incomplete"] += 1
        return
    if not _is_our_round(p, token):
        p.drops["commit token altered"] += 1
        return
    m.commit_token_seq = token.token_seq
    if p.state is MembState.COMMIT:
        recovery.enter(p, now, token)
        _forward_commit(p, now, token, p.successor)
    elif p.state is MembState.RECOVERY and p.nodeid == p.ring_id.rep and not m.orf_sent:
        # Second rotation complete: start the new ring's ordering token, once only.
        m.orf_sent = True
        recovery.start_token(p, now)


def _is_our_round(p: Processor, token: CommitToken) -> bool:
    """The returning token names the members we committed to and our line as we wrote it.

    Recovery trusts the entries (our own line puts us in the transitional configuration); a
    token that changed them was not the one we forwarded. Only received_flg may change
    on the way, since later members clear lagging claims (_clear_lagging_flags).
    """
    if token.addrs != p.memb.new_members:
        return False
    mine = token.entries[p.memb.my_index]
    want = p.memb.my_entry
    return (
        mine is not None
        and want is not None
        and (mine.old_ring_id, mine.aru, mine.high_delivered)
        == (want.old_ring_id, want.aru, want.high_delivered)
    )


def _enter_commit(p: Processor, now: float, token: CommitToken) -> None:
    m = p.memb
    old = recovery.save_old_ring(p)
    index = token.memb_index
    entry = CommitEntry(
        old_ring_id=old.ring_id,
        aru=old.aru,
        high_delivered=old.high_delivered,
        received_flg=old.aru == old.high_seq_received,
    )
    token.entries[index] = entry
    m.my_entry = entry
    _clear_lagging_flags(token, index)
    token.memb_index = index + 1
    m.new_members = token.addrs
    m.my_index = index
    m.commit_token_seq = token.token_seq
    p.enter_state(MembState.COMMIT)
    p.timers.cancel(Timer.JOIN, Timer.CONSENSUS)
    p.ring_id = token.ring_id
    p.token_ring_id_seq = max(p.token_ring_id_seq, token.ring_id.seq)
    m.remember_ring(token.ring_id)
    p.set_members(token.addrs)
    p.stats["commit entered"] += 1
    _forward_commit(p, now, token, token.addrs[token.memb_index % len(token.addrs)])


def _clear_lagging_flags(token: CommitToken, upto: int) -> None:
    """Among entries of one old ring, only those at the highest aru may claim no holes."""
    mine = token.entries[upto]
    assert mine is not None
    same = [
        (i, e)
        for i, e in enumerate(token.entries[: upto + 1])
        if e is not None and e.old_ring_id == mine.old_ring_id
    ]
    top = max(e.aru for _, e in same)
    for i, e in same:
        if e.received_flg and e.aru < top:
            token.entries[i] = CommitEntry(e.old_ring_id, e.aru, e.high_delivered, False)


def _forward_commit(p: Processor, now: float, token: CommitToken, dest: int) -> None:
    token.sender = p.nodeid
    token.token_seq += 1
    p.memb.commit_token_seq = max(p.memb.commit_token_seq, token.token_seq - 1)
    data = encode(token, p.cluster_id)
    p.token_copy = data
    p.token_copy_dest = dest
    p.token_copy_persist = token.ring_id.seq
    p.send_token_copy()
    p.timers.arm(Timer.TOKEN, now + p.config.token)
    p.timers.arm(Timer.TOKEN_RETRANSMIT, now + p.config.token_retransmit_ms)


# ---------------------------------------------------------------------- other triggers


def on_foreign(p: Processor, now: float, sender: int, ring_id: RingId) -> None:
    """Traffic of another ring: another partition exists, so gather (section 4.1)."""
    if ring_id in p.memb.past_rings or (p.rec.old is not None and ring_id == p.rec.old.ring_id):
        # A late packet of a ring we belonged to: stale, not another partition.
        p.stats["stale packet of a past ring"] += 1
        return
    if p.static:
        p.stats["foreign packet on static ring"] += 1
        return
    if len(p.memb.proc) >= MAX_PROCESSORS and sender not in p.memb.proc:
        p.drops["foreign sender beyond the processor limit"] += 1
        return
    if p.state is MembState.OPERATIONAL or (
        p.state is MembState.GATHER and sender not in p.memb.proc
    ):
        p.memb.proc.add(sender)
        enter_gather(p, now, GatherReason.FOREIGN_MCAST)


def on_merge_detect(p: Processor, now: float, msg: MergeDetect) -> None:
    if msg.ring_id == p.ring_id or msg.sender == p.nodeid or p.static:
        return
    if msg.ring_id in p.memb.past_rings:
        return
    if len(p.memb.proc) >= MAX_PROCESSORS and msg.sender not in p.memb.proc:
        p.drops["foreign sender beyond the processor limit"] += 1
        return
    if p.state is MembState.OPERATIONAL or (
        p.state is MembState.GATHER and msg.sender not in p.memb.proc
    ):
        p.memb.proc.add(msg.sender)
        enter_gather(p, now, GatherReason.MERGE_DETECT)


def on_merge_timer(p: Processor, now: float) -> None:
    """An idle ring's representative tells other rings it exists (section 5.9)."""
    if p.state is MembState.OPERATIONAL and p.nodeid == p.ring_id.rep:
        p.broadcast(encode(MergeDetect(p.nodeid, p.ring_id), p.cluster_id))
        p.stats["merge detect sent"] += 1


def on_token_loss(p: Processor, now: float) -> None:
    state = p.state
    if state is MembState.OPERATIONAL:
        p.notice("token lost", "a processor failed, forming a new configuration")
        enter_gather(p, now, GatherReason.TOKEN_LOSS)
    elif state is MembState.GATHER:
        enter_gather(p, now, GatherReason.CONSENSUS_TIMEOUT)
    elif state is MembState.COMMIT:
        enter_gather(p, now, GatherReason.COMMIT_TOKEN_LOSS)
    else:
        enter_gather(p, now, GatherReason.RECOVERY_TOKEN_LOSS)


def on_join_timer(p: Processor, now: float) -> None:
    if p.state is not MembState.GATHER:
        return
    send_join(p)
    p.timers.arm(Timer.JOIN, now + p.config.join)
    _fail_silent(p, now)


def _fail_silent(p: Processor, now: float) -> None:
    """Fail candidates that have not sent a single JOIN since this round began."""
    m = p.memb
    limit = p.config.silent_timeout
    if not limit or now - m.gather_started < limit:
        return
    silent = {
        n for n in m.proc - m.failed if n != p.nodeid and m.heard.get(n, -1.0) < m.gather_started
    }
    if silent:
        m.failed |= silent
        p.stats["failed as silent"] += len(silent)
        enter_gather(p, now, GatherReason.SILENT)
        _maybe_commit(p, now)


def on_consensus_timer(p: Processor, now: float) -> None:
    """Consensus did not come in time: fail the silent, or wait for a lost commit token."""
    if p.state is not MembState.GATHER:
        return
    m = p.memb
    if m.consensus_reached():
        candidates = m.candidates()
        if candidates and candidates[0] == p.nodeid:
            # We are the representative (possibly alone): nothing to wait for.
            p.stats["consensus at timeout: commit"] += 1
            _maybe_commit(p, now)
            return
        # Everyone agreed but no commit token came: wait one token timeout, then retry.
        m.consensus = {p.nodeid}
        p.timers.arm(Timer.TOKEN, now + p.config.token)
        return
    silent = (m.proc - m.failed) - m.consensus
    m.failed |= silent
    p.stats["consensus timeout"] += 1
    enter_gather(p, now, GatherReason.CONSENSUS_TIMEOUT)
    _maybe_commit(p, now)
