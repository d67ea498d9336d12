"""Hostile but decodable datagrams for a live Totem processor: the protocol core's fuzzer.

Theory of operation. ``harvest`` runs three small simulated clusters and keeps two things
from them: real datagrams of every type, taken off the simulated wire, and pickled copies of
processors caught between two inputs in each membership state (OPERATIONAL, GATHER, COMMIT,
RECOVERY). A fuzz run is a sequence of rounds; each round thaws one snapshot as its target
and feeds it ``ROUND`` datagrams. A datagram is first made *fresh* for the target: harvested
content (group payloads, recovery packets, token fields) under the target's own ring id, its
next token hop and message numbers, senders that are its members, JOINs around its ring seq,
commit tokens that name it where it expects one. Fresh packets are new to the target, so they
get past the first checks (duplicate, foreign ring, non-member) into the handlers; a few are
sent as harvested instead, stale or foreign. Then 0 to 3 mutations break it at the byte level
with the offsets of docs/wire.md: extreme and off-by-one integers, counts with the datagram
resized to match, truncation, extension, other rings and nodes, bit flips, hostile
group-layer payloads, encapsulation. The encoder is never used: it refuses out-of-range
values by design, and those are exactly what a peer can send.

The oracle: ``receive`` and ``handle_timer`` (the clock advances between datagrams, so timers
fire on hostile state) never raise and never run long; a SIGALRM watchdog turns a true
infinite loop into a reported failure instead of a stuck run. Every datagram the target
emits must decode, and a few structural invariants must hold after every input. Each round
draws from its own named random stream, so datagram ``i`` of seed ``S`` is replayed exactly
by re-running round ``i // ROUND``: a run is a pure function of its seed.
"""

from __future__ import annotations

import itertools
import multiprocessing
import pickle
import signal
import struct
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from random import Random
from types import FrameType
from typing import Any

from evs.sim.cluster import Cluster
from evs.sim.options import draw_options
from evs.sim.rng import derive
from evs.totem.codec import MAX_PROCESSORS, MAX_RTR, DecodeError, cluster_id_for, decode
from evs.totem.events import ConfigChange, Deliver, MembState
from evs.totem.messages import CommitToken, Join, Mcast, MessageType, OrfToken
from evs.totem.processor import Processor
from evs.types import RingId

__all__ = [
    "KINDS",
    "MUTATIONS",
    "ROUND",
    "Corpus",
    "Failure",
    "Forge",
    "Forged",
    "FuzzReport",
    "Hang",
    "Snapshot",
    "fields_of",
    "fuzz",
    "group_packet",
    "harvest",
    "kind_of",
    "replay",
]

#: Datagrams per round: one thawed target takes this many before the next round's fresh one.
ROUND = 250
#: Rounds per task of a parallel run (and between two progress reports).
CHUNK_ROUNDS = 8
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
#: Base datagram kinds, with the weights they are drawn with.
KINDS = ("token", "mcast", "encap", "join", "commit", "merge", "cancel")
_KIND_WEIGHTS = (24, 30, 12, 14, 12, 4, 4)

_T_TOKEN = int(MessageType.ORF_TOKEN)
_T_MCAST = int(MessageType.MCAST)
_T_MERGE = int(MessageType.MERGE_DETECT)
_T_JOIN = int(MessageType.JOIN)
_T_COMMIT = int(MessageType.COMMIT_TOKEN)
_T_CANCEL = int(MessageType.TOKEN_HOLD_CANCEL)

# Layouts of docs/wire.md, header included (big-endian, no padding).
_MAGIC = 0xE7A5
_HDR = struct.Struct("!HBBII")
_TOKEN = struct.Struct("!HBBII" + "IQQQQIIIBH")
_RTR = struct.Struct("!IQQ")
_MCAST = struct.Struct("!HBBII" + "IQQIBB")
_JOIN = struct.Struct("!HBBII" + "BQHH")
_RING = struct.Struct("!HBBII" + "IQ")
_COMMIT = struct.Struct("!HBBII" + "IQQHH")
_ENTRY = struct.Struct("!BIQQQB")
_GROUP_HEAD = struct.Struct("!BBHBB")
_H = _HDR.size  # 12
_MH = _MCAST.size  # 38
_ES = _ENTRY.size  # 30

#: A commit entry as raw fields: present, old ring rep, old ring seq, aru, high, received.
Entry = tuple[int, int, int, int, int, int]
_ABSENT: Entry = (0, 0, 0, 0, 0, 0)
#: A field of a datagram: name, byte offset, byte width.
Field = tuple[str, int, int]

_EDGE_VALUES = sorted(
    {0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 127, 128, 255, 256}
    | {(1 << k) + d for k in (15, 16, 31, 32, 53, 60, 61, 62, 63, 64) for d in (-2, -1, 0, 1)}
)
_EXTREMES = {w: [v for v in _EDGE_VALUES if v < 1 << (8 * w)] for w in (1, 2, 4, 8)}
#: Fields whose value is structure, not data: flips and integer mutations leave them to
#: the count mutation (and the occasional deliberate lie).
_STRUCTURAL = {"rtr_count", "proc_count", "failed_count", "count", "encapsulated"}


def _fit(value: int, width: int) -> int:
    """``value`` as the unsigned integer of ``width`` bytes it becomes on the wire."""
    return value & ((1 << (8 * width)) - 1)


def _u32(value: int) -> int:
    return value & 0xFFFFFFFF


def _u64(value: int) -> int:
    return value & 0xFFFFFFFFFFFFFFFF


# ------------------------------------------------------------------------------ raw packing
# Straight struct packing of any values (masked to their fields): never the codec's encoder.


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
    head = _TOKEN.pack(
        _MAGIC,
        1,
        _T_TOKEN,
        cid,
        _u32(sender),
        _u32(ring[0]),
        _u64(ring[1]),
        _u64(token_seq),
        _u64(seq),
        _u64(aru),
        _u32(aru_addr),
        _u32(backlog),
        _u32(fcc),
        retrans & 0xFF,
        len(rtr) & 0xFFFF,
    )
    return head + b"".join(_RTR.pack(_u32(r), _u64(s), _u64(m)) for r, s, m in rtr)


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
    head = _MCAST.pack(
        _MAGIC,
        1,
        _T_MCAST,
        cid,
        _u32(sender),
        _u32(ring[0]),
        _u64(ring[1]),
        _u64(seq),
        _u32(frm),
        guarantee & 0xFF,
        encap & 0xFF,
    )
    return head + body


def pack_join(  # noqa: PLR0917
    cid: int, sender: int, flags: int, ring_seq: int, procs: Sequence[int], failed: Sequence[int]
) -> bytes:
    head = _JOIN.pack(
        _MAGIC,
        1,
        _T_JOIN,
        cid,
        _u32(sender),
        flags & 0xFF,
        _u64(ring_seq),
        len(procs) & 0xFFFF,
        len(failed) & 0xFFFF,
    )
    ids = [_u32(i) for i in (*procs, *failed)]
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
    head = _COMMIT.pack(
        _MAGIC,
        1,
        _T_COMMIT,
        cid,
        _u32(sender),
        _u32(ring[0]),
        _u64(ring[1]),
        _u64(token_seq),
        memb_index & 0xFFFF,
        len(addrs) & 0xFFFF,
    )
    parts = [head, struct.pack(f"!{len(addrs)}I", *map(_u32, addrs))]
    for pr, rep, rseq, aru, high, rcv in entries:
        parts.append(
            _ENTRY.pack(pr & 0xFF, _u32(rep), _u64(rseq), _u64(aru), _u64(high), rcv & 0xFF)
        )
    return b"".join(parts)


def pack_ring_only(mtype: int, cid: int, sender: int, ring: tuple[int, int]) -> bytes:
    """A MERGE_DETECT or TOKEN_HOLD_CANCEL."""
    return _RING.pack(_MAGIC, 1, mtype, cid, _u32(sender), _u32(ring[0]), _u64(ring[1]))


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


def _group_items(payload: bytes) -> list[bytes] | None:
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


# ------------------------------------------------------------------------------ harvest


@dataclass(frozen=True)
class Snapshot:
    """A processor frozen between two inputs of a simulated run."""

    label: str
    state: str
    now: float
    blob: bytes

    def thaw(self) -> Processor:
        """A private live copy with empty outputs (the driver drained them)."""
        proc: Processor = pickle.loads(self.blob)
        proc.outbox = []
        proc.events = []
        return proc


@dataclass
class Corpus:
    """What a harvest keeps: datagrams by kind and targets by membership state."""

    seed: int
    cluster_id: int
    packets: dict[str, list[bytes]] = field(default_factory=dict)
    targets: dict[str, list[Snapshot]] = field(default_factory=dict)
    #: Datagrams seen on the simulated wire by kind (before the reservoir cut them down).
    seen: Counter[str] = field(default_factory=Counter)
    clusters: list[str] = field(default_factory=list)

    def describe(self) -> str:
        kinds = ", ".join(f"{k} {len(self.packets.get(k, ()))}/{self.seen[k]}" for k in KINDS)
        states = ", ".join(f"{s} {len(v)}" for s, v in sorted(self.targets.items()))
        return (
            f"harvest: {'; '.join(self.clusters)}\n"
            f"  datagrams kept/seen: {kinds}\n  targets: {states}"
        )


def kind_of(data: bytes | bytearray) -> str:
    """The base kind of a datagram by its type byte (no decoding)."""
    t = data[3] if len(data) > 3 else -1
    if t == _T_MCAST:
        return "encap" if len(data) > _MH - 1 and data[37] == 1 else "mcast"
    return {
        _T_TOKEN: "token",
        _T_JOIN: "join",
        _T_COMMIT: "commit",
        _T_MERGE: "merge",
        _T_CANCEL: "cancel",
    }.get(t, "other")


class _Reservoir:
    """Uniform samples of a stream, per key (reservoir sampling, seeded)."""

    def __init__(self, rng: Random, size: int) -> None:
        self.rng = rng
        self.size = size
        self.seen: Counter[str] = Counter()

    def slot(self, key: str) -> int | None:
        """Where the next item of ``key`` goes (len() means append), or None to skip it."""
        self.seen[key] += 1
        n = self.seen[key]
        if n <= self.size:
            return n - 1
        j = self.rng.randrange(n)
        return j if j < self.size else None


def _harvest_one(
    corpus: Corpus, sim_seed: int, *, faults: bool, nodes: int, rng: Random, tag: str
) -> None:
    options = draw_options(
        sim_seed, with_faults=faults, light=True, nodes=nodes, duration_ms=1500.0
    )
    cluster = Cluster(options)
    corpus.cluster_id = cluster_id_for(cluster.config.cluster_name)
    packets = _Reservoir(rng, 300)
    states = _Reservoir(rng, 6)
    last: list[object] = [None]

    def record(src: int, dst: int, data: bytes) -> bool:
        if data is last[0]:
            return False  # the same broadcast, to another destination
        last[0] = data
        kind = kind_of(data)
        corpus.seen[kind] += 1
        slot = packets.slot(kind)
        if slot is not None:
            kept = corpus.packets.setdefault(kind, [])
            if slot == len(kept):
                kept.append(data)
            else:
                kept[slot] = data
        proc = cluster.nodes[src].proc
        if proc is not None:
            state = proc.state.value
            slot = states.slot(state)
            if slot is not None:
                snap = Snapshot(
                    f"{tag} node {src} at {cluster.now:.1f} ms",
                    state,
                    cluster.now,
                    pickle.dumps(proc),
                )
                kept_t = corpus.targets.setdefault(state, [])
                if slot == len(kept_t):
                    kept_t.append(snap)
                else:
                    kept_t[slot] = snap
        return False

    cluster.filters.append(record)
    cluster.run()
    corpus.clusters.append(f"{tag}: sim seed {sim_seed}, {nodes} nodes, faults {faults}")


def harvest(seed: int, nodes: int | None = None) -> Corpus:
    """Run three small simulated clusters drawn from ``seed`` and keep their traffic.

    Two with faults (crashes, partitions, loss: joins, commit tokens, recovery's encapsulated
    mcasts) and one without; ``nodes`` fixes their size, else each draws 2 to 6 processors.
    """
    rng = derive(seed, "hostile harvest")
    corpus = Corpus(seed, 0)
    for i, faults in enumerate((True, False, True)):
        size = nodes if nodes else rng.randint(2, 6)
        _harvest_one(
            corpus, rng.randrange(1 << 31), faults=faults, nodes=size, rng=rng, tag=f"cluster {i}"
        )
    return corpus


# ------------------------------------------------------------------------------ the forge


@dataclass
class Forged:
    """One hostile datagram: the bytes, the kind it started as and the mutations applied."""

    data: bytes
    base: str
    mutations: tuple[str, ...]


def _ring_of(p: Processor) -> tuple[int, int]:
    return (p.ring_id.rep, p.ring_id.seq)


def _pair(r: RingId) -> tuple[int, int]:
    return (r.rep, r.seq)


class Forge:
    """Makes fresh, then hostile, datagrams for one target from a corpus and a seeded rng.

    Fresh means new to the target: its current ring, the next token hop, the next message
    sequence numbers, senders that are members, commit tokens that name it where it expects
    them. The mutations then break one or more fields. Some per-round state (fragment chains
    per originator, a pending burst of tokens) lets consecutive datagrams build on each other.
    """

    def __init__(self, corpus: Corpus, rng: Random) -> None:
        self.corpus = corpus
        self.rng = rng
        self.cid = corpus.cluster_id
        self.chains: dict[int, int] = {}
        self.burst = 0

    # ------------------------------------------------------------------ entry point

    def make(self, p: Processor, kinds: Sequence[str] | None = None) -> Forged:
        """The next datagram for ``p``; ``kinds`` restricts the mutations drawn."""
        rng = self.rng
        if self.burst > 0:
            self.burst -= 1
            base = "token"
        else:
            base = rng.choices(KINDS, _KIND_WEIGHTS)[0]
        fresh = rng.random() < 0.92
        data = self._fresh(p, base) if fresh else self._harvested(p, base)
        if base == "token" and self.burst == 0 and rng.random() < 0.25:
            self.burst = rng.randint(2, 6)
        pool = tuple(kinds) if kinds is not None else MUTATIONS
        if kinds is None:
            r = rng.random()
            n = 0 if r < 0.12 else 1 if r < 0.65 else 2 if r < 0.9 else 3
        else:
            n = 1
        applied: list[str] = []
        buf = bytearray(data)
        for _ in range(n):
            kind = rng.choice(pool)
            if kind == "none":
                continue
            out = self._mutate(p, buf, kind)
            if out is not None:
                buf = out
                applied.append(kind)
        if not applied:
            applied.append("none")
        return Forged(bytes(buf), base, tuple(applied))

    def fresh(self, p: Processor, base: str) -> bytes:
        """A datagram of kind ``base`` made new to ``p``, not mutated."""
        if base not in KINDS:
            raise ValueError(f"unknown datagram kind {base!r}; known: {', '.join(KINDS)}")
        return self._fresh(p, base)

    def mutate(self, p: Processor, data: bytes, kind: str) -> bytes | None:
        """``data`` with one mutation of ``kind`` (None if it does not apply to this datagram)."""
        if kind not in MUTATIONS:
            raise ValueError(f"unknown mutation {kind!r}; known: {', '.join(MUTATIONS)}")
        if kind == "none":
            return data
        out = self._mutate(p, bytearray(data), kind)
        return None if out is None else bytes(out)

    def _harvested(self, p: Processor, base: str) -> bytes:
        """A harvested datagram as it was (stale or foreign to the target), or a fresh one."""
        kept = self.corpus.packets.get(base)
        if not kept:
            return self._fresh(p, base)
        return self.rng.choice(kept)

    # ------------------------------------------------------------------ target state

    def _others(self, p: Processor) -> list[int]:
        return [n for n in p.memb_list if n != p.nodeid] or [p.nodeid % 0xFFFFFFFE + 1]

    def _stranger(self, p: Processor) -> int:
        known = set(p.memb_list) | set(p.memb.proc)
        return self.rng.choice((max(known) + 1, max(known) + 7, 0xFFFFFFFF, 1000))

    def _member(self, p: Processor) -> int:
        rng = self.rng
        r = rng.random()
        if r < 0.8:
            return rng.choice(self._others(p))
        if r < 0.9:
            return p.nodeid
        return self._stranger(p)

    def _predecessor(self, p: Processor) -> int:
        ml = p.memb_list
        if p.nodeid in ml:
            return ml[ml.index(p.nodeid) - 1]
        return ml[-1]

    def _anchors(self, p: Processor) -> list[int]:
        """Numbers the target cares about: sequence marks, ring seqs, window edges."""
        rec, memb = p.rec, p.memb
        slots = p.config.sort_queue_slots
        return [
            p.ring_id.seq,
            p.token_ring_id_seq,
            p.my_token_seq,
            p.my_aru,
            p.my_high_seq_received,
            p.last_released,
            p.my_high_delivered,
            p.last_released + slots,
            p.last_released + 2 * slots,
            p.my_last_aru,
            rec.old_ring_id.seq,
            rec.old_aru,
            rec.old_high_seq_received,
            rec.old_last_released,
            rec.old_high_delivered,
            rec.old_last_released + 2 * slots,
            memb.commit_token_seq,
            p.config.window_size,
            p.config.max_messages,
        ]

    def _relative(self, p: Processor) -> int:
        rng = self.rng
        return rng.choice(self._anchors(p)) + rng.choice((-2, -1, -1, 0, 1, 1, 2, 3, 4, 5, 16))

    def _rings(self, p: Processor) -> list[tuple[int, int]]:
        """Ring ids near the target's: its own, its old and past rings, close neighbours."""
        r = p.ring_id
        others = self._others(p)
        rings = [
            _pair(r),
            (r.rep, r.seq + 1),
            (r.rep, r.seq - 1),
            (r.rep, r.seq + 4),
            (r.rep + 1, r.seq),
            (self.rng.choice(others), r.seq),
            (min(p.memb_list), max(p.token_ring_id_seq, r.seq) + 4),
            (r.rep, 0),
        ]
        if p.rec.old_ring_id.rep:
            rings.append(_pair(p.rec.old_ring_id))
        rings.extend(_pair(x) for x in p.memb.past_rings[-4:])
        return rings

    # ------------------------------------------------------------------ fresh datagrams

    def _fresh(self, p: Processor, base: str) -> bytes:
        if base == "token":
            return self._fresh_token(p)
        if base == "mcast":
            return self._fresh_mcast(p)
        if base == "encap":
            return self._fresh_encap(p)
        if base == "join":
            return self._fresh_join(p)
        if base == "commit":
            return self._fresh_commit(p)
        mtype = _T_MERGE if base == "merge" else _T_CANCEL
        rng = self.rng
        ring = rng.choice(self._rings(p))
        if base == "cancel" and rng.random() < 0.8:
            ring = _ring_of(p)
        sender = self._member(p) if rng.random() < 0.7 else self._stranger(p)
        return pack_ring_only(mtype, self.cid, sender, ring)

    def _base_fields(self, base: str, layout: struct.Struct) -> tuple[Any, ...] | None:
        kept = self.corpus.packets.get(base)
        if not kept:
            return None
        data = self.rng.choice(kept)
        return layout.unpack_from(data) if len(data) >= layout.size else None

    def _fresh_token(self, p: Processor) -> bytes:
        rng = self.rng
        held = self._base_fields("token", _TOKEN)
        backlog, fcc = (held[11], held[12]) if held else (0, 0)
        if rng.random() < 0.5:
            backlog, fcc = rng.randint(0, 5), rng.randint(0, p.config.window_size)
        high = p.my_high_seq_received
        seq = rng.choice((high, high, high, high + 1, high + 2, p.my_aru))
        aru = rng.choice((seq, seq, p.my_aru, p.my_last_aru, max(0, seq - 1)))
        aru_addr = rng.choice((0, 0, p.nodeid, self._member(p)))
        retrans = 1 if p.state is MembState.RECOVERY and rng.random() < 0.2 else 0
        rtr: list[tuple[int, int, int]] = []
        if rng.random() < 0.3:
            ring = _ring_of(p)
            lo = p.last_released + 1
            for _ in range(rng.randint(1, 4)):
                rtr.append((*ring, rng.randint(lo, max(lo, high + 2))))
        token_seq = p.my_token_seq + rng.choice((1, 1, 1, 2, 3))
        return pack_token(
            self.cid,
            self._predecessor(p),
            _ring_of(p),
            token_seq,
            seq,
            aru,
            aru_addr,
            backlog,
            fcc,
            retrans,
            rtr,
        )

    def _fresh_seq(self, p: Processor) -> int:
        rng = self.rng
        r = rng.random()
        slots = p.config.sort_queue_slots
        if r < 0.45:
            return p.my_aru + 1
        if r < 0.65:
            return p.my_high_seq_received + 1
        if r < 0.8:
            return p.my_aru + rng.randint(2, 5)
        if r < 0.85:
            return p.last_released + slots
        if r < 0.9:
            return p.last_released + slots + 1
        return p.last_released + rng.randint(1, slots)

    def _payload(self, frm: int) -> bytes:
        """A harvested group payload (real messages, real fragments), sometimes a hostile one."""
        kept = self.corpus.packets.get("mcast")
        if not kept or self.rng.random() < 0.25:
            return self._hostile_groups(frm)
        return self.rng.choice(kept)[_MH:]

    def _fresh_mcast(self, p: Processor) -> bytes:
        rng = self.rng
        frm = self._member(p)
        sender = frm if rng.random() < 0.8 else self._member(p)
        guarantee = 2 if rng.random() < 0.75 else 3
        seq = self._fresh_seq(p)
        return pack_mcast(self.cid, sender, _ring_of(p), seq, frm, guarantee, 0, self._payload(frm))

    def _fresh_inner(self, p: Processor) -> bytes:
        """An old-ring mcast as recovery re-sends it, aimed at the target's saved old ring."""
        rng = self.rng
        rec = p.rec
        ring = _pair(rec.old_ring_id) if rec.old_ring_id.rep else _ring_of(p)
        if rng.random() < 0.2:
            ring = rng.choice(self._rings(p))
        members = rec.old_members or p.memb_list
        frm = rng.choice(members) if rng.random() < 0.9 else self._stranger(p)
        base = max(rec.old_last_released, rec.old_aru)
        seq = rng.choice(
            (
                base + 1,
                base + 2,
                rec.old_high_seq_received + 1,
                rec.old_high_delivered + 1,
                base + rng.randint(1, 40),
            )
        )
        guarantee = 2 if rng.random() < 0.7 else 3
        return pack_mcast(self.cid, frm, ring, seq, frm, guarantee, 0, self._payload(frm))

    def _fresh_encap(self, p: Processor) -> bytes:
        rng = self.rng
        kept = self.corpus.packets.get("encap")
        if kept and rng.random() < 0.3:
            inner = bytearray(rng.choice(kept)[_MH:])
            if len(inner) >= _MH:  # keep the harvested content, aim it at our old ring
                rec = p.rec
                ring = _pair(rec.old_ring_id) if rec.old_ring_id.rep else _ring_of(p)
                struct.pack_into("!IQ", inner, 12, _u32(ring[0]), _u64(ring[1]))
            inner_b = bytes(inner)
        else:
            inner_b = self._fresh_inner(p)
        sender = self._member(p)
        return pack_mcast(self.cid, sender, _ring_of(p), self._fresh_seq(p), sender, 2, 1, inner_b)

    def _fresh_join(self, p: Processor) -> bytes:
        rng = self.rng
        m = p.memb
        r = rng.random()
        if r < 0.55:
            sender = rng.choice(self._others(p))
        elif r < 0.75 and len(m.proc) > 1:
            sender = rng.choice(sorted(m.proc - {p.nodeid}) or [self._stranger(p)])
        elif r < 0.95:
            sender = self._stranger(p)
        else:
            sender = p.nodeid
        ring_seq = rng.choice(
            (
                p.ring_id.seq,
                p.ring_id.seq,
                p.ring_id.seq - 1,
                p.ring_id.seq + 1,
                p.token_ring_id_seq,
                p.token_ring_id_seq + 4,
                p.rec.old_ring_id.seq,
            )
        )
        procs = set(m.proc) | {sender}
        failed = set(m.failed)
        r = rng.random()
        if r < 0.2:
            procs |= set(p.memb_list)
        elif r < 0.3:
            procs.add(self._stranger(p))
        elif r < 0.4 and len(procs) > 1:
            failed.add(rng.choice(sorted(procs - {sender})))
        elif r < 0.45:
            failed = set()
        leave = rng.random() < 0.04
        if leave:
            procs.discard(sender)
            failed.add(sender)
        failed_list = sorted(failed)
        if leave:
            failed_list = [n for n in failed_list if n != sender] + [sender]
        return pack_join(
            self.cid, sender, 1 if leave else 0, max(0, ring_seq), sorted(procs), failed_list
        )

    def _entry(self, p: Processor, old: tuple[int, int] | None = None) -> Entry:
        rng = self.rng
        rec = p.rec
        ring = old or (_pair(rec.old_ring_id) if rec.old_ring_id.rep else _ring_of(p))
        if old is None and rng.random() < 0.3:
            ring = rng.choice(self._rings(p))
        aru = max(
            0,
            rng.choice(
                (
                    rec.old_aru,
                    rec.old_aru - 1,
                    rec.old_last_released,
                    rec.old_high_seq_received,
                    rec.old_aru + 1,
                    0,
                )
            ),
        )
        high = max(0, rng.choice((rec.old_high_delivered, aru, aru - 1, 0)))
        return (1, ring[0], ring[1], aru, high, rng.choice((0, 1)))

    def _my_entry(self, p: Processor) -> Entry:
        """Our own line as we wrote it into the commit token (so the round is 'ours')."""
        mine = getattr(p.memb, "my_entry", None)
        rec = p.rec
        if mine is not None:
            return (
                1,
                mine.old_ring_id.rep,
                mine.old_ring_id.seq,
                mine.aru,
                mine.high_delivered,
                int(mine.received_flg),
            )
        ring = _pair(rec.old_ring_id) if rec.old_ring_id.rep else _ring_of(p)
        done = int(rec.old_aru == rec.old_high_seq_received)
        return (1, ring[0], ring[1], rec.old_aru, rec.old_high_delivered, done)

    def _fresh_commit(self, p: Processor) -> bytes:
        rng = self.rng
        m = p.memb
        second = p.state in (MembState.COMMIT, MembState.RECOVERY) or (
            p.state is MembState.OPERATIONAL and rng.random() < 0.5
        )
        sender = self._predecessor(p)
        if second:
            # The token back from its first rotation: complete, our line as we wrote it.
            addrs = list(m.new_members) or list(p.memb_list)
            if p.nodeid not in addrs:
                addrs = sorted({*addrs, p.nodeid})
            entries: list[Entry] = []
            for node in addrs:
                if node == p.nodeid and rng.random() < 0.9:
                    entries.append(self._my_entry(p))
                else:
                    entries.append(self._entry(p))
            token_seq = max(0, m.commit_token_seq) + rng.choice((1, 1, 2, len(addrs)))
            return pack_commit(self.cid, sender, _ring_of(p), token_seq, len(addrs), addrs, entries)
        # First rotation: a new ring of our candidates, reaching us at our index.
        addrs = m.candidates() if rng.random() < 0.85 else sorted({*m.proc, p.nodeid})
        if p.nodeid not in addrs:
            addrs = sorted({*addrs, p.nodeid})
        idx = addrs.index(p.nodeid)
        entries = [self._entry(p) for _ in addrs[:idx]] + [_ABSENT] * (len(addrs) - idx)
        rseq = max(p.token_ring_id_seq, p.ring_id.seq) + rng.choice((4, 4, 1, 8))
        ring = (addrs[0], rseq)
        return pack_commit(self.cid, sender, ring, rng.randint(0, idx + 1), idx, addrs, entries)

    # ------------------------------------------------------------------ group payloads

    def _hostile_groups(self, frm: int) -> bytes:
        """A group-layer packet built to break the unpacker: tiny items, lying headers."""
        rng = self.rng
        # The shortest shapes come first and three times as often: they sit on the parser's edges.
        recipe = rng.randrange(20) % 18 % 16
        msg = bytes([1, 1]) + b"g" + rng.randbytes(rng.randint(0, 8))
        if recipe == 0:
            return group_packet([b"\x01"])  # count 1, one item of a single byte 0x01
        if recipe == 1:
            alphabet = (0, 1, 2, 3, 0xFF, rng.randrange(256))
            items = [
                bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 3)))
                for _ in range(rng.randint(1, 8))
            ]
            return group_packet(items)
        if recipe == 2:
            return group_packet([b"\x01\x00" + b"data"])  # a zero-length group name
        if recipe == 3:
            return group_packet([bytes([1, rng.choice((2, 50, 255))]) + b"ab"])  # name overrun
        if recipe == 4:
            return group_packet([b"\xff" + rng.randbytes(rng.randint(0, 20))])  # 255 groups
        if recipe == 5:
            return group_packet([bytes([rng.randint(2, 9)]) + b"\x01" * rng.randint(0, 3)])
        if recipe == 6:
            return group_packet([b"\x00" + b"abc"])  # no group at all
        if recipe == 7:
            many = bytes([255]) + b"\x01" * 255 + bytes(range(255)) + b"data"
            return group_packet([many, msg])  # 255 one-byte names: legal
        if recipe == 8:
            frag = rng.choice((1, 2, 255, rng.randint(1, 255)))
            self.chains[frm] = frag
            return group_packet([msg, bytes([1, 1]) + b"g" + b"x" * 20], fragmented=frag)
        if recipe == 9:
            cont = self.chains.get(frm, rng.randint(1, 255))
            nxt = rng.choice((0, 0, cont, rng.randint(1, 255)))
            piece = rng.choice((b"tail", b"\x01", rng.randbytes(rng.randint(1, 30))))
            items = [piece] if nxt else [piece, msg]
            if nxt:
                self.chains[frm] = nxt
            return group_packet(items, continues=cont, fragmented=nxt)
        if recipe == 10:
            # A chain whose reassembled message has a broken group header.
            frag = rng.randint(1, 255)
            self.chains[frm] = frag
            return group_packet([b"\x03\x01"], fragmented=frag)
        if recipe == 11:
            count = rng.choice((0xFFFF, 1000, 256))
            return group_packet([b"\x01"] * 3, lengths=[1] * count)  # table longer than data
        if recipe == 12:
            n = rng.randint(100, 600)
            return group_packet([b"\x01"] * n)  # hundreds of one-byte items
        if recipe == 13:
            lengths = [len(msg) + rng.choice((-1, 1, 5))]
            return group_packet([msg], lengths=lengths)  # table and data disagree
        if recipe == 14:
            return group_packet([msg, b""])  # an empty item
        return group_packet(
            [msg],
            version=rng.choice((0, 2, 255)) if rng.random() < 0.5 else 1,
            flags=rng.choice((0, 1, 0x80)),
            continues=rng.choice((0, 0, 1, 255)),
        )

    # ------------------------------------------------------------------ mutations

    def _mutate(self, p: Processor, buf: bytearray, kind: str) -> bytearray | None:
        """Apply one mutation of ``kind``; None when it does not apply to this datagram."""
        if kind in ("int_extreme", "int_relative", "node", "flip"):
            return self._mutate_field(p, buf, kind)
        if kind == "count":
            return self._count(p, buf)
        if kind == "truncate":
            return self._truncate(p, buf)
        if kind == "extend":
            return self._extend(p, buf)
        if kind == "ring":
            return self._ring(p, buf)
        if kind == "groups":
            return self._groups(p, buf)
        if kind == "encap":
            return self._encap(p, buf)
        raise ValueError(f"unknown mutation {kind!r}")

    def _mutate_field(self, p: Processor, buf: bytearray, kind: str) -> bytearray | None:
        rng = self.rng
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
            value = self._relative(p) if rng.random() < 0.8 else old + rng.choice((-1, 1))
        elif kind == "node":
            value = rng.choice(
                (
                    p.nodeid,
                    self._member(p),
                    self._stranger(p),
                    1,
                    0xFFFFFFFF,
                    old + 1,
                    max(0, old - 1),
                    0,
                )
            )
        else:
            bit = rng.randrange(8 * width)
            value = old ^ (1 << bit)
        buf[off : off + width] = _fit(value, width).to_bytes(width, "big")
        return buf

    def _count(self, p: Processor, buf: bytearray) -> bytearray | None:
        rng = self.rng
        kind = kind_of(buf)
        if kind == "token" and len(buf) >= _TOKEN.size:
            have = _token_rtr(buf)
            n = rng.choice((0, 1, 2, 3, MAX_RTR - 1, MAX_RTR, MAX_RTR + 1, rng.randint(0, MAX_RTR)))
            ring = _ring_of(p)
            while len(have) < n:
                seq = rng.choice(
                    (
                        p.my_aru + 1,
                        p.last_released + 1,
                        p.my_high_seq_received,
                        self._relative(p),
                        rng.choice(_EXTREMES[8]),
                    )
                )
                r = ring if rng.random() < 0.8 else rng.choice(self._rings(p))
                have.append((r[0], r[1], seq))
            have = have[:n]
            out = bytearray(buf[: _TOKEN.size])
            struct.pack_into(
                "!H", out, 61, len(have) if rng.random() < 0.93 else rng.randint(0, 40)
            )
            for entry in have:
                out += _RTR.pack(_u32(entry[0]), _u64(entry[1]), _u64(entry[2]))
            return out
        if kind == "join" and len(buf) >= _JOIN.size:
            procs, failed = _join_lists(buf)
            pool = [*p.memb_list, *sorted(p.memb.proc), p.nodeid, self._stranger(p)]
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
            failed = failed[:nf]
            flags = buf[12]
            ring_seq = struct.unpack_from("!Q", buf, 13)[0]
            sender = struct.unpack_from("!I", buf, 8)[0]
            return bytearray(pack_join(self.cid, sender, flags, ring_seq, procs, failed))
        if kind == "commit" and len(buf) >= _COMMIT.size:
            parsed = _commit_parts(buf)
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
            members.setdefault(p.nodeid, self._my_entry(p))
            extra = itertools.count(max(members) + 1)
            while len(members) < c:
                node = self._stranger(p) if rng.random() < 0.3 else next(extra)
                members.setdefault(node, self._entry(p) if rng.random() < 0.7 else _ABSENT)
            keep = sorted(members)
            if len(keep) > c:
                drop = set(rng.sample([n for n in keep if n != p.nodeid], len(keep) - c))
                keep = [n for n in keep if n not in drop]
            idx = rng.choice(
                (
                    len(keep),
                    len(keep),
                    max(0, len(keep) - 1),
                    0,
                    keep.index(p.nodeid) if p.nodeid in keep else 0,
                    len(keep) + 1,
                )
            )
            sender = struct.unpack_from("!I", buf, 8)[0]
            return bytearray(
                pack_commit(
                    self.cid, sender, ring, token_seq, idx, keep, [members[n] for n in keep]
                )
            )
        if kind in ("mcast", "encap"):
            at = _payload_at(buf)
            if at is None:
                return None
            items = _group_items(bytes(buf[at:])) or [b"\x01\x01g"]
            n = rng.choice(
                (1, 2, len(items) + 1, max(1, len(items) - 1), 255, 256, rng.randint(1, 40))
            )
            while len(items) < n:
                items.append(rng.choice((b"\x01", b"\x01\x01gx", bytes([rng.randrange(256)]))))
            head = bytes(buf[at : at + _GROUP_HEAD.size]).ljust(_GROUP_HEAD.size, b"\x01")
            continues, fragmented = head[4], head[5]
            return bytearray(
                bytes(buf[:at])
                + group_packet(items[:n], continues=continues, fragmented=fragmented)
            )
        return None

    def _truncate(self, p: Processor, buf: bytearray) -> bytearray | None:
        rng = self.rng
        kind = kind_of(buf)
        n = len(buf)
        if n <= 1:
            return None
        smart = rng.random() < 0.85
        if kind in ("mcast", "encap") and smart:
            at = _payload_at(buf)
            if at is not None and n > at:
                return buf[: rng.randint(at, n - 1)]
        if smart and kind == "token" and len(buf) > _TOKEN.size:
            rtr = _token_rtr(buf)
            keep = rng.randint(0, len(rtr) - 1) if rtr else 0
            out = bytearray(buf[: _TOKEN.size + 20 * keep])
            struct.pack_into("!H", out, 61, keep)
            return out
        if smart and kind == "join" and len(buf) > _JOIN.size:
            procs, failed = _join_lists(buf)
            if failed and rng.random() < 0.5:
                failed = failed[: rng.randint(0, len(failed) - 1)]
            elif procs:
                procs = procs[: rng.randint(0, len(procs) - 1)]
            sender = struct.unpack_from("!I", buf, 8)[0]
            flags, ring_seq = buf[12], struct.unpack_from("!Q", buf, 13)[0]
            return bytearray(pack_join(self.cid, sender, flags, ring_seq, procs, failed))
        if smart and kind == "commit":
            parsed = _commit_parts(buf)
            if parsed is not None and len(parsed[2]) > 1:
                ring, token_seq, addrs, entries = parsed
                cut = rng.randrange(len(addrs))
                addrs = addrs[:cut] + addrs[cut + 1 :]
                entries = entries[:cut] + entries[cut + 1 :]
                idx = min(struct.unpack_from("!H", buf, 32)[0], len(addrs))
                sender = struct.unpack_from("!I", buf, 8)[0]
                return bytearray(
                    pack_commit(self.cid, sender, ring, token_seq, idx, addrs, entries)
                )
        if smart and rng.random() < 0.7:
            return None  # nothing to cut that still decodes: leave it to other mutations
        points = [n - 1, rng.randint(1, n - 1), _H - 1, _H, min(n - 1, _H + 1)]
        return buf[: rng.choice([x for x in points if 0 < x < n] or [n - 1])]

    def _extend(self, p: Processor, buf: bytearray) -> bytearray | None:
        rng = self.rng
        kind = kind_of(buf)
        smart = rng.random() < 0.85
        tail = rng.choice(
            (b"\x00", b"\x01", bytes(rng.randint(1, 64)), rng.randbytes(rng.randint(1, 64)))
        )
        if kind in ("mcast", "encap") or not smart:
            return buf + tail
        if kind == "token" and len(buf) >= _TOKEN.size:
            rtr = _token_rtr(buf)
            ring = _ring_of(p)
            for _ in range(rng.randint(1, 3)):
                rtr.append((ring[0], ring[1], rng.choice((p.my_aru + 1, self._relative(p)))))
            out = bytearray(buf[: _TOKEN.size])
            struct.pack_into("!H", out, 61, len(rtr))
            for r, s, m in rtr:
                out += _RTR.pack(_u32(r), _u64(s), _u64(m))
            return out
        if kind == "join" and len(buf) >= _JOIN.size:
            procs, failed = _join_lists(buf)
            more = [
                rng.choice((p.nodeid, self._member(p), self._stranger(p)))
                for _ in range(rng.randint(1, 4))
            ]
            if rng.random() < 0.7:
                procs += more
            else:
                failed += more
            sender = struct.unpack_from("!I", buf, 8)[0]
            flags, ring_seq = buf[12], struct.unpack_from("!Q", buf, 13)[0]
            return bytearray(pack_join(self.cid, sender, flags, ring_seq, procs, failed))
        if kind == "commit":
            parsed = _commit_parts(buf)
            if parsed is not None:
                ring, token_seq, addrs, entries = parsed
                members = dict(zip(addrs, entries, strict=True))
                node = rng.choice((self._stranger(p), max(addrs) + 1, min(addrs) - 1 or 1))
                members.setdefault(node, self._entry(p) if rng.random() < 0.6 else _ABSENT)
                keep = sorted(members)
                idx = struct.unpack_from("!H", buf, 32)[0]
                if idx == len(addrs):
                    idx = len(keep)
                sender = struct.unpack_from("!I", buf, 8)[0]
                return bytearray(
                    pack_commit(
                        self.cid, sender, ring, token_seq, idx, keep, [members[n] for n in keep]
                    )
                )
        return buf + tail

    def _ring(self, p: Processor, buf: bytearray) -> bytearray | None:
        rng = self.rng
        slots = [f for f in fields_of(buf) if f[0].endswith(".rep") or f[0] == "ring.rep"]
        if not slots:
            return None
        name, off, _w = rng.choice(slots)
        current = struct.unpack_from("!IQ", buf, off)
        ring = rng.choice([r for r in self._rings(p) if r != current] or [(1, 1)])
        if name.startswith("entry") and rng.random() < 0.3:
            # Every line of the commit token at once: who is transitional then?
            for fname, foff, _fw in slots:
                if fname.startswith("entry") and buf[foff - 1] == 1:
                    struct.pack_into("!IQ", buf, foff, _u32(ring[0]), _u64(ring[1]))
            return buf
        struct.pack_into("!IQ", buf, off, _u32(ring[0]), _u64(ring[1]))
        return buf

    def _groups(self, p: Processor, buf: bytearray) -> bytearray | None:
        at = _payload_at(buf)
        if at is None:
            return None
        frm_at = _MH + 32 if kind_of(buf) == "encap" else 32
        frm = struct.unpack_from("!I", buf, frm_at)[0] if len(buf) >= frm_at + 4 else 0
        return bytearray(bytes(buf[:at]) + self._hostile_groups(frm))

    def _encap(self, p: Processor, buf: bytearray) -> bytearray | None:
        rng = self.rng
        kind = kind_of(buf)
        if kind == "mcast" and len(buf) >= _MH:
            inner = bytearray(buf)
            rec = p.rec
            ring = _pair(rec.old_ring_id) if rec.old_ring_id.rep else _ring_of(p)
            seq = rng.choice(
                (
                    rec.old_aru + 1,
                    rec.old_high_seq_received + 1,
                    1 << 60,
                    (1 << 62) - 1,
                    self._relative(p),
                )
            )
            struct.pack_into("!IQQ", inner, 12, _u32(ring[0]), _u64(ring[1]), _u64(seq))
            sender = self._member(p)
            return bytearray(
                pack_mcast(
                    self.cid, sender, _ring_of(p), self._fresh_seq(p), sender, 2, 1, bytes(inner)
                )
            )
        if kind == "encap" and len(buf) >= 2 * _MH:
            r = rng.random()
            if r < 0.6:
                seq = rng.choice(
                    (
                        1 << 60,
                        (1 << 62) - 1,
                        1 << 62,
                        1 << 63,
                        (1 << 64) - 1,
                        self._relative(p),
                        p.rec.old_last_released + 2 * p.config.sort_queue_slots,
                        p.rec.old_last_released + 2 * p.config.sort_queue_slots + 1,
                    )
                )
                struct.pack_into("!Q", buf, _MH + 24, _u64(seq))
                return buf
            if r < 0.8:
                buf[37] = 0  # unwrap: the inner datagram becomes a group payload
                return buf
            return bytearray(buf[:_MH]) + buf  # nested: an encapsulation inside another
        return None


def _is_node_field(name: str) -> bool:
    return name.endswith(("sender", "rep", "system_from", "aru_addr", "id", "addr"))


def _is_flag_field(name: str) -> bool:
    return name.endswith(
        ("retrans_flg", "guarantee", "encapsulated", "flags", "present", "received")
    )


def _payload_at(buf: bytearray | bytes) -> int | None:
    """Where the group payload starts in a plain or encapsulated mcast, or None."""
    if len(buf) < _MH or buf[3] != _T_MCAST:
        return None
    if buf[37] == 1:
        return 2 * _MH if len(buf) >= 2 * _MH else None
    return _MH


def _token_rtr(buf: bytearray | bytes) -> list[tuple[int, int, int]]:
    body = bytes(buf[_TOKEN.size :])
    body = body[: len(body) - len(body) % _RTR.size]
    return [(rep, seq, mseq) for rep, seq, mseq in _RTR.iter_unpack(body)]


def _join_lists(buf: bytearray | bytes) -> tuple[list[int], list[int]]:
    """The JOIN's lists as far as its bytes go (counts trusted only where the bytes exist)."""
    np_, nf = struct.unpack_from("!HH", buf, 21)
    ids = list(struct.unpack_from(f"!{(len(buf) - _JOIN.size) // 4}I", buf, _JOIN.size))
    np_ = min(np_, len(ids))
    return ids[:np_], ids[np_ : np_ + nf]


def _commit_parts(
    buf: bytearray | bytes,
) -> tuple[tuple[int, int], int, list[int], list[Entry]] | None:
    """Ring, token_seq, addrs and raw entries of a well-sized commit token, or None."""
    if len(buf) < _COMMIT.size or buf[3] != _T_COMMIT:
        return None
    rep, rseq, token_seq, _idx, count = struct.unpack_from("!IQQHH", buf, _H)
    if not count or len(buf) != _COMMIT.size + count * (4 + _ES):
        return None
    addrs = list(struct.unpack_from(f"!{count}I", buf, _COMMIT.size))
    at = _COMMIT.size + 4 * count
    entries: list[Entry] = [_ENTRY.unpack_from(buf, at + i * _ES) for i in range(count)]
    return (rep, rseq), token_seq, addrs, entries


def fields_of(buf: bytearray | bytes) -> list[Field]:
    """Every integer field of a datagram with its offset and width (docs/wire.md)."""
    n = len(buf)
    if n < _H:
        return []
    out: list[Field] = [("sender", 8, 4)]
    t = buf[3]
    if t == _T_MCAST and n >= _MH:
        out += _mcast_fields("", 0)
        if buf[37] == 1 and n >= 2 * _MH:
            out += [("inner.sender", _MH + 8, 4), *_mcast_fields("inner.", _MH)]
    elif t == _T_TOKEN and n >= _TOKEN.size:
        out += [
            ("ring.rep", 12, 4),
            ("ring.seq", 16, 8),
            ("token_seq", 24, 8),
            ("seq", 32, 8),
            ("aru", 40, 8),
            ("aru_addr", 48, 4),
            ("backlog", 52, 4),
            ("fcc", 56, 4),
            ("retrans_flg", 60, 1),
            ("rtr_count", 61, 2),
        ]
        for i in range(min((n - _TOKEN.size) // _RTR.size, 40)):
            at = _TOKEN.size + i * _RTR.size
            out += [("rtr.rep", at, 4), ("rtr.seq", at + 4, 8), ("rtr.mseq", at + 12, 8)]
    elif t == _T_JOIN and n >= _JOIN.size:
        out += [
            ("flags", 12, 1),
            ("ring_seq", 13, 8),
            ("proc_count", 21, 2),
            ("failed_count", 23, 2),
        ]
        out += [("list.id", _JOIN.size + 4 * i, 4) for i in range(min((n - _JOIN.size) // 4, 800))]
    elif t in (_T_MERGE, _T_CANCEL) and n >= _RING.size:
        out += [("ring.rep", 12, 4), ("ring.seq", 16, 8)]
    elif t == _T_COMMIT and n >= _COMMIT.size:
        out += [
            ("ring.rep", 12, 4),
            ("ring.seq", 16, 8),
            ("token_seq", 24, 8),
            ("memb_index", 32, 2),
            ("count", 34, 2),
        ]
        count = struct.unpack_from("!H", buf, 34)[0]
        if count and n == _COMMIT.size + count * (4 + _ES):
            out += [("member.addr", _COMMIT.size + 4 * i, 4) for i in range(count)]
            for i in range(count):
                at = _COMMIT.size + 4 * count + i * _ES
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


# ------------------------------------------------------------------------------ the oracle


class Hang(BaseException):
    """Raised by the watchdog's SIGALRM handler inside a call that ran too long.

    A BaseException, so that no ``except Exception`` in the code under test can swallow it.
    """


class _Watchdog:
    """SIGALRM armed around each call: a true infinite loop becomes a Hang, not a stuck run.

    Only in the main thread of a process that has SIGALRM (signal handlers live there);
    elsewhere calls are only timed.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.active = (
            seconds > 0
            and hasattr(signal, "setitimer")
            and threading.current_thread() is threading.main_thread()
        )
        self._old: Any = None

    def __enter__(self) -> _Watchdog:
        if self.active:
            self._old = signal.signal(signal.SIGALRM, self._fire)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.active:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._old)

    def _fire(self, signum: int, frame: FrameType | None) -> None:
        raise Hang(f"call still running after {self.seconds:g} s (watchdog)")

    def arm(self) -> None:
        if self.active:
            signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def disarm(self) -> None:
        if self.active:
            signal.setitimer(signal.ITIMER_REAL, 0)


@dataclass
class Failure:
    """A broken promise: what happened, at which datagram, and how to get there again."""

    index: int
    kind: str  # exception, hang, slow, insane, bad output
    detail: str
    call: str  # receive or handle_timer
    datagram: str  # hex of the datagram delivered (the one before the timer, for a timer)
    base: str
    mutations: tuple[str, ...]
    target: str
    trace: str = ""

    def render(self) -> str:
        lines = [
            f"datagram {self.index}: {self.kind} in {self.call}: {self.detail}",
            f"  target: {self.target}",
            f"  datagram ({self.base}, mutations {'+'.join(self.mutations)}): {self.datagram}",
        ]
        if self.trace:
            lines.append("  " + self.trace.rstrip().replace("\n", "\n  "))
        return "\n".join(lines)


#: Failures kept with all their details (the rest are only counted).
FAILURES_KEPT = 20


@dataclass
class FuzzReport:
    """Counts of one run (mergeable across rounds and worker processes)."""

    datagrams: int = 0
    timer_calls: int = 0
    rounds: int = 0
    by_base: Counter[str] = field(default_factory=Counter)
    decoded: Counter[str] = field(default_factory=Counter)
    by_mutation: Counter[str] = field(default_factory=Counter)
    mutation_decoded: Counter[str] = field(default_factory=Counter)
    codec_drops: Counter[str] = field(default_factory=Counter)
    core_drops: Counter[str] = field(default_factory=Counter)
    core_stats: Counter[str] = field(default_factory=Counter)
    effects: Counter[str] = field(default_factory=Counter)
    targets: Counter[str] = field(default_factory=Counter)
    failure_counts: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    slowest_ms: float = 0.0
    slowest_at: int = -1
    slowest_call: str = ""
    real_s: float = 0.0

    @property
    def exceptions(self) -> int:
        return self.failure_counts["exception"]

    @property
    def ok(self) -> bool:
        return not self.failure_counts

    def merge(self, other: FuzzReport) -> None:
        self.datagrams += other.datagrams
        self.timer_calls += other.timer_calls
        self.rounds += other.rounds
        for name in (
            "by_base",
            "decoded",
            "by_mutation",
            "mutation_decoded",
            "codec_drops",
            "core_drops",
            "core_stats",
            "effects",
            "targets",
            "failure_counts",
        ):
            getattr(self, name).update(getattr(other, name))
        room = FAILURES_KEPT - len(self.failures)
        self.failures.extend(sorted(other.failures, key=lambda f: f.index)[: max(0, room)])
        self.failures.sort(key=lambda f: f.index)
        if other.slowest_ms > self.slowest_ms:
            self.slowest_ms = other.slowest_ms
            self.slowest_at = other.slowest_at
            self.slowest_call = other.slowest_call

    def fail(self, failure: Failure) -> None:
        self.failure_counts[failure.kind] += 1
        if len(self.failures) < FAILURES_KEPT:
            self.failures.append(failure)


#: The codec's drop reason for a sequence number at or above 2^62 (not in every version).
_OUT_OF_RANGE = "out_of_range"


def _insane(p: Processor) -> str:
    """A structural invariant the target broke ("" if none): state no input may corrupt."""
    if p.my_aru > p.my_high_seq_received:
        return f"my_aru {p.my_aru} > my_high_seq_received {p.my_high_seq_received}"
    ml = p.memb_list
    if p.nodeid not in ml:
        return f"memb_list {ml} lacks node {p.nodeid}"
    if any(a >= b for a, b in itertools.pairwise(ml)):
        return f"memb_list {ml} not strictly ascending"
    if p.successor not in ml:
        return f"successor {p.successor} not in memb_list {ml}"
    if len(p.memb.proc) > MAX_PROCESSORS:
        return f"{len(p.memb.proc)} processors in the gather set (limit {MAX_PROCESSORS})"
    return ""


#: What a failure report says about its target: captured cheaply before every input and
#: rendered only for a failure.
TargetState = tuple[int, str, RingId, tuple[int, ...], int, int, int, int]


def target_state(p: Processor) -> TargetState:
    return (
        p.nodeid,
        p.state.value,
        p.ring_id,
        p.memb_list,
        p.my_aru,
        p.my_high_seq_received,
        p.last_released,
        p.my_token_seq,
    )


def describe_target(label: str, state: TargetState) -> str:
    node, mstate, ring, members, aru, high, released, token_seq = state
    return (
        f"{label}: node {node} {mstate} ring {ring} members {list(members)} aru {aru} "
        f"high {high} released {released} token_seq {token_seq}"
    )


#: How often each state's snapshots are drawn as targets: a ring is mostly operational.
_STATE_WEIGHTS = {"operational": 2, "gather": 1, "commit": 1, "recovery": 1}


class _Round:
    """One target, ROUND datagrams (or fewer), every call watched and every output checked."""

    def __init__(
        self,
        corpus: Corpus,
        seed: int,
        number: int,
        *,
        report: FuzzReport,
        watchdog: _Watchdog,
        slow_s: float,
        kinds: Sequence[str] | None,
    ) -> None:
        self.corpus = corpus
        self.number = number
        self.report = report
        self.watchdog = watchdog
        self.slow_s = slow_s
        self.kinds = kinds
        self.rng = derive(seed, f"hostile round {number}")
        self.forge = Forge(corpus, self.rng)
        self.cid = corpus.cluster_id
        states = sorted(corpus.targets)
        weights = [_STATE_WEIGHTS.get(state, 1) for state in states]
        state = self.rng.choices(states, weights)[0]
        self.snapshot = self.rng.choice(corpus.targets[state])
        self.proc = self.snapshot.thaw()
        self.now = self.snapshot.now
        self._counters(self.proc)
        report.targets[self.snapshot.state] += 1
        self.trace_line = ""

    def _counters(self, p: Processor) -> None:
        self.base_drops = Counter(p.drops)
        self.base_stats = Counter(p.stats)

    def _retire(self) -> None:
        p = self.proc
        self.report.core_drops.update(Counter(p.drops) - self.base_drops)
        self.report.core_stats.update(Counter(p.stats) - self.base_stats)

    def _reload(self) -> None:
        """After a failure the target's state is suspect: start over from the snapshot."""
        self._retire()
        self.proc = self.snapshot.thaw()
        self._counters(self.proc)

    def run(self, start: int, stop: int, detail_at: int = -1) -> None:
        for index in range(start, stop):
            self.step(index, detail_at == index)
        self._retire()
        self.report.rounds += 1

    def _call(
        self, index: int, what: str, fn: Callable[[], None], forged: Forged, target: TargetState
    ) -> bool:
        """Run one input under the watchdog; False if it failed."""
        report = self.report
        watchdog = self.watchdog
        started = time.perf_counter()
        error: BaseException | None = None
        watchdog.arm()
        try:
            fn()
        except Hang as exc:
            error = exc
        except Exception as exc:  # the oracle: nothing may escape
            error = exc
        finally:
            watchdog.disarm()
        took = time.perf_counter() - started
        if took * 1000.0 > report.slowest_ms:
            report.slowest_ms = took * 1000.0
            report.slowest_at = index
            report.slowest_call = f"{what} of {forged.base} ({'+'.join(forged.mutations)})"
        kind = ""
        if isinstance(error, Hang):
            kind, detail = "hang", str(error)
        elif error is not None:
            kind, detail = "exception", f"{type(error).__name__}: {error}"
        elif took > self.slow_s:
            kind, detail = "slow", f"took {took:.3f} s (limit {self.slow_s:g} s)"
        if not kind:
            return True
        report.fail(
            Failure(
                index=index,
                kind=kind,
                detail=detail,
                call=what,
                datagram=forged.data.hex(),
                base=forged.base,
                mutations=forged.mutations,
                target=describe_target(self.snapshot.label, target),
                trace="".join(traceback.format_exception(error)) if error is not None else "",
            )
        )
        return False

    def step(self, index: int, detail: bool = False) -> None:
        report = self.report
        rng = self.rng
        p = self.proc
        forged = self.forge.make(p, self.kinds)
        data = forged.data
        report.datagrams += 1
        report.by_base[forged.base] += 1
        try:
            msg = decode(data, self.cid)
        except DecodeError as exc:
            msg = None
            report.codec_drops[exc.reason.value] += 1
        for kind in forged.mutations:
            report.by_mutation[kind] += 1
            if msg is not None:
                report.mutation_decoded[kind] += 1
        target = target_state(p)
        before = self._signature(p)
        self.now += rng.expovariate(1 / 3.0)
        if rng.random() < 0.02:
            self.now += rng.uniform(0, 1.5 * p.config.token)
        if detail:
            self.trace_line = "\n".join(
                [
                    f"datagram {index}: round {self.number}, {forged.base} with mutations "
                    f"{'+'.join(forged.mutations)}, {len(data)} bytes",
                    f"  target before: {describe_target(self.snapshot.label, target)}",
                    f"  hex: {data.hex()}",
                    f"  decodes as: {msg!r}"[:2000],
                ]
            )
        now = self.now
        ok = self._call(index, "receive", lambda: p.receive(now, data), forged, target)
        if ok:
            if msg is not None:
                report.decoded[_type_name(msg)] += 1
                self._effects(p, msg, data, before)
            ok = self._check(index, "receive", p, forged, target)
        if ok:
            due = p.next_deadline()
            if due is not None and due <= self.now:
                report.timer_calls += 1
                ok = self._call(index, "handle_timer", lambda: p.handle_timer(now), forged, target)
                ok = ok and self._check(index, "handle_timer", p, forged, target)
        if detail:
            after = describe_target(self.snapshot.label, target_state(p))
            self.trace_line += "\n  target after: " + after
            self.trace_line += "\n  outcome: " + ("ok" if ok else "FAILED")
        if not ok:
            self._reload()

    @staticmethod
    def _signature(p: Processor) -> tuple[Any, ...]:
        m = p.memb
        return (
            p.state,
            p.my_token_seq,
            len(m.proc),
            len(m.failed),
            len(m.consensus),
            m.commit_token_seq,
            p.ring_id,
        )

    def _effects(self, p: Processor, msg: object, data: bytes, before: tuple[Any, ...]) -> None:
        """What the datagram did to the target: proof it got past the first checks."""
        effects = self.report.effects
        after = self._signature(p)
        if before[0] is not after[0]:
            effects[f"state {before[0].value} -> {after[0].value}"] += 1
        if isinstance(msg, OrfToken):
            if p.my_token_seq == msg.token_seq and before[1] != after[1]:
                effects["token accepted"] += 1
        elif isinstance(msg, Mcast):
            held = p.rq.get(msg.seq)
            if held is not None and held[1] is data:
                effects["mcast stored (encapsulated)" if msg.inner else "mcast stored"] += 1
        elif isinstance(msg, Join):
            if before[2:5] != after[2:5] or before[0] is not after[0]:
                effects["join changed the gather sets"] += 1
        elif isinstance(msg, CommitToken) and (before[5] != after[5] or before[6] != after[6]):
            effects["commit token taken"] += 1

    def _check(
        self, index: int, what: str, p: Processor, forged: Forged, target: TargetState
    ) -> bool:
        """Drain the outputs (the driver contract) and check them and the target's state."""
        report = self.report
        bad = ""
        out, p.outbox = p.outbox, []
        events, p.events = p.events, []
        sent = [d for _, d in out]
        for ev in events:
            if isinstance(ev, Deliver):
                report.effects["delivered"] += 1
            elif isinstance(ev, ConfigChange):
                report.effects[
                    "transitional configuration" if ev.transitional else "regular configuration"
                ] += 1
            sent.extend(d for _, d in getattr(ev, "then_send", ()))
        for d in sent:
            try:
                decode(d, self.cid)
            except DecodeError as exc:
                if exc.reason.value == _OUT_OF_RANGE:
                    # A number the core raised past 2^62 by its own +1 (accepted just below):
                    # encodable, though peers drop it. Counted, not a failure.
                    report.effects["emitted out of range (peers drop it)"] += 1
                else:
                    bad = f"emitted an undecodable datagram ({exc}): {d.hex()}"
                    break
        kind = "bad output" if bad else ""
        if not bad:
            bad = _insane(p)
            kind = "insane" if bad else ""
        if not bad:
            return True
        report.fail(
            Failure(
                index=index,
                kind=kind,
                detail=bad,
                call=what,
                datagram=forged.data.hex(),
                base=forged.base,
                mutations=forged.mutations,
                target=describe_target(self.snapshot.label, target),
            )
        )
        return False


def _type_name(msg: object) -> str:
    if isinstance(msg, Mcast):
        return "mcast (encapsulated)" if msg.inner is not None else "mcast"
    return type(msg).__name__


# ------------------------------------------------------------------------------ runs


def _rounds(total: int) -> Iterator[tuple[int, int, int]]:
    """(round number, first index, end index) covering datagrams 0 .. total-1."""
    for number in range(-(-total // ROUND)):
        yield number, number * ROUND, min(total, (number + 1) * ROUND)


def _run_chunk(
    corpus: Corpus,
    seed: int,
    chunk: Sequence[tuple[int, int, int]],
    *,
    watchdog_s: float,
    slow_s: float,
    kinds: Sequence[str] | None,
) -> FuzzReport:
    report = FuzzReport()
    started = time.perf_counter()
    with _Watchdog(watchdog_s) as watchdog:
        for number, start, stop in chunk:
            rnd = _Round(
                corpus, seed, number, report=report, watchdog=watchdog, slow_s=slow_s, kinds=kinds
            )
            rnd.run(start, stop)
    report.real_s = time.perf_counter() - started
    return report


_WORKER_CORPUS: list[Corpus] = []


def _worker_init(corpus: Corpus) -> None:
    _WORKER_CORPUS[:] = [corpus]


_Task = tuple[int, list[tuple[int, int, int]], float, float, Sequence[str] | None]


def _worker(task: _Task) -> FuzzReport:
    seed, chunk, watchdog_s, slow_s, kinds = task
    return _run_chunk(
        _WORKER_CORPUS[0], seed, chunk, watchdog_s=watchdog_s, slow_s=slow_s, kinds=kinds
    )


def fuzz(
    seed: int,
    datagrams: int,
    *,
    nodes: int | None = None,
    jobs: int = 1,
    corpus: Corpus | None = None,
    kinds: Sequence[str] | None = None,
    watchdog_s: float = 10.0,
    slow_s: float = 0.5,
    progress: Callable[[FuzzReport], None] | None = None,
) -> FuzzReport:
    """Feed ``datagrams`` hostile datagrams to live targets harvested from ``seed``.

    ``jobs`` worker processes share the rounds (the result does not depend on it);
    ``kinds`` restricts the mutations (tests); ``progress`` sees the running totals after
    every chunk of rounds.
    """
    if datagrams < 0:
        raise ValueError(f"datagrams must not be negative, got {datagrams}")
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    started = time.perf_counter()
    if corpus is None:
        corpus = harvest(seed, nodes)
    rounds = list(_rounds(datagrams))
    chunks = [rounds[i : i + CHUNK_ROUNDS] for i in range(0, len(rounds), CHUNK_ROUNDS)]
    total = FuzzReport()
    if jobs == 1 or len(chunks) <= 1:
        for chunk in chunks:
            part = _run_chunk(
                corpus, seed, chunk, watchdog_s=watchdog_s, slow_s=slow_s, kinds=kinds
            )
            total.merge(part)
            total.real_s = time.perf_counter() - started
            if progress:
                progress(total)
    else:
        ctx = multiprocessing.get_context("fork")
        work = [(seed, chunk, watchdog_s, slow_s, kinds) for chunk in chunks]
        with ctx.Pool(jobs, initializer=_worker_init, initargs=(corpus,)) as pool:
            for part in pool.imap_unordered(_worker, work):
                total.merge(part)
                total.real_s = time.perf_counter() - started
                if progress:
                    progress(total)
    total.real_s = time.perf_counter() - started
    return total


def replay(
    seed: int,
    index: int,
    *,
    nodes: int | None = None,
    corpus: Corpus | None = None,
    watchdog_s: float = 10.0,
) -> tuple[str, FuzzReport]:
    """Re-run datagram ``index`` of seed ``seed`` (its round up to it) and describe it."""
    if index < 0:
        raise ValueError(f"index must not be negative, got {index}")
    if corpus is None:
        corpus = harvest(seed, nodes)
    number = index // ROUND
    report = FuzzReport()
    with _Watchdog(watchdog_s) as watchdog:
        rnd = _Round(corpus, seed, number, report=report, watchdog=watchdog, slow_s=0.5, kinds=None)
        rnd.run(number * ROUND, index + 1, detail_at=index)
    return rnd.trace_line, report
