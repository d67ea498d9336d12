"""The EVS install rules as pure decisions (protocol.md sections 5.6 to 5.8).

``plan_recovery`` and ``plan_install`` take what a processor knows and return what it will do,
so each rule is checked here on hand-made old rings, without a cluster or a processor.
"""

from __future__ import annotations

from types import MappingProxyType

import pytest

from evs.totem.config import TotemConfig
from evs.totem.events import MembState
from evs.totem.invariants import Invariants, check_invariants
from evs.totem.messages import CommitEntry, CommitToken, Mcast
from evs.totem.ordering import OldRing
from evs.totem.processor import TRANSITIONS, Processor
from evs.totem.recovery import RecoveryPlan, plan_install, plan_recovery
from evs.types import Guarantee, RingId

OLD = RingId(seq=8, rep=1)
NEW = RingId(seq=12, rep=1)
OTHER = RingId(seq=8, rep=7)
A, S = Guarantee.AGREED, Guarantee.SAFE


def mcast(seq: int, frm: int, guarantee: Guarantee = A) -> Mcast:
    return Mcast(frm, OLD, seq, frm, guarantee, b"m%d" % seq)


def old_ring(
    held: dict[int, Mcast], *, members: tuple[int, ...] = (1, 2, 3), delivered: int = 0
) -> OldRing:
    return OldRing(
        ring_id=OLD,
        members=members,
        rq=MappingProxyType({s: (m, b"") for s, m in held.items()}),
        aru=max((s for s in range(1, 100) if all(t in held for t in range(1, s + 1))), default=0),
        high_seq_received=max(held, default=0),
        high_delivered=delivered,
        last_released=0,
    )


def plan(trans: tuple[int, ...], high_ring_delivered: int = 0) -> RecoveryPlan:
    return RecoveryPlan(trans=trans, low=0, high_ring_delivered=high_ring_delivered, resend=())


def seqs(msgs: tuple[Mcast, ...]) -> list[int]:
    return [m.seq for m in msgs]


# ---------------------------------------------------------------------- plan_install


def test_install_delivers_up_to_the_first_gap_then_only_transitional_senders() -> None:
    """6.3: after a gap only members of the transitional configuration may be delivered,
    since a departed member's message could depend on the missing one."""
    held = {1: mcast(1, 3), 2: mcast(2, 3), 4: mcast(4, 3), 5: mcast(5, 1), 6: mcast(6, 2)}
    old = old_ring(held)
    result = plan_install(
        old, {}, plan((1, 2)), has_regular=True, new_ring_id=NEW, new_members=(1, 2, 4)
    )
    assert seqs(result.regular) == [1, 2]
    assert result.transitional is not None
    assert result.transitional.members == (1, 2)
    assert result.transitional.left == (3,)
    assert seqs(result.in_transitional) == [5, 6]  # 4 is node 3's, after the gap at 3
    assert result.regular_change.members == (1, 2, 4)
    assert result.regular_change.joined == (4,)


def test_install_holds_a_safe_message_for_the_transitional_unless_someone_delivered_it() -> None:
    """A safe message is delivered in the old regular configuration only when a transitional
    member already delivered it there (high_ring_delivered); otherwise in the transitional."""
    held = {1: mcast(1, 1), 2: mcast(2, 2, S), 3: mcast(3, 1)}
    old = old_ring(held)
    late = plan_install(old, {}, plan((1, 2)), has_regular=True, new_ring_id=NEW, new_members=(1,))
    assert seqs(late.regular) == [1]
    assert seqs(late.in_transitional) == [2, 3]
    early = plan_install(
        old, {}, plan((1, 2), high_ring_delivered=2), has_regular=True, new_ring_id=NEW,
        new_members=(1,),
    )  # fmt: skip
    assert seqs(early.regular) == [1, 2, 3]
    assert early.in_transitional == ()


def test_install_merges_recovered_messages_and_skips_what_was_delivered() -> None:
    held = {1: mcast(1, 1), 2: mcast(2, 2)}
    old = old_ring(held, delivered=1)
    recovered = {3: mcast(3, 3), 4: mcast(4, 2)}
    result = plan_install(
        old, recovered, plan((1, 2, 3)), has_regular=True, new_ring_id=NEW, new_members=(1, 2, 3)
    )
    assert seqs(result.regular) == [2, 3, 4]
    assert result.transitional is not None
    assert result.transitional.left == ()
    assert result.regular_change.joined == ()


def test_the_first_install_has_no_transitional_configuration_and_everyone_joins() -> None:
    old = old_ring({}, members=(1,))
    result = plan_install(old, {}, plan((1,)), has_regular=False, new_ring_id=NEW,
                          new_members=(1, 2))  # fmt: skip
    assert result.transitional is None
    assert result.regular == result.in_transitional == ()
    assert result.regular_change.joined == (1, 2)


# ---------------------------------------------------------------------- plan_recovery


def commit(addrs: tuple[int, ...], entries: list[CommitEntry]) -> CommitToken:
    return CommitToken(1, NEW, 9, len(addrs), addrs, list(entries))


def test_recovery_takes_the_lowest_aru_and_one_designated_sender_per_message() -> None:
    """Members of our old ring form the transitional set; everything above the LOWEST aru
    among them is re-sent, each message by the lowest member whose aru covers it, and by
    every holder above the highest aru."""
    held = {s: mcast(s, 1 + s % 3) for s in range(1, 9)}
    old = old_ring(held)
    entries = [
        CommitEntry(OLD, 2, 2, False),  # node 1
        CommitEntry(OLD, 5, 5, False),  # node 2
        CommitEntry(OLD, 7, 7, True),  # node 3
        CommitEntry(OTHER, 40, 40, True),  # node 9: another ring
    ]
    token = commit((1, 2, 3, 9), entries)
    p1, p2, p3 = (plan_recovery(n, old, token) for n in (1, 2, 3))
    assert p1.trans == p2.trans == p3.trans == (1, 2, 3)
    assert p1.low == 2
    assert p1.high_ring_delivered == 7
    assert seqs(p1.resend) == [8]  # node 1 covers nothing above 2; 8 is above every aru
    assert seqs(p2.resend) == [3, 4, 5, 8]
    assert seqs(p3.resend) == [6, 7, 8]


def test_recovery_never_re_sends_a_wrapped_packet() -> None:
    inner = Mcast(2, OTHER, 1, 2, A, b"x")
    wrapped = Mcast(2, OLD, 2, 2, A, b"", inner)
    old = old_ring({1: mcast(1, 1), 2: wrapped, 3: mcast(3, 1)})
    token = commit((1,), [CommitEntry(OLD, 0, 0, False)])
    assert seqs(plan_recovery(1, old, token).resend) == [1, 3]


# ---------------------------------------------------------------------- state table


def test_every_membership_transition_not_in_the_table_is_refused() -> None:
    p = Processor(TotemConfig(), 1)
    for source in MembState:
        for target in MembState:
            p.state = source
            if target in TRANSITIONS[source]:
                p.enter_state(target)
                assert p.state is target
            else:
                with pytest.raises(AssertionError, match="illegal membership transition"):
                    p.enter_state(target)


# ---------------------------------------------------------------------- invariants


def running_pair() -> Processor:
    p = Processor(TotemConfig(), 1, static_members=(1, 2))
    p.start(0.0)
    return p


def test_a_healthy_processor_keeps_its_invariants() -> None:
    check_invariants(running_pair())


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        ("aru_above_high", "marks out of order"),
        ("hole_below_aru", "not held"),
        ("members_unsorted", "not sorted"),
        ("no_timer", "no timer armed"),
        ("failed_outside_proc", "outside proc"),
        ("old_ring_on_operational", "old ring or recovery plan"),
    ],
)
def test_each_invariant_reports_its_breakage(breakage: str, expected: str) -> None:
    """A check that cannot fail proves nothing: break each rule by hand and see it named."""
    p = running_pair()
    ring = p.ring
    if breakage == "aru_above_high":
        ring.my_aru = ring.my_high_seq_received + 1
    elif breakage == "hole_below_aru":
        ring.rq[1] = (mcast(1, 1), b"")
        ring.rq[3] = (mcast(3, 1), b"")
        ring.my_aru = ring.my_high_seq_received = 3
    elif breakage == "members_unsorted":
        p.set_members((2, 1))
    elif breakage == "no_timer":
        p.timers.cancel(*list(p.timers._at))
    elif breakage == "failed_outside_proc":
        p.memb.failed.add(5)
    else:
        p.rec.old = old_ring({})
    with pytest.raises(AssertionError, match=expected):
        check_invariants(p)


def test_token_seq_going_back_on_one_ring_is_reported() -> None:
    p = running_pair()
    checker = Invariants(full_every=1)
    p.ring.my_token_seq = 10
    assert checker.check(p) == []
    p.ring.my_token_seq = 9
    assert any("token seq went back" in b for b in checker.check(p))


def test_a_member_of_our_old_ring_that_has_been_on_another_ring_since_is_not_transitional() -> None:
    """5.6: the transitional configuration is the new members whose commit entry names OUR
    old ring. Node 3 was on our old ring but formed another one since (a partition that
    healed): it is not transitional with us, and its aru and deliveries are of that ring."""
    old = old_ring({1: mcast(1, 1), 2: mcast(2, 2)})  # members 1, 2, 3
    entries = [
        CommitEntry(OLD, 2, 2, True),  # node 1
        CommitEntry(OLD, 2, 2, True),  # node 2
        CommitEntry(OTHER, 5, 5, True),  # node 3, now coming from ring OTHER
    ]
    result = plan_recovery(1, old, commit((1, 2, 3), entries))
    assert result.trans == (1, 2)
    assert result.high_ring_delivered == 2


def test_after_a_gap_a_departed_members_message_stays_out_even_after_consecutive_seqs() -> None:
    """5.8 step 3: the gap is a point in the sequence, not a hole next to a message. Node 3's
    message 5 follows 4 without a hole, but both are after the missing 3, so 5 (which might
    depend on 3) is not delivered, while transitional member 1's message 4 is."""
    held = {1: mcast(1, 1), 2: mcast(2, 1), 4: mcast(4, 1), 5: mcast(5, 3), 6: mcast(6, 2)}
    result = plan_install(
        old_ring(held), {}, plan((1, 2)), has_regular=True, new_ring_id=NEW, new_members=(1, 2)
    )
    assert seqs(result.regular) == [1, 2]
    assert seqs(result.in_transitional) == [4, 6]
