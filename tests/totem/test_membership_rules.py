"""JOIN processing, one rule at a time (protocol.md section 5.3, step 4).

Each test drives one real Processor in GATHER by hand with JOINs built by the test and reads
its gather sets and the JOIN it announces next. The scenario tests show the same rules end to
end; here each rule is pinned on its own, since breaking one of them often only slows the
membership down (a consensus timeout settles what the rule would have settled at once).
"""

from __future__ import annotations

from evs.totem.codec import cluster_id_for, decode, encode
from evs.totem.config import TotemConfig
from evs.totem.events import BROADCAST, MembState
from evs.totem.messages import CommitEntry, CommitToken, Join
from evs.totem.processor import Processor
from evs.types import RingId

CID = cluster_id_for("evs")


def gathering(nodeid: int = 1) -> Processor:
    """A processor just started: alone, in GATHER, with no old ring but itself."""
    p = Processor(TotemConfig(), nodeid)
    p.start(0.0)
    assert p.state is MembState.GATHER
    p.outbox.clear()
    return p


def state(p: Processor) -> MembState:
    """The state now (a call, so that mypy does not narrow it across inputs)."""
    return p.state


def last_join(p: Processor) -> Join:
    joins = [decode(d, CID) for dest, d in p.outbox if dest == BROADCAST]
    sent = [j for j in joins if isinstance(j, Join)]
    assert sent
    return sent[-1]


def join(sender: int, proc: tuple[int, ...], failed: tuple[int, ...] = ()) -> bytes:
    return encode(Join(sender=sender, ring_seq=1, proc_list=proc, failed_list=failed), CID)


def test_whoever_has_failed_me_is_failed_to_me() -> None:
    """Step 4: a JOIN that lists me as failed puts its sender in my failed set at once, so
    both sides agree to split instead of waiting for a consensus timeout."""
    p = gathering(1)
    p.receive(1.0, join(2, (1, 2, 3), failed=(1,)))
    assert p.memb.proc == {1, 2, 3}
    assert 2 in p.memb.failed
    assert last_join(p).failed_list == (2,)


def test_a_strangers_failed_set_is_not_adopted() -> None:
    """Step 4: only a member of my old ring makes me fail the processors it failed; a
    stranger's failed set (node 2 was never on a ring with node 1) adds only to proc."""
    p = gathering(1)
    p.receive(1.0, join(2, (1, 2, 3), failed=(3,)))
    assert p.memb.proc == {1, 2, 3}
    assert p.memb.failed == set()
    assert last_join(p).failed_list == ()


def test_an_abandoned_commit_starts_the_next_round_with_no_failed_processors() -> None:
    """Section 10.10 (A/B livelock): the failed set that led to a ring that was never
    installed is stale. Members that installed it reset theirs; one that gives up in COMMIT
    must too, or it keeps failing a processor the others take back."""
    p = gathering(1)
    p.receive(1.0, join(2, (1, 2, 3)))
    p.receive(2.0, join(2, (1, 2, 3)))
    now = 2.0
    while 3 not in p.memb.failed:  # node 3 never speaks: failed as silent
        due = p.next_deadline()
        assert due is not None
        assert due < 5000.0
        now = due
        p.handle_timer(now)
    p.receive(now + 1, join(2, (1, 2, 3), failed=(3,)))  # node 2 agrees: 1 commits
    assert state(p) is MembState.COMMIT
    assert p.memb.failed == {3}
    while state(p) is MembState.COMMIT:  # the commit token never comes back
        due = p.next_deadline()
        assert due is not None
        now = due
        p.handle_timer(now)
    assert state(p) is MembState.GATHER
    assert p.memb.failed == set()
    assert p.memb.proc == {1, 2, 3}


def commit_token_from_1(p: Processor, addrs: tuple[int, ...], ring_seq: int) -> bytes:
    """Node 1's commit token on its first rotation, as it reaches node 2 (index 1)."""
    first = CommitEntry(RingId(seq=1, rep=1), 0, 0, True)
    token = CommitToken(
        sender=1,
        ring_id=RingId(seq=ring_seq, rep=1),
        token_seq=1,
        memb_index=1,
        addrs=addrs,
        entries=[first] + [None] * (len(addrs) - 1),
    )
    return encode(token, CID)


def gathering_with_1() -> Processor:
    """Node 2 in GATHER with proc {1, 2}: node 1, the lowest id, will create the ring."""
    p = gathering(2)
    p.receive(1.0, join(1, (1, 2)))
    assert p.memb.candidates() == [1, 2]
    return p


def test_gather_takes_a_commit_token_only_for_the_membership_it_agreed_on() -> None:
    """Section 5.1, GATHER -> COMMIT: the commit token's addr[] must equal proc - failed."""
    p = gathering_with_1()
    seq = p.ring_id.seq + 4
    p.receive(2.0, commit_token_from_1(p, (1, 2, 3), seq))
    assert p.state is MembState.GATHER
    assert p.stats["commit token refused in gather"] == 1
    p.receive(3.0, commit_token_from_1(p, (1, 2), seq))
    assert state(p) is MembState.COMMIT
    assert p.ring_id == RingId(seq=seq, rep=1)


def test_gather_takes_a_commit_token_only_for_a_ring_above_its_own() -> None:
    """Section 5.1, GATHER -> COMMIT: ring_id.seq > my_ring_id.seq. A late copy of a commit
    token for an older ring must not pull the processor back into it."""
    p = gathering_with_1()
    p.receive(2.0, commit_token_from_1(p, (1, 2), p.ring_id.seq))
    assert p.state is MembState.GATHER
    assert p.stats["commit token refused in gather"] == 1
    p.receive(3.0, commit_token_from_1(p, (1, 2), p.ring_id.seq + 1))
    assert state(p) is MembState.COMMIT
