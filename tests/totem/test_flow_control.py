"""Flow control at a token visit (protocol.md section 4.7, and the lone-sender rule).

``window_size`` caps the packets one rotation carries ring-wide and ``max_messages`` what one
member sends per visit, so that busy members share the window. A member whose token shows no
other member's backlog is a lone sender: nobody waits for the share ``max_messages`` keeps
free, so if its messages are large (a packet or more each, on average) it may send what the
window has left after the others' packets of the last rotation.
Each test drives node 1 of a ring of two by hand, returning the token as node 2 would.
"""

from __future__ import annotations

from evs.totem.codec import cluster_id_for, decode, encode
from evs.totem.messages import Mcast, OrfToken
from evs.totem.processor import Processor
from evs.types import Guarantee

from .ring import ring_of_two, token_back

CID = cluster_id_for("evs")
WINDOW = 10
PER_VISIT = 3


def loaded(messages: int, size: int = 1200) -> Processor:
    """Node 1 with ``messages`` of ``size`` bytes queued (window 10, max_messages 3, netmtu
    576: a 1200-byte message fills more than two packets)."""
    p = ring_of_two(window_size=WINDOW, max_messages=PER_VISIT, netmtu=576)
    for i in range(messages):
        p.submit(0.5, [b"g"], bytes([65 + i % 26]) * size, Guarantee.AGREED)
    p.outbox.clear()
    return p


def visit(p: Processor, now: float, **token: object) -> tuple[int, OrfToken]:
    """Hand node 1 the token node 2 returns; the packets it multicast and the token it sent."""
    p.outbox.clear()
    p.receive(now, encode(token_back(p, **token), CID))
    mcasts = 0
    tok = None
    for _, data in p.outbox:
        msg = decode(data, CID)
        if isinstance(msg, Mcast):
            mcasts += 1
        elif isinstance(msg, OrfToken):
            tok = msg
    assert tok is not None, "every visit forwards the token"
    return mcasts, tok


def test_a_lone_sender_fills_the_window_at_every_visit() -> None:
    p = loaded(13)
    fcc = backlog = 0
    for k in range(3):
        # The token comes back with our own fcc and backlog only: node 2 sent nothing.
        sent, tok = visit(p, 1.0 + k, fcc=fcc, backlog=backlog)
        assert sent == WINDOW, f"visit {k}: a lone sender is held to max_messages"
        assert tok.fcc == WINDOW
        fcc, backlog = tok.fcc, tok.backlog
    sent, tok = visit(p, 4.0, fcc=fcc, backlog=backlog)
    assert 0 < sent < WINDOW
    assert p.packer.queued_messages() == 0
    assert tok.fcc == sent


def test_a_lone_sender_leaves_what_the_others_sent_in_the_rotation() -> None:
    p = loaded(40)
    sent, tok = visit(p, 1.0)
    assert sent == WINDOW
    # Node 2 sent 6 packets since (and has nothing left): the rotation may carry 10 in all.
    sent, tok = visit(p, 2.0, fcc=tok.fcc + 6, backlog=tok.backlog)
    assert sent == WINDOW - 6
    assert tok.fcc == WINDOW


def test_another_members_backlog_brings_back_max_messages() -> None:
    p = loaded(40)
    sent, tok = visit(p, 1.0)
    assert sent == WINDOW
    # Node 2 now has packets queued: the window must be shared, and this rotation's packets
    # (ours of the last visit) leave no room until they leave fcc.
    sent, tok = visit(p, 2.0, fcc=tok.fcc, backlog=tok.backlog + 5)
    assert sent == 0
    sent, tok = visit(p, 3.0, fcc=tok.fcc, backlog=tok.backlog + 5)
    assert sent == PER_VISIT


def test_fcc_never_exceeds_the_window() -> None:
    """Whatever the others sent, one rotation carries at most window_size packets."""
    for others in range(WINDOW + 3):
        p = loaded(40)
        sent, tok = visit(p, 1.0, fcc=min(others, WINDOW))
        assert sent == max(0, WINDOW - others)
        assert tok.fcc <= WINDOW


def test_a_lone_sender_of_small_messages_keeps_max_messages() -> None:
    """Visits of small messages cost their receivers per message: no bigger visits for them."""
    p = loaded(60, size=100)
    sent, tok = visit(p, 1.0)
    assert sent == PER_VISIT
    sent, tok = visit(p, 2.0, fcc=tok.fcc, backlog=tok.backlog)
    assert sent == PER_VISIT
