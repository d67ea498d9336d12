"""The token leaves ahead of a busy visit's packets (``token_ahead_min``, an accelerated ring).

A visit that sends at least ``token_ahead_min`` new packets puts the forwarded token ahead of
them in the outbox, so the successor can pass it on while the packets are still arriving; a
smaller visit keeps the token last (low load), retransmissions stay ahead of the token, and the
token's seq covers every packet of the visit either way. Each test drives node 1 of a ring of
two by hand, returning the token as node 2 would.
"""

from __future__ import annotations

from evs.totem.codec import cluster_id_for, decode, encode
from evs.totem.messages import Mcast, OrfToken, RtrEntry
from evs.totem.processor import Processor
from evs.types import Guarantee

from .ring import ring_of_two, token_back

CID = cluster_id_for("evs")


def loaded(messages: int, **cfg: object) -> Processor:
    """Node 1 with ``messages`` messages of 1,300 bytes queued (netmtu 1500: each takes most
    of a packet, so ``messages`` of them fill ``messages`` packets, give or take one)."""
    p = ring_of_two(**cfg)
    for i in range(messages):
        p.submit(0.5, [b"g"], bytes([65 + i % 26]) * 1300, Guarantee.AGREED)
    p.outbox.clear()
    return p


def visit(p: Processor, now: float, **token: object) -> list[str]:
    """Hand node 1 the token node 2 returns; what it sent, in order ("mcast 3", "token")."""
    p.outbox.clear()
    p.receive(now, encode(token_back(p, **token), CID))
    order = []
    for dest, data in p.outbox:
        msg = decode(data, CID)
        if isinstance(msg, Mcast):
            order.append(f"mcast {msg.seq}")
        else:
            assert isinstance(msg, OrfToken)
            assert dest == p.successor
            order.append("token")
    return order


def test_a_busy_visit_sends_the_token_ahead_of_its_packets() -> None:
    p = loaded(6, token_ahead_min=4)
    seq = p.ring.my_high_seq_received
    order = visit(p, 1.0)
    sent = len(order) - 1
    assert sent >= 4
    assert order == ["token"] + [f"mcast {seq + k}" for k in range(1, sent + 1)]
    # The token ahead of them still names every packet of the visit.
    assert p.token_copy is not None
    tok = decode(p.token_copy, CID)
    assert isinstance(tok, OrfToken)
    assert tok.seq == seq + sent


def test_a_light_visit_keeps_the_token_last() -> None:
    p = loaded(2, token_ahead_min=4)
    seq = p.ring.my_high_seq_received
    order = visit(p, 1.0)
    assert 1 <= len(order) - 1 < 4
    assert order == [f"mcast {seq + k}" for k in range(1, len(order))] + ["token"]


def test_zero_turns_it_off() -> None:
    p = loaded(6, token_ahead_min=0)
    seq = p.ring.my_high_seq_received
    order = visit(p, 1.0)
    assert len(order) - 1 >= 4
    assert order == [f"mcast {seq + k}" for k in range(1, len(order))] + ["token"]


def test_retransmissions_stay_ahead_of_the_token() -> None:
    p = loaded(10, token_ahead_min=4, max_messages=5)
    # Node 2 has packets queued too: max_messages (5) per visit, not the lone sender's window.
    first = visit(p, 1.0, backlog=1)
    assert first[0] == "token"
    assert len(first) == 6
    old = p.ring.my_high_seq_received - 4
    # Node 2 lacks one packet of the last visit and holds the aru down (nothing is freed).
    order = visit(
        p,
        2.0,
        rtr_list=[RtrEntry(p.ring_id, old)],
        aru=old - 1,
        aru_addr=2,
        fcc=5,
        backlog=p.ring.my_pbl + 1,
    )
    assert order[0] == f"mcast {old}"
    # The request showed loss: the token goes in copies (token_copies_on_loss), all of them
    # after the retransmission and ahead of the new packets.
    tokens = order.count("token")
    assert order[1 : 1 + tokens] == ["token"] * tokens
    new = order[1 + tokens :]
    assert len(new) >= 4
    assert all(o.startswith("mcast") for o in new)


def test_the_copies_sent_on_a_lossy_ring_all_go_ahead() -> None:
    p = loaded(6, token_ahead_min=4, token_copies_on_loss=2)
    p.ring.loss_visits = 3  # the ring showed loss recently: two copies of the token per hop
    order = visit(p, 1.0)
    assert order[:2] == ["token", "token"]
    assert len(order) - 2 >= 4
    assert all(o.startswith("mcast") for o in order[2:])


def test_the_threshold_is_inclusive() -> None:
    """token_ahead_min packets put the token ahead; one fewer keeps it last."""
    for packets, ahead in ((3, False), (4, True)):
        p = loaded(packets, token_ahead_min=4)
        order = visit(p, 1.0)
        assert len(order) - 1 == packets  # each 1,300-byte message takes one packet here
        assert (order[0] == "token") is ahead
        assert (order[-1] == "token") is not ahead
