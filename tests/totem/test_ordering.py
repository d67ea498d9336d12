"""The operational ring, one token visit at a time (protocol.md section 4).

Each test drives one real Processor by hand: it receives tokens built by the test, and the
test reads exactly what the processor put on the wire and delivered.
"""

from __future__ import annotations

from evs.totem.codec import cluster_id_for, decode, encode, encode_mcast
from evs.totem.events import BROADCAST, Deliver, Sent
from evs.totem.messages import Mcast, OrfToken, RtrEntry
from evs.totem.ordering import RingOrdering
from evs.totem.processor import Processor
from evs.types import Guarantee, RingId

from .ring import ring_of_two, token_back

CID = cluster_id_for("evs")


def sent_mcasts(p: Processor) -> list[Mcast]:
    out = [decode(d, CID) for dest, d in p.outbox if dest == BROADCAST]
    return [m for m in out if isinstance(m, Mcast)]


def forwarded_token(p: Processor) -> OrfToken:
    """The token forwarded to node 2: one datagram, or identical copies on a lossy ring."""
    datagrams = [d for dest, d in p.outbox if dest == 2]
    assert datagrams
    assert all(d == datagrams[0] for d in datagrams)
    assert len(datagrams) in (1, p.config.token_copies_on_loss)
    tok = decode(datagrams[0], CID)
    assert isinstance(tok, OrfToken)
    return tok


def test_token_visit_sends_queued_messages_and_stamps_sequence_numbers() -> None:
    p = ring_of_two()
    numbers = [p.submit(1.0, [b"g"], b"m%d" % i, Guarantee.AGREED) for i in range(3)]
    p.receive(2.0, encode(token_back(p), CID))
    (packet,) = sent_mcasts(p)  # three small messages packed into one packet
    assert packet.seq == 1
    assert packet.system_from == 1
    tok = forwarded_token(p)
    assert tok.seq == 1
    assert tok.aru == 1
    sent = [e.number for e in p.events if isinstance(e, Sent)]
    assert sent == numbers
    delivered = [e.data for e in p.events if isinstance(e, Deliver)]
    assert delivered == [b"m0", b"m1", b"m2"]  # agreed: self-delivered right after forwarding


def test_flow_control_bounds_what_one_visit_may_send() -> None:
    p = ring_of_two()
    for i in range(100):
        p.submit(1.0, [b"g"], bytes([i]) * 1000, Guarantee.AGREED)  # one packet each
    # Node 2 has packets queued too (a lone sender of messages this large may take the whole
    # window: tests/totem/test_flow_control.py).
    p.receive(2.0, encode(token_back(p, backlog=5), CID))
    cfg = p.config
    assert len(sent_mcasts(p)) == cfg.max_messages
    assert forwarded_token(p).fcc == cfg.max_messages
    assert forwarded_token(p).backlog > 0
    p.outbox.clear()
    # The last rotation used all but 5 of the window (ours included): room for 5.
    p.receive(3.0, encode(token_back(p, fcc=cfg.window_size - 5, backlog=p.ring.my_pbl + 5), CID))
    assert len(sent_mcasts(p)) == 5


def test_safe_message_is_held_until_the_token_showed_it_received_twice() -> None:
    p = ring_of_two()
    p.submit(1.0, [b"g"], b"safe", Guarantee.SAFE)
    p.receive(2.0, encode(token_back(p), CID))  # visit 1: stamped seq 1, aru 1 on our side only
    assert sent_mcasts(p)
    assert not [e for e in p.events if isinstance(e, Deliver)]
    p.outbox.clear()
    p.receive(3.0, encode(token_back(p, aru=1), CID))  # visit 2: everyone had it for one rotation
    assert not [e for e in p.events if isinstance(e, Deliver)]
    p.receive(4.0, encode(token_back(p, aru=1), CID))  # visit 3: and for a second rotation
    assert [e.data for e in p.events if isinstance(e, Deliver)] == [b"safe"]


def test_safe_message_waits_while_a_member_pulls_the_aru_down() -> None:
    p = ring_of_two()
    p.submit(1.0, [b"g"], b"safe", Guarantee.SAFE)
    p.receive(2.0, encode(token_back(p), CID))
    for t in range(3, 8):  # node 2 keeps reporting that it misses seq 1
        p.receive(float(t), encode(token_back(p, aru=0, aru_addr=2), CID))
    assert not [e for e in p.events if isinstance(e, Deliver)]


def test_retransmission_request_is_answered_from_the_sort_queue() -> None:
    p = ring_of_two()
    p.submit(1.0, [b"g"], b"x", Guarantee.AGREED)
    p.receive(2.0, encode(token_back(p), CID))
    p.outbox.clear()
    rtr = [RtrEntry(p.ring_id, 1)]
    p.receive(3.0, encode(token_back(p, aru=0, aru_addr=2, rtr_list=rtr), CID))
    (again,) = sent_mcasts(p)
    assert again.seq == 1
    assert again.payload
    assert forwarded_token(p).rtr_list == []


def test_missing_message_is_requested_after_miss_count_visits() -> None:
    p = ring_of_two(miss_count_const=3)
    for visit in range(1, 4):  # the ring says seq 1 exists; we never received it
        p.outbox.clear()
        p.receive(float(visit), encode(token_back(p, seq=1, aru=0, aru_addr=2), CID))
    tok = forwarded_token(p)
    assert [e.seq for e in tok.rtr_list] == [1]


def test_duplicate_token_is_ignored() -> None:
    p = ring_of_two()
    tok = token_back(p)
    p.receive(2.0, encode(tok, CID))
    p.outbox.clear()
    p.receive(2.5, encode(tok, CID))  # a retransmitted copy of the same hop
    assert p.outbox == []
    assert p.stats["token duplicate"] == 1


def test_token_retransmitted_until_the_successor_answers() -> None:
    p = ring_of_two()
    p.receive(2.0, encode(token_back(p), CID))
    first = forwarded_token(p)
    p.outbox.clear()
    deadline = p.next_deadline()
    assert deadline is not None
    p.handle_timer(2.0 + p.config.token_retransmit_ms)
    assert forwarded_token(p).token_seq == first.token_seq
    assert p.stats["token retransmitted"] == 1


def test_messages_are_freed_once_every_member_has_them_and_we_delivered() -> None:
    p = ring_of_two()
    p.submit(1.0, [b"g"], b"x", Guarantee.AGREED)
    p.receive(2.0, encode(token_back(p), CID))
    assert 1 in p.ring.rq
    p.receive(3.0, encode(token_back(p, aru=1), CID))
    assert 1 in p.ring.rq  # one rotation at aru 1 is not enough
    p.receive(4.0, encode(token_back(p, aru=1), CID))
    assert 1 not in p.ring.rq
    assert p.ring.last_released == 1


def test_malformed_datagrams_are_counted_drops() -> None:
    p = ring_of_two()
    for junk in (b"", b"\x00" * 5, b"\xe7\xa5\x01\x00" + b"\x00" * 40):
        p.receive(1.0, junk)
    assert sum(p.drops.values()) == 3
    assert p.outbox == []
    assert p.events == []


def test_sort_queue_takes_packets_up_to_its_window_and_no_further() -> None:
    """Section 3/4.1: the sort queue holds at most sort_queue_slots packets above
    last_released; a packet past that slot is refused, not stored."""
    p = ring_of_two(sort_queue_slots=101, window_size=50, max_messages=17)
    slots = p.config.sort_queue_slots
    assert p.ring.last_released == 0

    def mcast(seq: int) -> bytes:
        return encode_mcast(2, p.ring_id, seq, 2, Guarantee.AGREED, b"x", CID)

    p.receive(1.0, mcast(slots + 1))
    assert slots + 1 not in p.ring.rq
    assert p.ring.my_high_seq_received == 0
    assert p.stats["mcast duplicate or outside window"] == 1
    p.receive(2.0, mcast(slots))
    assert slots in p.ring.rq
    assert p.ring.my_high_seq_received == slots


def test_a_visit_stamps_nothing_a_lagging_member_could_not_store() -> None:
    """Section 4.2 step 8 (fcc_rtr_limit): no new message once
    last_released + sort_queue_slots - allowed - window_size < token.seq, so a whole
    window more from the others still fits the sort queue of the slowest member."""
    p = ring_of_two(sort_queue_slots=101, window_size=50, max_messages=17)
    for i in range(5):
        p.submit(1.0, [b"g"], bytes([i]) * 1000, Guarantee.AGREED)
    # 0 + 101 - 17 - 50 = 34: a token at seq 35 leaves no room for this visit. (Node 2 has
    # packets queued too, so the visit may send max_messages, not the lone sender's window.)
    p.receive(2.0, encode(token_back(p, seq=35, aru=0, aru_addr=2, backlog=5), CID))
    assert sent_mcasts(p) == []
    assert forwarded_token(p).seq == 35
    p.outbox.clear()
    p2 = ring_of_two(sort_queue_slots=101, window_size=50, max_messages=17)
    for i in range(5):
        p2.submit(1.0, [b"g"], bytes([i]) * 1000, Guarantee.AGREED)
    p2.receive(2.0, encode(token_back(p2, seq=34, aru=0, aru_addr=2, backlog=5), CID))
    sent = [m.seq for m in sent_mcasts(p2)]
    assert sent[:2] == [35, 36]  # at 34 the visit may send


def test_recovery_frees_re_sent_packets_but_stops_at_the_first_plain_one() -> None:
    """Section 4.5 (old-ring messages are kept through RECOVERY): on a recovering ring only
    re-sent (wrapped) packets are freed. A plain one was sent by a member that already
    installed; it is delivered here after install, so freeing stops in front of it."""
    old_ring, new_ring = RingId(seq=4, rep=1), RingId(seq=8, rep=1)
    ring = RingOrdering()

    def held(seq: int, *, wrapped: bool) -> tuple[Mcast, bytes]:
        inner = Mcast(2, old_ring, seq, 2, Guarantee.AGREED, b"old") if wrapped else None
        payload = b"" if wrapped else b"new"
        return Mcast(2, new_ring, seq, 2, Guarantee.AGREED, payload, inner), b""

    for seq, wrapped in ((1, True), (2, True), (3, False), (4, True)):
        assert ring.store(seq, held(seq, wrapped=wrapped), 100)
    ring.release_wrapped(4)
    assert ring.last_released == 2
    assert sorted(ring.rq) == [3, 4]
