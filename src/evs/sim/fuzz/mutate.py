"""The ten mutations: one datagram broken at the byte level, near what its target holds.

Theory of operation. A mutation works on the bytes with the offsets of docs/wire.md
(``wire.fields_of``), never through the codec's encoder, which refuses out-of-range values
by design: those are exactly what a peer can send. Most mutations keep the datagram
decodable on purpose (a count changed with the datagram re-sized to match, an entry removed
with its count fixed, a ring id set to a neighbour of the target's), so that the processor,
not the codec, has to deal with the value; a few are raw (a cut anywhere, trailing bytes, a
count that lies). The numbers put in are chosen near the target's own (``Aim``): its marks,
rings, members and strangers, plus the extremes of each field width. ``apply`` returns None
when a mutation does not fit the datagram (say, ``groups`` on a JOIN), and the forge draws
another. Every draw comes from ``aim.rng`` in a fixed order, so a round replays exactly.

| kind | what it does |
|---|---|
| int_extreme | an integer field set to 0, 1, 2^k +- 1, the field's maximum, or random |
| int_relative | an integer field set to a number the target cares about, plus -2 to +16 |
| count | a count changed, the datagram re-sized to match (now and then a lying count) |
| truncate | an mcast payload, rtr entries, JOIN ids or a commit member cut; or a raw cut |
| extend | bytes, entries, ids or a commit member added; or raw trailing bytes |
| ring | a ring id set to one near the target's (or every commit entry's at once) |
| node | a node id set to the target, a member, a stranger, 1, 2^32 - 1 or 0 |
| flip | one bit of one value field flipped |
| groups | the group-layer payload rebuilt hostile (``payloads.hostile_groups``) |
| encap | a plain mcast wrapped for the old ring, an inner seq pushed, unwrapped or nested |
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable, Sequence

from evs.sim.fuzz.aim import Aim
from evs.sim.fuzz.probe import Ring, Target
from evs.sim.fuzz.wire import (
    ABSENT,
    COMMIT,
    GROUP_HEAD_SIZE,
    HDR_SIZE,
    JOIN,
    MCAST_SIZE,
    TOKEN,
    Entry,
    commit_parts,
    fields_of,
    fit,
    group_items,
    group_packet,
    join_lists,
    kind_of,
    pack_commit,
    pack_join,
    pack_mcast,
    pack_rtr,
    payload_at,
    put_ring,
    sender_of,
    token_rtr,
    u32,
    u64,
)
from evs.totem.codec import MAX_PROCESSORS, MAX_RTR

__all__ = ["MUTATIONS", "apply"]

#: The mutation kinds; "none" delivers the fresh datagram unchanged.
MUTATIONS = (
    "none",
    "int_extreme",
    "int_relative",
    "count",
    "truncate",
    "extend",
    "ring",
    "node",
    "flip",
    "groups",
    "encap",
)

_EDGE_VALUES = sorted(
    {0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 127, 128, 255, 256}
    | {(1 << k) + d for k in (15, 16, 31, 32, 53, 60, 61, 62, 63, 64) for d in (-2, -1, 0, 1)}
)
_EXTREMES = {w: [v for v in _EDGE_VALUES if v < 1 << (8 * w)] for w in (1, 2, 4, 8)}
#: Fields whose value is structure, not data: flips and integer mutations leave them to
#: the count mutation (and the occasional deliberate lie).
_STRUCTURAL = {"rtr_count", "proc_count", "failed_count", "count", "encapsulated"}


def apply(aim: Aim, t: Target, buf: bytearray, kind: str) -> bytearray | None:
    """Apply one mutation of ``kind``; None when it does not apply to this datagram."""
    if kind in ("int_extreme", "int_relative", "node", "flip"):
        return _field(aim, t, buf, kind)
    mutation = _BY_KIND.get(kind)
    if mutation is None:
        raise ValueError(f"unknown mutation {kind!r}")
    return mutation(aim, t, buf)


# ------------------------------------------------------------------------------ re-packing
# A datagram rebuilt from its own header with new lists: the counts match the entries.


def _with_rtr(buf: bytearray, rtr: Sequence[tuple[int, int, int]], count: int) -> bytearray:
    """The token of ``buf`` with ``rtr`` as its entries and ``count`` in its rtr_count."""
    out = bytearray(buf[: TOKEN.size])
    struct.pack_into("!H", out, 61, count)
    return out + pack_rtr(rtr)


def _rejoin(aim: Aim, buf: bytearray, procs: Sequence[int], failed: Sequence[int]) -> bytearray:
    """The JOIN of ``buf`` with new proc and failed lists."""
    flags, ring_seq = buf[12], struct.unpack_from("!Q", buf, 13)[0]
    return bytearray(pack_join(aim.cid, sender_of(buf), flags, ring_seq, procs, failed))


def _recommit(  # noqa: PLR0917
    aim: Aim,
    buf: bytearray,
    ring: Ring,
    token_seq: int,
    idx: int,
    addrs: Sequence[int],
    entries: Sequence[Entry],
) -> bytearray:
    """The commit token of ``buf`` (its sender) with new members and entries."""
    return bytearray(pack_commit(aim.cid, sender_of(buf), ring, token_seq, idx, addrs, entries))


# ------------------------------------------------------------------------------ one field


def _is_node_field(name: str) -> bool:
    return name.endswith(("sender", "rep", "system_from", "aru_addr", "id", "addr"))


def _is_flag_field(name: str) -> bool:
    return name.endswith(
        ("retrans_flg", "guarantee", "encapsulated", "flags", "present", "received")
    )


def _field(aim: Aim, t: Target, buf: bytearray, kind: str) -> bytearray | None:
    """int_extreme, int_relative, node and flip: one integer field of the datagram."""
    rng = aim.rng
    fields = fields_of(buf)
    if kind == "node":
        fields = [f for f in fields if _is_node_field(f[0])]
    else:
        fields = [f for f in fields if f[0] not in _STRUCTURAL or rng.random() < 0.05]
    if kind == "flip":
        fields = [f for f in fields if f[2] > 1 or not _is_flag_field(f[0])]
    if not fields:
        return None
    fixed = [f for f in fields if "." not in f[0] or f[0].startswith("ring.")]
    pick = fixed if fixed and rng.random() < 0.6 else fields
    _name, off, width = rng.choice(pick)
    old = int.from_bytes(buf[off : off + width], "big")
    if kind == "int_extreme":
        r = rng.random()
        if r < 0.3:  # the top of the field: where +1 overflows
            value = (1 << (8 * width)) - rng.choice((1, 1, 2, 1 << (8 * width - 1)))
        elif r < 0.9:
            value = rng.choice(_EXTREMES[width])
        else:
            value = rng.getrandbits(8 * width)
    elif kind == "int_relative":
        value = aim.relative(t) if rng.random() < 0.8 else old + rng.choice((-1, 1))
    elif kind == "node":
        # Another id than the field holds: rewriting the same id wastes the datagram, and
        # on a small ring the member (or our own id) often is the id already there.
        ids = (
            t.nodeid,
            aim.member(t),
            aim.stranger(t),
            1,
            0xFFFFFFFF,
            old + 1,
            max(0, old - 1),
            0,
        )
        value = rng.choice([v for v in ids if fit(v, width) != old])
    else:
        bit = rng.randrange(8 * width)
        value = old ^ (1 << bit)
    buf[off : off + width] = fit(value, width).to_bytes(width, "big")
    return buf


# ------------------------------------------------------------------------------ sizes


def _count(aim: Aim, t: Target, buf: bytearray) -> bytearray | None:
    rng = aim.rng
    kind = kind_of(buf)
    if kind == "token" and len(buf) >= TOKEN.size:
        have = token_rtr(buf)
        n = rng.choice((0, 1, 2, 3, MAX_RTR - 1, MAX_RTR, MAX_RTR + 1, rng.randint(0, MAX_RTR)))
        while len(have) < n:
            seq = rng.choice(
                (
                    t.my_aru + 1,
                    t.last_released + 1,
                    t.my_high_seq_received,
                    aim.relative(t),
                    rng.choice(_EXTREMES[8]),
                )
            )
            r = t.ring if rng.random() < 0.8 else rng.choice(aim.rings(t))
            have.append((r[0], r[1], seq))
        have = have[:n]
        return _with_rtr(buf, have, len(have) if rng.random() < 0.93 else rng.randint(0, 40))
    if kind == "join" and len(buf) >= JOIN.size:
        procs, failed = join_lists(buf)
        pool = [*t.memb_list, *sorted(t.proc), t.nodeid, aim.stranger(t)]
        np_ = rng.choice(
            (
                0,
                1,
                2,
                len(procs) + 1,
                max(0, len(procs) - 1),
                MAX_PROCESSORS,
                MAX_PROCESSORS + 1,
                rng.randint(0, 40),
            )
        )
        nf = rng.choice((0, 0, 1, 2, len(failed) + 1, rng.randint(0, 10)))
        if np_ > len(procs):
            procs += [
                rng.choice(pool) if rng.random() < 0.5 else 5000 + i
                for i in range(np_ - len(procs))
            ]
        procs = procs[:np_]
        source = procs or pool
        if nf > len(failed):
            failed += [rng.choice(source) for _ in range(nf - len(failed))]
        return _rejoin(aim, buf, procs, failed[:nf])
    if kind == "commit" and len(buf) >= COMMIT.size:
        parsed = commit_parts(buf)
        if parsed is None:
            return None
        ring, token_seq, addrs, entries = parsed
        c = rng.choice(
            (
                1,
                2,
                max(1, len(addrs) - 1),
                len(addrs) + 1,
                len(addrs) + 2,
                MAX_PROCESSORS,
                MAX_PROCESSORS + 1,
                rng.randint(1, 12),
            )
        )
        members = dict(zip(addrs, entries, strict=True))
        members.setdefault(t.nodeid, aim.my_entry(t))
        extra = itertools.count(max(members) + 1)
        while len(members) < c:
            node = aim.stranger(t) if rng.random() < 0.3 else next(extra)
            members.setdefault(node, aim.entry(t) if rng.random() < 0.7 else ABSENT)
        keep = sorted(members)
        if len(keep) > c:
            drop = set(rng.sample([n for n in keep if n != t.nodeid], len(keep) - c))
            keep = [n for n in keep if n not in drop]
        idx = rng.choice(
            (
                len(keep),
                len(keep),
                max(0, len(keep) - 1),
                0,
                keep.index(t.nodeid) if t.nodeid in keep else 0,
                len(keep) + 1,
            )
        )
        return _recommit(aim, buf, ring, token_seq, idx, keep, [members[n] for n in keep])
    if kind in ("mcast", "encap"):
        at = payload_at(buf)
        if at is None:
            return None
        items = group_items(bytes(buf[at:])) or [b"\x01\x01g"]
        n = rng.choice((1, 2, len(items) + 1, max(1, len(items) - 1), 255, 256, rng.randint(1, 40)))
        while len(items) < n:
            items.append(rng.choice((b"\x01", b"\x01\x01gx", bytes([rng.randrange(256)]))))
        head = bytes(buf[at : at + GROUP_HEAD_SIZE]).ljust(GROUP_HEAD_SIZE, b"\x01")
        continues, fragmented = head[4], head[5]
        return bytearray(
            bytes(buf[:at]) + group_packet(items[:n], continues=continues, fragmented=fragmented)
        )
    return None


def _truncate(aim: Aim, t: Target, buf: bytearray) -> bytearray | None:
    rng = aim.rng
    kind = kind_of(buf)
    n = len(buf)
    if n <= 1:
        return None
    smart = rng.random() < 0.85
    if kind in ("mcast", "encap") and smart:
        at = payload_at(buf)
        if at is not None and n > at:
            return buf[: rng.randint(at, n - 1)]
    if smart and kind == "token" and len(buf) > TOKEN.size:
        rtr = token_rtr(buf)
        keep = rng.randint(0, len(rtr) - 1) if rtr else 0
        return _with_rtr(buf, rtr[:keep], keep)
    if smart and kind == "join" and len(buf) > JOIN.size:
        procs, failed = join_lists(buf)
        if failed and rng.random() < 0.5:
            failed = failed[: rng.randint(0, len(failed) - 1)]
        elif procs:
            procs = procs[: rng.randint(0, len(procs) - 1)]
        return _rejoin(aim, buf, procs, failed)
    if smart and kind == "commit":
        parsed = commit_parts(buf)
        if parsed is not None and len(parsed[2]) > 1:
            ring, token_seq, addrs, entries = parsed
            cut = rng.randrange(len(addrs))
            addrs = addrs[:cut] + addrs[cut + 1 :]
            entries = entries[:cut] + entries[cut + 1 :]
            idx = min(struct.unpack_from("!H", buf, 32)[0], len(addrs))
            return _recommit(aim, buf, ring, token_seq, idx, addrs, entries)
    if smart and rng.random() < 0.7:
        return None  # nothing to cut that still decodes: leave it to other mutations
    points = [n - 1, rng.randint(1, n - 1), HDR_SIZE - 1, HDR_SIZE, min(n - 1, HDR_SIZE + 1)]
    return buf[: rng.choice([x for x in points if 0 < x < n] or [n - 1])]


def _extend(aim: Aim, t: Target, buf: bytearray) -> bytearray | None:
    rng = aim.rng
    kind = kind_of(buf)
    smart = rng.random() < 0.85
    tail = rng.choice(
        (b"\x00", b"\x01", bytes(rng.randint(1, 64)), rng.randbytes(rng.randint(1, 64)))
    )
    if kind in ("mcast", "encap") or not smart:
        return buf + tail
    if kind == "token" and len(buf) >= TOKEN.size:
        rtr = token_rtr(buf)
        for _ in range(rng.randint(1, 3)):
            rtr.append((*t.ring, rng.choice((t.my_aru + 1, aim.relative(t)))))
        return _with_rtr(buf, rtr, len(rtr))
    if kind == "join" and len(buf) >= JOIN.size:
        procs, failed = join_lists(buf)
        more = [
            rng.choice((t.nodeid, aim.member(t), aim.stranger(t))) for _ in range(rng.randint(1, 4))
        ]
        if rng.random() < 0.7:
            procs += more
        else:
            failed += more
        return _rejoin(aim, buf, procs, failed)
    if kind == "commit":
        parsed = commit_parts(buf)
        if parsed is not None:
            ring, token_seq, addrs, entries = parsed
            members = dict(zip(addrs, entries, strict=True))
            node = rng.choice((aim.stranger(t), max(addrs) + 1, min(addrs) - 1 or 1))
            members.setdefault(node, aim.entry(t) if rng.random() < 0.6 else ABSENT)
            keep = sorted(members)
            idx = struct.unpack_from("!H", buf, 32)[0]
            if idx == len(addrs):
                idx = len(keep)
            return _recommit(aim, buf, ring, token_seq, idx, keep, [members[n] for n in keep])
    return buf + tail


# ------------------------------------------------------------------------------ content


def _ring(aim: Aim, t: Target, buf: bytearray) -> bytearray | None:
    rng = aim.rng
    slots = [f for f in fields_of(buf) if f[0].endswith(".rep") or f[0] == "ring.rep"]
    if not slots:
        return None
    name, off, _w = rng.choice(slots)
    current = struct.unpack_from("!IQ", buf, off)
    ring = rng.choice([r for r in aim.rings(t) if r != current] or [(1, 1)])
    if name.startswith("entry") and rng.random() < 0.3:
        # Every line of the commit token at once: who is transitional then?
        for fname, foff, _fw in slots:
            if fname.startswith("entry") and buf[foff - 1] == 1:
                put_ring(buf, foff, ring)
        return buf
    put_ring(buf, off, ring)
    return buf


def _groups(aim: Aim, t: Target, buf: bytearray) -> bytearray | None:
    at = payload_at(buf)
    if at is None:
        return None
    frm_at = MCAST_SIZE + 32 if kind_of(buf) == "encap" else 32
    frm = struct.unpack_from("!I", buf, frm_at)[0] if len(buf) >= frm_at + 4 else 0
    return bytearray(bytes(buf[:at]) + aim.hostile_groups(frm))


def _encap(aim: Aim, t: Target, buf: bytearray) -> bytearray | None:
    rng = aim.rng
    kind = kind_of(buf)
    if kind == "mcast" and len(buf) >= MCAST_SIZE:
        inner = bytearray(buf)
        ring = t.old_or_current
        seq = rng.choice(
            (
                t.old_aru + 1,
                t.old_high_seq_received + 1,
                1 << 60,
                (1 << 62) - 1,
                aim.relative(t),
            )
        )
        struct.pack_into("!IQQ", inner, 12, u32(ring[0]), u64(ring[1]), u64(seq))
        sender = aim.member(t)
        return bytearray(
            pack_mcast(aim.cid, sender, t.ring, aim.fresh_seq(t), sender, 2, 1, bytes(inner))
        )
    if kind == "encap" and len(buf) >= 2 * MCAST_SIZE:
        r = rng.random()
        if r < 0.6:
            edge = t.old_last_released + 2 * t.sort_queue_slots
            seq = rng.choice(
                (
                    1 << 60,
                    (1 << 62) - 1,
                    1 << 62,
                    1 << 63,
                    (1 << 64) - 1,
                    aim.relative(t),
                    edge,
                    edge + 1,
                )
            )
            struct.pack_into("!Q", buf, MCAST_SIZE + 24, u64(seq))
            return buf
        if r < 0.8:
            buf[37] = 0  # unwrap: the inner datagram becomes a group payload
            return buf
        return bytearray(buf[:MCAST_SIZE]) + buf  # nested: an encapsulation inside another
    return None


_BY_KIND: dict[str, Callable[[Aim, Target, bytearray], bytearray | None]] = {
    "count": _count,
    "truncate": _truncate,
    "extend": _extend,
    "ring": _ring,
    "groups": _groups,
    "encap": _encap,
}
