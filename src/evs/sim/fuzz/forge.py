"""The forge: one hostile datagram at a time for one live target, fresh and then mutated.

Theory of operation. ``Forge.make`` draws a base kind (a third of the tokens start a burst
of 2 to 6 tokens, which is what it takes to get a RECOVERY target to install), makes it
*fresh* for the target (92 %) or takes a harvested one as it was (stale or foreign), then
applies 0 to 3 mutations (``mutate``). Fresh means new to the target, so that it gets past
the first checks into the handlers:

* a token carries the target's ring, its next hop counter, ``seq`` and ``aru`` around what
  it holds, retransmission requests for messages it holds;
* an mcast carries the target's ring, a sequence number it lacks (mostly the next one), an
  originator that is a member and a harvested (a quarter of the time hostile) payload;
* an encapsulated mcast wraps an old-ring message aimed at the target's saved old ring;
* a JOIN comes from a member (or a stranger) with the target's own gather sets, often
  exactly (consensus), sometimes with one more node or one more failure;
* a commit token is the first rotation of a ring of the target's candidates for a GATHER
  target, the returning token with the target's own line for a COMMIT or RECOVERY one;
* MERGE_DETECT and TOKEN_HOLD_CANCEL name the target's ring or one near it.

The target is read once per datagram (``probe.Target``); the bytes are packed raw
(``wire``), never by the codec's encoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from random import Random
from typing import Any

from evs.sim.fuzz import mutate
from evs.sim.fuzz.aim import Aim
from evs.sim.fuzz.harvest import Corpus
from evs.sim.fuzz.mutate import MUTATIONS
from evs.sim.fuzz.probe import Target
from evs.sim.fuzz.wire import (
    ABSENT,
    KINDS,
    MCAST_SIZE,
    T_CANCEL,
    T_MERGE,
    TOKEN,
    Entry,
    pack_commit,
    pack_join,
    pack_mcast,
    pack_ring_only,
    pack_token,
    put_ring,
)
from evs.totem.events import MembState
from evs.totem.processor import Processor

__all__ = ["Forge", "Forged"]

#: The weights base kinds (wire.KINDS) are drawn with.
_KIND_WEIGHTS = (24, 30, 12, 14, 12, 4, 4)


@dataclass
class Forged:
    """One hostile datagram: the bytes, the kind it started as and the mutations applied."""

    data: bytes
    base: str
    mutations: tuple[str, ...]


class Forge(Aim):
    """Makes fresh, then hostile, datagrams for one target from a corpus and a seeded rng.

    Fresh means new to the target: its current ring, the next token hop, the next message
    sequence numbers, senders that are members, commit tokens that name it where it expects
    them. The mutations then break one or more fields. Some per-round state (fragment chains
    per originator, a pending burst of tokens) lets consecutive datagrams build on each other.
    """

    def __init__(self, corpus: Corpus, rng: Random) -> None:
        super().__init__(corpus, rng)
        self.burst = 0

    # ------------------------------------------------------------------ entry points

    def make(self, p: Processor, kinds: Sequence[str] | None = None) -> Forged:
        """The next datagram for ``p``; ``kinds`` restricts the mutations drawn."""
        rng = self.rng
        t = Target(p)
        if self.burst > 0:
            self.burst -= 1
            base = "token"
        else:
            base = rng.choices(KINDS, _KIND_WEIGHTS)[0]
        fresh = rng.random() < 0.92
        data = self._fresh(t, base) if fresh else self._harvested(t, base)
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
            out = mutate.apply(self, t, buf, kind)
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
        return self._fresh(Target(p), base)

    def mutate(self, p: Processor, data: bytes, kind: str) -> bytes | None:
        """``data`` with one mutation of ``kind`` (None if it does not apply to this datagram)."""
        if kind not in MUTATIONS:
            raise ValueError(f"unknown mutation {kind!r}; known: {', '.join(MUTATIONS)}")
        if kind == "none":
            return data
        out = mutate.apply(self, Target(p), bytearray(data), kind)
        return None if out is None else bytes(out)

    def _harvested(self, t: Target, base: str) -> bytes:
        """A harvested datagram as it was (stale or foreign to the target), or a fresh one."""
        kept = self.corpus.packets.get(base)
        if not kept:
            return self._fresh(t, base)
        return self.rng.choice(kept)

    # ------------------------------------------------------------------ fresh datagrams

    def _fresh(self, t: Target, base: str) -> bytes:
        if base == "token":
            return self._fresh_token(t)
        if base == "mcast":
            return self._fresh_mcast(t)
        if base == "encap":
            return self._fresh_encap(t)
        if base == "join":
            return self._fresh_join(t)
        if base == "commit":
            return self._fresh_commit(t)
        mtype = T_MERGE if base == "merge" else T_CANCEL
        rng = self.rng
        ring = rng.choice(self.rings(t))
        if base == "cancel" and rng.random() < 0.8:
            ring = t.ring
        sender = self.member(t) if rng.random() < 0.7 else self.stranger(t)
        return pack_ring_only(mtype, self.cid, sender, ring)

    def _harvested_token(self) -> tuple[Any, ...] | None:
        """The fields of a harvested token, or None."""
        kept = self.corpus.packets.get("token")
        if not kept:
            return None
        data = self.rng.choice(kept)
        return TOKEN.unpack_from(data) if len(data) >= TOKEN.size else None

    def _fresh_token(self, t: Target) -> bytes:
        rng = self.rng
        held = self._harvested_token()
        backlog, fcc = (held[11], held[12]) if held else (0, 0)
        if rng.random() < 0.5:
            backlog, fcc = rng.randint(0, 5), rng.randint(0, t.window_size)
        high = t.my_high_seq_received
        seq = rng.choice((high, high, high, high + 1, high + 2, t.my_aru))
        aru = rng.choice((seq, seq, t.my_aru, t.my_last_aru, max(0, seq - 1)))
        aru_addr = rng.choice((0, 0, t.nodeid, self.member(t)))
        retrans = 1 if t.state is MembState.RECOVERY and rng.random() < 0.2 else 0
        rtr: list[tuple[int, int, int]] = []
        if rng.random() < 0.3:
            lo = t.last_released + 1
            for _ in range(rng.randint(1, 4)):
                rtr.append((*t.ring, rng.randint(lo, max(lo, high + 2))))
        token_seq = t.my_token_seq + rng.choice((1, 1, 1, 2, 3))
        return pack_token(
            self.cid,
            self.predecessor(t),
            t.ring,
            token_seq,
            seq,
            aru,
            aru_addr,
            backlog,
            fcc,
            retrans,
            rtr,
        )

    def _fresh_mcast(self, t: Target) -> bytes:
        rng = self.rng
        frm = self.member(t)
        sender = frm if rng.random() < 0.8 else self.member(t)
        guarantee = 2 if rng.random() < 0.75 else 3
        seq = self.fresh_seq(t)
        return pack_mcast(self.cid, sender, t.ring, seq, frm, guarantee, 0, self.payload(frm))

    def _fresh_inner(self, t: Target) -> bytes:
        """An old-ring mcast as recovery re-sends it, aimed at the target's saved old ring."""
        rng = self.rng
        ring = t.old_or_current
        if rng.random() < 0.2:
            ring = rng.choice(self.rings(t))
        members = t.old_members or t.memb_list
        frm = rng.choice(members) if rng.random() < 0.9 else self.stranger(t)
        base = max(t.old_last_released, t.old_aru)
        seq = rng.choice(
            (
                base + 1,
                base + 2,
                t.old_high_seq_received + 1,
                t.old_high_delivered + 1,
                base + rng.randint(1, 40),
            )
        )
        guarantee = 2 if rng.random() < 0.7 else 3
        return pack_mcast(self.cid, frm, ring, seq, frm, guarantee, 0, self.payload(frm))

    def _fresh_encap(self, t: Target) -> bytes:
        rng = self.rng
        kept = self.corpus.packets.get("encap")
        if kept and rng.random() < 0.3:
            inner = bytearray(rng.choice(kept)[MCAST_SIZE:])
            if len(inner) >= MCAST_SIZE:  # keep the harvested content, aim it at our old ring
                ring = t.old_or_current
                put_ring(inner, 12, ring)
            inner_b = bytes(inner)
        else:
            inner_b = self._fresh_inner(t)
        sender = self.member(t)
        return pack_mcast(self.cid, sender, t.ring, self.fresh_seq(t), sender, 2, 1, inner_b)

    def _fresh_join(self, t: Target) -> bytes:
        rng = self.rng
        r = rng.random()
        if r < 0.55:
            sender = rng.choice(self.others(t))
        elif r < 0.75 and len(t.proc) > 1:
            sender = rng.choice(sorted(t.proc - {t.nodeid}) or [self.stranger(t)])
        elif r < 0.95:
            sender = self.stranger(t)
        else:
            sender = t.nodeid
        seq = t.ring[1]
        ring_seq = rng.choice(
            (
                seq,
                seq,
                seq - 1,
                seq + 1,
                t.token_ring_id_seq,
                t.token_ring_id_seq + 4,
                t.old_ring[1],
            )
        )
        procs = set(t.proc) | {sender}
        failed = set(t.failed)
        r = rng.random()
        if r < 0.2:
            procs |= set(t.memb_list)
        elif r < 0.3:
            procs.add(self.stranger(t))
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

    def _fresh_commit(self, t: Target) -> bytes:
        rng = self.rng
        second = t.state in (MembState.COMMIT, MembState.RECOVERY) or (
            t.state is MembState.OPERATIONAL and rng.random() < 0.5
        )
        sender = self.predecessor(t)
        if second:
            # The token back from its first rotation: complete, our line as we wrote it.
            addrs = list(t.new_members) or list(t.memb_list)
            if t.nodeid not in addrs:
                addrs = sorted({*addrs, t.nodeid})
            entries: list[Entry] = []
            for node in addrs:
                if node == t.nodeid and rng.random() < 0.9:
                    entries.append(self.my_entry(t))
                else:
                    entries.append(self.entry(t))
            token_seq = max(0, t.commit_token_seq) + rng.choice((1, 1, 2, len(addrs)))
            return pack_commit(self.cid, sender, t.ring, token_seq, len(addrs), addrs, entries)
        # First rotation: a new ring of our candidates, reaching us at our index.
        addrs = t.candidates() if rng.random() < 0.85 else sorted({*t.proc, t.nodeid})
        if t.nodeid not in addrs:
            addrs = sorted({*addrs, t.nodeid})
        idx = addrs.index(t.nodeid)
        entries = [self.entry(t) for _ in addrs[:idx]] + [ABSENT] * (len(addrs) - idx)
        rseq = max(t.token_ring_id_seq, t.ring[1]) + rng.choice((4, 4, 1, 8))
        ring = (addrs[0], rseq)
        return pack_commit(self.cid, sender, ring, rng.randint(0, idx + 1), idx, addrs, entries)
