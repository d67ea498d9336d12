"""Bytes <-> totem messages: the only place that knows the wire layout (docs/wire.md).

Theory of operation:

* One byte order (network, big-endian) and fixed-size integer fields packed with precompiled
  ``struct.Struct`` objects. Every datagram starts with the same 12-byte header: magic,
  version, type, cluster id, sender. Those are the fields an AEAD frame wants as associated
  data (protocol.md section 11), and the cluster id lets two clusters share a network safely.
* Decoding is strict and canonical: every length is checked against the datagram size
  *before* anything is read (protocol.md pitfall 21: an overflowing JOIN length check and a
  short commit token were both accepted by corosync), every flag byte must be exactly 0 or 1,
  absent commit entries must be all zero and nothing may follow a complete body except a
  plain mcast payload. So a datagram decodes to at most one message and re-encoding a decoded
  message gives back the same bytes.
* Malformed peer input raises ``DecodeError`` (with a ``DropReason``) and nothing else; the
  checks are explicit rather than a catch-all, so a codec bug shows up as a crash in tests
  instead of being counted as a drop.
* Pair assertions: the encoder refuses (ValueError) every message the decoder would drop, so
  a bug on the sending side fails where it happens, not as a silent drop on every peer. One
  deliberate exception: the decoder drops sequence numbers (message, token, ring) at or above
  ``SEQ_LIMIT`` = 2^62, while the encoder takes any u64. No real ring gets near 2^62, and the
  headroom means the core's own small increments (+1 per token hop, +4 per ring) of a number a
  peer sent can never overflow the field and raise: a hostile value is dropped on arrival.
* Mcasts are the hot path (protocol cost per message is a benchmarked target):
  ``encode_mcast`` packs without building a message object and ``decode`` reads an mcast's
  header and fixed body with one ``unpack_from``.
"""

from __future__ import annotations

import itertools
import struct
import zlib
from collections.abc import Callable
from typing import Any, Final, TypeAlias

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

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "MAX_PROCESSORS",
    "MAX_RTR",
    "MCAST_HEADER_SIZE",
    "SEQ_LIMIT",
    "VERSION",
    "Datagram",
    "DecodeError",
    "DropReason",
    "cluster_id_for",
    "decode",
    "encode",
    "encode_mcast",
    "interned_ring_id",
    "peek_type",
]

_new_tuple = tuple.__new__

#: Every sequence number a peer sends (message, token, ring, aru) must be below this.
SEQ_LIMIT: Final = 1 << 62

#: First two bytes of every datagram; picked to be unlikely in other protocols' traffic.
MAGIC: Final = 0xE7A5
#: Wire format version; a peer speaking another version is dropped, not misread.
VERSION: Final = 1
#: Most retransmission requests one token may carry (bounds the token size).
MAX_RTR: Final = 30
#: Most node ids in one list (join lists, commit token members): the largest supported ring.
MAX_PROCESSORS: Final = 384

# magic, version, type, cluster id, sender
_HEADER: Final = struct.Struct("!HBBII")
_PEEK: Final = struct.Struct("!HBB")
HEADER_SIZE: Final = _HEADER.size

# Bodies (after the header). A ring id is rep u32 + seq u64 everywhere.
# token: ring, token_seq, seq, aru, aru_addr, backlog, fcc, retrans_flg, rtr_count
_TOKEN_BODY: Final = struct.Struct("!IQQQQIIIBH")
_TOKEN: Final = struct.Struct("!HBBII" + "IQQQQIIIBH")
_RTR: Final = struct.Struct("!IQQ")
# mcast, header included: ring, seq, system_from, guarantee, encapsulated
_MCAST: Final = struct.Struct("!HBBII" + "IQQIBB")
MCAST_HEADER_SIZE: Final = _MCAST.size
# join: flags, ring_seq, proc_count, failed_count
_JOIN_BODY: Final = struct.Struct("!BQHH")
_JOIN: Final = struct.Struct("!HBBII" + "BQHH")
# merge detect and token hold cancel: just a ring id
_RING_BODY: Final = struct.Struct("!IQ")
_RING_ONLY: Final = struct.Struct("!HBBII" + "IQ")
# commit token: ring, token_seq, memb_index, count; then count u32 addrs and count entries
_COMMIT_BODY: Final = struct.Struct("!IQQHH")
_COMMIT: Final = struct.Struct("!HBBII" + "IQQHH")
# commit entry: present, old ring, aru, high_delivered, received_flg
_ENTRY: Final = struct.Struct("!BIQQQB")
_ABSENT_ENTRY: Final = bytes(_ENTRY.size)

_TOKEN_END: Final = HEADER_SIZE + _TOKEN_BODY.size
_JOIN_END: Final = HEADER_SIZE + _JOIN_BODY.size
_RING_END: Final = HEADER_SIZE + _RING_BODY.size
_COMMIT_END: Final = HEADER_SIZE + _COMMIT_BODY.size
_MEMBER_SIZE: Final = 4 + _ENTRY.size  # one addr plus one entry

_JOIN_LEAVE: Final = 0x01
_T_MCAST: Final = int(MessageType.MCAST)
_T_TOKEN: Final = int(MessageType.ORF_TOKEN)
_TYPES: Final = {int(t): t for t in MessageType}
_GUARANTEES: Final = {int(g): g for g in Guarantee}

#: What ``decode`` reads: a received datagram, or a view into a receive buffer.
Datagram: TypeAlias = bytes | bytearray | memoryview

# Decoded ring ids are shared from a small memo: a processor sees one or two rings at a time,
# and building a frozen RingId costs about a third of an mcast decode. Keyed by one integer
# (seq above the 32-bit rep), which hashes without a tuple. Bounded, because the ring ids come
# from the network.
_RINGS: Final[dict[int, RingId]] = {}
_RINGS_MAX: Final = 64
#: The guarantee of each possible guarantee byte (None: not one), read by index.
_GUARANTEE_OF_BYTE: Final[tuple[Guarantee | None, ...]] = tuple(
    _GUARANTEES.get(b) for b in range(256)
)
#: Bound once: a method lookup per mcast decoded otherwise.
_MCAST_UNPACK: Final = _MCAST.unpack_from


def interned_ring_id(ring_id: RingId) -> RingId:
    """The one RingId object decoding hands out for this ring: a processor that holds it
    compares a packet's ring with ``is``, not field by field."""
    return _ring(ring_id.seq, ring_id.rep)


def _ring(seq: int, rep: int) -> RingId:
    """The memo's RingId for (seq, rep); ``rep`` is a u32 from the wire."""
    key = seq << 32 | rep
    ring = _RINGS.get(key)
    if ring is not None:
        return ring
    if len(_RINGS) >= _RINGS_MAX:
        _RINGS.clear()
    ring = _RINGS[key] = RingId(seq, rep)
    return ring


def cluster_id_for(name: str) -> int:
    """The u32 cluster id for a cluster name (every member must derive the same one)."""
    return zlib.crc32(name.encode("utf-8"))


def peek_type(data: Datagram) -> MessageType | None:
    """The message type of a datagram without decoding it (None if the header is not ours).

    Only the magic, version and type byte are looked at; the cluster id and body are left to
    ``decode``, so a non-None answer does not mean the datagram is valid.
    """
    if len(data) < HEADER_SIZE:
        return None
    magic, version, mtype = _PEEK.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        return None
    return _TYPES.get(mtype)


# --------------------------------------------------------------------------------- decoding


def decode(data: Datagram, cluster_id: int) -> Message:
    """Decode one datagram; any malformed input raises ``DecodeError`` and nothing else."""
    n = len(data)
    if n >= MCAST_HEADER_SIZE and data[3] == _T_MCAST:
        return _decode_mcast(data, cluster_id, False)
    if n < HEADER_SIZE:
        raise DecodeError(DropReason.TOO_SHORT, f"{n} bytes, header needs {HEADER_SIZE}")
    magic, version, mtype, cid, sender = _HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION or cid != cluster_id:
        raise _header_error(magic, version, cid, cluster_id)
    body = _BODY_DECODERS.get(mtype)
    if body is None:
        raise DecodeError(DropReason.UNKNOWN_TYPE, f"type byte {mtype}")
    if not sender:
        raise DecodeError(DropReason.ZERO_NODEID, "sender is 0")
    return body(data, n, sender, cluster_id)


def _header_error(magic: int, version: int, cid: int, cluster_id: int) -> DecodeError:
    """The error for the first bad common-header field (callers know one of them is bad)."""
    if magic != MAGIC:
        return DecodeError(DropReason.BAD_MAGIC, f"magic {magic:#06x}")
    if version != VERSION:
        return DecodeError(DropReason.BAD_VERSION, f"version {version}, we speak {VERSION}")
    return DecodeError(DropReason.WRONG_CLUSTER, f"cluster id {cid:#010x}, ours {cluster_id:#010x}")


def _check_length(n: int, need: int, what: str) -> None:
    """Exactly ``need`` bytes: fewer is a truncation, more is trailing garbage."""
    if n != need:
        if n < need:
            raise DecodeError(DropReason.TRUNCATED, f"{what}: {n} bytes, needs {need}")
        raise DecodeError(DropReason.TRAILING_BYTES, f"{what}: {n} bytes, expected {need}")


def _out_of_range(what: str, **values: int) -> DecodeError:
    bad = ", ".join(f"{k} {v}" for k, v in values.items() if v >= SEQ_LIMIT)
    return DecodeError(DropReason.OUT_OF_RANGE, f"{what}: {bad} (limit 2^62)")


def _truncated(n: int, need: int, what: str) -> DecodeError:
    return DecodeError(DropReason.TRUNCATED, f"{what}: {n} bytes, fixed part needs {need}")


def _decode_mcast(data: Datagram, cluster_id: int, inner: bool) -> Mcast:
    """Mcast with at least MCAST_HEADER_SIZE bytes; ``inner`` when inside an encapsulation."""
    # Typed, so compiled code compares C integers rather than boxed objects.
    head: tuple[int, int, int, int, int, int, int, int, int, int, int] = _MCAST_UNPACK(data)
    (magic, version, _type, cid, sender, rep, rseq, seq, system_from, guarantee, encap) = head
    if magic != MAGIC or version != VERSION or cid != cluster_id:
        raise _header_error(magic, version, cid, cluster_id)
    if not (sender and rep and system_from):
        raise DecodeError(
            DropReason.ZERO_NODEID, f"mcast sender {sender}, ring rep {rep}, from {system_from}"
        )
    level = _GUARANTEE_OF_BYTE[guarantee]
    if level is None:
        raise DecodeError(DropReason.BAD_GUARANTEE, f"guarantee byte {guarantee}")
    if (seq | rseq) >= SEQ_LIMIT:
        raise _out_of_range("mcast", seq=seq, ring_seq=rseq)
    if encap == 0:
        payload = (
            data[MCAST_HEADER_SIZE:] if isinstance(data, bytes) else bytes(data[MCAST_HEADER_SIZE:])
        )
        ring = _ring(rseq, rep)
        # tuple.__new__ skips the named tuple's __new__, interpreted Python even when compiled.
        return _new_tuple(Mcast, (sender, ring, seq, system_from, level, payload, None))
    if encap != 1:
        raise DecodeError(DropReason.BAD_FLAG, f"encapsulated byte {encap}")
    if inner:
        raise DecodeError(DropReason.NESTED_ENCAPSULATION, "inner mcast is encapsulated too")
    wrapped = _decode_inner(data[MCAST_HEADER_SIZE:], cluster_id)
    ring = _ring(rseq, rep)
    return Mcast(sender, ring, seq, system_from, level, b"", wrapped)


def _decode_inner(data: Datagram, cluster_id: int) -> Mcast:
    """The old-ring mcast inside an encapsulated one: a whole datagram that must be an mcast."""
    n = len(data)
    if n < HEADER_SIZE:
        raise DecodeError(DropReason.TRUNCATED, f"inner datagram: {n} bytes")
    magic, version, mtype, cid, _sender = _HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION or cid != cluster_id:
        raise _header_error(magic, version, cid, cluster_id)
    if mtype != _T_MCAST:
        raise DecodeError(DropReason.BAD_ENCAPSULATION, f"inner type byte {mtype}")
    if n < MCAST_HEADER_SIZE:
        raise _truncated(n, MCAST_HEADER_SIZE, "inner mcast")
    return _decode_mcast(data, cluster_id, True)


def _decode_short_mcast(data: Datagram, n: int, sender: int, cluster_id: int) -> Mcast:
    """Reached only for an mcast shorter than its fixed part (longer ones take the fast path)."""
    raise _truncated(n, MCAST_HEADER_SIZE, "mcast")


def _decode_token(data: Datagram, n: int, sender: int, cluster_id: int) -> OrfToken:
    if n < _TOKEN_END:
        raise _truncated(n, _TOKEN_END, "token")
    (rep, rseq, token_seq, seq, aru, aru_addr, backlog, fcc, retrans, count) = (
        _TOKEN_BODY.unpack_from(data, HEADER_SIZE)
    )
    if count > MAX_RTR:
        raise DecodeError(DropReason.TOO_MANY_RTR, f"{count} rtr entries, limit {MAX_RTR}")
    _check_length(n, _TOKEN_END + count * _RTR.size, f"token with {count} rtr entries")
    if not rep:
        raise DecodeError(DropReason.ZERO_NODEID, "token ring rep is 0")
    if retrans > 1:
        raise DecodeError(DropReason.BAD_FLAG, f"token retrans_flg byte {retrans}")
    if (rseq | token_seq | seq | aru) >= SEQ_LIMIT:
        raise _out_of_range("token", ring_seq=rseq, token_seq=token_seq, seq=seq, aru=aru)
    ring = _ring(rseq, rep)
    rtr: list[RtrEntry] = []
    if count:
        for erep, eseq, mseq in _RTR.iter_unpack(data[_TOKEN_END:]):
            if (eseq | mseq) >= SEQ_LIMIT:
                raise _out_of_range("rtr entry", ring_seq=eseq, seq=mseq)
            if erep == rep and eseq == rseq:
                rtr.append(RtrEntry(ring, mseq))
            elif erep:
                rtr.append(RtrEntry(_ring(eseq, erep), mseq))
            else:
                raise DecodeError(DropReason.ZERO_NODEID, "rtr entry ring rep is 0")
    return OrfToken(sender, ring, token_seq, seq, aru, aru_addr, backlog, fcc, retrans == 1, rtr)


def _decode_join(data: Datagram, n: int, sender: int, cluster_id: int) -> Join:
    if n < _JOIN_END:
        raise _truncated(n, _JOIN_END, "join")
    flags, ring_seq, procs, failed = _JOIN_BODY.unpack_from(data, HEADER_SIZE)
    if procs > MAX_PROCESSORS or failed > MAX_PROCESSORS:
        raise DecodeError(
            DropReason.LIST_TOO_LONG, f"join lists {procs}+{failed}, limit {MAX_PROCESSORS} each"
        )
    total = procs + failed
    _check_length(n, _JOIN_END + 4 * total, f"join with {procs}+{failed} ids")
    if flags & ~_JOIN_LEAVE:
        raise DecodeError(DropReason.BAD_FLAG, f"join flags {flags:#04x}")
    if ring_seq >= SEQ_LIMIT:
        raise _out_of_range("join", ring_seq=ring_seq)
    ids = struct.unpack_from(f"!{total}I", data, _JOIN_END)
    if 0 in ids:
        raise DecodeError(DropReason.ZERO_NODEID, "join list names node 0")
    return Join(sender, ring_seq, ids[:procs], ids[procs:], bool(flags))


def _decode_ring_only(data: Datagram, n: int, what: str) -> RingId:
    _check_length(n, _RING_END, what)
    rep, rseq = _RING_BODY.unpack_from(data, HEADER_SIZE)
    if not rep:
        raise DecodeError(DropReason.ZERO_NODEID, f"{what} ring rep is 0")
    if rseq >= SEQ_LIMIT:
        raise _out_of_range(what, ring_seq=rseq)
    return RingId(rseq, rep)


def _decode_merge_detect(data: Datagram, n: int, sender: int, cluster_id: int) -> MergeDetect:
    return MergeDetect(sender, _decode_ring_only(data, n, "merge detect"))


def _decode_hold_cancel(data: Datagram, n: int, sender: int, cluster_id: int) -> TokenHoldCancel:
    return TokenHoldCancel(sender, _decode_ring_only(data, n, "token hold cancel"))


def _decode_commit(data: Datagram, n: int, sender: int, cluster_id: int) -> CommitToken:
    if n < _COMMIT_END:
        raise _truncated(n, _COMMIT_END, "commit token")
    rep, rseq, token_seq, memb_index, count = _COMMIT_BODY.unpack_from(data, HEADER_SIZE)
    if count > MAX_PROCESSORS:
        raise DecodeError(
            DropReason.LIST_TOO_LONG, f"commit token with {count} members, limit {MAX_PROCESSORS}"
        )
    if count == 0 or memb_index > count:
        raise DecodeError(DropReason.BAD_COUNT, f"memb_index {memb_index} of {count} members")
    _check_length(n, _COMMIT_END + count * _MEMBER_SIZE, f"commit token with {count} members")
    if not rep:
        raise DecodeError(DropReason.ZERO_NODEID, "commit token ring rep is 0")
    if (rseq | token_seq) >= SEQ_LIMIT:
        raise _out_of_range("commit token", ring_seq=rseq, token_seq=token_seq)
    addrs = struct.unpack_from(f"!{count}I", data, _COMMIT_END)
    if addrs[0] == 0:  # strictly ascending below, so only the first can be 0
        raise DecodeError(DropReason.ZERO_NODEID, "commit token member 0")
    for a, b in itertools.pairwise(addrs):
        if a >= b:
            raise DecodeError(DropReason.UNSORTED_MEMBERS, f"member {b} after {a}")
    entries: list[CommitEntry | None] = []
    offset = _COMMIT_END + 4 * count
    for _ in range(count):
        present, erep, eseq, aru, high, received = _ENTRY.unpack_from(data, offset)
        offset += _ENTRY.size
        if present == 1:
            if not erep:
                raise DecodeError(DropReason.ZERO_NODEID, "commit entry old ring rep is 0")
            if received > 1:
                raise DecodeError(DropReason.BAD_FLAG, f"received_flg byte {received}")
            if (eseq | aru | high) >= SEQ_LIMIT:
                raise _out_of_range("commit entry", ring_seq=eseq, aru=aru, high=high)
            entries.append(CommitEntry(RingId(eseq, erep), aru, high, received == 1))
        elif present == 0:
            if erep or eseq or aru or high or received:
                raise DecodeError(DropReason.DIRTY_ABSENT_ENTRY, "absent entry with data")
            entries.append(None)
        else:
            raise DecodeError(DropReason.BAD_FLAG, f"entry present byte {present}")
    return CommitToken(sender, RingId(rseq, rep), token_seq, memb_index, addrs, entries)


_BodyDecoder = Callable[[Datagram, int, int, int], Message]
_BODY_DECODERS: Final[dict[int, _BodyDecoder]] = {
    MessageType.ORF_TOKEN: _decode_token,
    MessageType.MCAST: _decode_short_mcast,
    MessageType.MERGE_DETECT: _decode_merge_detect,
    MessageType.JOIN: _decode_join,
    MessageType.COMMIT_TOKEN: _decode_commit,
    MessageType.TOKEN_HOLD_CANCEL: _decode_hold_cancel,
}

# --------------------------------------------------------------------------------- encoding


def encode(msg: Message, cluster_id: int) -> bytes:
    """Encode one message; ValueError if the decoder would drop it (fix the sender instead)."""
    encoder = _ENCODERS.get(type(msg))
    if encoder is None:
        raise TypeError(f"not a totem message: {type(msg).__name__}")
    try:
        return encoder(msg, cluster_id)
    except struct.error as exc:  # an integer outside its field's range
        raise ValueError(f"{type(msg).__name__} field out of range: {exc}") from exc


def encode_mcast(  # noqa: PLR0917 (positional on purpose: hot path, mirrors the wire order)
    sender: int,
    ring_id: RingId,
    seq: int,
    system_from: int,
    guarantee: int,
    payload: bytes,
    cluster_id: int,
) -> bytes:
    """Encode a plain mcast straight from its fields (the per-message hot path)."""
    return _mcast_head(sender, ring_id, seq, system_from, guarantee, 0, cluster_id) + payload


def _mcast_head(  # noqa: PLR0917
    sender: int,
    ring_id: RingId,
    seq: int,
    system_from: int,
    guarantee: int,
    encapsulated: int,
    cluster_id: int,
) -> bytes:
    if not (sender and system_from and ring_id.rep):
        raise ValueError(f"mcast names node 0: sender {sender}, from {system_from}, {ring_id}")
    if guarantee not in _GUARANTEES:
        raise ValueError(f"mcast guarantee {guarantee} is not AGREED or SAFE")
    try:
        return _MCAST.pack(
            MAGIC, VERSION, _T_MCAST, cluster_id, sender, ring_id.rep, ring_id.seq, seq,
            system_from, guarantee, encapsulated,
        )  # fmt: skip
    except struct.error as exc:
        raise ValueError(f"mcast field out of range: {exc}") from exc


def _encode_mcast(msg: Mcast, cluster_id: int) -> bytes:
    inner = msg.inner
    if inner is None:
        return encode_mcast(
            msg.sender, msg.ring_id, msg.seq, msg.system_from, msg.guarantee, msg.payload,
            cluster_id,
        )  # fmt: skip
    if msg.payload:
        raise ValueError("an encapsulated mcast carries no payload of its own")
    if inner.inner is not None:
        raise ValueError("the inner mcast of an encapsulation must be plain")
    head = _mcast_head(
        msg.sender, msg.ring_id, msg.seq, msg.system_from, msg.guarantee, 1, cluster_id
    )
    return head + _encode_mcast(inner, cluster_id)


def _is_flag(value: object) -> bool:
    """A bool (or 0/1): anything else would not survive the decoder's strict flag check."""
    return value in (0, 1)


def _encode_token(msg: OrfToken, cluster_id: int) -> bytes:
    ring = msg.ring_id
    rtr = msg.rtr_list
    if not (msg.sender and ring.rep):
        raise ValueError(f"token names node 0: sender {msg.sender}, ring {ring}")
    if not _is_flag(msg.retrans_flg):
        raise ValueError(f"retrans_flg must be a bool, got {msg.retrans_flg!r}")
    if len(rtr) > MAX_RTR:
        raise ValueError(f"{len(rtr)} rtr entries, limit {MAX_RTR}")
    head = _TOKEN.pack(
        MAGIC, VERSION, _T_TOKEN, cluster_id, msg.sender, ring.rep, ring.seq, msg.token_seq,
        msg.seq, msg.aru, msg.aru_addr, msg.backlog, msg.fcc, 1 if msg.retrans_flg else 0,
        len(rtr),
    )  # fmt: skip
    if not rtr:
        return head
    parts = [head]
    pack = _RTR.pack
    for entry in rtr:
        rid = entry.ring_id
        if not rid.rep:
            raise ValueError(f"rtr entry ring rep is 0: {entry}")
        parts.append(pack(rid.rep, rid.seq, entry.seq))
    return b"".join(parts)


def _check_ids(ids: tuple[int, ...], what: str) -> None:
    if len(ids) > MAX_PROCESSORS:
        raise ValueError(f"{what}: {len(ids)} ids, limit {MAX_PROCESSORS}")
    if 0 in ids:
        raise ValueError(f"{what} names node 0")


def _encode_join(msg: Join, cluster_id: int) -> bytes:
    if not msg.sender:
        raise ValueError("join sender is 0")
    _check_ids(msg.proc_list, "join proc_list")
    _check_ids(msg.failed_list, "join failed_list")
    if not _is_flag(msg.leave):
        raise ValueError(f"join leave must be a bool, got {msg.leave!r}")
    procs, failed = len(msg.proc_list), len(msg.failed_list)
    head = _JOIN.pack(
        MAGIC, VERSION, MessageType.JOIN, cluster_id, msg.sender,
        _JOIN_LEAVE if msg.leave else 0, msg.ring_seq, procs, failed,
    )  # fmt: skip
    return head + struct.pack(f"!{procs + failed}I", *msg.proc_list, *msg.failed_list)


def _encode_ring_only(mtype: MessageType, sender: int, ring: RingId, cluster_id: int) -> bytes:
    if not (sender and ring.rep):
        raise ValueError(f"{mtype.name} names node 0: sender {sender}, ring {ring}")
    return _RING_ONLY.pack(MAGIC, VERSION, mtype, cluster_id, sender, ring.rep, ring.seq)


def _encode_merge_detect(msg: MergeDetect, cluster_id: int) -> bytes:
    return _encode_ring_only(MessageType.MERGE_DETECT, msg.sender, msg.ring_id, cluster_id)


def _encode_hold_cancel(msg: TokenHoldCancel, cluster_id: int) -> bytes:
    return _encode_ring_only(MessageType.TOKEN_HOLD_CANCEL, msg.sender, msg.ring_id, cluster_id)


def _encode_commit(msg: CommitToken, cluster_id: int) -> bytes:
    ring, addrs, entries = msg.ring_id, msg.addrs, msg.entries
    count = len(addrs)
    if not (msg.sender and ring.rep):
        raise ValueError(f"commit token names node 0: sender {msg.sender}, ring {ring}")
    if not 0 < count <= MAX_PROCESSORS:
        raise ValueError(f"commit token with {count} members, limit {MAX_PROCESSORS}")
    if len(entries) != count:
        raise ValueError(f"commit token with {len(entries)} entries for {count} members")
    if not 0 <= msg.memb_index <= count:
        raise ValueError(f"commit token memb_index {msg.memb_index} of {count} members")
    if addrs[0] <= 0 or not all(a < b for a, b in itertools.pairwise(addrs)):
        raise ValueError(f"commit token members must be nonzero, strictly ascending: {addrs}")
    parts = [
        _COMMIT.pack(
            MAGIC, VERSION, MessageType.COMMIT_TOKEN, cluster_id, msg.sender, ring.rep,
            ring.seq, msg.token_seq, msg.memb_index, count,
        ),
        struct.pack(f"!{count}I", *addrs),
    ]  # fmt: skip
    for entry in entries:
        if entry is None:
            parts.append(_ABSENT_ENTRY)
            continue
        old = entry.old_ring_id
        if not old.rep:
            raise ValueError(f"commit entry old ring rep is 0: {entry}")
        if not _is_flag(entry.received_flg):
            raise ValueError(f"received_flg must be a bool, got {entry.received_flg!r}")
        parts.append(
            _ENTRY.pack(
                1, old.rep, old.seq, entry.aru, entry.high_delivered,
                1 if entry.received_flg else 0,
            )
        )  # fmt: skip
    return b"".join(parts)


_ENCODERS: Final[dict[type, Callable[[Any, int], bytes]]] = {
    OrfToken: _encode_token,
    Mcast: _encode_mcast,
    Join: _encode_join,
    MergeDetect: _encode_merge_detect,
    TokenHoldCancel: _encode_hold_cancel,
    CommitToken: _encode_commit,
}
