"""Decodable but hostile datagrams: each defect a review found, pinned by the packet that hit it.

Every test feeds one real Processor what a hostile or broken peer could send. The promise is
the same for all: nothing raises out of ``receive`` or ``handle_timer``, the packet is a
counted drop (or harmless), and the processor's state stays what it was.
"""

from __future__ import annotations

import dataclasses
import struct

from evs.totem.codec import MAX_PROCESSORS, SEQ_LIMIT, cluster_id_for, decode, encode
from evs.totem.config import TotemConfig
from evs.totem.events import Deliver, MembState, PersistRingSeq
from evs.totem.groups import FORMAT_VERSION
from evs.totem.invariants import check_invariants
from evs.totem.messages import CommitEntry, CommitToken, Join, Mcast, OrfToken
from evs.totem.processor import Processor
from evs.types import Guarantee, RingId

CID = cluster_id_for("evs")


def ring_of_two(**cfg: object) -> Processor:
    """Node 1 (the representative) of a static ring {1, 2}, after its first token visit."""
    p = Processor(TotemConfig(**cfg), 1, static_members=(1, 2))  # type: ignore[arg-type]
    p.start(0.0)
    p.events.clear()
    p.outbox.clear()
    return p


def group_payload(*items: bytes, continues: int = 0, fragmented: int = 0) -> bytes:
    """A group-layer packet (groups.py's format) with exactly these items."""
    head = struct.pack("!BBHBB", FORMAT_VERSION, 0, len(items), continues, fragmented)
    return head + struct.pack(f"!{len(items)}H", *map(len, items)) + b"".join(items)


def message(data: bytes, group: bytes = b"g") -> bytes:
    """One encoded application message: its group header, then its data."""
    return bytes([1, len(group)]) + group + data


def mcast(p: Processor, seq: int, payload: bytes, frm: int = 2) -> bytes:
    return encode(Mcast(frm, p.ring_id, seq, frm, Guarantee.AGREED, payload), CID)


def token(p: Processor, **fields: object) -> bytes:
    r = p.ring
    tok = OrfToken(2, p.ring_id, r.my_token_seq + 2, r.my_high_seq_received, r.my_aru, 0, 0, 0,
                   False)  # fmt: skip
    for key, value in fields.items():
        setattr(tok, key, value)
    return encode(tok, CID)


def run_alone(p: Processor, until_ms: float) -> list[bytes]:
    """Drive a processor with no peers: its own unicasts loop back, timers fire on time.

    Returns every datagram it sent (commit tokens from their persist events included), after
    checking each decodes.
    """
    sent: list[bytes] = []
    now = 0.0
    while now < until_ms:
        out = list(p.outbox)
        p.outbox.clear()
        for ev in p.events:
            if isinstance(ev, PersistRingSeq):
                out.extend(ev.then_send)
        p.events.clear()
        for dest, data in out:
            decode(data, CID)
            sent.append(data)
            if dest == p.nodeid:
                p.receive(now, data)
        if not out:
            due = p.next_deadline()
            if due is None:
                break
            now = max(now, due)
            p.handle_timer(now)
    return sent


def deliveries(p: Processor) -> list[bytes]:
    out = [e.data for e in p.events if isinstance(e, Deliver)]
    p.events.clear()
    return out


# ------------------------------------------------------------------ defect 1: group layer


def test_an_item_of_one_byte_naming_one_group_is_dropped_and_delivery_goes_on() -> None:
    """Defect 1: count 1 and nothing after it read past the item (IndexError out of receive),
    and the packets before it were delivered again by a driver that carried on."""
    p = ring_of_two()
    p.receive(1.0, mcast(p, 1, group_payload(message(b"first"))))
    assert deliveries(p) == [b"first"]
    p.receive(2.0, mcast(p, 2, group_payload(b"\x01")))
    p.receive(3.0, mcast(p, 3, group_payload(message(b"third"))))
    assert deliveries(p) == [b"third"]
    assert p.ring.my_high_delivered == 3
    assert p.unpacker.drops["bad_groups"] == 1


def test_group_headers_claiming_more_than_the_item_holds_are_dropped() -> None:
    p = ring_of_two()
    bad = [b"\x02\x01", b"\x03\x01\x01", b"\x01\x05abc", b"\xff", b"\x00data"]
    for seq, item in enumerate(bad, 1):
        p.receive(float(seq), mcast(p, seq, group_payload(item)))
    assert deliveries(p) == []
    assert p.unpacker.drops["bad_groups"] == len(bad)
    assert p.ring.my_high_delivered == len(bad)


# ------------------------------------------------------------------ defect 2: out of range


def test_a_join_with_ring_seq_at_the_top_of_u64_is_dropped_and_poisons_nothing() -> None:
    """Defect 2: such a JOIN made the next commit token unencodable (ValueError) for good."""
    p = Processor(TotemConfig(), 1)
    p.start(0.0)
    before = p.token_ring_id_seq
    for ring_seq in (2**64 - 1, SEQ_LIMIT, SEQ_LIMIT - 1, before + (1 << 33)):
        p.receive(1.0, encode(Join(2, ring_seq, (1, 2), ()), CID))
    assert p.token_ring_id_seq == before
    assert p.drops["out_of_range"] == 2
    assert p.drops["join ring seq leaps too far"] == 2
    sent = run_alone(p, 5000.0)  # node 2 never answers: a singleton ring forms
    assert p.state is MembState.OPERATIONAL
    assert p.memb_list == (1,)
    assert before < p.ring_id.seq < before + 100
    assert any(isinstance(decode(d, CID), CommitToken) for d in sent)


def test_a_token_with_a_huge_backlog_is_clamped_to_its_field() -> None:
    """Defect 2: backlog near 2^32 plus our own backlog overflowed u32 in the encoder."""
    p = ring_of_two(window_size=50, max_messages=1)
    for _ in range(5):
        p.submit(1.0, [b"g"], b"x" * 1200, Guarantee.AGREED)
    p.outbox.clear()
    p.receive(2.0, token(p, backlog=2**32 - 2, fcc=2**32 - 1))
    toks = [decode(d, CID) for dest, d in p.outbox if dest == 2]
    assert len(toks) == 1
    assert isinstance(toks[0], OrfToken)
    assert toks[0].backlog == 2**32 - 1
    assert toks[0].fcc <= 2**32 - 1


def test_a_token_seq_at_the_top_of_u64_is_dropped_and_just_below_2_62_forwarded() -> None:
    p = ring_of_two()
    p.receive(1.0, token(p, token_seq=2**64 - 1))
    assert p.drops["out_of_range"] == 1
    assert p.outbox == []
    p.receive(2.0, token(p, token_seq=SEQ_LIMIT - 1))
    # Forwarded one hop later: encodable (the headroom above 2^62), though peers drop it.
    forwarded = [d for dest, d in p.outbox if dest == 2]
    assert [struct.unpack_from("!Q", d, 24)[0] for d in forwarded] == [SEQ_LIMIT]


def test_joins_whose_lists_add_up_past_the_processor_limit_are_dropped() -> None:
    """Defect 2: two legal JOINs of 200 ids each made our own JOIN too long to encode."""
    p = Processor(TotemConfig(), 1)
    p.start(0.0)
    first = tuple(range(2, 202))
    second = tuple(range(1000, 1200))
    p.receive(1.0, encode(Join(2, 1, (1, *first), ()), CID))
    p.receive(2.0, encode(Join(1000, 1, (1, *second), ()), CID))
    assert p.drops["join would exceed the processor limit"] == 1
    assert len(p.memb.proc) <= MAX_PROCESSORS
    p.handle_timer(1000.0)  # JOIN timer: our sets must still encode
    joins = [decode(d, CID) for _, d in p.outbox]
    assert any(isinstance(j, Join) and len(j.proc_list) == 201 for j in joins)


def test_a_join_whose_failed_list_is_outside_its_proc_list_is_dropped() -> None:
    p = Processor(TotemConfig(), 1)
    p.start(0.0)
    p.receive(1.0, encode(Join(2, 1, (1, 2), (7, 8)), CID))
    assert p.drops["join failed list outside its proc list"] == 1
    assert p.memb.proc == {1}


def test_a_join_whose_sender_is_outside_its_own_proc_list_is_dropped() -> None:
    """Found by the fuzzer once it checked the core's invariants: a JOIN from 49 that wants
    only us (proc {3}) and lists us as failed put 49 into our failed set though it was in
    no proc set, breaking failed <= proc. Only a LEAVE leaves its sender out."""
    p = Processor(TotemConfig(), 3)
    p.start(0.0)
    p.receive(1.0, encode(Join(49, 1, (3,), (3,)), CID))
    assert p.drops["join sender outside its proc list"] == 1
    assert p.memb.failed <= p.memb.proc == {3}
    check_invariants(p)
    p.receive(2.0, encode(Join(2, 1, (1, 3), (2,), leave=True), CID))  # a LEAVE still counts
    assert p.drops["join sender outside its proc list"] == 1


def committing_pair() -> tuple[Processor, CommitToken]:
    """Node 1 in COMMIT of a ring {1, 2}, and the commit token as node 2 returns it."""
    p = Processor(TotemConfig(), 1)
    p.start(0.0)
    p.outbox.clear()
    p.receive(1.0, encode(Join(2, 1, (1, 2), ()), CID))  # adopt node 2 ...
    p.receive(1.0, encode(Join(2, 1, (1, 2), ()), CID))  # ... and agree with it
    assert p.state is MembState.COMMIT
    sent = [d for e in p.events if isinstance(e, PersistRingSeq) for _, d in e.then_send]
    assert len(sent) == 1
    tok = decode(sent[0], CID)
    assert isinstance(tok, CommitToken)
    entries = list(tok.entries)
    entries[1] = CommitEntry(RingId(seq=1, rep=2), 0, 0, True)
    back = CommitToken(2, tok.ring_id, tok.token_seq + 1, 2, tok.addrs, entries)
    p.events.clear()
    return p, back


def test_a_commit_token_with_our_line_altered_is_dropped_not_recovered_from() -> None:
    """Defect 2: an empty transitional set made recovery call min() on nothing."""
    p, back = committing_pair()
    mine = back.entries[0]
    assert mine is not None
    back.entries[0] = CommitEntry(RingId(seq=77, rep=9), mine.aru, 0, True)
    p.receive(2.0, encode(back, CID))
    assert p.drops["commit token altered"] == 1
    assert p.state is MembState.COMMIT
    other = CommitToken(2, back.ring_id, back.token_seq, 2, (1, 3), [mine, back.entries[1]])
    p.receive(3.0, encode(other, CID))
    assert p.state is MembState.COMMIT
    back.entries[0] = mine
    p.receive(4.0, encode(back, CID))
    assert p.stats["recovery entered"] == 1


# ------------------------------------------------------------------ defect 6: persist first


def test_commit_tokens_leave_only_inside_the_persist_event_retransmissions_too() -> None:
    """Defect 6: the ring seq must be durable before any commit token naming it leaves."""
    p, _ = committing_pair()
    assert all(not isinstance(decode(d, CID), CommitToken) for _, d in p.outbox)
    p.outbox.clear()
    p.handle_timer(1.0 + p.config.token_retransmit_ms)
    assert all(not isinstance(decode(d, CID), CommitToken) for _, d in p.outbox)
    again = [e for e in p.events if isinstance(e, PersistRingSeq)]
    assert len(again) == 1
    assert again[0].seq == p.ring_id.seq
    assert isinstance(decode(again[0].then_send[0][1], CID), CommitToken)


# ------------------------------------------------------------------ defect 5: owned state


def test_forged_originators_get_no_reassembly_state() -> None:
    """Defect 5: a buffer per forged originator id grew memory until the next install."""
    p = ring_of_two()
    for i in range(200):
        frm = 1000 + i
        piece = group_payload(message(b"x" * 500), fragmented=1)
        p.receive(float(i), encode(Mcast(2, p.ring_id, i + 1, frm, Guarantee.AGREED, piece), CID))
        assert p.unpacker.pending_bytes(frm) == 0
    assert p.drops["mcast from a non-member"] == 200
    assert p.ring.my_high_seq_received == 0


def test_joins_from_strangers_leave_no_trace_in_operational() -> None:
    """Defect 5: ``heard`` kept one entry per sender id forever."""
    p = ring_of_two()
    p.static = False  # handle JOINs as a membership ring would
    for i in range(500):
        p.receive(float(i), encode(Join(5000 + i, 0, (1, 5000 + i), (1,)), CID))
    assert p.stats["join ignored: lists me as failed"] == 500
    assert len(p.memb.heard) <= len(p.memb.proc)
    assert not hasattr(p.memb, "left_gracefully")


# ------------------------------------------------------------------ found by evs fuzz


def test_a_token_whose_seq_is_below_what_we_hold_is_dropped() -> None:
    """Numbering new messages from a lower token seq overwrote held ones (two messages, one
    sequence number): my_aru ended above my_high_seq_received."""
    p = ring_of_two()
    for seq in range(1, 6):
        p.receive(1.0, mcast(p, seq, group_payload(message(b"m"))))
    p.submit(2.0, [b"g"], b"mine", Guarantee.AGREED)
    p.outbox.clear()
    p.receive(3.0, token(p, seq=0, aru=0))
    p.receive(3.0, token(p, seq=9, aru=10))
    assert p.drops["token seq below messages held"] == 2
    assert p.outbox == []
    assert (p.ring.my_aru, p.ring.my_high_seq_received) == (5, 5)


def test_a_returning_commit_token_with_fewer_members_is_dropped() -> None:
    """_is_our_round read our line at our index before checking the member list."""
    p = Processor(TotemConfig(), 2)
    p.start(0.0)
    p.receive(1.0, encode(Join(1, 1, (1, 2), ()), CID))
    p.receive(1.0, encode(Join(1, 1, (1, 2), ()), CID))
    ring = RingId(seq=p.token_ring_id_seq + 4, rep=1)
    first = CommitToken(1, ring, 1, 1, (1, 2), [CommitEntry(RingId(1, 1), 0, 0, True), None])
    p.receive(2.0, encode(first, CID))
    assert p.state is MembState.COMMIT
    assert p.memb.my_index == 1
    p.receive(3.0, encode(CommitToken(1, ring, 5, 1, (2,), [p.memb.my_entry]), CID))
    assert p.drops["commit token altered"] == 1
    assert p.state is MembState.COMMIT


def test_an_encapsulated_mcast_on_an_operational_ring_is_dropped() -> None:
    """Stored in OPERATIONAL, it became an old-ring message at the next change and recovery
    tried to wrap an already wrapped packet (ValueError from the encoder)."""
    p = ring_of_two()
    inner = Mcast(2, RingId(seq=1, rep=2), 1, 2, Guarantee.AGREED, b"x")
    p.receive(1.0, encode(Mcast(2, p.ring_id, 2, 2, Guarantee.AGREED, b"", inner), CID))
    assert p.drops["encapsulated mcast outside recovery"] == 1
    assert p.ring.rq == {}


def test_recovery_re_sends_only_plain_messages_of_the_old_ring() -> None:
    """A forged wrapped packet stored while a ring recovered (above its install_seq) stayed in
    the operational queue; at the next change recovery tried to wrap it again (ValueError)."""
    p, back = committing_pair()
    assert p.rec.old is not None
    old = p.rec.old.ring_id
    inner = Mcast(2, RingId(seq=1, rep=2), 1, 2, Guarantee.AGREED, b"x")
    wrapped = Mcast(2, old, 1, 1, Guarantee.AGREED, b"", inner)
    plain = Mcast(1, old, 2, 1, Guarantee.AGREED, group_payload(message(b"y")))
    p.rec.old = dataclasses.replace(
        p.rec.old, rq={1: (wrapped, b""), 2: (plain, b"")}, high_seq_received=2
    )
    p.receive(2.0, encode(back, CID))
    assert list(p.rec.retrans_queue) == [plain]
