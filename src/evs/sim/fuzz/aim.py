"""Where the forge aims: senders, rings and numbers drawn near what one target holds.

Theory of operation. A datagram only reaches a processor's handlers if it gets past the
first checks (duplicate, foreign ring, non-member), so both the fresh datagrams and most
mutations are built from what the target holds, read once per datagram into a ``Target``
(``probe.Target``): its members and the strangers around them, its predecessor on the
ring, ring ids next to its own and its old and past rings, the sequence marks and window
edges it compares against (``anchors``), the next message numbers it is waiting for, commit
token lines like the ones it wrote. ``Aim`` holds what every draw shares: the corpus, the
round's random stream, the cluster id, and the fragment chains each originator left open.
Every method draws from ``rng`` in a fixed order: a round is a pure function of its stream.
"""

from __future__ import annotations

from random import Random

from evs.sim.fuzz.harvest import Corpus
from evs.sim.fuzz.payloads import hostile_groups
from evs.sim.fuzz.probe import Ring, Target
from evs.sim.fuzz.wire import MCAST_SIZE, Entry

__all__ = ["Aim"]


class Aim:
    """The draws shared by fresh datagrams and mutations, for one round's stream."""

    def __init__(self, corpus: Corpus, rng: Random) -> None:
        self.corpus = corpus
        self.rng = rng
        self.cid = corpus.cluster_id
        #: Open fragment chains by originator (payloads.hostile_groups).
        self.chains: dict[int, int] = {}

    # ------------------------------------------------------------------ who

    def others(self, t: Target) -> list[int]:
        return [n for n in t.memb_list if n != t.nodeid] or [t.nodeid % 0xFFFFFFFE + 1]

    def stranger(self, t: Target) -> int:
        known = set(t.memb_list) | set(t.proc)
        return self.rng.choice((max(known) + 1, max(known) + 7, 0xFFFFFFFF, 1000))

    def member(self, t: Target) -> int:
        rng = self.rng
        r = rng.random()
        if r < 0.8:
            return rng.choice(self.others(t))
        if r < 0.9:
            return t.nodeid
        return self.stranger(t)

    def predecessor(self, t: Target) -> int:
        ml = t.memb_list
        if t.nodeid in ml:
            return ml[ml.index(t.nodeid) - 1]
        return ml[-1]

    # ------------------------------------------------------------------ numbers and rings

    def anchors(self, t: Target) -> list[int]:
        """Numbers the target cares about: sequence marks, ring seqs, window edges."""
        slots = t.sort_queue_slots
        return [
            t.ring[1],
            t.token_ring_id_seq,
            t.my_token_seq,
            t.my_aru,
            t.my_high_seq_received,
            t.last_released,
            t.my_high_delivered,
            t.last_released + slots,
            t.last_released + 2 * slots,
            t.my_last_aru,
            t.old_ring[1],
            t.old_aru,
            t.old_high_seq_received,
            t.old_last_released,
            t.old_high_delivered,
            t.old_last_released + 2 * slots,
            t.commit_token_seq,
            t.window_size,
            t.max_messages,
        ]

    def relative(self, t: Target) -> int:
        rng = self.rng
        return rng.choice(self.anchors(t)) + rng.choice((-2, -1, -1, 0, 1, 1, 2, 3, 4, 5, 16))

    def rings(self, t: Target) -> list[Ring]:
        """Ring ids near the target's: its own, its old and past rings, close neighbours."""
        rep, seq = t.ring
        others = self.others(t)
        rings = [
            t.ring,
            (rep, seq + 1),
            (rep, seq - 1),
            (rep, seq + 4),
            (rep + 1, seq),
            (self.rng.choice(others), seq),
            (min(t.memb_list), max(t.token_ring_id_seq, seq) + 4),
            (rep, 0),
        ]
        if t.old_ring[0]:
            rings.append(t.old_ring)
        rings.extend(t.past_rings)
        return rings

    def fresh_seq(self, t: Target) -> int:
        """A message number the target does not have: mostly the next one it delivers."""
        rng = self.rng
        r = rng.random()
        slots = t.sort_queue_slots
        if r < 0.45:
            return t.my_aru + 1
        if r < 0.65:
            return t.my_high_seq_received + 1
        if r < 0.8:
            return t.my_aru + rng.randint(2, 5)
        if r < 0.85:
            return t.last_released + slots
        if r < 0.9:
            return t.last_released + slots + 1
        return t.last_released + rng.randint(1, slots)

    # ------------------------------------------------------------------ commit token lines

    def entry(self, t: Target) -> Entry:
        """A member's line: an old ring near the target's saved one, marks near its own."""
        rng = self.rng
        ring = t.old_or_current
        if rng.random() < 0.3:
            ring = rng.choice(self.rings(t))
        aru = max(
            0,
            rng.choice(
                (
                    t.old_aru,
                    t.old_aru - 1,
                    t.old_last_released,
                    t.old_high_seq_received,
                    t.old_aru + 1,
                    0,
                )
            ),
        )
        high = max(0, rng.choice((t.old_high_delivered, aru, aru - 1, 0)))
        return (1, ring[0], ring[1], aru, high, rng.choice((0, 1)))

    def my_entry(self, t: Target) -> Entry:
        """Our own line as we wrote it into the commit token (so the round is 'ours')."""
        if t.my_entry is not None:
            return t.my_entry
        ring = t.old_or_current
        done = int(t.old_aru == t.old_high_seq_received)
        return (1, ring[0], ring[1], t.old_aru, t.old_high_delivered, done)

    # ------------------------------------------------------------------ payloads

    def payload(self, frm: int) -> bytes:
        """A harvested group payload (real messages, real fragments), sometimes a hostile one."""
        kept = self.corpus.packets.get("mcast")
        if not kept or self.rng.random() < 0.25:
            return self.hostile_groups(frm)
        return self.rng.choice(kept)[MCAST_SIZE:]

    def hostile_groups(self, frm: int) -> bytes:
        return hostile_groups(self.rng, self.chains, frm)
