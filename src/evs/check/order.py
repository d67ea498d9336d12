"""Total order within one configuration: properties 6.1, 6.2 and 6.3, and the order itself.

Theory of operation. Property 6 asks whether there is one order ``ord`` of the messages of a
regular configuration c such that every node delivers in increasing ``ord`` (6.1), a node's
regular deliveries have no gaps (6.2), and in a transitional configuration a delivery after a
gap comes from a member of it (6.3). The checker builds such an order, or shows why none
exists, in linear time for the common case:

* Regular parts are gap-free prefixes of ``ord``, so they must be prefixes of one another: the
  longest is the *backbone*, fixed at the front of ``ord``, and every other regular part is
  compared with it (6.1 if some pair is inverted, 6.2 otherwise). Any message off the
  backbone must come after all of it (else the backbone's node skipped it, 6.2).
* Only the transitional parts (short: they happen at membership changes) may hold messages
  off the backbone, the *rest*. Their relative order is free except for what deliveries fix:
  each node's sequence, and for 6.3, "a node that delivered m from a non-member after a gap
  must have delivered everything before m", i.e. every rest message it never delivered comes
  after m. A topological sort of these constraints gives the rest of ``ord``; a cycle is a
  violation (6.3 if it needs a 6.3 constraint, 6.1 otherwise).

With ``handle_traces``, an incarnation's first configuration may be a gap-free *tail* (an
application handle joined mid-stream, api.md section 4): such regular parts are merged into
the backbone where they overlap it instead of being compared as prefixes.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from evs.check.model import Epoch
from evs.check.report import Violation, violation

__all__ = ["ConfigOrder", "order_configuration"]

Event = dict[str, Any]
Label = tuple[str, Epoch]  # ("seq" | "gap", epoch that imposes the edge)
#: How many steps of an order cycle a 6.1/6.3 message spells out.
_CYCLE_PARTS_MAX = 6
#: Which epoch delivered reference positions p..hi in its regular part, and at what index.
Owner = Callable[[int, "int | None"], "tuple[Epoch, int] | None"]
#: A run to compare regular parts with: its messages, their positions, its owner.
Reference = tuple[list[str], dict[str, int], Owner]


def _run_owner(e: Epoch, length: int) -> Owner:
    def owner(p: int, hi: int | None) -> tuple[Epoch, int] | None:
        return (e, p) if p >= 0 and (p if hi is None else hi) < length else None

    return owner


@dataclass(slots=True)
class ConfigOrder:
    """``ord`` of one configuration: position of every delivered message, and for each epoch
    whose regular part is a gap-free run of ``ord``, the position where that run starts."""

    ring: str
    pos: dict[str, int]
    offsets: dict[Epoch, int]
    backbone: list[str] = field(default_factory=list)

    def owed_after_join(self, e: Epoch, msgs: set[str]) -> set[str]:
        """Of ``msgs``, what a node that joined mid-stream (handle traces) still owes: those
        from the start of its gap-free run on; nothing when its run could not be placed."""
        off = self.offsets.get(e)
        if off is None:
            return set()
        pos = self.pos
        return {m for m in msgs if pos.get(m, off) >= off}


class _Orderer:
    def __init__(
        self, ring: str, epochs: list[Epoch], out: list[Violation], handle_traces: bool
    ) -> None:
        self.ring = ring
        self.handle_traces = handle_traces
        self.epochs = epochs
        self.out = out
        self.b: list[str] = []
        self.bpos: dict[str, int] = {}
        self.offsets: dict[Epoch, int] = {}
        self.flagged: dict[str, set[Epoch]] = {"6.1": set(), "6.2": set(), "6.3": set()}
        self.rest: dict[str, int] = {}
        self.succ: dict[str, list[tuple[str, Label]]] = {}
        self.indeg: dict[str, int] = {}
        self.gap_ends: list[tuple[Epoch, str]] = []

    # -- reporting -------------------------------------------------------------------------
    def report(self, prop: str, e: Epoch, message: str, *events: Event | None) -> None:
        if e not in self.flagged[prop]:
            self.flagged[prop].add(e)
            self.out.append(violation(prop, f"in {self.ring}, {message}", *events))

    def owner(self, p: int, hi: int | None = None) -> tuple[Epoch, int] | None:
        """An epoch whose regular part delivered backbone positions ``p..hi``, and where."""
        hi = p if hi is None else hi
        for e, off in self.offsets.items():
            if off <= p and hi < off + e.reg_len:
                return e, p - off
        return None

    def inverted(
        self, e: Epoch, kx: int, km: int, p: int, last_p: int, *, owner: Owner | None = None
    ) -> None:
        """6.1: ``e`` delivered reference positions ``last_p`` (index kx) then ``p`` < last_p."""
        x, m, evs = e.delivered[kx], e.delivered[km], e.deliver_events
        hit = (owner or self.owner)(p, last_p)
        if hit is None:
            self.report(
                "6.1",
                e,
                f"{e.label()} delivered {x} before {m}, but the regular "
                f"deliveries of this configuration have {m} first",
                evs[kx],
                evs[km],
            )
            return
        q, qk = hit
        self.report(
            "6.1",
            e,
            f"{e.label()} delivered {x} before {m}, but {q.label()} delivered {m} before {x}",
            evs[kx],
            evs[km],
            q.deliver_events[qk],
            q.deliver_events[qk + last_p - p],
        )

    # -- backbone (regular parts) ----------------------------------------------------------
    def extend(self, msgs: list[str]) -> None:
        for m in msgs:
            self.bpos[m] = len(self.b)
            self.b.append(m)

    def heads(self, heads: list[Epoch]) -> None:
        if not heads:
            return
        longest = max(heads, key=lambda e: e.reg_len)
        self.extend(longest.regular())
        self.offsets[longest] = 0
        b = self.b
        for e in heads:
            if e is longest:
                continue
            r = e.regular()
            if r == b[: len(r)]:
                self.offsets[e] = 0
            else:
                self.diagnose(e, r, 0)

    def tails(self, tails: list[Epoch]) -> None:
        """Handle traces: merge first-configuration runs into the backbone where they overlap
        it. Runs that never meet it start after it; with no backbone at all nothing says
        where a run starts, so those are only compared with one another."""
        pending = [e for e in tails if e.reg_len > 0]
        while self.b and pending:
            remaining = []
            for e in pending:
                r = e.regular()
                j = self.bpos.get(r[0])
                if j is None:
                    remaining.append(e)
                    continue
                overlap = min(len(r), len(self.b) - j)
                beyond = r[overlap:]
                if r[:overlap] != self.b[j : j + overlap] or any(m in self.bpos for m in beyond):
                    self.diagnose(e, r, j)
                    continue
                self.offsets[e] = j
                self.extend(beyond)
            if len(remaining) == len(pending):
                break
            pending = remaining
        self.pairwise(pending)

    def pairwise(self, runs: list[Epoch]) -> None:
        """Two gap-free runs of one order that overlap agree on the overlap."""
        regs = [(e, e.regular()) for e in runs]
        maps = [{m: i for i, m in enumerate(r)} for _, r in regs] if len(regs) > 1 else []
        for a, (e, r) in enumerate(regs):
            for b, (q, ref) in enumerate(regs):
                j = maps[b].get(r[0]) if a != b else None
                if j is None:
                    continue
                overlap = min(len(r), len(ref) - j)
                if r[:overlap] != ref[j : j + overlap]:
                    self.diagnose(e, r, j, (ref, maps[b], _run_owner(q, len(ref))))
                    break

    def diagnose(self, e: Epoch, r: list[str], off: int, against: Reference | None = None) -> None:
        """Say why regular part ``r`` is not the reference run from ``off``: 6.1 or 6.2.
        The reference is the backbone unless given as (sequence, positions, owner)."""
        ev = e.deliver_events
        ref, rpos, owner = against or (self.b, self.bpos, self.owner)
        last_p, last_k = -1, -1
        for k, m in enumerate(r):
            p = rpos.get(m)
            if p is None:
                continue
            if p < last_p:
                self.inverted(e, last_k, k, p, last_p, owner=owner)
                return
            last_p, last_k = p, k
        i = next(k for k in range(len(r)) if off + k >= len(ref) or r[k] != ref[off + k])
        x = r[i]
        hit = owner(min(off + i, len(ref) - 1), None)
        assert hit is not None, "every reference position has an owner"
        q, qk = hit
        y = q.delivered[qk]
        if x in rpos:
            text = (
                f"{e.label()} delivered {x} in the regular configuration without first "
                f"delivering {y}, which {q.label()} delivered before it"
            )
        elif y in set(r):
            text = (
                f"{q.label()} delivered {y} in the regular configuration without first "
                f"delivering {x}, which {e.label()} delivered before it"
            )
        else:
            text = (
                f"regular deliveries of {e.label()} and {q.label()} diverge: one delivered "
                f"{x}, the other {y}, in the same place"
            )
        self.report("6.2", e, text, ev[i], q.deliver_events[qk])

    # -- rest (transitional parts, and regular parts off the backbone) ---------------------
    def edge(self, a: str, b: str, label: Label) -> None:
        self.succ.setdefault(a, []).append((b, label))
        self.indeg[b] = self.indeg.get(b, 0) + 1

    def scan(self, e: Epoch) -> None:
        """Check ``e``'s deliveries past its backbone run; collect rest messages and edges."""
        seq, evs, n_reg = e.delivered, e.deliver_events, e.reg_len
        off = self.offsets.get(e)
        if off is None:
            start, last_p, frontier = 0, -1, None
        else:
            start, last_p, frontier = n_reg, off + n_reg - 1, off + n_reg
        if start >= len(seq):
            return
        tm = e.trans_members
        bpos, b, rest = self.bpos, self.b, self.rest
        last_k, first_rest, prev_rest, gap_end = start - 1, -1, None, None
        for k in range(start, len(seq)):
            m = seq[k]
            outsider = tm is not None and k >= n_reg and evs[k]["sender"] not in tm
            p = bpos.get(m)
            if p is not None:
                if first_rest >= 0:
                    x = seq[first_rest]
                    hit = self.owner(p)
                    assert hit is not None, "every backbone position has an owner"
                    q, qk = hit
                    self.report(
                        "6.2",
                        e,
                        f"{e.label()} delivered {x} before {m}, but "
                        f"{q.label()} delivered {m} in the regular configuration "
                        f"without first delivering {x}",
                        evs[first_rest],
                        evs[k],
                        q.deliver_events[qk],
                    )
                    continue
                if p <= last_p:
                    self.inverted(e, last_k, k, p, last_p)
                    continue
                if frontier is not None:
                    if outsider and p > frontier:
                        self.gap(e, k, b[frontier])
                    if p == frontier:
                        frontier += 1
                last_p, last_k = p, k
            else:
                if outsider and frontier is not None and frontier < len(b):
                    self.gap(e, k, b[frontier])
                if m not in rest:
                    rest[m] = len(rest)
                if prev_rest is not None:
                    self.edge(prev_rest, m, ("seq", e))
                prev_rest = m
                if first_rest < 0:
                    first_rest = k
                if outsider:
                    gap_end = m
        if gap_end is not None and not (self.handle_traces and e.first and off is None):
            # (a handle's run we could not place may have joined after what it misses)
            self.gap_ends.append((e, gap_end))

    def gap(self, e: Epoch, k: int, missing: str) -> None:
        m, ev = e.delivered[k], e.deliver_events[k]
        self.report(
            "6.3",
            e,
            f"{e.label()} delivered {m} from node {ev['sender']}, not a "
            "member of its transitional configuration, after a gap: it never "
            f"delivered {missing} before it",
            ev,
            e.trans_event,
        )

    def gap_edges(self) -> None:
        """6.3 as constraints: after a gap-crossing delivery of m, what e never delivered is
        later than m (only e's last such delivery matters; its sequence orders the others)."""
        for e, m in self.gap_ends:
            got = set(e.delivered)
            for x in self.rest:
                if x not in got:
                    self.edge(m, x, ("gap", e))

    def sort_rest(self) -> list[str]:
        rest, indeg, succ = self.rest, self.indeg, self.succ
        names = list(rest)
        heap = [i for i, m in enumerate(names) if indeg.get(m, 0) == 0]
        heapq.heapify(heap)
        order: list[str] = []
        while heap:
            m = names[heapq.heappop(heap)]
            order.append(m)
            for nxt, _ in succ.get(m, ()):
                indeg[nxt] -= 1
                if indeg[nxt] == 0:
                    heapq.heappush(heap, rest[nxt])
        if len(order) < len(names):
            placed = set(order)
            stuck = [m for m in names if m not in placed]
            self.report_cycle(stuck)
            order.extend(stuck)
        return order

    def report_cycle(self, stuck: list[str]) -> None:
        alive = set(stuck)
        preds: dict[str, tuple[str, Label]] = {}
        for a in stuck:
            for nxt, label in self.succ.get(a, ()):
                if nxt in alive and nxt not in preds:
                    preds[nxt] = (a, label)
        walk, seen, cur = [], {stuck[0]: 0}, stuck[0]
        while True:
            a, label = preds[cur]
            walk.append((a, cur, label))
            if a in seen:
                cycle = walk[seen[a] :][::-1]
                break
            seen[a] = len(walk)
            cur = a
        parts: list[str] = []
        events: list[Event] = []
        i = 0
        while i < len(cycle):
            a, bb, (kind, e) = cycle[i]
            while kind == "seq" and i + 1 < len(cycle) and cycle[i + 1][2] == ("seq", e):
                i += 1
                bb = cycle[i][1]
            i += 1
            if len(parts) == _CYCLE_PARTS_MAX:
                parts.append(f"and {len(cycle) - i + 1} more step(s)")
                break
            where = e.delivered.index  # a violation path: a scan per shown step is fine
            if kind == "seq":
                parts.append(f"{e.label()} delivered {a} before {bb}")
                events += [e.deliver_events[where(a)], e.deliver_events[where(bb)]]
            else:
                parts.append(
                    f"{e.label()} delivered {a} from a non-member of its transitional "
                    f"configuration after a gap, so {bb}, which it never delivered, "
                    "is later"
                )
                events.append(e.deliver_events[where(a)])
        prop = "6.3" if any(label[0] == "gap" for _, _, label in cycle) else "6.1"
        self.out.append(
            violation(
                prop,
                f"in {self.ring}, no single order fits the deliveries: " + "; ".join(parts),
                *events[:8],
            )
        )


def order_configuration(
    ring: str, epochs: list[Epoch], out: list[Violation], *, handle_traces: bool
) -> ConfigOrder:
    """Judge 6.1-6.3 for regular configuration ``ring`` and return the order it found."""
    o = _Orderer(ring, epochs, out, handle_traces)
    o.heads([e for e in epochs if not (handle_traces and e.first)])
    if handle_traces:
        o.tails([e for e in epochs if e.first])
    for e in epochs:
        o.scan(e)
    o.gap_edges()
    pos = o.bpos
    base = len(o.b)
    for i, m in enumerate(o.sort_rest()):
        pos[m] = base + i
    return ConfigOrder(ring, pos, o.offsets, o.b)
