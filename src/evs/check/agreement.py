"""What nodes moving together must agree on: failure atomicity (4), the same sequence before
a transitional configuration (6.4), and safe delivery (7.1, 7.2).

Theory of operation. Nodes that went c -> t -> c' with the same transitional key (old ring,
next ring) are compared with the first of them: identical regular sequences in c (6.4, which
implies the same set, 4) and the same set in t (4). Safe delivery is owed by every member that
is known to have lived through the configuration: a node that crashed, or whose log ends
before its next regular configuration, owes nothing (unless ``quiet_end``). With
``handle_traces`` a node's first configuration is a tail of the ring's messages, so it is
compared on the overlap only and owes only what came after it joined.
"""

from __future__ import annotations

from typing import Any

from evs.check.model import END, NEXT, Epoch, History
from evs.check.order import ConfigOrder
from evs.check.report import Violation, violation

__all__ = ["check_failure_atomicity", "check_safe_delivery"]


def _first_diff(a: list[str], b: list[str]) -> int:
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


def _example(a: set[str], b: set[str], ea: Epoch, eb: Epoch) -> str:
    only_a, only_b = sorted(a - b), sorted(b - a)
    if only_a:
        return f"{only_a[0]} only at {ea.label()}"
    return f"{only_b[0]} only at {eb.label()}"


def check_failure_atomicity(
    groups: dict[tuple[str, str], list[Epoch]], out: list[Violation], *, handle_traces: bool
) -> None:
    """4 and 6.4 for every transitional key shared by several epochs."""
    for (ring, nxt), group in groups.items():
        ref = group[0]
        ref_reg = ref.regular()
        ref_trans = set(ref.transitional())
        for e in group[1:]:
            who = f"{ref.label()} and {e.label()}, both going {ring} -> {nxt},"
            reg = e.regular()
            if handle_traces and (e.first or ref.first):
                short, long = sorted((reg, ref_reg), key=len)
                if short and long[len(long) - len(short) :] != short:
                    out.append(
                        violation(
                            "6.4",
                            f"{who} end {ring} with different sequences "
                            "(neither is a tail of the other)",
                            ref.trans_event,
                            e.trans_event,
                        )
                    )
            elif reg != ref_reg:
                i = _first_diff(ref_reg, reg)
                at = [s[i] if i < len(s) else "nothing" for s in (ref_reg, reg)]
                out.append(
                    violation(
                        "6.4",
                        f"{who} delivered different sequences in {ring}: "
                        f"at position {i}, {ref.label()} has {at[0]} and {e.label()} has {at[1]}",
                        ref.trans_event,
                        e.trans_event,
                    )
                )
                a, b = set(ref_reg), set(reg)
                if a != b:
                    out.append(
                        violation(
                            "4",
                            f"{who} delivered different sets in {ring}: " + _example(a, b, ref, e),
                            ref.trans_event,
                            e.trans_event,
                        )
                    )
            trans = set(e.transitional())
            if trans != ref_trans:
                out.append(
                    violation(
                        "4",
                        f"{who} delivered different sets in the transitional "
                        "configuration: " + _example(ref_trans, trans, ref, e),
                        ref.trans_event,
                        e.trans_event,
                    )
                )


class _Owed:
    """Which nodes owe a safe message, and whether they delivered it."""

    def __init__(
        self,
        orders: dict[str, ConfigOrder],
        out: list[Violation],
        *,
        quiet_end: bool,
        handle_traces: bool,
    ) -> None:
        self.orders, self.out = orders, out
        self.quiet_end, self.handle_traces = quiet_end, handle_traces

    def check(self, prop: str, q: Epoch, safe: dict[str, dict[str, Any]], where: str) -> None:
        if not (q.ended == NEXT or (self.quiet_end and q.ended == END)):
            return
        missing = set(safe).difference(q.delivered)
        if missing and self.handle_traces and q.first:
            missing = self.orders[q.ring].owed_after_join(q, missing)
        if missing:
            first = sorted(missing)[0]
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            self.out.append(
                violation(
                    prop,
                    f"{q.label()} never delivered safe {first}{more}, which was delivered {where}",
                    safe[first],
                    q.trans_event or q.event,
                )
            )


def check_safe_delivery(
    h: History,
    groups: dict[tuple[str, str], list[Epoch]],
    orders: dict[str, ConfigOrder],
    out: list[Violation],
    *,
    quiet_end: bool,
    handle_traces: bool,
) -> None:
    """7.1 (safe in regular c: every member of c) and 7.2 (safe in t: every member of t
    that installed t)."""
    owed = _Owed(orders, out, quiet_end=quiet_end, handle_traces=handle_traces)
    for ring, epochs in h.by_ring.items():
        safe = {e.delivered[i]: e.deliver_events[i] for e in epochs for i in e.safe_reg}
        if safe:
            for q in epochs:
                owed.check("7.1", q, safe, f"in regular {ring}")
    for (ring, nxt), group in groups.items():
        safe = {e.delivered[i]: e.deliver_events[i] for e in group for i in e.safe_trans}
        if not safe:
            continue
        members = group[0].trans_members
        where = f"in the transitional configuration {ring} -> {nxt}"
        for q in h.by_ring[ring]:
            # Owed by whoever installed this transitional configuration: the same members
            # out of the same ring (a member that went elsewhere failed, as far as t goes).
            if q.trans_members == members and q.next_ring in (nxt, None):
                owed.check("7.2", q, safe, where)
