"""Causal order (property 5) within one configuration, in linear time.

Theory of operation. ``m1 -> m2`` (both sent in c) when the same sender sent m1 first, or
m2's sender delivered m1 before sending m2, or transitively. Checking every pair is quadratic,
so the check uses two facts:

* Direct edges suffice. If every delivery of m2 at p comes after p's deliveries of m2's direct
  predecessors, then by induction on p's delivery sequence it comes after all transitive ones.
  The direct predecessors of a send are the sender's previous send in c (FIFO) and what the
  sender delivered in c since that previous send; what it delivered before is covered by the
  FIFO predecessor. So the predecessor lists of all sends together are as long as the
  deliveries of the senders: linear.
* Most deliveries need no list walk. With ``ord`` from ``order.py``, each node's *frontier*
  (every position below it already delivered) is known; if all predecessors of m2 sit below
  the frontier, m2 is fine. Only otherwise (gaps in a transitional configuration, or an actual
  violation) are the predecessors looked up one by one.
"""

from __future__ import annotations

from evs.check.model import Epoch, SendRec
from evs.check.order import ConfigOrder
from evs.check.report import Violation, violation

__all__ = ["check_causal_order"]


def _predecessors(s: Epoch, k: int, ring: str, sends: dict[str, SendRec]) -> list[tuple[str, str]]:
    """Direct causal predecessors of ``s.sends[k]`` sent in ``ring``, each with why."""
    lo = s.send_cuts[k - 1] if k else 0
    preds = [(s.sends[k - 1], "sent before it by the same node")] if k else []
    for m1 in s.delivered[lo : s.send_cuts[k]]:
        rec = sends.get(m1)
        if rec is not None and rec.ring == ring:
            preds.append((m1, f"delivered by node {s.node} before it sent"))
    return preds


def _needs(
    ring: str, epochs: list[Epoch], order: ConfigOrder, sends: dict[str, SendRec]
) -> tuple[dict[str, int], dict[str, tuple[Epoch, int]]]:
    """For each message sent in ``ring``: the highest ``ord`` position of its direct
    predecessors (len(ord) if one was never delivered), and where its send is."""
    pos, never = order.pos, len(order.pos)
    need: dict[str, int] = {}
    where: dict[str, tuple[Epoch, int]] = {}
    for s in epochs:
        delivered, cuts = s.delivered, s.send_cuts
        lo = 0
        prev = None
        for k, m2 in enumerate(s.sends):
            hi = -1 if prev is None else pos.get(prev, never)
            cut = cuts[k]
            for m1 in delivered[lo:cut]:
                rec = sends.get(m1)
                if rec is not None and rec.ring == ring:
                    hi = max(hi, pos.get(m1, never))
            need[m2] = hi
            where[m2] = (s, k)
            lo, prev = cut, m2
    return need, where


class _Causal:
    def __init__(
        self,
        ring: str,
        order: ConfigOrder,
        sends: dict[str, SendRec],
        out: list[Violation],
        handle_traces: bool,
    ) -> None:
        self.ring, self.order, self.sends, self.out = ring, order, sends, out
        self.handle_traces = handle_traces
        self.need: dict[str, int] = {}
        self.where: dict[str, tuple[Epoch, int]] = {}

    def slow(self, e: Epoch, k: int, floor: int, index: dict[str, int]) -> None:
        """Look up each direct predecessor of e's k-th delivery; positions below ``floor``
        were before e's node joined (handle traces) and are not owed."""
        m2 = e.delivered[k]
        s, sk = self.where[m2]
        if not index:
            index.update((m, i) for i, m in enumerate(e.delivered))
        pos = self.order.pos
        for m1, why in _predecessors(s, sk, self.ring, self.sends):
            i = index.get(m1)
            if (i is None or i > k) and pos.get(m1, floor) >= floor:
                self.out.append(
                    violation(
                        "5",
                        f"in {self.ring}, {e.label()} delivered {m2} without first delivering "
                        f"{m1}, {why} ({m1} -> {m2})",
                        e.deliver_events[k],
                        self.sends[m2].event,
                    )
                )
                return

    def epoch(self, e: Epoch) -> None:
        off = self.order.offsets.get(e)
        if off is None and self.handle_traces and e.first:
            return  # a tail we could not place: what it owes is unknown
        need, seq = self.need, e.delivered
        index: dict[str, int] = {}
        start = 0
        floor = 0 if off is None else off
        if off is not None:
            # Regular part on the backbone: after k deliveries the frontier is off + k.
            start = e.reg_len
            for k, h in enumerate(map(need.get, seq[:start], [-1] * start)):
                if h >= off + k:
                    self.slow(e, k, floor, index)
        if start == len(seq):
            return
        pos, size = self.order.pos, len(self.order.pos)
        have = bytearray(size)
        frontier = off + start if off is not None else 0
        have[:frontier] = b"\x01" * frontier
        for k in range(start, len(seq)):
            m2 = seq[k]
            if need.get(m2, -1) >= frontier:
                self.slow(e, k, floor, index)
            have[pos[m2]] = 1
            while frontier < size and have[frontier]:
                frontier += 1


def check_causal_order(
    ring: str,
    epochs: list[Epoch],
    order: ConfigOrder,
    sends: dict[str, SendRec],
    out: list[Violation],
    *,
    handle_traces: bool,
) -> None:
    """5: if m1 -> m2, both sent in ``ring``, whoever delivers m2 delivered m1 before."""
    c = _Causal(ring, order, sends, out, handle_traces)
    c.need, c.where = _needs(ring, epochs, order, sends)
    if not c.need:
        return
    for e in epochs:
        c.epoch(e)
