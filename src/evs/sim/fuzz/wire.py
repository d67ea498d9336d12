"""Raw datagram bytes for the fuzzer: the layouts of docs/wire.md, packed and read by hand.

Theory of operation. The fuzzer must be able to send what a peer can send, including the
values the codec's encoder refuses by design (a u64 at its maximum, a count that lies, an
entry list one short). So nothing here goes through ``evs.totem.codec``'s encoder: the
``pack_*`` functions are straight ``struct`` packing of any integers, each masked to its
field's width, and the readers (``fields_of``, ``kind_of``, ``join_lists``, ``commit_parts``
and friends) look at a datagram by offsets alone, trusting its counts only as far as its
bytes go. ``fields_of`` is the map the byte-level mutations work from: every integer field
of a datagram with its name, offset and width. ``group_packet`` builds a group-layer payload
(``evs.totem.groups``'s format) whose length table may lie. Nothing in this module reads a
processor or draws a random number.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from evs.totem.messages import MessageType

__all__ = [
    "ABSENT",
    "COMMIT",
    "GROUP_HEAD_SIZE",
    "HDR_SIZE",
    "JOIN",
    "KINDS",
    "MCAST_SIZE",
    "RTR",
    "TOKEN",
    "T_CANCEL",
    "T_COMMIT",
    "T_JOIN",
    "T_MCAST",
    "T_MERGE",
    "T_TOKEN",
    "Entry",
    "Field",
    "commit_parts",
    "fields_of",
    "fit",
    "group_items",
    "group_packet",
    "join_lists",
    "kind_of",
    "pack_commit",
    "pack_join",
    "pack_mcast",
    "pack_ring_only",
    "pack_rtr",
    "pack_token",
    "payload_at",
    "put_ring",
    "sender_of",
    "token_rtr",
    "u32",
    "u64",
]

#: Base datagram kinds (``kind_of``): "encap" is an mcast that carries an old-ring mcast.
KINDS = ("token", "mcast", "encap", "join", "commit", "merge", "cancel")

T_TOKEN = int(MessageType.ORF_TOKEN)
T_MCAST = int(MessageType.MCAST)
T_MERGE = int(MessageType.MERGE_DETECT)
T_JOIN = int(MessageType.JOIN)
T_COMMIT = int(MessageType.COMMIT_TOKEN)
T_CANCEL = int(MessageType.TOKEN_HOLD_CANCEL)

# Layouts of docs/wire.md, header included (big-endian, no padding).
_MAGIC = 0xE7A5
_HDR = struct.Struct("!HBBII")
TOKEN = struct.Struct("!HBBII" + "IQQQQIIIBH")
RTR = struct.Struct("!IQQ")
_MCAST = struct.Struct("!HBBII" + "IQQIBB")
JOIN = struct.Struct("!HBBII" + "BQHH")
_RING = struct.Struct("!HBBII" + "IQ")
COMMIT = struct.Struct("!HBBII" + "IQQHH")
_ENTRY = struct.Struct("!BIQQQB")
_GROUP_HEAD = struct.Struct("!BBHBB")
HDR_SIZE = _HDR.size  # 12
MCAST_SIZE = _MCAST.size  # 38
GROUP_HEAD_SIZE = _GROUP_HEAD.size  # 6
_ES = _ENTRY.size  # 30

#: A commit entry as raw fields: present, old ring rep, old ring seq, aru, high, received.
Entry = tuple[int, int, int, int, int, int]
ABSENT: Entry = (0, 0, 0, 0, 0, 0)
#: A field of a datagram: name, byte offset, byte width.
Field = tuple[str, int, int]


def fit(value: int, width: int) -> int:
    """``value`` as the unsigned integer of ``width`` bytes it becomes on the wire."""
    return value & ((1 << (8 * width)) - 1)


def u32(value: int) -> int:
    return value & 0xFFFFFFFF


def u64(value: int) -> int:
    return value & 0xFFFFFFFFFFFFFFFF


# ------------------------------------------------------------------------------ raw packing
# Straight struct packing of any values (masked to their fields): never the codec's encoder.


def _pack(layout: struct.Struct, mtype: int, cid: int, sender: int, *fields: int) -> bytes:
    """The header (magic, version, type, cluster id, sender) and then ``fields``."""
    return layout.pack(_MAGIC, 1, mtype, cid, u32(sender), *fields)


def _ring(ring: tuple[int, int]) -> tuple[int, int]:
    """A ring id's two fields, (rep, seq), masked to their widths."""
    return u32(ring[0]), u64(ring[1])


def pack_token(  # noqa: PLR0917 (mirrors the wire order)
    cid: int,
    sender: int,
    ring: tuple[int, int],
    token_seq: int,
    seq: int,
    aru: int,
    aru_addr: int,
    backlog: int,
    fcc: int,
    retrans: int,
    rtr: Sequence[tuple[int, int, int]],
) -> bytes:
    """An ORF token; ``ring`` and rtr rings are (rep, seq)."""
    marks = u64(token_seq), u64(seq), u64(aru), u32(aru_addr), u32(backlog), u32(fcc)
    tail = retrans & 0xFF, len(rtr) & 0xFFFF
    return _pack(TOKEN, T_TOKEN, cid, sender, *_ring(ring), *marks, *tail) + pack_rtr(rtr)


def pack_rtr(rtr: Sequence[tuple[int, int, int]]) -> bytes:
    """A token's retransmission entries: (ring rep, ring seq, message seq) each."""
    return b"".join(RTR.pack(*_ring((r, s)), u64(m)) for r, s, m in rtr)


def pack_mcast(  # noqa: PLR0917
    cid: int,
    sender: int,
    ring: tuple[int, int],
    seq: int,
    frm: int,
    guarantee: int,
    encap: int,
    body: bytes,
) -> bytes:
    """An mcast; ``body`` is the payload, or the inner datagram when ``encap`` is 1."""
    fields = u64(seq), u32(frm), guarantee & 0xFF, encap & 0xFF
    return _pack(_MCAST, T_MCAST, cid, sender, *_ring(ring), *fields) + body


def pack_join(  # noqa: PLR0917
    cid: int, sender: int, flags: int, ring_seq: int, procs: Sequence[int], failed: Sequence[int]
) -> bytes:
    counts = len(procs) & 0xFFFF, len(failed) & 0xFFFF
    head = _pack(JOIN, T_JOIN, cid, sender, flags & 0xFF, u64(ring_seq), *counts)
    ids = [u32(i) for i in (*procs, *failed)]
    return head + struct.pack(f"!{len(ids)}I", *ids)


def pack_commit(  # noqa: PLR0917
    cid: int,
    sender: int,
    ring: tuple[int, int],
    token_seq: int,
    memb_index: int,
    addrs: Sequence[int],
    entries: Sequence[Entry],
) -> bytes:
    """A commit token; ``entries`` are raw (present, rep, seq, aru, high, received) tuples."""
    fields = u64(token_seq), memb_index & 0xFFFF, len(addrs) & 0xFFFF
    head = _pack(COMMIT, T_COMMIT, cid, sender, *_ring(ring), *fields)
    parts = [head, struct.pack(f"!{len(addrs)}I", *map(u32, addrs))]
    for pr, rep, rseq, aru, high, rcv in entries:
        marks = u64(aru), u64(high)
        parts.append(_ENTRY.pack(pr & 0xFF, *_ring((rep, rseq)), *marks, rcv & 0xFF))
    return b"".join(parts)


def put_ring(buf: bytearray, off: int, ring: tuple[int, int]) -> None:
    """Overwrite the ring id (rep, seq) at ``off`` in place."""
    struct.pack_into("!IQ", buf, off, *_ring(ring))


def pack_ring_only(mtype: int, cid: int, sender: int, ring: tuple[int, int]) -> bytes:
    """A MERGE_DETECT or TOKEN_HOLD_CANCEL."""
    return _pack(_RING, mtype, cid, sender, *_ring(ring))


def group_packet(
    items: Sequence[bytes],
    *,
    continues: int = 0,
    fragmented: int = 0,
    version: int = 1,
    flags: int = 0,
    lengths: Sequence[int] | None = None,
) -> bytes:
    """A group-layer packet (groups.py's format), its length table possibly lying."""
    table = list(lengths) if lengths is not None else [len(i) for i in items]
    head = _GROUP_HEAD.pack(
        version & 0xFF, flags & 0xFF, len(table) & 0xFFFF, continues & 0xFF, fragmented & 0xFF
    )
    return head + struct.pack(f"!{len(table)}H", *(n & 0xFFFF for n in table)) + b"".join(items)


# ------------------------------------------------------------------------------ reading


def kind_of(data: bytes | bytearray) -> str:
    """The base kind of a datagram by its type byte (no decoding)."""
    t = data[3] if len(data) > 3 else -1
    if t == T_MCAST:
        return "encap" if len(data) > MCAST_SIZE - 1 and data[37] == 1 else "mcast"
    return {
        T_TOKEN: "token",
        T_JOIN: "join",
        T_COMMIT: "commit",
        T_MERGE: "merge",
        T_CANCEL: "cancel",
    }.get(t, "other")


def sender_of(buf: bytearray | bytes) -> int:
    """The header's sender field."""
    sender: int = struct.unpack_from("!I", buf, 8)[0]
    return sender


def group_items(payload: bytes) -> list[bytes] | None:
    """The items of a well-formed group packet, or None."""
    if len(payload) < _GROUP_HEAD.size:
        return None
    count = struct.unpack_from("!H", payload, 2)[0]
    at = _GROUP_HEAD.size + 2 * count
    if not count or at > len(payload):
        return None
    lengths = struct.unpack_from(f"!{count}H", payload, _GROUP_HEAD.size)
    if sum(lengths) != len(payload) - at:
        return None
    items = []
    for n in lengths:
        items.append(payload[at : at + n])
        at += n
    return items


def payload_at(buf: bytearray | bytes) -> int | None:
    """Where the group payload starts in a plain or encapsulated mcast, or None."""
    if len(buf) < MCAST_SIZE or buf[3] != T_MCAST:
        return None
    if buf[37] == 1:
        return 2 * MCAST_SIZE if len(buf) >= 2 * MCAST_SIZE else None
    return MCAST_SIZE


def token_rtr(buf: bytearray | bytes) -> list[tuple[int, int, int]]:
    body = bytes(buf[TOKEN.size :])
    body = body[: len(body) - len(body) % RTR.size]
    return [(rep, seq, mseq) for rep, seq, mseq in RTR.iter_unpack(body)]


def join_lists(buf: bytearray | bytes) -> tuple[list[int], list[int]]:
    """The JOIN's lists as far as its bytes go (counts trusted only where the bytes exist)."""
    np_, nf = struct.unpack_from("!HH", buf, 21)
    ids = list(struct.unpack_from(f"!{(len(buf) - JOIN.size) // 4}I", buf, JOIN.size))
    np_ = min(np_, len(ids))
    return ids[:np_], ids[np_ : np_ + nf]


def commit_parts(
    buf: bytearray | bytes,
) -> tuple[tuple[int, int], int, list[int], list[Entry]] | None:
    """Ring, token_seq, addrs and raw entries of a well-sized commit token, or None."""
    if len(buf) < COMMIT.size or buf[3] != T_COMMIT:
        return None
    rep, rseq, token_seq, _idx, count = struct.unpack_from("!IQQHH", buf, HDR_SIZE)
    if not count or len(buf) != COMMIT.size + count * (4 + _ES):
        return None
    addrs = list(struct.unpack_from(f"!{count}I", buf, COMMIT.size))
    at = COMMIT.size + 4 * count
    entries: list[Entry] = [_ENTRY.unpack_from(buf, at + i * _ES) for i in range(count)]
    return (rep, rseq), token_seq, addrs, entries


#: The fields after the header of a token, a commit token (and, the ring alone, of a
#: MERGE_DETECT or TOKEN_HOLD_CANCEL).
_RING_TOKEN_SEQ: list[Field] = [("ring.rep", 12, 4), ("ring.seq", 16, 8), ("token_seq", 24, 8)]


def fields_of(buf: bytearray | bytes) -> list[Field]:
    """Every integer field of a datagram with its offset and width (docs/wire.md)."""
    n = len(buf)
    if n < HDR_SIZE:
        return []
    out: list[Field] = [("sender", 8, 4)]
    t = buf[3]
    if t == T_MCAST and n >= MCAST_SIZE:
        out += _mcast_fields("", 0)
        if buf[37] == 1 and n >= 2 * MCAST_SIZE:
            out += [("inner.sender", MCAST_SIZE + 8, 4), *_mcast_fields("inner.", MCAST_SIZE)]
    elif t == T_TOKEN and n >= TOKEN.size:
        out += [
            *_RING_TOKEN_SEQ,
            ("seq", 32, 8),
            ("aru", 40, 8),
            ("aru_addr", 48, 4),
            ("backlog", 52, 4),
            ("fcc", 56, 4),
            ("retrans_flg", 60, 1),
            ("rtr_count", 61, 2),
        ]
        for i in range(min((n - TOKEN.size) // RTR.size, 40)):
            at = TOKEN.size + i * RTR.size
            out += [("rtr.rep", at, 4), ("rtr.seq", at + 4, 8), ("rtr.mseq", at + 12, 8)]
    elif t == T_JOIN and n >= JOIN.size:
        counts: list[Field] = [("proc_count", 21, 2), ("failed_count", 23, 2)]
        out += [("flags", 12, 1), ("ring_seq", 13, 8), *counts]
        out += [("list.id", JOIN.size + 4 * i, 4) for i in range(min((n - JOIN.size) // 4, 800))]
    elif t in (T_MERGE, T_CANCEL) and n >= _RING.size:
        out += _RING_TOKEN_SEQ[:2]
    elif t == T_COMMIT and n >= COMMIT.size:
        out += [*_RING_TOKEN_SEQ, ("memb_index", 32, 2), ("count", 34, 2)]
        count = struct.unpack_from("!H", buf, 34)[0]
        if count and n == COMMIT.size + count * (4 + _ES):
            out += [("member.addr", COMMIT.size + 4 * i, 4) for i in range(count)]
            for i in range(count):
                at = COMMIT.size + 4 * count + i * _ES
                out += [
                    ("entry.present", at, 1),
                    ("entry.rep", at + 1, 4),
                    ("entry.seq", at + 5, 8),
                    ("entry.aru", at + 13, 8),
                    ("entry.high", at + 21, 8),
                    ("entry.received", at + 29, 1),
                ]
    return out


def _mcast_fields(prefix: str, at: int) -> list[Field]:
    return [
        (prefix + "ring.rep", at + 12, 4),
        (prefix + "ring.seq", at + 16, 8),
        (prefix + "seq", at + 24, 8),
        (prefix + "system_from", at + 32, 4),
        (prefix + "guarantee", at + 36, 1),
        (prefix + "encapsulated", at + 37, 1),
    ]
