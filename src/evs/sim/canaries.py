"""Canaries: processors with one deliberate bug each, which the EVS checker must catch.

Theory of operation. A checker that never fails proves nothing, so each property group of
protocol.md section 9 has at least one canary here: a ``Processor`` subclass that breaks
exactly one rule of the protocol, run by one node of a simulated cluster (``evs sim
--canary NAME``). ``tests/sim/test_canary.py`` states, for each, within how many seeds the
trace checker (``evs.check``, the same code that judges a real cluster's traces) reports the
property the bug breaks. The bugs live in subclasses, so the real processor carries no test
hook in its constructor or on its hot path; they override the methods where the protocol
makes a decision (``deliver``, ``safe_bound``, ``install_plan``, ``deliver_packet``).

The service layer above the core (``evs.runtime.service.EvsService``) has canaries of its own:
subclasses that get the fan-out to handles wrong (``make_service``). The processor-level trace
cannot see them, since the core's deliveries are right; the per-handle traces (one checker run
per handle slot, ``handle_traces=True``) must.

Not every mutant makes a canary: removing the reassembly reset at install changes no
delivery (a sender's first packet on a new ring continues nothing, which already drops a stale
chain) but keeps a departed sender's bytes; ``tests/scenarios/test_reassembly_at_change.py``
catches that one by its memory.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from typing import Any

from evs.runtime.service import EvsService, ServiceHeader
from evs.totem.config import TotemConfig
from evs.totem.events import Deliver
from evs.totem.messages import Mcast
from evs.totem.ordering import RingOrdering
from evs.totem.processor import Processor
from evs.totem.recovery import InstallPlan, RecoveryState, old_messages
from evs.types import ConfigChange, Guarantee, RingId

__all__ = ["CANARIES", "CAUGHT_AS", "make_processor", "make_service"]


class _Duplicate(Processor):
    """Group 1 (basic delivery): an agreed message is handed to the application twice."""

    def deliver_packet(self, msg: Mcast, *, ring_id: RingId, transitional: bool) -> None:
        before = len(self.events)
        super().deliver_packet(msg, ring_id=ring_id, transitional=transitional)
        if msg.seq % 97 == 0 and len(self.events) > before:
            self.events.append(self.events[before])


class _SkipTransitional(Processor):
    """Group 2 (configuration changes): no transitional configuration at install."""

    def install_plan(self, rec: RecoveryState) -> InstallPlan:
        plan = super().install_plan(rec)
        return dataclasses.replace(plan, transitional=None)


class _WrongTransitionalSet(Processor):
    """Group 2: the transitional set leaves out the highest other member of the old ring.

    Each log alone stays consistent (trans within both rings, left = old - trans); only
    comparing nodes that install the same transitional configuration shows it.
    """

    def install_plan(self, rec: RecoveryState) -> InstallPlan:
        plan = super().install_plan(rec)
        change = plan.transitional
        others = [n for n in change.members if n != self.nodeid] if change else []
        if change is None or not others:
            return plan
        drop = max(others)
        wrong = ConfigChange(
            ring_id=change.ring_id,
            transitional=True,
            members=tuple(n for n in change.members if n != drop),
            left=tuple(sorted((*change.left, drop))),
        )
        joined = tuple(sorted({*plan.regular_change.joined, drop}))
        regular = dataclasses.replace(plan.regular_change, joined=joined)
        return dataclasses.replace(plan, transitional=wrong, regular_change=regular)


class _DropOwn(Processor):
    """Group 3 (self-delivery): the node does not deliver its own messages to itself."""

    def deliver_packet(self, msg: Mcast, *, ring_id: RingId, transitional: bool) -> None:
        if msg.system_from != self.nodeid:
            super().deliver_packet(msg, ring_id=ring_id, transitional=transitional)


class _TransitionalDropsLast(Processor):
    """Group 4: the last message of the transitional configuration is not delivered here."""

    def install_plan(self, rec: RecoveryState) -> InstallPlan:
        plan = super().install_plan(rec)
        return dataclasses.replace(plan, in_transitional=plan.in_transitional[:-1])


def _swap_after(
    deliver: Callable[[], None], events: Callable[[], list[Any]], same_sender: bool
) -> None:
    ev = events()
    first_new = len(ev)
    deliver()
    ev = events()
    new = [i for i in range(first_new, len(ev)) if isinstance(ev[i], Deliver)]
    for a, b in itertools.pairwise(new):
        if (ev[a].sender == ev[b].sender) == same_sender:
            ev[a], ev[b] = ev[b], ev[a]
            return


class _CausalSwap(Processor):
    """Group 5 (causal): two messages of one sender delivered in the wrong order."""

    def deliver(self) -> None:
        _swap_after(super().deliver, lambda: self.events, same_sender=True)


class _OrderSwap(Processor):
    """Group 6 (total order): two messages of different senders delivered swapped."""

    def deliver(self) -> None:
        _swap_after(super().deliver, lambda: self.events, same_sender=False)


class _GapAllSenders(Processor):
    """Group 6: after a gap in the transitional configuration, every sender's messages
    are delivered, not only the transitional members'."""

    def install_plan(self, rec: RecoveryState) -> InstallPlan:
        plan = super().install_plan(rec)
        if plan.transitional is None or rec.old is None:
            return plan
        held = old_messages(rec.old, rec.recovered)
        first = plan.regular[-1].seq + 1 if plan.regular else rec.old.high_delivered + 1
        every = tuple(held[s] for s in sorted(held) if s >= first)
        return dataclasses.replace(plan, in_transitional=every)


class _Unsafe(Processor):
    """Group 7 (safe): safe messages delivered as soon as they are held here."""

    def safe_bound(self, ring: RingOrdering) -> int:
        return ring.my_aru


class _FanOutTwice(EvsService):
    """Group 1 (service): a handle in two of a message's groups gets it once per group (the
    fan-out forgets that one copy per handle is enough)."""

    def _deliver(self, ev: Deliver) -> str | None:
        msgid = super()._deliver(ev)
        if msgid is None:
            return None
        for h in self.handles.values():
            if h.events and not h.overflowed and sum(g in h.groups for g in ev.groups) > 1:
                self._push(h, h.events[-1])
        return msgid


class _SkipSelf(EvsService):
    """Group 3 (service): this node's own messages never reach its handles (the sender
    believes its own delivery is the core's business)."""

    def _deliver(self, ev: Deliver) -> str | None:
        if ev.sender != self.nodeid:
            return super()._deliver(ev)
        head = ServiceHeader.unpack(ev.data)
        return None if head is None else f"{ev.sender}:{head.incarnation}:{head.counter}"


_SERVICE_KINDS: dict[str, type[EvsService]] = {
    "service-fan-out-twice": _FanOutTwice,
    "service-skip-self": _SkipSelf,
}

_KINDS: dict[str, type[Processor]] = {
    "duplicate": _Duplicate,
    "skip-transitional": _SkipTransitional,
    "wrong-transitional-set": _WrongTransitionalSet,
    "drop-own": _DropOwn,
    "transitional-drops-last": _TransitionalDropsLast,
    "causal": _CausalSwap,
    "order": _OrderSwap,
    "gap-all-senders": _GapAllSenders,
    "unsafe": _Unsafe,
}

#: Every canary's name, for ``evs sim --canary``: the processor's, then the service's.
CANARIES: tuple[str, ...] = (*_KINDS, *_SERVICE_KINDS)

#: The property group of protocol.md section 9 each canary breaks.
CAUGHT_AS: dict[str, int] = {
    "duplicate": 1,
    "skip-transitional": 2,
    "wrong-transitional-set": 2,
    "drop-own": 3,
    "transitional-drops-last": 4,
    "causal": 5,
    "order": 6,
    "gap-all-senders": 6,
    "unsafe": 7,
    "service-fan-out-twice": 1,
    "service-skip-self": 3,
}


def make_processor(
    canary: str,
    config: TotemConfig,
    nodeid: int,
    *,
    ring_seq: int = 0,
    static_members: Sequence[int] | None = None,
) -> Processor:
    """A processor, with the named canary's bug when ``canary`` is not empty."""
    if canary and canary not in CANARIES:
        raise ValueError(f"unknown canary {canary!r}; known: {', '.join(CANARIES)}")
    cls = _KINDS.get(canary, Processor)
    return cls(config, nodeid, ring_seq=ring_seq, static_members=static_members)


def make_service(
    canary: str,
    nodeid: int,
    submit: Callable[[Sequence[bytes], bytes, Guarantee], int],
    *,
    incarnation: int,
    max_message_size: int,
) -> EvsService:
    """An ``EvsService``, with the named service canary's bug when ``canary`` names one."""
    cls = _SERVICE_KINDS.get(canary, EvsService)
    return cls(nodeid, submit, incarnation=incarnation, max_message_size=max_message_size)
