"""Every read of a live Processor's internal state by the fuzzer, in one place.

Theory of operation. The fuzzer aims its datagrams with numbers only the target knows (its
ring, hop counter, sequence marks, gather sets, saved old ring) and judges the target after
each input by the same internals. None of that is the driver interface (``receive``,
``handle_timer``, ``next_deadline``, ``outbox``, ``events``, ``drops``, ``stats``, ``state``,
``config``), so it is bound to the core's current layout. To keep a change of that layout a
change of this module alone, the rest of ``evs.sim.fuzz`` reads internals only through:

* ``Target(p)``: the forge's view, taken once per datagram before it is delivered and
  used only until then (the forge never reads the processor itself);
* ``glance(p)``: what the trial loop compares before and after an input (to count effects)
  and what a failure report says about its target;
* ``holds(p, seq, data)``: whether the receive queue stores exactly ``data`` at ``seq``;
* ``check_state(p)``: the state invariants no input may break, checked after every call.

The ``Target`` fields keep the names of the attributes they copy (``ring`` is ``ring_id``
as a (rep, seq) pair), so that the mapping is plain.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Set
from typing import Any, NamedTuple

from evs.sim.fuzz.wire import Entry
from evs.totem.codec import MAX_PROCESSORS
from evs.totem.events import MembState
from evs.totem.invariants import Invariants
from evs.totem.processor import Processor
from evs.types import RingId

__all__ = [
    "Glance",
    "Target",
    "check_state",
    "describe_target",
    "glance",
    "holds",
]

#: Ring ids as (rep, seq) pairs, the order they have on the wire.
Ring = tuple[int, int]

#: The core's invariants, walking the sort queue on every 8th check (fuzz calls are many).
_INVARIANTS = Invariants(full_every=8)


class Target:
    """What the forge knows of its target, read when the forge starts on a datagram.

    The constructor is the forge's one read of the processor; the forge uses the view only
    until that datagram is made, before it is delivered.
    """

    __slots__ = (
        "candidates",
        "commit_token_seq",
        "failed",
        "last_released",
        "max_messages",
        "memb_list",
        "my_aru",
        "my_entry",
        "my_high_delivered",
        "my_high_seq_received",
        "my_last_aru",
        "my_token_seq",
        "new_members",
        "nodeid",
        "old_aru",
        "old_high_delivered",
        "old_high_seq_received",
        "old_last_released",
        "old_members",
        "old_ring",
        "past_rings",
        "proc",
        "ring",
        "sort_queue_slots",
        "state",
        "token_ring_id_seq",
        "window_size",
    )

    def __init__(self, p: Processor) -> None:
        self.nodeid: int = p.nodeid
        self.state: MembState = p.state
        self.ring: Ring = _pair(p.ring_id)
        self.token_ring_id_seq: int = p.token_ring_id_seq
        self.memb_list: tuple[int, ...] = p.memb_list
        ring = _ordering(p)
        self.my_token_seq: int = ring.my_token_seq
        self.my_aru: int = ring.my_aru
        self.my_high_seq_received: int = ring.my_high_seq_received
        self.my_high_delivered: int = ring.my_high_delivered
        self.last_released: int = ring.last_released
        self.my_last_aru: int = ring.my_last_aru
        # The saved old ring (recovery state); rep 0 when none was saved.
        (
            self.old_ring,
            self.old_members,
            self.old_aru,
            self.old_high_seq_received,
            self.old_high_delivered,
            self.old_last_released,
        ) = _old_ring(p)
        # The gather sets (the processor's own, read-only here), the candidates on demand
        # (only commit tokens need them), the commit bookkeeping.
        memb = p.memb
        self.proc: Set[int] = memb.proc
        self.failed: Set[int] = memb.failed
        self.candidates: Callable[[], list[int]] = memb.candidates
        self.new_members: tuple[int, ...] = memb.new_members
        self.commit_token_seq: int = memb.commit_token_seq
        self.past_rings: list[Ring] = [_pair(r) for r in memb.past_rings[-4:]]
        # Our line in the commit token as we wrote it. Not every version of the core has
        # it (docs/fuzzing.md runs this fuzzer on 0de91e6).
        mine = getattr(memb, "my_entry", None)
        self.my_entry: Entry | None = (
            None
            if mine is None
            else (
                1,
                mine.old_ring_id.rep,
                mine.old_ring_id.seq,
                mine.aru,
                mine.high_delivered,
                int(mine.received_flg),
            )
        )
        cfg = p.config
        self.sort_queue_slots: int = cfg.sort_queue_slots
        self.window_size: int = cfg.window_size
        self.max_messages: int = cfg.max_messages

    @property
    def old_or_current(self) -> Ring:
        """The saved old ring if there is one, else the current ring."""
        return self.old_ring if self.old_ring[0] else self.ring


def _pair(r: RingId) -> Ring:
    return (r.rep, r.seq)


def _ordering(p: Processor) -> Any:
    """The current ring's ordering state: ``p.ring`` (before 9c3912d, the processor itself)."""
    return getattr(p, "ring", p)


def _old_ring(p: Processor) -> tuple[Ring, tuple[int, ...], int, int, int, int]:
    """The saved old ring as (ring, members, aru, high, delivered, released); rep 0 if none."""
    rec: Any = p.rec
    if not hasattr(rec, "old"):  # the layout before 9c3912d (docs/fuzzing.md's study)
        return (
            _pair(rec.old_ring_id),
            rec.old_members,
            rec.old_aru,
            rec.old_high_seq_received,
            rec.old_high_delivered,
            rec.old_last_released,
        )
    old = rec.old
    if old is None:
        return (0, 0), (), 0, 0, 0, 0
    return (
        _pair(old.ring_id),
        old.members,
        old.aru,
        old.high_seq_received,
        old.high_delivered,
        old.last_released,
    )


class Glance(NamedTuple):
    """The target before or after one input: compared for effects, shown in failure reports."""

    nodeid: int
    state: MembState
    ring_id: RingId
    memb_list: tuple[int, ...]
    my_aru: int
    my_high_seq_received: int
    last_released: int
    my_token_seq: int
    #: Sizes of the gather sets: proc, failed, consensus.
    gather: tuple[int, int, int]
    commit_token_seq: int


def glance(p: Processor) -> Glance:
    m = p.memb
    ring = _ordering(p)
    return Glance(
        p.nodeid,
        p.state,
        p.ring_id,
        p.memb_list,
        ring.my_aru,
        ring.my_high_seq_received,
        ring.last_released,
        ring.my_token_seq,
        (len(m.proc), len(m.failed), len(m.consensus)),
        m.commit_token_seq,
    )


def describe_target(label: str, g: Glance) -> str:
    return (
        f"{label}: node {g.nodeid} {g.state.value} ring {g.ring_id} members "
        f"{list(g.memb_list)} aru {g.my_aru} high {g.my_high_seq_received} "
        f"released {g.last_released} token_seq {g.my_token_seq}"
    )


def holds(p: Processor, seq: int, data: bytes) -> bool:
    """The receive queue stores exactly ``data`` (the same object) at ``seq``."""
    held = _ordering(p).rq.get(seq)
    return held is not None and held[1] is data


def check_state(p: Processor) -> str | None:
    """A structural invariant the target broke (None if none): state no input may corrupt.

    The core's own ``evs.totem.invariants`` where it has them; the basic rules below for
    the layout before 9c3912d.
    """
    if hasattr(p, "ring"):
        broken = _INVARIANTS.check(p)
        return "; ".join(broken) if broken else None
    if p.my_aru > p.my_high_seq_received:  # type: ignore[attr-defined]
        return "my_aru above my_high_seq_received"
    ml = p.memb_list
    if p.nodeid not in ml:
        return f"memb_list {ml} lacks node {p.nodeid}"
    if any(a >= b for a, b in itertools.pairwise(ml)):
        return f"memb_list {ml} not strictly ascending"
    if p.successor not in ml:
        return f"successor {p.successor} not in memb_list {ml}"
    if len(p.memb.proc) > MAX_PROCESSORS:
        return f"{len(p.memb.proc)} processors in the gather set (limit {MAX_PROCESSORS})"
    return None
