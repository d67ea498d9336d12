"""The processor's invariants, checked after every input in tests, the simulator and the fuzzer.

Theory of operation. Each rule below is something the protocol relies on but no single line of
code enforces: the ordering marks of one ring stay in order, the sort queue stays within its
window and holds every packet up to the aru, membership sets stay consistent with the state,
the saved old ring exists exactly while a change is under way, and a started processor always
has a timer (or it could fall silent for good). ``Invariants.check`` returns the broken ones
as text rather than raising, so the simulator can report them as violations of a seed with
its replay command, and ``check_invariants`` raises for unit tests.

Some rules compare with the previous check (per-ring marks never go back): an ``Invariants``
object remembers, per processor, the ring object it last saw and its marks. The rules that
walk the sort queue cost as much as the queue is long, so they run on every ``full_every``-th
check (every check for ``check_invariants``); their cheap parts (the ends of the queue) run
every time. Membership rules run on every input outside OPERATIONAL, where membership
changes, and on full checks inside it. The daemon runs them only when asked to (``paranoid``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from evs.totem.codec import MAX_PROCESSORS
from evs.totem.events import MembState
from evs.totem.membership import RING_HISTORY

if TYPE_CHECKING:
    from evs.totem.ordering import RingOrdering
    from evs.totem.processor import Processor

__all__ = ["Invariants", "check_invariants"]

_RECOVERING: Final = (MembState.COMMIT, MembState.RECOVERY)


class Invariants:
    """Checks processors, remembering what it saw of each ring to check monotonicity."""

    def __init__(self, full_every: int = 32) -> None:
        #: Per node id: the ring object last seen and (token seq, aru, released) on it.
        self._last: dict[int, tuple[RingOrdering, int, int, int]] = {}
        self.full_every = max(1, full_every)
        self._calls = 0

    def check(self, p: Processor) -> list[str]:
        """Every invariant ``p`` breaks right now (empty when all hold)."""
        broken: list[str] = []
        self._calls += 1
        full = self._calls % self.full_every == 0
        _marks(p, broken, full=full)
        if full or p.state is not MembState.OPERATIONAL:
            # Membership only changes outside OPERATIONAL (and at the install that ends it).
            _members(p, broken)
            _membership(p, broken)
            _recovery(p, broken)
        if p.started and p.timers.next_deadline() is None:
            broken.append("a started processor has no timer armed: it could fall silent")
        self._monotone(p, broken)
        return [f"node {p.nodeid} ({p.state.value}): {b}" for b in broken]

    def _monotone(self, p: Processor, broken: list[str]) -> None:
        ring = p.ring
        now = (ring, ring.my_token_seq, ring.my_aru, ring.last_released)
        last = self._last.get(p.nodeid)
        self._last[p.nodeid] = now
        if last is None or last[0] is not ring:
            return
        names = ("token seq", "aru", "released mark")
        for name, before, after in zip(names, last[1:], now[1:], strict=True):
            if after < before:
                broken.append(f"{name} went back on one ring: {before} -> {after}")


def check_invariants(p: Processor) -> None:
    """Raise AssertionError naming every broken invariant (for tests)."""
    broken = Invariants(full_every=1).check(p)
    if broken:
        raise AssertionError("; ".join(broken))


def _members(p: Processor, broken: list[str]) -> None:
    members = p.memb_list
    if list(members) != sorted(set(members)):
        broken.append(f"members not sorted and unique: {members}")
    if p.nodeid not in members:
        broken.append(f"not a member of its own ring {members}")
        return
    if p.member_set != frozenset(members):
        broken.append("member set differs from the member list")
    idx = members.index(p.nodeid)
    if p.successor != members[(idx + 1) % len(members)]:
        broken.append(f"successor {p.successor} is not the next member of {members}")


def _marks(p: Processor, broken: list[str], *, full: bool) -> None:
    ring = p.ring
    window = p.config.sort_queue_slots
    released, delivered = ring.last_released, ring.my_high_delivered
    aru, high = ring.my_aru, ring.my_high_seq_received
    if not released <= aru <= high:
        broken.append(f"marks out of order: released {released}, aru {aru}, high {high}")
    if p.state is MembState.OPERATIONAL and not released <= delivered <= aru:
        broken.append(f"delivered {delivered} outside released {released}..aru {aru}")
    if len(ring.rq) > window:
        broken.append(f"sort queue holds {len(ring.rq)} packets, window is {window}")
    if aru > released and (aru not in ring.rq or released + 1 not in ring.rq):
        broken.append(f"aru {aru} above released {released}, but an end is not held")
    if high > released and high not in ring.rq:
        broken.append(f"highest seq {high} is not held")
    if full and ring.rq:
        low, top = min(ring.rq), max(ring.rq)
        if low <= released or top > released + window or top > high:
            broken.append(
                f"sort queue spans {low}..{top}: outside released {released} + window "
                f"{window} or above high {high}"
            )
    if full:
        missing = [s for s in range(released + 1, aru + 1) if s not in ring.rq]
        if missing:
            broken.append(f"aru {aru} but seqs {missing[:5]} are not held")
    if len(ring.miss) > window:
        broken.append(f"{len(ring.miss)} holes counted, more than the window")


def _membership(p: Processor, broken: list[str]) -> None:
    m = p.memb
    if p.nodeid not in m.proc:
        broken.append("not in its own proc set")
    if not m.failed <= m.proc:
        broken.append(f"failed {sorted(m.failed - m.proc)} outside proc")
    if not set(m.heard) <= m.proc:
        broken.append("JOIN times kept for processors outside proc")
    if len(m.proc) > MAX_PROCESSORS:
        broken.append(f"proc holds {len(m.proc)} processors, limit {MAX_PROCESSORS}")
    if len(m.past_rings) > RING_HISTORY:
        broken.append(f"{len(m.past_rings)} past rings remembered, limit {RING_HISTORY}")
    discarding = p.state in (MembState.GATHER, MembState.COMMIT)
    if p.started and p.orf_token_discard != discarding:
        broken.append(f"orf_token_discard is {p.orf_token_discard} in {p.state.value}")


def _recovery(p: Processor, broken: list[str]) -> None:
    rec = p.rec
    old = rec.old
    if p.state in _RECOVERING and old is None:
        broken.append("no saved old ring during a change")
    if p.state is MembState.RECOVERY and rec.plan is None:
        broken.append("in RECOVERY without a recovery plan")
    if p.state is MembState.OPERATIONAL and (old is not None or rec.plan is not None):
        broken.append("an old ring or recovery plan is kept on an operational ring")
    if p.state not in _RECOVERING and (rec.retrans_queue or rec.recovered):
        broken.append("recovery traffic kept outside RECOVERY")
    if old is not None and rec.recovered:
        bound = old.last_released + 2 * p.config.sort_queue_slots
        if min(rec.recovered) <= old.last_released or max(rec.recovered) > bound:
            broken.append("a recovered old-ring message lies outside the old ring's window")
