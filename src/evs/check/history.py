"""Replay of each node's log into epochs (``model.py``); owns the properties of one log.

Each node's log is replayed once, in its own order. While replaying, the properties that one
log decides are judged on the spot: 1.2 (duplicate delivery within one incarnation), 2.1,
2.3, 2.5 and 2.6. A ``restart`` starts a new incarnation with a clean slate; it also ends the
previous one as a crash even when no ``crash`` event was logged (a killed daemon cannot log
its own death).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from evs.check.model import CRASH, END, NEXT, OPEN, Epoch, History, NodeEnd, SendRec
from evs.check.report import Violation, violation
from evs.trace.reader import msg_sender

__all__ = ["build_history"]

Event = dict[str, Any]


def _ids(ids: frozenset[int] | set[int] | list[int]) -> str:
    return "[" + ",".join(map(str, sorted(ids))) + "]"


class _Replay:
    """Replays one node's log; one instance per node."""

    def __init__(
        self,
        node: int,
        h: History,
        out: list[Violation],
        floating: list[_Floating] | None = None,
    ) -> None:
        self.node = node
        self.h = h
        self.out = out
        #: Handle traces: ring-less sends are placed once every log is read (``_place``).
        self.floating = floating
        self.inc = 0
        self.cur: Epoch | None = None
        self.in_trans = False
        self.installed = ""
        self.down = False
        self.down_reported = False
        self.seen: dict[str, Event] = {}
        self.max_seq: tuple[int, Event] | None = None
        self.pending: list[SendRec] = []
        self.last: Event | None = None

    def bad(self, prop: str, message: str, *events: Event | None) -> None:
        self.out.append(violation(prop, message, *events))

    def run(self, events: list[Event]) -> None:
        handlers: dict[str, Callable[[Event], None]] = {
            "deliver": self.on_deliver,
            "send": self.on_send,
            "confchg": self.on_confchg,
            "crash": self.on_crash,
            "restart": self.on_restart,
            "gather": self.on_gather,
        }
        for ev in events:
            self.last = ev
            kind = ev["ev"]
            if self.down and kind != "restart":
                if not self.down_reported:
                    self.down_reported = True
                    self.bad(
                        "2.3",
                        f"node {self.node} logs events after its crash without a restart",
                        ev,
                    )
                continue
            handlers[kind](ev)
        self.close_incarnation(CRASH if self.down else END)
        self.h.ends[self.node] = NodeEnd(self.down, self.cur, self.in_trans, self.last)

    def on_gather(self, ev: Event) -> None:
        """Why the processor entered GATHER: for people reading the trace, nothing to judge."""

    def on_deliver(self, ev: Event) -> None:
        msg = ev["msg"]
        first = self.seen.get(msg)
        if first is not None:
            self.bad("1.2", f"node {self.node} delivered {msg} twice", first, ev)
            return
        self.seen[msg] = ev
        h = self.h
        if ev["sender"] == self.node and msg not in h.sends:
            h.early_self.append(ev)
        cur = self.cur
        if cur is None:
            self.bad(
                "2.3",
                f"node {self.node} delivered {msg} before installing a regular configuration",
                ev,
            )
            h.loose.append(ev)
            return
        ring = h.ring(ev["ring"])
        if ring != self.installed:
            kind = "transitional configuration of" if self.in_trans else "configuration"
            self.bad(
                "2.6",
                f"node {self.node} delivered {msg} tagged {ring} while its "
                f"installed {kind} is {self.installed}",
                ev,
            )
        if ev["guarantee"] == "safe":
            (cur.safe_trans if self.in_trans else cur.safe_reg).append(len(cur.delivered))
        cur.delivered.append(msg)
        cur.deliver_events.append(ev)

    def on_send(self, ev: Event) -> None:
        msg = ev["msg"]
        h = self.h
        if msg_sender(msg) != self.node:
            self.bad(
                "1.1",
                f"node {self.node} logged the send of {msg}, whose id names node {msg_sender(msg)}",
                ev,
            )
            return
        prev = h.sends.get(msg)
        if prev is not None:
            self.bad("1.1", f"{msg} was sent twice", prev.event, ev)
            return
        explicit = ev.get("ring")
        ring = None if explicit is None else h.ring(explicit)
        cur = self.cur
        rec = SendRec(self.node, ring, ev, None)
        h.sends[msg] = rec
        if cur is None:
            self.bad(
                "2.3",
                f"node {self.node} sent {msg} before installing a regular configuration",
                ev,
            )
            return
        if ring is None and self.floating is not None:
            self.floating.append(_Floating(rec, cur, len(cur.delivered)))
            return
        if ring is None or ring == cur.ring:
            rec.ring = cur.ring
            rec.epoch = cur
            cur.sends.append(msg)
            cur.send_cuts.append(len(cur.delivered))
        elif self.in_trans:
            self.pending.append(rec)  # may name the regular configuration being installed
        else:
            self.bad(
                "2.6",
                f"node {self.node} sent {msg} tagged {ring} while its "
                f"installed configuration is {cur.ring}",
                ev,
            )

    def on_confchg(self, ev: Event) -> None:
        members = frozenset(ev["members"])
        ring = self.h.ring(ev["ring"])
        if self.node not in members:
            self.bad(
                "2.1",
                f"node {self.node} installed {ev['kind']} configuration "
                f"{ring} {_ids(members)} without being a member",
                ev,
            )
        if ev["kind"] == "regular":
            self.on_regular(ev, ring, members)
        else:
            self.on_transitional(ev, ring, members)

    def on_regular(self, ev: Event, ring: str, members: frozenset[int]) -> None:
        h = self.h
        self.check_seq(ev)
        known = h.reg_members.get(ring)
        if known is None:
            h.reg_members[ring] = (members, ev)
        elif known[0] != members:
            self.bad(
                "2.2",
                f"regular configuration {ring} has members {_ids(members)} "
                f"at node {self.node} but {_ids(known[0])} at node "
                f"{known[1]['node']}",
                known[1],
                ev,
            )
        problems = []
        left, joined = set(ev["left"]), set(ev["joined"])
        prev = self.cur
        if prev is None:
            if left:
                problems.append(f"a first configuration has left={_ids(left)}")
            if not joined <= members:
                problems.append(f"joined={_ids(joined)} is not within members")
        else:
            prev.next_ring = ring
            prev.ended = NEXT
            if not self.in_trans:
                problems.append(
                    f"installed directly after regular {prev.ring} without a "
                    "transitional configuration"
                )
            else:
                trans = prev.trans_members or frozenset()
                if not trans <= members:
                    problems.append(f"transitional members {_ids(trans)} are not all members")
                if left or joined != members - trans:
                    problems.append(
                        f"left={_ids(left)} joined={_ids(joined)}, expected "
                        f"left=[] joined={_ids(members - trans)}"
                    )
        if problems:
            self.bad(
                "2.3",
                f"node {self.node} regular configuration {ring}: " + "; ".join(problems),
                ev,
            )
        epoch = Epoch(self.node, self.inc, ring, members, ev, prev is None)
        for rec in self.pending:
            if rec.ring == ring:
                rec.epoch = epoch
                epoch.sends.append(rec.event["msg"])
                epoch.send_cuts.append(0)
            else:
                self.report_pending(rec)
        self.pending.clear()
        self.cur = epoch
        self.in_trans = False
        self.installed = ring
        h.epochs.append(epoch)
        h.by_ring.setdefault(ring, []).append(epoch)
        h.epoch_at[(self.node, ring)] = epoch

    def on_transitional(self, ev: Event, ring: str, members: frozenset[int]) -> None:
        cur = self.cur
        if cur is None or self.in_trans:
            where = "before any regular" if cur is None else "right after another transitional"
            self.bad(
                "2.3",
                f"node {self.node} installed transitional configuration "
                f"{ring} {where} configuration",
                ev,
            )
            return
        problems = []
        if ring != cur.ring:
            problems.append(f"it names ring {ring} but the installed regular one is {cur.ring}")
        if not members <= cur.members:
            problems.append(f"members {_ids(members)} are not within {_ids(cur.members)}")
        left, joined = set(ev["left"]), ev["joined"]
        if joined or left != cur.members - members:
            problems.append(
                f"left={_ids(left)} joined={_ids(joined)}, expected "
                f"left={_ids(cur.members - members)} joined=[]"
            )
        if problems:
            self.bad(
                "2.3",
                f"node {self.node} transitional configuration after "
                f"{cur.ring}: " + "; ".join(problems),
                ev,
            )
        cur.n_reg = len(cur.delivered)
        cur.trans_event = ev
        cur.trans_members = members
        self.in_trans = True
        self.installed = ring

    def check_seq(self, ev: Event) -> None:
        """2.5: each regular configuration has a higher seq than every earlier one of the
        node, across restarts (the ring seq is durable). A handle trace's incarnation is a
        join of the application, which may join again in the configuration it left: its
        first configuration may repeat the last seq, never go below it."""
        seq = self.h.ring_seq(ev["ring"])
        best = self.max_seq
        rejoin = self.floating is not None and self.cur is None
        if best is not None and (seq < best[0] or (seq == best[0] and not rejoin)):
            self.bad(
                "2.5",
                f"node {self.node} installed regular configuration "
                f"{self.h.ring(ev['ring'])} after one with seq {best[0]}",
                best[1],
                ev,
            )
        if best is None or seq > best[0]:
            self.max_seq = (seq, ev)

    def report_pending(self, rec: SendRec) -> None:
        self.bad(
            "2.6",
            f"node {self.node} sent {rec.event['msg']} tagged {rec.ring}, a "
            "configuration it never installed",
            rec.event,
        )

    def close_incarnation(self, how: str) -> None:
        if self.cur is not None and self.cur.ended == OPEN:
            self.cur.ended = how
        for rec in self.pending:
            self.report_pending(rec)
        self.pending.clear()

    def on_crash(self, ev: Event) -> None:
        self.close_incarnation(CRASH)
        self.down = True
        self.down_reported = False

    def on_restart(self, ev: Event) -> None:
        self.close_incarnation(CRASH)
        self.down = False
        self.inc += 1
        self.cur = None
        self.in_trans = False
        self.installed = ""
        self.seen = {}


class _Floating:
    """A handle's send whose configuration is not known yet (see ``_place``)."""

    __slots__ = ("cut", "epoch", "rec")

    def __init__(self, rec: SendRec, epoch: Epoch, cut: int) -> None:
        self.rec = rec
        #: The sender's regular configuration when it asked to send.
        self.epoch = epoch
        #: How many messages it had delivered in that configuration by then.
        self.cut = cut


def _place(h: History, floating: list[_Floating], out: list[Violation]) -> None:
    """Give each ring-less handle send the configuration it was really sent in.

    A library hands a message to its executive, which puts it on the ring at a later token
    visit: if a configuration change starts in between, the message goes out in the next
    configuration. The application cannot know which, so its trace names none. The message
    was sent in the configuration it is delivered in (1.3 then holds for every receiver by
    construction, and 6.x and 3 judge it there), which must be the sender's configuration at
    the request or a later one of the same incarnation: a delivery in an earlier
    configuration, or in one the sender lived on and never installed, is a 1.3 violation. A
    message delivered nowhere may still be waiting in the sender's queue, to go out in any
    later configuration of the incarnation: it goes with the incarnation's last one, so
    self-delivery and liveness still demand it if the sender lived on (or was there at a quiet
    end), and nothing is owed if the sender crashed with the message still queued.
    """
    where: dict[str, str] = {}
    lives: dict[tuple[int, int], list[Epoch]] = {}
    index: dict[int, int] = {}  # id(epoch) -> its position in its incarnation's list
    for e in h.epochs:
        for msg in e.delivered:
            where.setdefault(msg, e.ring)
        life = lives.setdefault((e.node, e.inc), [])
        index[id(e)] = len(life)
        life.append(e)
    for f in floating:
        rec, start = f.rec, f.epoch
        msg = rec.event["msg"]
        after = lives[(start.node, start.inc)][index[id(start)] :]
        ring = where.get(msg, after[-1].ring)
        target = next((e for e in after if e.ring == ring), None)
        rec.ring = ring
        if target is not None:
            rec.epoch = target
            target.sends.append(msg)
            target.send_cuts.append(f.cut if target is start else 0)
            continue
        if after[-1].ended == CRASH:
            continue  # the sender died before it installed the configuration it was sent in
        out.append(
            violation(
                "1.3",
                f"node {start.node} asked to send {msg} in {start.ring}, but it was delivered "
                f"in {ring}, which is not a later configuration of that node",
                rec.event,
            )
        )


def build_history(
    by_node: dict[int, list[Event]], out: list[Violation], *, handle_traces: bool = False
) -> History:
    """Replay every node's log (in node id order, each in its own order)."""
    h = History()
    h.nodes.update(by_node)
    floating: list[_Floating] | None = [] if handle_traces else None
    for node in sorted(by_node):
        _Replay(node, h, out, floating).run(by_node[node])
    if floating:
        _place(h, floating, out)
    return h
