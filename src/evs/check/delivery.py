"""Basic delivery (1.1-1.4) and self-delivery (3): each delivery against its one send.

Theory of operation: the send table built by the replay names, for each message, the node and
the configuration it was sent in; one pass over all deliveries compares each with its send.
What cannot be judged is skipped, never guessed: a delivered message whose sender has no log
in the trace at all (one node's file checked alone) has no send to look for, and a node whose
log ends inside a configuration is not yet obliged to have delivered anything (unless the run
ended quietly, ``quiet_end``).
"""

from __future__ import annotations

from typing import Any

from evs.check.model import END, NEXT, Epoch, History
from evs.check.order import ConfigOrder
from evs.check.report import Violation, violation
from evs.trace.reader import msg_sender

__all__ = [
    "check_basic_delivery",
    "check_quiet_end",
    "check_self_delivery",
]

Event = dict[str, Any]


def _check_one(
    ev: Event, h: History, out: list[Violation], compare_time: bool, unsent: set[str]
) -> None:
    msg = ev["msg"]
    s = h.sends.get(msg)
    node = ev["node"]
    if s is None:
        unsent.add(msg)
        origin = msg_sender(msg)
        if ev["sender"] != origin:
            out.append(
                violation(
                    "1.1",
                    f"node {node} delivered {msg} as sent by node "
                    f"{ev['sender']}, but its id names node {origin}",
                    ev,
                )
            )
        if origin in h.nodes:
            out.append(
                violation("1.1", f"node {node} delivered {msg}, which node {origin} never sent", ev)
            )
        return
    sent = s.event
    if ev["sender"] != s.node:
        out.append(
            violation(
                "1.1",
                f"node {node} delivered {msg} as sent by node "
                f"{ev['sender']}, but node {s.node} sent it",
                sent,
                ev,
            )
        )
    if compare_time and sent["t"] > ev["t"]:
        out.append(
            violation(
                "1.1",
                f"node {node} delivered {msg} at t={ev['t']}, before "
                f"node {s.node} sent it at t={sent['t']}",
                sent,
                ev,
            )
        )
    if ev["guarantee"] != sent["guarantee"]:
        out.append(
            violation(
                "1.2",
                f"node {node} delivered {msg} as {ev['guarantee']}, but "
                f"it was sent {sent['guarantee']}",
                sent,
                ev,
            )
        )
    digest = ev.get("digest")
    if digest is not None:
        sent_digest = sent.get("digest")
        if sent_digest is not None and sent_digest.lower() != digest.lower():
            out.append(
                violation(
                    "1.2",
                    f"node {node} delivered {msg} with other bytes than were sent (digest differs)",
                    sent,
                    ev,
                )
            )
    if s.ring is not None and h.ring(ev["ring"]) != s.ring:
        out.append(
            violation(
                "1.3",
                f"node {node} delivered {msg} in {h.ring(ev['ring'])}, but it was sent in {s.ring}",
                sent,
                ev,
            )
        )


def check_basic_delivery(h: History, out: list[Violation], *, compare_time: bool) -> int:
    """1.1, 1.2 (bytes and guarantee unchanged), 1.3; returns the number of distinct messages.

    Duplicates (the other half of 1.2) were judged by the replay, per incarnation.
    ``compare_time`` compares ``t`` across nodes: right for the simulator's one clock, wrong
    for daemons on separate machines (each with its own monotonic clock).
    """
    unsent: set[str] = set()
    for e in h.epochs:
        for ev in e.deliver_events:
            _check_one(ev, h, out, compare_time, unsent)
    for ev in h.loose:
        _check_one(ev, h, out, compare_time, unsent)
    for ev in h.early_self:
        s = h.sends.get(ev["msg"])
        if s is not None and s.node == ev["node"]:
            out.append(
                violation(
                    "1.1",
                    f"node {ev['node']} delivered its own {ev['msg']} before logging its send",
                    ev,
                    s.event,
                )
            )
    return len(h.sends) + len(unsent)


def _obliged(e: Epoch, quiet_end: bool) -> bool:
    """Whether the epoch's deliveries are complete enough to judge (it is over, not crashed)."""
    return e.ended == NEXT or (quiet_end and e.ended == END)


def check_self_delivery(h: History, out: list[Violation], *, quiet_end: bool) -> None:
    """3: a node delivers what it sent in c, in c or in trans(p, c), unless it crashed first."""
    for e in h.epochs:
        if not e.sends or not _obliged(e, quiet_end):
            continue
        got = set(e.delivered)
        for msg in e.sends:
            if msg not in got:
                until = f"before installing {e.next_ring}" if e.ended == NEXT else "by the end"
                out.append(
                    violation(
                        "3",
                        f"{e.label()} sent {msg} in {e.ring} but did not deliver it {until}",
                        h.sends[msg].event,
                        e.trans_event,
                    )
                )


def check_quiet_end(
    h: History, orders: dict[str, ConfigOrder], out: list[Violation], *, handle_traces: bool
) -> None:
    """1.4: after a quiet end every live node is in one regular configuration of live nodes,
    and every message of that configuration is delivered by all its members (a handle whose
    first configuration it is owes only what came after it joined)."""
    final: dict[str, list[int]] = {}
    for node in sorted(h.ends):
        end = h.ends[node]
        if end.down:
            continue
        if end.epoch is None or end.in_trans:
            where = "without a configuration" if end.epoch is None else "in a transitional one"
            out.append(violation("1.4", f"live node {node} ends {where}", end.last))
            continue
        final.setdefault(end.epoch.ring, []).append(node)
    if len(final) > 1:
        parts = "; ".join(f"{ring}: nodes {nodes}" for ring, nodes in final.items())
        out.append(violation("1.4", f"live nodes end in different configurations ({parts})"))
    for ring, nodes in final.items():
        epochs = [e for n in nodes if (e := h.ends[n].epoch) is not None]
        members = epochs[0].members
        for q in sorted(members - set(nodes)):
            if q in h.nodes:
                out.append(
                    violation(
                        "1.4",
                        f"member {q} of the final configuration {ring} is not live in it",
                        h.ends[q].last,
                    )
                )
        needed: set[str] = set()
        for e in epochs:
            needed.update(e.sends)
            needed.update(e.delivered)
        for e in epochs:
            missing = needed.difference(e.delivered)
            if missing and handle_traces and e.first:
                missing = orders[ring].owed_after_join(e, missing)
            if missing:
                some = ", ".join(sorted(missing)[:5])
                out.append(
                    violation(
                        "1.4",
                        f"node {e.node} never delivered {len(missing)} "
                        f"message(s) of the final configuration {ring}: {some}",
                        e.event,
                    )
                )
