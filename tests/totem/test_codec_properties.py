"""Hypothesis properties of the totem codec (style rule 12: every decoder attacked three ways).

1. Every valid message of every type survives encode -> decode unchanged.
2. Any damage (cuts, bit flips, byte edits, insertions, deletions, random bytes) ends in a
   valid message or a ``DecodeError``, never another exception.
3. The encoding is canonical: when damaged bytes still decode, re-encoding gives back exactly
   those bytes, so no two byte strings mean the same message.
"""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from evs.totem.codec import (
    HEADER_SIZE,
    MAX_PROCESSORS,
    MAX_RTR,
    MCAST_HEADER_SIZE,
    SEQ_LIMIT,
    cluster_id_for,
    decode,
    encode,
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

CID = cluster_id_for("property-cluster")

u32 = st.integers(0, 2**32 - 1)
# Sequence numbers (every u64 field) decode only below SEQ_LIMIT = 2^62 (test_codec.py).
u64 = st.integers(0, SEQ_LIMIT - 1)
nodeids = st.integers(1, 2**32 - 1)
# Small ids too, so lists often share or repeat values.
some_nodeids = st.one_of(st.integers(1, 10), nodeids)
ring_ids = st.builds(RingId, seq=u64, rep=some_nodeids)
guarantees = st.sampled_from(Guarantee)
node_lists = st.lists(some_nodeids, max_size=MAX_PROCESSORS).map(tuple)

tokens = st.builds(
    OrfToken,
    sender=nodeids,
    ring_id=ring_ids,
    token_seq=u64,
    seq=u64,
    aru=u64,
    aru_addr=u32,
    backlog=u32,
    fcc=u32,
    retrans_flg=st.booleans(),
    rtr_list=st.lists(st.builds(RtrEntry, ring_id=ring_ids, seq=u64), max_size=MAX_RTR),
)
plain_mcasts = st.builds(
    Mcast,
    sender=nodeids,
    ring_id=ring_ids,
    seq=u64,
    system_from=nodeids,
    guarantee=guarantees,
    payload=st.binary(max_size=300),
    inner=st.none(),  # builds() fills a named tuple's defaulted fields too
)
wrapped_mcasts = st.builds(
    Mcast,
    sender=nodeids,
    ring_id=ring_ids,
    seq=u64,
    system_from=nodeids,
    guarantee=guarantees,
    payload=st.just(b""),
    inner=plain_mcasts,
)
joins = st.builds(
    Join,
    sender=nodeids,
    ring_seq=u64,
    proc_list=node_lists,
    failed_list=node_lists,
    leave=st.booleans(),
)
merge_detects = st.builds(MergeDetect, sender=nodeids, ring_id=ring_ids)
hold_cancels = st.builds(TokenHoldCancel, sender=nodeids, ring_id=ring_ids)
commit_entries = st.builds(
    CommitEntry, old_ring_id=ring_ids, aru=u64, high_delivered=u64, received_flg=st.booleans()
)


@st.composite
def commit_tokens(draw: st.DrawFn) -> CommitToken:
    addrs = tuple(sorted(draw(st.sets(some_nodeids, min_size=1, max_size=MAX_PROCESSORS))))
    entries = draw(st.lists(st.none() | commit_entries, min_size=len(addrs), max_size=len(addrs)))
    return CommitToken(
        sender=draw(nodeids),
        ring_id=draw(ring_ids),
        token_seq=draw(u64),
        memb_index=draw(st.integers(0, len(addrs))),
        addrs=addrs,
        entries=entries,
    )


messages: st.SearchStrategy[Message] = st.one_of(
    tokens, plain_mcasts, wrapped_mcasts, joins, merge_detects, hold_cancels, commit_tokens()
)


def decode_or_drop(data: bytes) -> Message | DropReason:
    """Decode, allowing only DecodeError; a decoded message must re-encode to ``data``."""
    try:
        msg = decode(data, CID)
    except DecodeError as exc:
        return exc.reason
    assert encode(msg, CID) == data
    return msg


# ------------------------------------------------------------------ round trips


@given(messages)
def test_round_trip(msg: Message) -> None:
    data = encode(msg, CID)
    assert decode(data, CID) == msg
    assert decode(memoryview(data), CID) == msg
    assert encode(decode(data, CID), CID) == data


@given(messages)
def test_peek_type_agrees_with_decode(msg: Message) -> None:
    data = encode(msg, CID)
    assert peek_type(data) is MessageType(data[3])
    assert type(decode(data, CID)) is type(msg)


@given(messages, st.integers(0, 2**32 - 1))
def test_other_clusters_are_dropped(msg: Message, other: int) -> None:
    assume(other != CID)
    data = encode(msg, CID)
    with pytest.raises(DecodeError) as info:
        decode(data, other)
    assert info.value.reason is DropReason.WRONG_CLUSTER


# ------------------------------------------------------------------ damage


@given(messages, st.data())
def test_truncation(msg: Message, data: st.DataObject) -> None:
    encoded = encode(msg, CID)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    result = decode_or_drop(encoded[:cut])
    if isinstance(result, DropReason):
        expected = DropReason.TOO_SHORT if cut < HEADER_SIZE else DropReason.TRUNCATED
        assert result is expected
    else:
        # Only an mcast payload runs to the end of the datagram, so only it can be cut.
        assert isinstance(msg, Mcast)
        assert cut >= MCAST_HEADER_SIZE


@settings(max_examples=500)
@given(messages, st.data())
def test_bit_flips(msg: Message, data: st.DataObject) -> None:
    encoded = bytearray(encode(msg, CID))
    for bit in data.draw(st.lists(st.integers(0, len(encoded) * 8 - 1), min_size=1, max_size=4)):
        encoded[bit // 8] ^= 1 << (bit % 8)
    decode_or_drop(bytes(encoded))


@settings(max_examples=500)
@given(messages, st.data())
def test_byte_overwrites(msg: Message, data: st.DataObject) -> None:
    """Whole-byte edits reach count and flag values a single bit flip rarely produces."""
    encoded = bytearray(encode(msg, CID))
    edits = st.tuples(st.integers(0, len(encoded) - 1), st.sampled_from([0, 1, 2, 0x80, 0xFF]))
    for index, value in data.draw(st.lists(edits, min_size=1, max_size=4)):
        encoded[index] = value
    decode_or_drop(bytes(encoded))


@settings(max_examples=300)
@given(messages, st.data())
def test_byte_insertions_and_deletions(msg: Message, data: st.DataObject) -> None:
    encoded = encode(msg, CID)
    at = data.draw(st.integers(0, len(encoded)))
    inserted = data.draw(st.binary(min_size=1, max_size=8))
    decode_or_drop(encoded[:at] + inserted + encoded[at:])
    end = data.draw(st.integers(at, len(encoded)))
    decode_or_drop(encoded[:at] + encoded[end:])


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_random_bytes(blob: bytes) -> None:
    decode_or_drop(blob)


@settings(max_examples=1000)
@given(st.sampled_from(MessageType), st.integers(1, 8), st.binary(max_size=200))
def test_random_bodies_behind_a_valid_header(mtype: MessageType, sender: int, body: bytes) -> None:
    """Random bytes rarely pass the header; this aims the fuzzing at the body decoders."""
    header = b"\xe7\xa5\x01" + bytes([mtype]) + CID.to_bytes(4, "big") + sender.to_bytes(4, "big")
    decode_or_drop(header + body)


@given(messages, messages)
def test_spliced_messages(first: Message, second: Message) -> None:
    """One message's header on another's body: lengths and counts disagree with the type."""
    a, b = encode(first, CID), encode(second, CID)
    decode_or_drop(a[:HEADER_SIZE] + b[HEADER_SIZE:])
    decode_or_drop(a + b)
