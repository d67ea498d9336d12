"""RECOVERY and install: carrying the old ring's messages into the new one (sections 5.6-5.8).

Theory of operation. When the commit token's second rotation reaches a processor it knows,
for every new member, which old ring it came from and how far it got. Members that share our
old ring form the transitional configuration. Each re-sends, wrapped in new-ring packets, every
old-ring message above the lowest all-received mark among them, so that after recovery they all
hold the same old-ring messages. Once the token shows that nobody has anything left to re-send
and everybody received everything (two rotations), each processor installs on its own:

1. old-ring messages deliverable in the old regular configuration (up to the first gap; a
   safe message only if some transitional member already delivered it as safe),
2. the transitional configuration change,
3. the remaining old-ring messages: all up to the first gap, after it only those from
   transitional members,
4. the regular configuration change of the new ring.

The old ring's state is saved once, when COMMIT is first entered after the last install, as
a read-only ``OldRing`` snapshot: a late old-ring packet must not change what we told the
commit token, or the transitional members would deliver different sets. A failed attempt
(token lost in COMMIT or RECOVERY) keeps the snapshot for the next attempt.

The two EVS decisions are pure functions of what the processor knows, so each rule can be
tested on its own: ``plan_recovery`` (from the commit token: the transitional set, the
lowest aru, which old messages we re-send) and ``plan_install`` (what is delivered in the old
regular configuration, the transitional configuration, and after it). The functions that take
the processor only apply those decisions.

Old-ring messages re-sent by others are unwrapped as they arrive (``on_recovered``) into a
separate table that a failed attempt discards, so the new ring's copies can be freed once the
token shows every member holds them (``free``). Without that, RECOVERY could stamp at most
about ``sort_queue_slots - window_size`` packets and stalled for good when a member was further
behind than that. Everything a peer names is bounded before it drives a loop: an inner seq
must lie within two sort-queue windows of the old ring's released mark.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from evs.totem.codec import encode
from evs.totem.events import MembState
from evs.totem.messages import CommitEntry, CommitToken, Mcast, OrfToken
from evs.totem.ordering import OldRing, RingOrdering
from evs.totem.timers import Timer
from evs.types import ConfigChange, Guarantee, RingId

if TYPE_CHECKING:
    from evs.totem.processor import Processor

__all__ = [
    "InstallPlan",
    "RecoveryPlan",
    "RecoveryState",
    "old_messages",
    "plan_install",
    "plan_recovery",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryPlan:
    """What the commit token decided for this processor (section 5.6)."""

    #: New members that come from our old ring: the transitional configuration.
    trans: tuple[int, ...]
    #: Lowest old-ring aru among them: everything above it may be missing somewhere.
    low: int
    #: Highest old-ring seq any of them delivered (a safe message up to it may be delivered
    #: in the old regular configuration: someone already did).
    high_ring_delivered: int
    #: Old-ring messages this processor re-sends, in seq order (one designated copy each).
    resend: tuple[Mcast, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallPlan:
    """Everything install delivers, in order (section 5.8)."""

    #: Old-ring packets still deliverable in the old regular configuration.
    regular: tuple[Mcast, ...]
    #: The transitional configuration change (None at the very first install).
    transitional: ConfigChange | None
    #: Old-ring packets delivered in the transitional configuration.
    in_transitional: tuple[Mcast, ...]
    #: The new regular configuration change.
    regular_change: ConfigChange


def plan_recovery(me: int, old: OldRing, token: CommitToken) -> RecoveryPlan:
    """Decide the transitional set and what to re-send from a complete commit token."""
    entries: dict[int, CommitEntry] = {}
    for node, entry in zip(token.addrs, token.entries, strict=True):
        assert entry is not None
        entries[node] = entry
    members = set(old.members)
    trans = tuple(n for n in token.addrs if n in members and entries[n].old_ring_id == old.ring_id)
    # We are in it: membership checked that our own line came back as we wrote it.
    assert me in trans, (me, trans)
    low = min(entries[n].aru for n in trans)
    resend = _designated(me, trans, entries)
    # Only plain messages are re-sent. A wrapped one in the old ring's queue can only be a
    # forgery stored while that ring recovered (real ones are never stamped after its
    # install_seq); it carries nothing deliverable and cannot be wrapped again.
    queue = tuple(
        msg
        for seq, (msg, _) in sorted(old.rq.items())
        if low < seq <= old.high_seq_received and msg.inner is None and resend(seq)
    )
    return RecoveryPlan(
        trans=trans,
        low=low,
        high_ring_delivered=max(entries[n].high_delivered for n in trans),
        resend=queue,
    )


def old_messages(old: OldRing, recovered: Mapping[int, Mcast]) -> dict[int, Mcast]:
    """Every old-ring message held after recovery, by seq: our own and those re-sent to us."""
    held: dict[int, Mcast] = {s: m for s, (m, _) in old.rq.items()}
    for s, inner in recovered.items():
        held.setdefault(s, inner)
    return held


def plan_install(
    old: OldRing,
    recovered: Mapping[int, Mcast],
    plan: RecoveryPlan,
    *,
    has_regular: bool,
    new_ring_id: RingId,
    new_members: tuple[int, ...],
) -> InstallPlan:
    """The EVS install order for what we hold of the old ring after recovery.

    1. in the old regular configuration: up to the first gap, a safe message only if some
       transitional member delivered it (``high_ring_delivered``);
    2. the transitional configuration (only after a previous regular one);
    3. in it, the rest: everything up to the first gap, after it only transitional
       members' messages, since a departed member's message might depend on the missing
       one while ours cannot (we would hold it);
    4. the new regular configuration.
    """
    held = old_messages(old, recovered)
    high = max(old.high_seq_received, max(recovered, default=0))
    regular: list[Mcast] = []
    seq = old.high_delivered + 1
    while seq <= high and seq in held:
        msg = held[seq]
        if msg.guarantee is Guarantee.SAFE and seq > plan.high_ring_delivered:
            break
        regular.append(msg)
        seq += 1
    trans = plan.trans
    transitional: ConfigChange | None = None
    in_transitional: list[Mcast] = []
    if has_regular:
        left = tuple(n for n in old.members if n not in trans)
        transitional = ConfigChange(
            ring_id=old.ring_id, transitional=True, members=trans, left=left
        )
        deliver_memb = frozenset(trans)
        gap = False
        expect = seq
        for s in sorted(s for s in held if s >= seq):
            gap = gap or s != expect
            expect = s + 1
            msg = held[s]
            if not gap or msg.system_from in deliver_memb:
                in_transitional.append(msg)
    joined = tuple(n for n in new_members if n not in trans) if has_regular else new_members
    return InstallPlan(
        regular=tuple(regular),
        transitional=transitional,
        in_transitional=tuple(in_transitional),
        regular_change=ConfigChange(
            ring_id=new_ring_id, transitional=False, members=new_members, joined=joined
        ),
    )


class RecoveryState:
    """The saved old ring and the RECOVERY-phase bookkeeping of one processor."""

    __slots__ = (
        "has_regular",
        "install_seq",
        "my_set_retrans_flg",
        "old",
        "plan",
        "received_flg",
        "recovered",
        "recovered_high",
        "retrans_flg_count",
        "retrans_queue",
        "rotation_counter",
    )

    def __init__(self) -> None:
        #: The last regular ring, frozen at the first COMMIT after it (None: nothing saved).
        self.old: OldRing | None = None
        #: The current attempt's decisions (None outside RECOVERY).
        self.plan: RecoveryPlan | None = None
        #: A regular configuration was installed before (the first install has no old one).
        self.has_regular = False
        self.retrans_queue: deque[Mcast] = deque()
        #: Old-ring messages re-sent by others in this attempt, by old seq (not in old.rq).
        self.recovered: dict[int, Mcast] = {}
        self.recovered_high = 0
        self.reset_counters()

    @property
    def saved(self) -> bool:
        return self.old is not None

    def reset_counters(self) -> None:
        self.my_set_retrans_flg = False
        self.retrans_flg_count = 0
        self.install_seq = 0
        self.received_flg = False
        self.rotation_counter = 0

    def new_attempt(self, plan: RecoveryPlan | None) -> None:
        """Forget what the previous attempt queued, received and counted."""
        self.plan = plan
        self.retrans_queue = deque(plan.resend) if plan is not None else deque()
        self.recovered = {}
        self.recovered_high = 0
        self.reset_counters()


def save_old_ring(p: Processor) -> OldRing:
    """Freeze the last regular ring's state, once per configuration change."""
    rec = p.rec
    if rec.old is None:
        rec.old = p.ring.freeze(p.ring_id, p.memb_list)
        p.ring = RingOrdering()
    return rec.old


def enter(p: Processor, now: float, token: CommitToken) -> None:
    """COMMIT -> RECOVERY on the commit token's second rotation (section 5.6)."""
    rec = p.rec
    assert rec.old is not None
    rec.new_attempt(p.recovery_plan(rec.old, token))
    p.enter_state(MembState.RECOVERY)
    p.install_ring(token.ring_id, token.addrs)
    p.orf_token_discard = False
    p.timers.arm(Timer.TOKEN, now + p.config.token)
    p.stats["recovery entered"] += 1
    p.stats["recovery messages queued"] += len(rec.retrans_queue)


def _designated(
    me: int, trans: tuple[int, ...], entries: dict[int, CommitEntry]
) -> Callable[[int], bool]:
    """Whether we are the one to re-send old message ``seq`` (one copy, not one per member).

    A member whose old aru is at or above ``seq`` certainly holds it (nothing above ``low``
    was freed), so the lowest such member re-sends it; every member decides the same from
    the same commit token. Above every aru nobody is known to hold it: all holders send.
    Re-sending one copy keeps recovery inside the sort-queue window even when the
    transitional members are far behind.
    """
    by_aru = sorted((entries[n].aru, n) for n in trans)
    top = by_aru[-1][0]

    def resend(seq: int) -> bool:
        if seq > top:
            return True
        return min(n for aru, n in by_aru if aru >= seq) == me

    return resend


def abandon(p: Processor) -> None:
    """COMMIT or RECOVERY failed: drop what the attempt queued, received and recovered (the
    new ring's packets, old-ring messages unwrapped from them); keep the saved old ring."""
    p.rec.new_attempt(None)
    p.ring = RingOrdering()
    p.stats[f"{p.state.value} abandoned"] += 1


def on_recovered(p: Processor, inner: Mcast) -> None:
    """An old-ring message re-sent in a new-ring packet: keep it for install, if it is ours.

    Only messages of our old ring from its members, above what we released and within two
    sort-queue windows of it (no honest ring runs further ahead of a member; the bound keeps
    install's loops short whatever a peer claims).
    """
    rec = p.rec
    old = rec.old
    seq = inner.seq
    if (
        old is None
        or inner.ring_id != old.ring_id
        or inner.system_from not in old.members
        or not old.last_released < seq <= old.last_released + 2 * p.config.sort_queue_slots
    ):
        p.drops["recovered message not of our old ring"] += 1
        return
    if seq in old.rq or seq in rec.recovered:
        return
    rec.recovered[seq] = inner
    rec.recovered_high = max(rec.recovered_high, seq)


def start_token(p: Processor, now: float) -> None:
    """The representative creates the new ring's first ORF token (once)."""
    # The flag starts clear: our own visit sets it (and remembers that we did) if we have
    # old messages to re-send, so that we are also the one who clears it.
    p.on_token(now, p.initial_token(retrans_flg=False))


def send_queued(p: Processor, tok: OrfToken, allowed: int) -> int:
    """RECOVERY's only originated traffic: old-ring messages wrapped in new-ring packets."""
    queue = p.rec.retrans_queue
    ring = p.ring
    sent = 0
    while queue and sent < allowed:
        inner = queue.popleft()
        seq = tok.seq + 1
        tok.seq = seq
        msg = Mcast(p.nodeid, p.ring_id, seq, p.nodeid, Guarantee.AGREED, b"", inner)
        data = encode(msg, p.cluster_id)
        ring.rq[seq] = (msg, data)
        ring.my_high_seq_received = seq
        p.broadcast(data)
        sent += 1
    if sent:
        ring.update_aru()
        p.stats["recovery messages sent"] += sent
    return sent


def on_token(p: Processor, now: float, tok: OrfToken) -> None:
    """The install condition, run on each valid token in RECOVERY (section 5.7)."""
    rec = p.rec
    if rec.retrans_queue:
        if not tok.retrans_flg:
            tok.retrans_flg = True
            rec.my_set_retrans_flg = True
    elif tok.retrans_flg and rec.my_set_retrans_flg:
        tok.retrans_flg = False
        rec.my_set_retrans_flg = False
    rec.retrans_flg_count = rec.retrans_flg_count + 1 if not tok.retrans_flg else 0
    if rec.retrans_flg_count == 2:
        rec.install_seq = tok.seq
    if rec.retrans_flg_count >= 2 and not rec.received_flg and rec.install_seq <= p.ring.my_aru:
        rec.received_flg = True
    if rec.retrans_flg_count >= 3 and rec.install_seq <= tok.aru:
        rec.rotation_counter += 1
    else:
        rec.rotation_counter = 0
    if rec.rotation_counter == 2:
        install(p, now)


def install(p: Processor, now: float) -> None:
    """Deliver the configuration change in the exact EVS order (section 5.8), then go on."""
    rec = p.rec
    old = rec.old
    assert old is not None
    plan = p.install_plan(rec)
    for msg in plan.regular:
        p.deliver_packet(msg, ring_id=old.ring_id, transitional=False)
    if plan.transitional is not None:
        p.events.append(plan.transitional)
    for msg in plan.in_transitional:
        p.deliver_packet(msg, ring_id=old.ring_id, transitional=True)
    # A message cut by the change is never completed: its sender re-sends it whole.
    p.unpacker.reset()
    p.packer.restart_partial()
    p.events.append(plan.regular_change)

    p.enter_state(MembState.OPERATIONAL)
    ring = p.ring
    for s in [s for s in ring.rq if s <= rec.install_seq]:
        del ring.rq[s]
    # Freeing in RECOVERY only ever passes re-sent (encapsulated) packets, which are not
    # delivered on the new ring; a forged one above install_seq may have been freed too.
    ring.my_high_delivered = ring.last_released = max(ring.last_released, rec.install_seq)
    new = p.memb_list
    p.memb.proc = set(new)
    p.memb.failed = set()
    p.memb.consensus = {p.nodeid}
    p.memb.heard = {n: t for n, t in p.memb.heard.items() if n in p.memb.proc}
    rec.old = None
    rec.has_regular = True
    rec.new_attempt(None)
    p.failed_to_recv = False
    p.timers.cancel(Timer.MERGE_DETECT)
    p.stats["ring installed"] += 1
    p.notice("ring", f"a new membership ({p.ring_id}) was formed with members {list(new)}")
