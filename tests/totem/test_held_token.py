"""The representative's own messages leave with the token it holds (protocol.md section 4.6).

On an idle ring the representative keeps the token. When its own application then sends, it
makes a second visit with the held token instead of sending the token round empty and waiting
a whole rotation for it: the messages are stamped from the token, counted in its fcc and aru,
and the token leaves right behind them. Everything submitted before the driver next runs the
timers rides that one visit. The safe-delivery marks still come only from tokens received, so
a safe message of such a visit waits for two rotations like any other.
"""

from __future__ import annotations

from evs.totem.codec import cluster_id_for, decode, encode
from evs.totem.events import BROADCAST, Deliver
from evs.totem.messages import Mcast, OrfToken, RtrEntry, TokenHoldCancel
from evs.totem.processor import Processor
from evs.totem.timers import Timer
from evs.types import Guarantee

from .ring import ring_of_two, token_back

CID = cluster_id_for("evs")


def held(**cfg: object) -> tuple[Processor, float]:
    """Node 1 of an idle ring of two, holding the token; returns it and the time."""
    p = ring_of_two(**cfg)
    now = 1.0
    while not p.ring.holding:
        now += 1.0
        p.receive(now, encode(token_back(p), CID))
        assert now < 100.0, "an idle ring's representative holds the token"
    p.outbox.clear()
    p.events.clear()
    return p, now


def sent(p: Processor) -> list[tuple[str, int]]:
    """What left, in order: ("mcast", seq) broadcasts and ("token", seq) to node 2."""
    out = []
    for dest, data in p.outbox:
        msg = decode(data, CID)
        if isinstance(msg, Mcast):
            assert dest == BROADCAST
            out.append(("mcast", msg.seq))
        else:
            assert isinstance(msg, OrfToken)
            assert dest == 2
            out.append(("token", msg.seq))
    return out


def last_token(p: Processor) -> OrfToken:
    """The last token in the outbox (a busy visit's token goes ahead of its packets)."""
    tokens = [m for m in (decode(data, CID) for _, data in p.outbox) if isinstance(m, OrfToken)]
    assert tokens
    return tokens[-1]


def delivered(p: Processor) -> list[bytes]:
    return [e.data for e in p.events if isinstance(e, Deliver)]


def test_the_holders_message_leaves_with_the_held_token() -> None:
    p, now = held()
    seq, token_seq = p.ring.my_high_seq_received, p.ring.my_token_seq
    p.submit(now, [b"g"], b"mine", Guarantee.AGREED)
    assert p.outbox == []  # the visit waits for the timers, so a burst rides it together
    assert p.next_deadline() == now
    p.handle_timer(now)
    assert sent(p) == [("mcast", seq + 1), ("token", seq + 1)]
    tok = last_token(p)
    assert (tok.aru, tok.aru_addr, tok.fcc) == (seq + 1, 0, 1)
    assert tok.token_seq == token_seq + 1  # the hop the held visit counted, not another
    assert not p.ring.holding
    assert p.stats["held token visits"] == 1
    assert delivered(p) == [b"mine"]  # agreed: delivered here as soon as it is stamped


def test_everything_submitted_before_the_timer_rides_one_visit() -> None:
    p, now = held(netmtu=576)
    seq = p.ring.my_high_seq_received
    for i in range(12):
        p.submit(now, [b"g"], b"%d" % i * 100, Guarantee.AGREED)
    p.handle_timer(now)
    out = sent(p)
    assert out[-1][0] == "token"
    assert [k for k, _ in out].count("token") == 1
    assert [s for k, s in out if k == "mcast"] == list(range(seq + 1, out[-1][1] + 1))
    assert len(out) > 3  # 1,200 bytes and more at netmtu 576: several packets, one token
    assert len(delivered(p)) == 12
    assert p.stats["held token visits"] == 1


def test_a_safe_message_of_the_holders_visit_still_waits_two_rotations() -> None:
    p, now = held()
    p.submit(now, [b"g"], b"safe", Guarantee.SAFE)
    p.handle_timer(now)
    assert delivered(p) == []
    p.outbox.clear()
    p.receive(now + 1.0, encode(token_back(p), CID))  # round once: node 2 has it
    assert delivered(p) == []
    p.receive(now + 2.0, encode(token_back(p), CID))  # and the token showed it twice
    assert delivered(p) == [b"safe"]


def test_a_hold_cancel_before_the_timer_still_takes_the_holders_messages() -> None:
    p, now = held()
    seq = p.ring.my_high_seq_received
    p.submit(now, [b"g"], b"mine", Guarantee.AGREED)
    p.receive(now, encode(TokenHoldCancel(2, p.ring_id), CID))
    assert sent(p) == [("mcast", seq + 1), ("token", seq + 1)]
    p.outbox.clear()
    p.handle_timer(now)  # nothing left to do: the token is gone
    assert p.outbox == []


def test_a_hold_that_times_out_with_nothing_queued_sends_the_token_unchanged() -> None:
    p, now = held()
    seq = p.ring.my_high_seq_received
    due = p.next_deadline()
    assert due is not None
    assert due > now
    p.handle_timer(due)
    assert sent(p) == [("token", seq)]
    assert p.stats["held token visits"] == 0


def test_a_later_submit_does_not_put_the_visit_off() -> None:
    p, now = held()
    p.submit(now, [b"g"], b"a", Guarantee.AGREED)
    p.submit(now + 5.0, [b"g"], b"b", Guarantee.AGREED)  # the driver ran late: still due now
    assert p.timers.deadline(Timer.HOLD) == now
    p.handle_timer(now + 5.0)
    assert delivered(p) == [b"a", b"b"]


def test_a_token_another_member_pulled_down_is_never_held_and_keeps_its_aru() -> None:
    """Node 2 lacks our last message and asks for it: the token goes round at every visit
    (it is never held while a member lacks something), and the visit that sends our next
    message must not raise the aru over node 2's (a missing message would go unnoticed)."""
    p, now = held()
    p.submit(now, [b"g"], b"first", Guarantee.AGREED)
    p.handle_timer(now)
    last = p.ring.my_high_seq_received
    lacking = {"aru": last - 1, "aru_addr": 2, "rtr_list": [RtrEntry(p.ring_id, last)]}
    for _ in range(3 * p.config.seqno_unchanged_const):
        now += 1.0
        p.outbox.clear()
        p.receive(now, encode(token_back(p, **lacking), CID))
        assert not p.ring.holding
    p.outbox.clear()
    p.submit(now, [b"g"], b"mine", Guarantee.AGREED)
    p.receive(now + 1.0, encode(token_back(p, **lacking), CID))
    tok = last_token(p)
    assert tok.seq == last + 1
    assert (tok.aru, tok.aru_addr) == (last - 1, 2)


def test_the_next_visit_takes_the_held_visits_sends_out_of_fcc() -> None:
    """fcc counts a rotation's packets: what our two visits added leaves it at our next one,
    or the window would shrink by that much for good."""
    p, now = held()
    p.submit(now, [b"g"], b"mine", Guarantee.AGREED)
    p.handle_timer(now)
    assert last_token(p).fcc == 1
    p.outbox.clear()
    p.receive(now + 1.0, encode(token_back(p, fcc=1), CID))
    assert last_token(p).fcc == 0


def test_the_two_parts_of_a_visit_share_one_max_messages() -> None:
    """A holding visit that re-sent packets leaves that much less for the second part."""
    p, now = held(max_messages=3, netmtu=576)
    p.submit(now, [b"g"], b"x" * 400, Guarantee.AGREED)
    p.handle_timer(now)
    last = p.ring.my_high_seq_received
    # Node 2 has packets queued too (backlog), so max_messages applies, not the lone sender's
    # window (messages of 400 bytes are large at netmtu 576). It asks for our last packet at
    # every visit, and we re-send it; while it lacks it the token goes round (no hold).
    ask = {
        "aru": last - 1,
        "aru_addr": 2,
        "rtr_list": [RtrEntry(p.ring_id, last)],
        "backlog": p.ring.my_pbl + 5,
    }
    fcc = last_token(p).fcc
    for _ in range(p.config.seqno_unchanged_const + 2):
        now += 1.0
        p.outbox.clear()
        p.receive(now, encode(token_back(p, fcc=fcc, **ask), CID))  # node 2 sends nothing
        assert not p.ring.holding
        fcc = last_token(p).fcc
    # Then a token that shows every member has it but still lists the request (a member
    # asked before a re-send reached it): one more re-send, and the idle ring holds.
    now += 1.0
    p.outbox.clear()
    caught = {**ask, "aru": last, "aru_addr": 0}
    p.receive(now, encode(token_back(p, fcc=fcc, **caught), CID))
    assert p.ring.holding
    assert p.ring.my_trc == 1
    p.outbox.clear()
    for i in range(6):
        p.submit(now, [b"g"], b"%d" % i * 400, Guarantee.AGREED)  # one packet each
    p.handle_timer(now)
    kinds = [k for k, _ in sent(p)]
    assert kinds.count("mcast") == 2  # 3 - 1: the third packet waits for the next visit
    assert kinds[-1] == "token"  # (in copies: the ring showed loss)
    # Back round: both parts (1 re-sent + 2 new) leave fcc, this visit's packets enter it.
    fcc = last_token(p).fcc
    assert fcc == 3
    p.outbox.clear()
    p.receive(now + 1.0, encode(token_back(p, fcc=fcc), CID))
    assert last_token(p).fcc == [k for k, _ in sent(p)].count("mcast")


def test_the_token_is_not_held_while_a_member_still_misses_messages() -> None:
    """A member behind the token's seq gets every visit, not one per hold period (seed 20132).

    Its requests may all be answered before the token gets back, so the token carries none;
    only the aru shows the lag. Once the aru reaches the seq, the idle ring holds as before.
    """
    p = ring_of_two()
    now = 1.0
    p.submit(now, [b"g"], b"x", Guarantee.AGREED)
    p.receive(now, encode(token_back(p), CID))
    seq = p.ring.my_high_seq_received
    assert seq >= 1
    for _ in range(3 * p.config.seqno_unchanged_const):
        now += 1.0
        p.outbox.clear()
        p.receive(now, encode(token_back(p, aru=seq - 1, aru_addr=2), CID))
        assert not p.ring.holding
        assert sent(p)[-1] == ("token", seq)  # forwarded at every visit
    assert p.ring.my_seq_unchanged > p.config.seqno_unchanged_const  # idle by the seq alone
    now += 1.0
    p.receive(now, encode(token_back(p), CID))  # node 2 caught up
    assert p.ring.holding
