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

The old ring's state is saved once, when COMMIT is first entered after the last install, and
is frozen from then on: a late old-ring packet must not change what we told the commit token,
or the transitional members would deliver different sets. A failed attempt (token lost in
COMMIT or RECOVERY) keeps the saved state for the next attempt.

Old-ring messages re-sent by others are unwrapped as they arrive (``on_recovered``) into a
separate table that a failed attempt discards, so the new ring's copies can be freed once the
token shows every member holds them (``free``). Without that, RECOVERY could stamp at most
about ``sort_queue_slots - window_size`` packets and stalled for good when a member was further
behind than that. Everything a peer names is bounded before it drives a loop: an inner seq
must lie within two sort-queue windows of the old ring's released mark.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from evs.totem.codec import encode
from evs.totem.events import MembState
from evs.totem.messages import CommitEntry, CommitToken, Mcast, OrfToken
from evs.totem.timers import Timer
from evs.types import ConfigChange, Guarantee, RingId

if TYPE_CHECKING:
    from evs.totem.processor import Processor

__all__ = ["RecoveryState"]


class RecoveryState:
    """Saved old-ring state and the RECOVERY-phase counters of one processor."""

    __slots__ = (
        "deliver_memb",
        "has_regular",
        "high_ring_delivered",
        "install_seq",
        "my_set_retrans_flg",
        "old_aru",
        "old_high_delivered",
        "old_high_seq_received",
        "old_last_released",
        "old_members",
        "old_ring_id",
        "old_rq",
        "received_flg",
        "recovered",
        "recovered_high",
        "retrans_flg_count",
        "retrans_queue",
        "rotation_counter",
        "saved",
        "trans",
    )

    def __init__(self) -> None:
        self.saved = False
        #: A regular configuration was installed before (the first install has no old one).
        self.has_regular = False
        self.old_ring_id = RingId(0, 0)
        self.old_members: tuple[int, ...] = ()
        self.old_rq: dict[int, tuple[Mcast, bytes]] = {}
        self.old_aru = 0
        self.old_high_seq_received = 0
        self.old_high_delivered = 0
        self.old_last_released = 0
        self.trans: tuple[int, ...] = ()
        self.deliver_memb: frozenset[int] = frozenset()
        self.high_ring_delivered = 0
        self.retrans_queue: deque[Mcast] = deque()
        #: Old-ring messages re-sent by others in this attempt, by old seq (not yet in old_rq).
        self.recovered: dict[int, Mcast] = {}
        self.recovered_high = 0
        self.reset_counters()

    def reset_counters(self) -> None:
        self.my_set_retrans_flg = False
        self.retrans_flg_count = 0
        self.install_seq = 0
        self.received_flg = False
        self.rotation_counter = 0


def save_old_ring(p: Processor) -> None:
    """Freeze the last regular ring's state, once per configuration change."""
    rec = p.rec
    if rec.saved:
        return
    rec.saved = True
    rec.old_ring_id = p.ring_id
    rec.old_members = p.memb_list
    rec.old_rq = p.rq
    rec.old_aru = p.my_aru
    rec.old_high_seq_received = p.my_high_seq_received
    rec.old_high_delivered = p.my_high_delivered
    rec.old_last_released = p.last_released
    p.rq = {}


def enter(p: Processor, now: float, token: CommitToken) -> None:
    """COMMIT -> RECOVERY on the commit token's second rotation (section 5.6)."""
    rec = p.rec
    entries: dict[int, CommitEntry] = {}
    for node, entry in zip(token.addrs, token.entries, strict=True):
        assert entry is not None
        entries[node] = entry
    old = set(rec.old_members)
    trans = tuple(n for n in token.addrs if n in old and entries[n].old_ring_id == rec.old_ring_id)
    # We are in it: membership checked that our own line came back as we wrote it.
    assert p.nodeid in trans, (p.nodeid, trans)
    rec.trans = trans
    rec.deliver_memb = frozenset(trans)
    low = min(entries[n].aru for n in trans)
    rec.high_ring_delivered = max(entries[n].high_delivered for n in trans)
    resend = _designated(p.nodeid, trans, entries)
    # Only plain messages are re-sent. A wrapped one in the old ring's queue can only be a
    # forgery stored while that ring recovered (real ones are never stamped after its
    # install_seq); it carries nothing deliverable and cannot be wrapped again.
    rec.retrans_queue = deque(
        msg
        for seq, (msg, _) in sorted(rec.old_rq.items())
        if low < seq <= rec.old_high_seq_received and msg.inner is None and resend(seq)
    )
    rec.reset_counters()
    rec.recovered = {}
    rec.recovered_high = 0
    p.state = MembState.RECOVERY
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
    """RECOVERY failed: drop the new ring's queue, keep the saved old ring for next time."""
    p.rec.retrans_queue.clear()
    p.rec.reset_counters()
    p.rec.recovered = {}
    p.rec.recovered_high = 0
    p.reset_ordering()
    p.stats["recovery abandoned"] += 1


def on_recovered(p: Processor, inner: Mcast) -> None:
    """An old-ring message re-sent in a new-ring packet: keep it for install, if it is ours.

    Only messages of our old ring from its members, above what we released and within two
    sort-queue windows of it (no honest ring runs further ahead of a member; the bound keeps
    install's loops short whatever a peer claims).
    """
    rec = p.rec
    seq = inner.seq
    if (
        not rec.saved
        or inner.ring_id != rec.old_ring_id
        or inner.system_from not in rec.old_members
        or not rec.old_last_released < seq <= rec.old_last_released + 2 * p.config.sort_queue_slots
    ):
        p.drops["recovered message not of our old ring"] += 1
        return
    if seq in rec.old_rq or seq in rec.recovered:
        return
    rec.recovered[seq] = inner
    rec.recovered_high = max(rec.recovered_high, seq)


def free(p: Processor, token_aru: int) -> None:
    """RECOVERY: drop re-sent packets every member holds (their content is unwrapped).

    Stops at the first plain packet: that one was sent by a member that already installed
    and is still to be delivered here after our own install.
    """
    upto = min(token_aru, p.my_last_aru)
    rq = p.rq
    seq = p.last_released
    while seq < upto:
        held = rq.get(seq + 1)
        if held is None or held[0].inner is None:
            break
        del rq[seq + 1]
        seq += 1
    p.last_released = seq


def start_token(p: Processor, now: float) -> None:
    """The representative creates the new ring's first ORF token (once)."""
    # The flag starts clear: our own visit sets it (and remembers that we did) if we have
    # old messages to re-send, so that we are also the one who clears it.
    p.on_token(now, p.initial_token(retrans_flg=False))


def send_queued(p: Processor, tok: OrfToken, allowed: int) -> int:
    """RECOVERY's only originated traffic: old-ring messages wrapped in new-ring packets."""
    queue = p.rec.retrans_queue
    sent = 0
    while queue and sent < allowed:
        inner = queue.popleft()
        seq = tok.seq + 1
        tok.seq = seq
        msg = Mcast(p.nodeid, p.ring_id, seq, p.nodeid, Guarantee.AGREED, b"", inner)
        data = encode(msg, p.cluster_id)
        p.rq[seq] = (msg, data)
        p.my_high_seq_received = seq
        p.broadcast(data)
        sent += 1
    if sent:
        p.update_aru()
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
    if rec.retrans_flg_count >= 2 and not rec.received_flg and rec.install_seq <= p.my_aru:
        rec.received_flg = True
    if rec.retrans_flg_count >= 3 and rec.install_seq <= tok.aru:
        rec.rotation_counter += 1
    else:
        rec.rotation_counter = 0
    if rec.rotation_counter == 2:
        install(p, now)


def install(p: Processor, now: float) -> None:
    """Deliver the configuration change in the exact EVS order (section 5.8)."""
    rec = p.rec
    old_rq = rec.old_rq
    old_ring = rec.old_ring_id
    for s, inner in rec.recovered.items():
        old_rq[s] = (inner, b"")
    rec.old_high_seq_received = max(rec.old_high_seq_received, rec.recovered_high)

    seq = rec.old_high_delivered + 1
    while seq <= rec.old_high_seq_received and seq in old_rq:
        msg = old_rq[seq][0]
        if msg.guarantee is Guarantee.SAFE and seq > rec.high_ring_delivered:
            break
        p.deliver_packet(msg, ring_id=old_ring, transitional=False)
        seq += 1

    new = p.memb_list
    trans = rec.trans
    if rec.has_regular and p.canary != "skip-transitional":
        left = tuple(n for n in rec.old_members if n not in trans)
        p.events.append(ConfigChange(ring_id=old_ring, transitional=True, members=trans, left=left))
        # Up to the first gap every message is delivered (safe ones held back above are
        # here); after a gap only transitional members' messages, since a departed member's
        # message might depend on the missing one while ours cannot (we would hold it).
        gap = False
        expect = seq
        for s in sorted(s for s in old_rq if s >= seq):
            gap = gap or s != expect
            expect = s + 1
            msg = old_rq[s][0]
            if not gap or msg.system_from in rec.deliver_memb:
                p.deliver_packet(msg, ring_id=old_ring, transitional=True)
    p.unpacker.reset()
    p.packer.restart_partial()
    joined = tuple(n for n in new if n not in trans) if rec.has_regular else new
    p.events.append(ConfigChange(ring_id=p.ring_id, transitional=False, members=new, joined=joined))

    p.state = MembState.OPERATIONAL
    for s in [s for s in p.rq if s <= rec.install_seq]:
        del p.rq[s]
    # Freeing in RECOVERY only ever passes re-sent (encapsulated) packets, which are not
    # delivered on the new ring; a forged one above install_seq may have been freed too.
    p.my_high_delivered = p.last_released = max(p.last_released, rec.install_seq)
    p.memb.proc = set(new)
    p.memb.failed = set()
    p.memb.consensus = {p.nodeid}
    p.memb.heard = {n: t for n, t in p.memb.heard.items() if n in p.memb.proc}
    rec.saved = False
    rec.has_regular = True
    rec.old_rq = {}
    rec.recovered = {}
    rec.recovered_high = 0
    rec.retrans_queue.clear()
    p.failed_to_recv = False
    p.timers.cancel(Timer.MERGE_DETECT)
    p.stats["ring installed"] += 1
    p.notice("ring", f"a new membership ({p.ring_id}) was formed with members {list(new)}")
