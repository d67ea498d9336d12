"""The driver around one ``Processor``: inputs in, datagrams and events out, in a safe order.

Theory of operation: every input (``start``, ``datagram``, ``timer``, ``submit``) runs the core,
then ``_collect`` takes its outbox and events. Datagrams the core addresses to this very node
(the token of a one-member ring) are not sent on the wire: they are queued in ``loopback`` and
fed back by ``run_loopback``, which the I/O layer calls on its next turn, so a lone processor
passing the token to itself never recurses or spins inside one call. A ``PersistRingSeq``
event is honoured here, for every driver at once: the ``persist`` callback runs (it must not
return before the number is durable) and only then are the datagrams that depend on it queued
for sending. The core itself never puts those datagrams in its outbox, so no I/O layer can
send them early.

``sends`` is a list of ``(destination, datagram)`` with ``destination`` a node id or
``BROADCAST`` (every other node); ``events`` the core's deliveries, configurations, ``Sent``
notices and operator notices, in order. Both are taken with ``take()``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from evs.totem.events import BROADCAST, CoreEvent, PersistRingSeq
from evs.totem.processor import Processor
from evs.totem.timers import Timer
from evs.types import Guarantee

__all__ = ["BROADCAST", "Driver"]

#: Self-addressed datagrams fed back per ``run_loopback`` call: bounded, so one call is short.
_LOOPBACK_BATCH: Final = 64


class Driver:
    """Runs one processor; the I/O layer sends ``sends`` and arms a timer at ``deadline()``."""

    __slots__ = ("events", "loopback", "nodeid", "persist", "proc", "sends")

    def __init__(self, proc: Processor, persist: Callable[[int], None]) -> None:
        self.proc = proc
        self.nodeid = proc.nodeid
        #: Called with a ring sequence number; must return only once it is on stable storage.
        self.persist = persist
        self.sends: list[tuple[int, bytes]] = []
        self.events: list[CoreEvent] = []
        self.loopback: list[bytes] = []

    # ------------------------------------------------------------------ inputs

    def start(self, now: float) -> None:
        self.proc.start(now)
        self._collect()

    def datagram(self, now: float, data: bytes) -> None:
        """One datagram from the network (already authenticated and stripped by the caller)."""
        self.proc.receive(now, data)
        self._collect()

    def timer(self, now: float) -> None:
        self.proc.handle_timer(now)
        self._collect()

    def submit(self, now: float, groups: Sequence[bytes], data: bytes, guarantee: Guarantee) -> int:
        """Queue a message; raises TryAgain or InvalidArgument from the core."""
        number = self.proc.submit(now, groups, data, guarantee)
        self._collect()
        return number

    def leave(self, now: float) -> None:
        """Leave the ring gracefully; the LEAVE datagrams are in ``sends`` afterwards."""
        self.proc.leave(now)
        self._collect()

    def run_loopback(self, now: float) -> bool:
        """Feed back self-addressed datagrams queued earlier; True if any were fed."""
        if not self.loopback:
            return False
        batch = self.loopback[:_LOOPBACK_BATCH]
        del self.loopback[:_LOOPBACK_BATCH]
        for data in batch:
            self.proc.receive(now, data)
            self._collect()
        return True

    # ------------------------------------------------------------------ outputs

    def deadline(self) -> float | None:
        """When ``timer`` must next be called (None: no timer armed)."""
        return self.proc.next_deadline()

    def hold_due(self, now: float) -> bool:
        """Whether the held token's visit is due: a message came for an idle ring's holder."""
        at = self.proc.timers.deadline(Timer.HOLD)
        return at is not None and at <= now

    def take(self) -> tuple[list[tuple[int, bytes]], list[CoreEvent]]:
        """Everything produced since the last call: datagrams to send, then core events."""
        sends, self.sends = self.sends, []
        events, self.events = self.events, []
        return sends, events

    def _collect(self) -> None:
        proc = self.proc
        if proc.outbox:
            out, proc.outbox = proc.outbox, []
            self._queue(out)
        if proc.events:
            events, proc.events = proc.events, []
            for ev in events:
                if isinstance(ev, PersistRingSeq):
                    self.persist(ev.seq)  # durable before anything naming the ring leaves
                    self._queue(ev.then_send)
            self.events.extend(events)

    def _queue(self, out: Sequence[tuple[int, bytes]]) -> None:
        me = self.nodeid
        for dest, data in out:
            if dest == me:
                self.loopback.append(data)
            else:
                self.sends.append((dest, data))
