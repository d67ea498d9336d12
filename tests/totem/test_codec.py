"""Byte-level tests of the totem codec: layouts, every drop reason, every truncation.

Malformed datagrams are built by hand with ``struct`` from the layout in docs/wire.md rather
than with codec internals, so a layout mistake in the codec cannot hide behind its own helpers.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from evs._compiled import compiled_modules
from evs.totem.codec import (
    HEADER_SIZE,
    MAX_PROCESSORS,
    MAX_RTR,
    MCAST_HEADER_SIZE,
    SEQ_LIMIT,
    cluster_id_for,
    decode,
    encode,
    encode_mcast,
    peek_type,
)
from evs.totem.drops import DecodeError, DropReason
from evs.totem.messages import (
    CommitEntry,
    CommitToken,
    Join,
    Mcast,
    MergeDetect,
    Message,
    MessageType,
    OrfToken,
    RtrEntry,
    TokenHoldCancel,
)
from evs.types import Guarantee, RingId

CID = cluster_id_for("test-cluster")
RING = RingId(seq=8, rep=1)
OLD = RingId(seq=4, rep=2)

# ------------------------------------------------------------------ hand-built datagrams


def hdr(
    mtype: int, sender: int = 1, cluster: int = CID, magic: int = 0xE7A5, ver: int = 1
) -> bytes:
    return struct.pack("!HBBII", magic, ver, mtype, cluster, sender)


def ring(rep: int = 1, seq: int = 8) -> bytes:
    return struct.pack("!IQ", rep, seq)


def token_dg(rtr: bytes = b"", count: int | None = None, retrans: int = 0, rep: int = 1) -> bytes:
    n = len(rtr) // 20 if count is None else count
    body = struct.pack("!QQQIIIBH", 7, 100, 90, 3, 5, 6, retrans, n)
    return hdr(0) + ring(rep) + body + rtr


def rtr(rep: int = 1, seq: int = 8, msg_seq: int = 95) -> bytes:
    return struct.pack("!IQQ", rep, seq, msg_seq)


def mcast_dg(
    payload: bytes = b"hello",
    *,
    sender: int = 2,
    system_from: int = 3,
    guarantee: int = 2,
    encap: int = 0,
    rep: int = 1,
) -> bytes:
    fixed = struct.pack("!QIBB", 42, system_from, guarantee, encap)
    return hdr(1, sender) + ring(rep) + fixed + payload


def join_dg(
    procs: tuple[int, ...] = (1, 2),
    failed: tuple[int, ...] = (3,),
    flags: int = 0,
    counts: tuple[int, int] | None = None,
    sender: int = 2,
) -> bytes:
    pc, fc = (len(procs), len(failed)) if counts is None else counts
    ids = procs + failed
    return (
        hdr(3, sender)
        + struct.pack("!BQHH", flags, 12, pc, fc)
        + struct.pack(f"!{len(ids)}I", *ids)
    )


def entry(
    present: int = 1, *, rep: int = 2, seq: int = 4, aru: int = 9, high: int = 9, rcv: int = 1
) -> bytes:
    return struct.pack("!BIQQQB", present, rep, seq, aru, high, rcv)


def commit_dg(
    addrs: tuple[int, ...] = (1, 2),
    entries: bytes | None = None,
    memb_index: int = 1,
    count: int | None = None,
    rep: int = 1,
) -> bytes:
    n = len(addrs) if count is None else count
    if entries is None:
        entries = entry() + bytes(30) * (len(addrs) - 1)
    body = ring(rep) + struct.pack("!QHH", 5, memb_index, n)
    return hdr(4) + body + struct.pack(f"!{len(addrs)}I", *addrs) + entries


# ------------------------------------------------------------------ sample messages

PLAIN = Mcast(2, RING, 42, 3, Guarantee.AGREED, b"hello")
INNER = Mcast(5, OLD, 17, 6, Guarantee.SAFE, b"old ring data")
WRAPPED = Mcast(2, RING, 43, 2, Guarantee.AGREED, b"", INNER)
TOKEN = OrfToken(1, RING, 7, 100, 90, 3, 5, 6, False, [RtrEntry(RING, 95), RtrEntry(OLD, 11)])
JOIN = Join(2, 12, (1, 2), (3,))
LEAVE = Join(3, 12, (1, 2), (3,), leave=True)
MERGE = MergeDetect(1, RING)
HOLD = TokenHoldCancel(2, RING)
COMMIT = CommitToken(
    1, RING, 5, 1, (1, 2, 9), [CommitEntry(OLD, 9, 9, True), None, CommitEntry(RING, 0, 0, False)]
)
SAMPLES: list[Message] = [PLAIN, WRAPPED, TOKEN, JOIN, LEAVE, MERGE, HOLD, COMMIT]
SAMPLE_IDS = ["plain", "wrapped", "token", "join", "leave", "merge", "hold", "commit"]


def reason_of(data: bytes, cluster: int = CID) -> DropReason:
    with pytest.raises(DecodeError) as info:
        decode(data, cluster)
    return info.value.reason


# ------------------------------------------------------------------ layout and round trips


def test_sizes_match_the_documented_layout() -> None:
    assert HEADER_SIZE == 12
    assert MCAST_HEADER_SIZE == 38
    assert len(encode(OrfToken(1, RING, 0, 0, 0, 0, 0, 0, False), CID)) == 63
    assert len(encode(TOKEN, CID)) == 63 + 2 * 20
    assert len(encode(JOIN, CID)) == 25 + 3 * 4
    assert len(encode(MERGE, CID)) == 24
    assert len(encode(HOLD, CID)) == 24
    assert len(encode(COMMIT, CID)) == 36 + 3 * 34
    assert len(encode(PLAIN, CID)) == 38 + 5
    assert len(encode(WRAPPED, CID)) == 38 + 38 + len(INNER.payload)


def test_hand_built_datagrams_equal_the_encoder_output() -> None:
    """The test builders and the codec agree byte for byte, so docs/wire.md is the codec."""
    assert encode(PLAIN, CID) == mcast_dg()
    token = OrfToken(1, RING, 7, 100, 90, 3, 5, 6, False, [RtrEntry(RING, 95)])
    assert encode(token, CID) == token_dg(rtr())
    assert encode(JOIN, CID) == join_dg()
    assert encode(LEAVE, CID) == join_dg(flags=1, sender=3)
    assert encode(MERGE, CID) == hdr(2) + ring()
    assert encode(HOLD, CID) == hdr(5, sender=2) + ring()
    commit = CommitToken(1, RING, 5, 1, (1, 2), [CommitEntry(OLD, 9, 9, True), None])
    assert encode(commit, CID) == commit_dg()


def test_header_is_big_endian_with_magic_version_type_cluster_sender() -> None:
    data = encode(MERGE, 0x01020304)
    assert data[:HEADER_SIZE] == bytes.fromhex("e7a5 01 02 01020304 00000001")


@pytest.mark.parametrize("msg", SAMPLES, ids=SAMPLE_IDS)
def test_round_trip(msg: Message) -> None:
    data = encode(msg, CID)
    assert decode(data, CID) == msg
    assert decode(memoryview(data), CID) == msg
    assert decode(bytearray(data), CID) == msg
    assert encode(decode(data, CID), CID) == data


def test_mcast_payload_is_bytes_even_from_a_memoryview() -> None:
    msg = decode(memoryview(encode(PLAIN, CID)), CID)
    assert isinstance(msg, Mcast)
    assert type(msg.payload) is bytes
    assert msg.payload == b"hello"
    assert isinstance(msg.guarantee, Guarantee)


def test_encode_mcast_matches_encode_of_the_message() -> None:
    fast = encode_mcast(2, RING, 42, 3, Guarantee.AGREED, b"hello", CID)
    assert fast == encode(PLAIN, CID)


def test_empty_and_large_payloads_round_trip() -> None:
    for payload in (b"", bytes(range(256)) * 256):
        msg = Mcast(2, RING, 42, 3, Guarantee.SAFE, payload)
        assert decode(encode(msg, CID), CID) == msg


def test_lists_at_the_limit_round_trip() -> None:
    ids = tuple(range(1, MAX_PROCESSORS + 1))
    join = Join(1, 3, ids, tuple(range(1000, 1000 + MAX_PROCESSORS)))
    assert decode(encode(join, CID), CID) == join
    commit = CommitToken(1, RING, 0, MAX_PROCESSORS, ids, [CommitEntry(OLD, 1, 1, False)] * 384)
    assert decode(encode(commit, CID), CID) == commit
    token = OrfToken(1, RING, 1, 2, 3, 0, 0, 0, True, [RtrEntry(RING, i) for i in range(MAX_RTR)])
    assert decode(encode(token, CID), CID) == token


def test_extreme_field_values_round_trip() -> None:
    top, top32 = SEQ_LIMIT - 1, 2**32 - 1
    big = RingId(seq=top, rep=top32)
    token = OrfToken(top32, big, top, top, top, top32, top32, top32, True, [])
    assert decode(encode(token, CID), CID) == token
    assert decode(encode(MERGE, top32), top32) == MERGE
    assert decode(encode(MERGE, 0), 0) == MERGE


def _seq_fields_at(value: int) -> list[Message]:
    """One message per sequence-number field a peer sends, that field set to ``value``."""
    ring = RingId(seq=5, rep=1)
    high = RingId(seq=value, rep=1)
    entry = CommitEntry(ring, 3, 2, False)
    return [
        Mcast(2, high, 1, 2, Guarantee.AGREED, b"x"),
        Mcast(2, ring, value, 2, Guarantee.AGREED, b"x"),
        Mcast(2, ring, 1, 2, Guarantee.AGREED, b"", Mcast(2, ring, value, 2, Guarantee.SAFE, b"")),
        OrfToken(2, high, 9, 9, 9, 0, 0, 0, False, []),
        OrfToken(2, ring, value, 9, 9, 0, 0, 0, False, []),
        OrfToken(2, ring, 9, value, 9, 0, 0, 0, False, []),
        OrfToken(2, ring, 9, 9, value, 0, 0, 0, False, []),
        OrfToken(2, ring, 9, 9, 9, 0, 0, 0, False, [RtrEntry(high, 1)]),
        OrfToken(2, ring, 9, 9, 9, 0, 0, 0, False, [RtrEntry(ring, value)]),
        Join(2, value, (1, 2), ()),
        MergeDetect(2, high),
        TokenHoldCancel(2, high),
        CommitToken(2, high, 1, 1, (1, 2), [entry, None]),
        CommitToken(2, ring, value, 1, (1, 2), [entry, None]),
        CommitToken(2, ring, 1, 1, (1, 2), [CommitEntry(high, 3, 2, False), None]),
        CommitToken(2, ring, 1, 1, (1, 2), [CommitEntry(ring, value, 2, False), None]),
        CommitToken(2, ring, 1, 1, (1, 2), [CommitEntry(ring, 3, value, False), None]),
    ]


@pytest.mark.parametrize("value", [SEQ_LIMIT, 2**63, 2**64 - 1])
def test_sequence_numbers_from_2_62_are_dropped_as_out_of_range(value: int) -> None:
    """No real ring reaches 2^62; the headroom above it keeps the core's own +1/+4 steps on a
    peer's number from overflowing u64. So the encoder takes them and the decoder drops them."""
    for msg in _seq_fields_at(value):
        data = encode(msg, CID)
        with pytest.raises(DecodeError) as info:
            decode(data, CID)
        assert info.value.reason is DropReason.OUT_OF_RANGE, msg


def test_sequence_numbers_just_below_2_62_decode() -> None:
    for msg in _seq_fields_at(SEQ_LIMIT - 1):
        assert decode(encode(msg, CID), CID) == msg


@pytest.mark.parametrize("msg", SAMPLES, ids=SAMPLE_IDS)
def test_peek_type_names_the_type(msg: Message) -> None:
    assert peek_type(encode(msg, CID)) is MessageType(encode(msg, CID)[3])


def test_peek_type_refuses_what_is_not_ours() -> None:
    good = encode(MERGE, CID)
    assert peek_type(good) is MessageType.MERGE_DETECT
    assert peek_type(good[: HEADER_SIZE - 1]) is None
    assert peek_type(b"\x00" * 40) is None
    assert peek_type(hdr(2, ver=2)) is None
    assert peek_type(hdr(9)) is None
    assert peek_type(memoryview(hdr(0))) is MessageType.ORF_TOKEN


def test_cluster_id_for_is_a_stable_u32() -> None:
    assert cluster_id_for("alpha") == cluster_id_for("alpha")
    assert cluster_id_for("alpha") != cluster_id_for("beta")
    assert 0 <= cluster_id_for("ünïcode") < 2**32


def test_decode_error_carries_reason_and_detail() -> None:
    err = DecodeError(DropReason.TRUNCATED, "token: 20 bytes")
    assert err.reason is DropReason.TRUNCATED
    assert err.detail == "token: 20 bytes"
    assert str(err) == "truncated: token: 20 bytes"


# ------------------------------------------------------------------ truncation


@pytest.mark.parametrize("msg", SAMPLES, ids=SAMPLE_IDS)
def test_every_truncation_is_dropped(msg: Message) -> None:
    """Each shorter prefix is refused, except an mcast cut inside its payload.

    A plain payload runs to the end of the datagram, so a shorter one is indistinguishable
    from a smaller message (UDP never delivers part of a datagram; the transport must refuse
    datagrams larger than its receive buffer).
    """
    data = encode(msg, CID)
    if isinstance(msg, Mcast):
        shortest = MCAST_HEADER_SIZE * (2 if msg.inner else 1)
    else:
        shortest = len(data)
    for cut in range(len(data)):
        prefix = data[:cut]
        if cut >= shortest:
            assert encode(decode(prefix, CID), CID) == prefix
            continue
        expected = DropReason.TOO_SHORT if cut < HEADER_SIZE else DropReason.TRUNCATED
        assert reason_of(prefix) is expected, cut


# ------------------------------------------------------------------ one test per drop reason

CASES: list[tuple[DropReason, bytes, str]] = [
    (DropReason.TOO_SHORT, b"", "empty"),
    (DropReason.TOO_SHORT, hdr(2)[:-1], "one byte short of a header"),
    (DropReason.BAD_MAGIC, hdr(2, magic=0xC070) + ring(), "corosync's magic"),
    (DropReason.BAD_MAGIC, b"\xa5\xe7" + mcast_dg()[2:], "byte-swapped magic"),
    (DropReason.BAD_VERSION, hdr(2, ver=2) + ring(), "future version"),
    (DropReason.BAD_VERSION, b"\xe7\xa5\x00" + mcast_dg()[3:], "mcast version 0"),
    (DropReason.UNKNOWN_TYPE, hdr(6) + ring(), "type 6"),
    (DropReason.UNKNOWN_TYPE, hdr(255), "type 255"),
    (DropReason.TRUNCATED, token_dg()[:-1], "token fixed part"),
    (DropReason.TRUNCATED, token_dg(rtr() * 2, count=3), "token rtr list"),
    (DropReason.TRUNCATED, mcast_dg()[: MCAST_HEADER_SIZE - 1], "mcast fixed part"),
    (DropReason.TRUNCATED, join_dg(counts=(2, 2)), "join lists"),
    (DropReason.TRUNCATED, hdr(2) + ring()[:-1], "merge detect"),
    (DropReason.TRUNCATED, commit_dg()[:-1], "commit entries"),
    (DropReason.TRUNCATED, mcast_dg(hdr(1), encap=1), "inner mcast fixed part"),
    (DropReason.TRUNCATED, mcast_dg(b"\xe7", encap=1), "inner header"),
    (DropReason.TRAILING_BYTES, hdr(2) + ring() + b"\x00", "merge detect"),
    (DropReason.TRAILING_BYTES, hdr(5) + ring() + b"\x00" * 4, "token hold cancel"),
    (DropReason.TRAILING_BYTES, token_dg(rtr() * 2, count=1), "token"),
    (DropReason.TRAILING_BYTES, join_dg(counts=(1, 1)), "join"),
    (DropReason.TRAILING_BYTES, commit_dg() + b"\x00", "commit token"),
    (DropReason.TOO_MANY_RTR, token_dg(rtr() * 31), "31 entries"),
    (DropReason.TOO_MANY_RTR, token_dg(count=0xFFFF), "0xFFFF count, short datagram"),
    (DropReason.LIST_TOO_LONG, join_dg(tuple(range(1, 386)), ()), "385 procs"),
    (DropReason.LIST_TOO_LONG, join_dg((), tuple(range(1, 386))), "385 failed"),
    (DropReason.LIST_TOO_LONG, join_dg(counts=(0xFFFF, 0xFFFF)), "0xFFFF counts, short"),
    (DropReason.LIST_TOO_LONG, join_dg(counts=(0x4000, 0)), "count*4 wraps a u16"),
    (DropReason.LIST_TOO_LONG, commit_dg(count=0xFFFF, memb_index=0), "0xFFFF members, short"),
    (
        DropReason.LIST_TOO_LONG,
        commit_dg(tuple(range(1, 386)), entry() * 385),
        "385 members",
    ),
    (DropReason.BAD_GUARANTEE, mcast_dg(guarantee=0), "0"),
    (DropReason.BAD_GUARANTEE, mcast_dg(guarantee=1), "1"),
    (DropReason.BAD_GUARANTEE, mcast_dg(guarantee=4), "4"),
    (DropReason.BAD_GUARANTEE, mcast_dg(mcast_dg(guarantee=255), encap=1), "inner 255"),
    (DropReason.BAD_COUNT, commit_dg((), b"", memb_index=0), "no members"),
    (DropReason.BAD_COUNT, commit_dg(memb_index=3), "memb_index past the end"),
    (DropReason.BAD_FLAG, token_dg(retrans=2), "retrans_flg"),
    (DropReason.BAD_FLAG, join_dg(flags=2), "unknown join flag"),
    (DropReason.BAD_FLAG, join_dg(flags=0x81), "leave plus unknown flag"),
    (DropReason.BAD_FLAG, mcast_dg(encap=2), "encapsulated byte"),
    (DropReason.BAD_FLAG, commit_dg(entries=entry(2) + bytes(30)), "present byte"),
    (DropReason.BAD_FLAG, commit_dg(entries=entry(rcv=2) + bytes(30)), "received_flg"),
    (DropReason.ZERO_NODEID, hdr(2, sender=0) + ring(), "merge detect sender"),
    (DropReason.ZERO_NODEID, hdr(2) + ring(rep=0), "merge detect ring rep"),
    (DropReason.ZERO_NODEID, hdr(5) + ring(rep=0), "hold cancel ring rep"),
    (DropReason.ZERO_NODEID, mcast_dg(sender=0), "mcast sender"),
    (DropReason.ZERO_NODEID, mcast_dg(system_from=0), "mcast system_from"),
    (DropReason.ZERO_NODEID, mcast_dg(rep=0), "mcast ring rep"),
    (DropReason.ZERO_NODEID, mcast_dg(mcast_dg(sender=0), encap=1), "inner sender"),
    (DropReason.ZERO_NODEID, token_dg(rep=0), "token ring rep"),
    (DropReason.ZERO_NODEID, token_dg(rtr(rep=0)), "rtr entry ring rep"),
    (DropReason.ZERO_NODEID, join_dg((1, 0), ()), "join proc list"),
    (DropReason.ZERO_NODEID, join_dg((1,), (0,)), "join failed list"),
    (DropReason.ZERO_NODEID, commit_dg((0, 2)), "commit member"),
    (DropReason.ZERO_NODEID, commit_dg(rep=0), "commit ring rep"),
    (DropReason.ZERO_NODEID, commit_dg(entries=entry(rep=0) + bytes(30)), "commit old ring"),
    (DropReason.UNSORTED_MEMBERS, commit_dg((2, 1)), "descending"),
    (DropReason.UNSORTED_MEMBERS, commit_dg((2, 2)), "duplicate"),
    (DropReason.UNSORTED_MEMBERS, commit_dg((1, 5, 3)), "unsorted tail"),
    (
        DropReason.DIRTY_ABSENT_ENTRY,
        commit_dg(entries=entry() + entry(0, rep=0, seq=0, aru=5, high=0, rcv=0)),
        "aru",
    ),
    (DropReason.DIRTY_ABSENT_ENTRY, commit_dg(entries=entry() + entry(0)), "all fields"),
    (DropReason.BAD_ENCAPSULATION, mcast_dg(hdr(2) + ring(), encap=1), "merge detect inside"),
    (DropReason.BAD_ENCAPSULATION, mcast_dg(token_dg(), encap=1), "token inside"),
    (DropReason.NESTED_ENCAPSULATION, mcast_dg(mcast_dg(mcast_dg(), encap=1), encap=1), "2 deep"),
    (DropReason.NESTED_ENCAPSULATION, mcast_dg(mcast_dg(encap=1), encap=1), "inner flagged"),
    (DropReason.OUT_OF_RANGE, hdr(2) + ring(seq=2**62), "merge detect ring seq 2^62"),
    (DropReason.OUT_OF_RANGE, token_dg(rtr(msg_seq=2**64 - 1)), "rtr seq 2^64-1"),
]


@pytest.mark.parametrize(
    ("reason", "data"), [(r, d) for r, d, _ in CASES], ids=[f"{r.value}-{w}" for r, _, w in CASES]
)
def test_drop_reason(reason: DropReason, data: bytes) -> None:
    assert reason_of(data) is reason


def test_every_drop_reason_has_a_case() -> None:
    covered = {reason for reason, _, _ in CASES} | {DropReason.WRONG_CLUSTER}
    assert covered == set(DropReason)


@pytest.mark.parametrize("msg", SAMPLES, ids=SAMPLE_IDS)
def test_wrong_cluster_is_dropped(msg: Message) -> None:
    data = encode(msg, CID)
    assert reason_of(data, cluster=CID ^ 1) is DropReason.WRONG_CLUSTER
    assert reason_of(data, cluster=cluster_id_for("other")) is DropReason.WRONG_CLUSTER


def test_inner_mcast_from_another_cluster_is_dropped() -> None:
    inner = encode(INNER, cluster_id_for("other"))
    assert reason_of(mcast_dg(inner, encap=1)) is DropReason.WRONG_CLUSTER


def test_header_checks_come_before_body_checks() -> None:
    """A foreign datagram is counted as foreign, whatever its body looks like."""
    assert reason_of(hdr(6, cluster=CID + 1)) is DropReason.WRONG_CLUSTER
    assert reason_of(hdr(0, magic=0) + b"\xff" * 100) is DropReason.BAD_MAGIC
    assert reason_of(hdr(3, ver=9)) is DropReason.BAD_VERSION


def test_counts_and_lengths_are_checked_before_field_values() -> None:
    """The documented order: a datagram of the wrong size is counted as such, whatever it holds."""
    assert reason_of(token_dg(rtr() * 31, rep=0, retrans=9)) is DropReason.TOO_MANY_RTR
    assert reason_of(token_dg(rep=0) + b"\x00") is DropReason.TRAILING_BYTES
    assert reason_of(join_dg((0,), (), flags=0xFF, counts=(999, 0))) is DropReason.LIST_TOO_LONG
    assert reason_of(join_dg((0,), (), flags=0xFF, counts=(2, 0))) is DropReason.TRUNCATED
    assert reason_of(commit_dg((2, 1), rep=0, count=3)) is DropReason.TRUNCATED
    assert reason_of(commit_dg((0,), entry(7), rep=0, memb_index=5)) is DropReason.BAD_COUNT


def test_huge_counts_in_a_short_datagram_are_refused_before_reading() -> None:
    """Pitfall 21: counts near 0xFFFF must not reach a length computation that can wrap."""
    for counts in [(0xFFFF, 0), (0, 0xFFFF), (0xFFFF, 0xFFFF), (0x8000, 0x8000)]:
        assert reason_of(join_dg((), (), counts=counts)) is DropReason.LIST_TOO_LONG
    assert reason_of(join_dg((), (), counts=(384, 384))) is DropReason.TRUNCATED
    assert reason_of(token_dg(count=0xFFFF)) is DropReason.TOO_MANY_RTR
    assert reason_of(token_dg(count=MAX_RTR)) is DropReason.TRUNCATED
    short_commit = commit_dg((1, 2), b"", count=0xFFFF, memb_index=0)
    assert reason_of(short_commit) is DropReason.LIST_TOO_LONG
    assert reason_of(commit_dg((1, 2), b"", count=384, memb_index=0)) is DropReason.TRUNCATED


def test_short_commit_token_is_refused() -> None:
    """Pitfall 21: a commit token missing its entries was once accepted."""
    assert reason_of(commit_dg(entries=b"")) is DropReason.TRUNCATED
    assert reason_of(commit_dg(entries=entry())) is DropReason.TRUNCATED


# ------------------------------------------------------------------ pair assertions


def ill_typed(make: Callable[[], Message], what: str) -> list[tuple[Message, str]]:
    """A bad message the encoder must refuse, if it can be built at all: with the compiled
    modules (tools/compile.py) the constructor's own type check refuses it first."""
    try:
        return [(make(), what)]
    except TypeError:
        return []


BAD_MESSAGES: list[tuple[Message, str]] = [
    (Mcast(0, RING, 1, 2, Guarantee.AGREED, b""), "mcast sender 0"),
    (Mcast(1, RING, 1, 0, Guarantee.AGREED, b""), "mcast system_from 0"),
    (Mcast(1, RingId(1, 0), 1, 2, Guarantee.AGREED, b""), "mcast ring rep 0"),
    *ill_typed(lambda: Mcast(1, RING, 1, 2, 1, b""), "guarantee 1"),  # type: ignore[arg-type]
    (Mcast(1, RING, -1, 2, Guarantee.AGREED, b""), "negative seq"),
    (Mcast(1, RING, 2**64, 2, Guarantee.AGREED, b""), "seq beyond u64"),
    (Mcast(2**32, RING, 1, 2, Guarantee.AGREED, b""), "sender beyond u32"),
    (Mcast(1, RING, 1, 2, Guarantee.AGREED, b"x", INNER), "encapsulated with a payload"),
    (Mcast(1, RING, 1, 2, Guarantee.AGREED, b"", WRAPPED), "nested encapsulation"),
    *ill_typed(lambda: OrfToken(1, RING, 0, 0, 0, 0, 0, 0, 2, []), "retrans_flg 2"),  # type: ignore[arg-type]
    (OrfToken(0, RING, 0, 0, 0, 0, 0, 0, False), "token sender 0"),
    (OrfToken(1, RingId(1, 0), 0, 0, 0, 0, 0, 0, False), "token ring rep 0"),
    (OrfToken(1, RING, 0, 0, 0, 0, 2**32, 0, False), "backlog beyond u32"),
    (OrfToken(1, RING, 0, 0, 0, 0, 0, 0, False, [RtrEntry(RING, 1)] * 31), "31 rtr"),
    (OrfToken(1, RING, 0, 0, 0, 0, 0, 0, False, [RtrEntry(RingId(1, 0), 1)]), "rtr rep 0"),
    (Join(0, 1, (1,), ()), "join sender 0"),
    (Join(1, 1, (1, 0), ()), "join proc 0"),
    (Join(1, 1, (), (0,)), "join failed 0"),
    (Join(1, 1, tuple(range(1, 386)), ()), "join 385 procs"),
    (Join(1, 1, (), tuple(range(1, 386))), "join 385 failed"),
    *ill_typed(lambda: Join(1, 1, (), (), leave=3), "join leave 3"),  # type: ignore[arg-type]
    (MergeDetect(0, RING), "merge sender 0"),
    (MergeDetect(1, RingId(1, 0)), "merge ring rep 0"),
    (TokenHoldCancel(0, RING), "hold sender 0"),
    (CommitToken(1, RING, 0, 0, (), []), "commit with no members"),
    (CommitToken(1, RING, 0, 0, (1, 2), [None]), "commit entries short"),
    (CommitToken(1, RING, 0, 3, (1, 2), [None, None]), "memb_index past end"),
    (CommitToken(1, RING, 0, -1, (1, 2), [None, None]), "negative memb_index"),
    (CommitToken(1, RING, 0, 0, (2, 1), [None, None]), "unsorted members"),
    (CommitToken(1, RING, 0, 0, (1, 1), [None, None]), "duplicate members"),
    (CommitToken(1, RING, 0, 0, (0, 1), [None, None]), "member 0"),
    (CommitToken(0, RING, 0, 0, (1,), [None]), "commit sender 0"),
    (CommitToken(1, RING, 0, 0, (1,), [CommitEntry(RingId(1, 0), 0, 0, False)]), "old rep 0"),
    *ill_typed(lambda: CommitToken(1, RING, 0, 0, (1,), [CommitEntry(OLD, 0, 0, 2)]), "received 2"),  # type: ignore[arg-type]
    (
        CommitToken(1, RING, 0, 0, tuple(range(1, 386)), [None] * 385),
        "commit 385 members",
    ),
]


@pytest.mark.parametrize(
    "msg", [m for m, _ in BAD_MESSAGES], ids=[what for _, what in BAD_MESSAGES]
)
def test_encoder_refuses_what_the_decoder_would_drop(msg: Message) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (the message varies; the type is the contract)
        encode(msg, CID)


def test_encoder_refuses_a_bad_cluster_id() -> None:
    for cluster in (-1, 2**32):
        with pytest.raises(ValueError, match="out of range"):
            encode(MERGE, cluster)
        with pytest.raises(ValueError, match="out of range"):
            encode_mcast(1, RING, 1, 1, Guarantee.AGREED, b"", cluster)


def test_encode_mcast_refuses_bad_fields() -> None:
    with pytest.raises(ValueError, match="node 0"):
        encode_mcast(0, RING, 1, 1, Guarantee.AGREED, b"", CID)
    with pytest.raises(ValueError, match="guarantee"):
        encode_mcast(1, RING, 1, 1, 0, b"", CID)


def test_encode_refuses_a_non_message() -> None:
    # Compiled (tools/compile.py), the annotation's own check refuses it first, in its words.
    compiled = "evs.totem.codec" in compiled_modules()
    with pytest.raises(TypeError, match="object expected" if compiled else "not a totem message"):
        encode(RING, CID)  # type: ignore[arg-type]
