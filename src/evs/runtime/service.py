"""The EVS service: handles, groups, delivery fan-out and back-pressure, above the core.

Theory of operation: a *handle* is one application connection (one ``evs.Client``). The core
orders opaque messages addressed to groups; this service adds what applications need and the
core does not carry:

- A service header in front of each message's data (``ServiceHeader``): the sending process's
  pid and a message id (sender incarnation and counter), so every node can name a message the
  same way in its trace, and the receiving application learns the sender's pid.
- Fan-out. ``feed`` takes the core's events in order. A delivery goes to every handle that has
  joined at least one of the message's groups at that moment, the sender's own handle included,
  exactly once (a handle in two of the groups still gets one copy). A configuration change goes
  to every handle that has joined at least once, transitional and regular alike, at its place in
  the stream.
- A handle's first join. Joins are local: they only filter what this node hands to the handle.
  The first join makes the current regular configuration the handle's first event, with every
  member in ``joined``; from then on it sees every message of its groups in order. Before the
  first ring has formed there is no current configuration: the core's first regular
  configuration (every member joined) is then the first event.
- Cheap queue entries. A handle's queue holds a delivery as a plain tuple
  (``QueuedDelivery``: node id, pid, groups, data, guarantee), built in a fifth of the time
  of the public ``Delivery`` value the executive would only encode for IPC again: every
  message is queued once per node. ``take_events`` (the simulator, the tests) hands out
  ``Delivery`` values; ``take_encoded`` hands the encoder the tuple.
- Bounded queues. Each handle's undelivered events are counted in bytes; a handle past
  ``handle_queue_bytes`` is marked ``overflowed`` with a reason and gets nothing more, and the
  I/O layer disconnects it. The ring never waits for an application.
- The executive's own messages. A message whose header carries ``FLAG_INTERNAL`` (only the
  executive writes it: a client's message always has flags 0) goes to ``internal`` instead of
  any handle, and so does every configuration change, in delivery order; key rotation
  (``evs.daemon.rekey``) rides on this. Without ``internal`` such a message is a foreign one.
- Back-pressure. ``mcast`` raises ``TryAgain`` when the core's send queue is full and records
  the handle as waiting; once the core reports a message wholly on the ring (``Sent``) the
  waiting handles are listed in ``room_again`` so a blocked sender retries without polling.
- Local readers first (``reader_hold_ms``, off by default here; the executive turns it on).
  A handle more than half its queue behind makes the node hold its own clients' sends
  (``sends_held``: TryAgain, and ``SendWindows`` keeps windowed sends) until every handle is
  back under a quarter; a reader that lags on a loaded machine then catches up instead of
  being cut off, at the cost of this node's senders waiting, as a TCP writer waits for its
  reader. The ring itself never waits: other nodes keep sending. A hold lasts at most
  ``reader_hold_ms``: then the handles still behind are no longer waited for (until they
  catch up) and the queue bound applies to them as before. ``check_readers`` decides, with
  the caller's clock; ``_push`` only flags that a handle crossed the mark.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, cast

from evs.errors import InvalidArgument, TryAgain
from evs.totem.events import CoreEvent, Deliver, Sent
from evs.types import ConfigChange, Event, Guarantee, Membership, RingId, make_delivery
from evs.types import group_names as _group_names
from evs.types import group_names_seen as _group_names_seen

__all__ = [
    "GROUPS_PER_HANDLE_MAX",
    "GROUP_NAME_MAX",
    "EvsService",
    "Handle",
    "Queued",
    "QueuedDelivery",
    "ServiceHeader",
    "group_names",
]

#: Longest group name, bytes (api.md: at least 64).
GROUP_NAME_MAX: Final = 64
#: Groups one handle may join, and one message may name (api.md: at least 32).
GROUPS_PER_HANDLE_MAX: Final = 32
#: Bytes a handle may have waiting before it is disconnected (a client that stops reading).
HANDLE_QUEUE_BYTES: Final = 32 << 20
#: Rough cost of a queued event beyond its data (object, frame header, groups).
_EVENT_OVERHEAD: Final = 64

#: A delivery waiting in a handle's queue: (node id, pid, groups, data, guarantee), the
#: fields of ``Delivery`` in its order (see the module docstring).
QueuedDelivery = tuple[int, int, tuple[bytes, ...], bytes, Guarantee]
#: What a handle's queue holds: deliveries as their fields, configuration changes as they are.
Queued = ConfigChange | QueuedDelivery


#: The service header's layout: version, flags, pid, sender incarnation, sender's message
#: counter; module constants, not class attributes, so that mypyc can compile the class. The
#: per-message paths unpack with them in place (no header object per message).
HEADER: Final = struct.Struct("!BBIIQ")
_HEADER: Final = HEADER
HEADER_VERSION: Final = 1
_VERSION: Final = HEADER_VERSION
#: Header flag of the executive's own messages (key rotation): never handed to a handle, and
#: only the executive sets it (``submit_checked`` writes flags 0 for every client message).
FLAG_INTERNAL: Final = 0x80


@dataclass(frozen=True, slots=True)
class ServiceHeader:
    """What travels in front of the application's data inside each ordered message."""

    pid: int
    incarnation: int
    counter: int

    def pack(self) -> bytes:
        return _HEADER.pack(_VERSION, 0, self.pid, self.incarnation, self.counter)

    @classmethod
    def unpack(cls, data: bytes) -> ServiceHeader | None:
        """The header at the start of ``data``; None if it is not a valid one."""
        if len(data) < _HEADER.size:
            return None
        # Typed: compiled, the compares below are on C integers.
        head: tuple[int, int, int, int, int] = _HEADER_UNPACK(data)
        version, flags, pid, incarnation, counter = head
        if version != _VERSION or flags:
            return None
        return cls(pid, incarnation, counter)


SIZE: Final = _HEADER.size
#: Bound once: a method lookup per delivered message otherwise.
_HEADER_UNPACK: Final = _HEADER.unpack_from

#: A core event as the trace needs it: the event, its message id and guarantee (if any).
Traced = tuple[CoreEvent, str | None, Guarantee | None]


def group_names(groups: Iterable[str | bytes]) -> tuple[bytes, ...]:
    """Group names checked against this executive's limits (``evs.types.group_names``)."""
    return _group_names(groups, name_max=GROUP_NAME_MAX, count_max=GROUPS_PER_HANDLE_MAX)


class Handle:
    """One application connection: its groups, its pending events and its flow state."""

    __slots__ = (
        "events",
        "groups",
        "id",
        "joined_names",
        "overflowed",
        "pid",
        "queued_bytes",
        "started",
        "waiting_room",
    )

    def __init__(self, handle_id: int, pid: int) -> None:
        self.id = handle_id
        self.pid = pid
        self.groups: set[bytes] = set()
        #: ``groups`` sorted, as a send to the joined groups names them (kept in step by
        #: ``set_groups``: every message of such a send would otherwise sort the set).
        self.joined_names: tuple[bytes, ...] = ()
        #: Joined at least once: configuration changes flow to it.
        self.started = False
        self.events: deque[Queued] = deque()
        self.queued_bytes = 0
        #: Why the handle was cut off (its queue bound was reached), or None.
        self.overflowed: str | None = None
        #: It got TryAgain and wants to hear when the send queue has room again.
        self.waiting_room = False

    def set_groups(self, groups: set[bytes]) -> None:
        self.groups = groups
        self.joined_names = tuple(sorted(groups))

    def take_events(self, limit: int = 1 << 30) -> list[Event]:
        """Up to ``limit`` waiting events, oldest first, removed from the queue."""
        events = self.events
        if limit >= len(events):  # the usual case: everything, without a cost per event
            out = [_event(ev) for ev in events]
            events.clear()
            self.queued_bytes = 0
            return out
        out = []
        while events and len(out) < limit:
            ev = events.popleft()
            self.queued_bytes -= _cost(ev)
            out.append(_event(ev))
        return out

    def take_encoded(self, encode: Callable[[Queued], bytes], budget: int, out: list[bytes]) -> int:
        """Encode waiting events, oldest first, onto ``out`` and remove them, while the bytes
        added stay under ``budget`` (the last one may cross it); returns the bytes added. If
        ``encode`` raises, the event it refused is gone, the frames before it stay on ``out`` and
        the events after it stay queued."""
        events = self.events
        size = 0
        cost = 0
        overhead = _EVENT_OVERHEAD
        try:
            while events and size < budget:
                ev = events.popleft()
                # _cost inline for deliveries, nearly every event: a call less per message.
                cost += overhead + len(ev[3]) if isinstance(ev, tuple) else _cost(ev)
                frame = encode(ev)
                out.append(frame)
                size += len(frame)
        finally:
            self.queued_bytes = self.queued_bytes - cost if events else 0
        return size


def _cost(ev: Queued) -> int:
    return _EVENT_OVERHEAD + (len(ev[3]) if isinstance(ev, tuple) else 8 * len(ev.members))


def _event(ev: Queued) -> Event:
    """The public value of a queue entry."""
    if isinstance(ev, tuple):
        nodeid, pid, groups, data, guarantee = ev
        return make_delivery(nodeid, pid, groups, data, guarantee)
    return ev


class EvsService:
    """Handles and groups of one node, fed by the core's events (see the module docstring)."""

    def __init__(
        self,
        nodeid: int,
        submit: Callable[[Sequence[bytes], bytes, Guarantee], int],
        *,
        incarnation: int = 0,
        max_message_size: int = 1 << 20,
        handle_queue_bytes: int = HANDLE_QUEUE_BYTES,
        traced: bool = True,
        reader_hold_ms: float = 0.0,
    ) -> None:
        self.nodeid = nodeid
        #: Name every message (``nodeid:incarnation:counter``) and return its deliveries and
        #: sends from ``feed``, for a trace. Without a trace (``False``) a message costs no id
        #: string, no pending entry and no entry in ``feed``'s result.
        self.traced = traced
        self._submit = submit
        self.incarnation = incarnation
        #: Largest application payload (the core's limit less the service header).
        self.max_data = max_message_size - SIZE
        self.handle_queue_bytes = handle_queue_bytes
        #: Longest hold of this node's sends for a lagging local reader (0: never hold).
        self.reader_hold_ms = reader_hold_ms
        #: A handle past this many queued bytes starts a hold; under ``_hold_low`` it is caught up.
        self._hold_high = handle_queue_bytes // 2 if reader_hold_ms > 0 else handle_queue_bytes
        self._hold_low = handle_queue_bytes // 4
        #: This node's client sends wait (TryAgain / held in ``SendWindows``) for a local reader.
        self.sends_held = False
        #: Some handle crossed ``_hold_high`` since the last ``check_readers``.
        self.readers_behind = False
        self._hold_since = 0.0
        #: Handles a hold gave up on (it lasted ``reader_hold_ms``), until they catch up.
        self._not_waited: set[int] = set()
        self.handles: dict[int, Handle] = {}
        self._next_handle = 1
        self._counter = 0
        #: The last regular configuration the core delivered (None before the first ring).
        self.regular: ConfigChange | None = None
        #: Handles with new events since the last ``take_ready``.
        self._ready: dict[int, Handle] = {}
        #: Handles told there is room again since the last ``take_room_again``.
        self._room: list[Handle] = []
        #: Checked group lists by the tuple a send named (``check_mcast``).
        self._names_seen: dict[object, tuple[bytes, ...]] = {}
        #: message number -> (message id, guarantee), until the core reports it ``Sent``.
        self._pending: dict[int, tuple[str, Guarantee]] = {}
        #: The executive's own messages (header flag ``FLAG_INTERNAL``) and every configuration
        #: change, in delivery order, go here too when set (``evs.daemon.rekey``).
        self.internal: Callable[[Deliver | ConfigChange], None] | None = None
        self.counters: dict[str, int] = {
            "messages sent": 0,
            "messages delivered": 0,
            "deliveries to handles": 0,
            "configuration changes": 0,
            "try again": 0,
            "handles opened": 0,
            "handles overflowed": 0,
            "foreign messages dropped": 0,
            "sends held for room": 0,
            "held sends the core refused": 0,
            "send holds for local readers": 0,
            "local readers no longer waited for": 0,
        }

    # ------------------------------------------------------------------ handles

    def open_handle(self, pid: int) -> Handle:
        h = Handle(self._next_handle, pid)
        self._next_handle += 1
        self.handles[h.id] = h
        self.counters["handles opened"] += 1
        return h

    def close_handle(self, h: Handle) -> None:
        self.handles.pop(h.id, None)
        self._ready.pop(h.id, None)
        h.events.clear()
        h.queued_bytes = 0
        h.set_groups(set())

    def mute(self, h: Handle) -> None:
        """The handle's connection is ending: it gets no more events, but may still send."""
        if h.overflowed is None:
            h.overflowed = "the connection is closing"
        h.events.clear()
        h.queued_bytes = 0
        self._ready.pop(h.id, None)

    def join(self, h: Handle, groups: Iterable[str | bytes]) -> None:
        names = group_names(groups)
        new = h.groups.union(names)
        if len(new) > GROUPS_PER_HANDLE_MAX:
            raise InvalidArgument(
                f"joining {len(new) - len(h.groups)} more groups would make {len(new)}; "
                f"a handle may join at most {GROUPS_PER_HANDLE_MAX}"
            )
        h.set_groups(new)
        if not h.started:
            h.started = True
            if self.regular is not None:
                r = self.regular
                first = ConfigChange(r.ring_id, False, r.members, (), r.members)
                self._push(h, first)

    def leave(self, h: Handle, groups: Iterable[str | bytes]) -> None:
        names = group_names(groups)
        missing = [n for n in names if n not in h.groups]
        if missing:
            raise InvalidArgument(f"not a member of group {missing[0]!r}: join it first")
        h.set_groups(h.groups.difference(names))

    def mcast(
        self,
        h: Handle,
        groups: Iterable[str | bytes] | None,
        data: bytes,
        guarantee: Guarantee,
    ) -> str:
        """Multicast ``data`` to ``groups`` (None: the handle's joined groups).

        Returns the message id (``nodeid:incarnation:counter``; empty when not ``traced``);
        raises InvalidArgument or TryAgain (the handle is then told when there is room again).
        """
        return self.submit_checked(h, *self.check_mcast(h, groups, data, guarantee))

    def check_mcast(
        self,
        h: Handle,
        groups: Iterable[str | bytes] | None,
        data: bytes,
        guarantee: Guarantee,
    ) -> tuple[tuple[bytes, ...], bytes, Guarantee]:
        """The message's group names, data and guarantee, checked; raises InvalidArgument.

        ``None`` groups resolve to the handle's joined groups now, when the message is
        accepted, even if it reaches the core later (``SendWindows``)."""
        if groups is None:
            names = h.joined_names
            if not names:
                raise InvalidArgument("this handle has joined no group: join one, or name groups")
        elif type(given := cast(object, groups)) is tuple:
            # A decoded frame's list: remembered if it is one plain name (evs.types). The
            # memo is read here first: compiled, that saves a call into interpreted code per
            # message. Through ``given`` (an object): compiled, a tuple typed by its items
            # would be checked item by item, refusing a bytearray name with a TypeError
            # where the contract says InvalidArgument.
            first = given[0] if len(given) == 1 else None
            known = self._names_seen.get(first) if type(first) is bytes else None
            names = (
                known
                if known is not None
                else _group_names_seen(
                    groups,
                    self._names_seen,
                    name_max=GROUP_NAME_MAX,
                    count_max=GROUPS_PER_HANDLE_MAX,
                )
            )
        else:
            names = group_names(groups)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidArgument(f"message data must be bytes, got {type(data).__name__}")
        if len(data) > self.max_data:
            raise InvalidArgument(
                f"message of {len(data)} bytes exceeds the limit of {self.max_data} bytes"
            )
        if type(guarantee) is not Guarantee:  # decoded frames carry the enum already
            try:
                guarantee = Guarantee(guarantee)
            except ValueError:
                raise InvalidArgument(f"unknown guarantee {guarantee!r}") from None
        return names, data if type(data) is bytes else bytes(data), guarantee

    def submit_checked(
        self,
        h: Handle,
        names: tuple[bytes, ...],
        data: bytes,
        guarantee: Guarantee,
        *,
        room_again: bool = True,
    ) -> str:
        """Hand a checked message to the core; its id, or TryAgain (see ``mcast``).

        ``room_again=False``: a TryAgain does not list the handle for ``take_room_again``
        (the caller retries by itself)."""
        counter = self._counter
        payload = _HEADER.pack(_VERSION, 0, h.pid, self.incarnation, counter) + data
        try:
            if self.sends_held:
                raise TryAgain(
                    "this node holds its clients' sends while one of its clients catches up "
                    "with its deliveries"
                )
            number = self._submit(names, payload, guarantee)
        except TryAgain:
            self.counters["try again"] += 1
            if room_again and not h.waiting_room:
                h.waiting_room = True
                self._room.append(h)
            raise
        self._counter = counter + 1
        self.counters["messages sent"] += 1
        if not self.traced:
            return ""
        msgid = f"{self.nodeid}:{self.incarnation}:{counter}"
        self._pending[number] = (msgid, guarantee)
        return msgid

    def membership(self) -> Membership:
        r = self.regular
        if r is None:
            return Membership(self.nodeid, RingId(0, self.nodeid), (self.nodeid,))
        return Membership(self.nodeid, r.ring_id, r.members)

    # ------------------------------------------------------------------ core events

    def feed(self, events: Iterable[CoreEvent]) -> list[Traced]:
        """Fan the core's events out to the handles, in order.

        Returns the deliveries, sends and configuration changes with the message id and
        guarantee of each message (id None for a message without a valid service header),
        for the caller's trace.
        """
        traced: list[Traced] = []
        if not self.traced:
            return self._feed_untraced(events, traced)
        for ev in events:
            if isinstance(ev, Deliver):
                traced.append((ev, self._deliver(ev), ev.guarantee))
            elif isinstance(ev, ConfigChange):
                self._confchg(ev)
                traced.append((ev, None, None))
            elif isinstance(ev, Sent):
                pending = self._pending.pop(ev.number, None)
                if pending is None:
                    traced.append((ev, None, None))
                else:
                    traced.append((ev, pending[0], pending[1]))
                self._wake_waiting()
            else:
                traced.append((ev, None, None))  # notices: the caller logs them
        return traced

    def _feed_untraced(self, events: Iterable[CoreEvent], traced: list[Traced]) -> list[Traced]:
        """``feed`` without ids: only configuration changes and notices are returned."""
        for ev in events:
            if isinstance(ev, Deliver):
                self._deliver(ev)
            elif isinstance(ev, Sent):
                self._wake_waiting()
            else:
                if isinstance(ev, ConfigChange):
                    self._confchg(ev)
                traced.append((ev, None, None))
        return traced

    def _deliver(self, ev: Deliver) -> str | None:
        data = ev.data
        # Every message of the ring passes here: unpack in place, no header object.
        if len(data) < SIZE:
            self.counters["foreign messages dropped"] += 1
            return None
        # Typed: compiled, the compares below are on C integers.
        head: tuple[int, int, int, int, int] = _HEADER_UNPACK(data)
        version, flags, pid, incarnation, counter = head
        if version != _VERSION or flags:
            internal = self.internal
            if version == _VERSION and flags == FLAG_INTERNAL and internal is not None:
                internal(ev)
            else:
                self.counters["foreign messages dropped"] += 1
            return None
        counters = self.counters
        counters["messages delivered"] += 1
        msgid = f"{ev.sender}:{incarnation}:{counter}" if self.traced else ""
        groups = ev.groups
        delivery: QueuedDelivery | None = None
        cost = 0
        handed = 0
        for h in self.handles.values():
            hg = h.groups
            if not hg or h.overflowed:
                continue
            for g in groups:
                if g in hg:
                    if delivery is None:
                        body = data[SIZE:]
                        delivery = (ev.sender, pid, groups, body, ev.guarantee)
                        cost = _EVENT_OVERHEAD + len(body)  # _cost, once per message
                    h.events.append(delivery)  # _push, inline: once per message and handle
                    h.queued_bytes += cost
                    self._ready[h.id] = h
                    if h.queued_bytes > self._hold_high:
                        self._queue_high(h)
                    handed += 1
                    break
        if handed:
            counters["deliveries to handles"] += handed
        return msgid

    def _confchg(self, ev: ConfigChange) -> None:
        self.counters["configuration changes"] += 1
        if not ev.transitional:
            self.regular = ev
        for h in self.handles.values():
            if h.started and not h.overflowed:
                self._push(h, ev)
        internal = self.internal
        if internal is not None:
            internal(ev)

    def _push(self, h: Handle, ev: Queued) -> None:
        h.events.append(ev)
        h.queued_bytes += _cost(ev)
        self._ready[h.id] = h
        if h.queued_bytes > self._hold_high:  # (the queue bound itself when holds are off)
            self._queue_high(h)

    def _queue_high(self, h: Handle) -> None:
        """A handle's queue passed the hold mark: readers are behind, or it overflowed."""
        self.readers_behind = True
        if h.queued_bytes > self.handle_queue_bytes:
            h.overflowed = (
                f"the client did not read its events: {h.queued_bytes} bytes were waiting, "
                f"the limit is {self.handle_queue_bytes} bytes"
            )
            self.counters["handles overflowed"] += 1

    def _wake_waiting(self) -> None:
        if self.sends_held:
            return  # they would only get TryAgain again; the hold's end wakes them
        for h in self._room:
            h.waiting_room = False
        # _room stays listed until take_room_again; new TryAgains append again.

    # ------------------------------------------------------------------ for the I/O layer

    @property
    def readers_due(self) -> bool:
        """``check_readers`` has something to decide (else it would return None at once)."""
        return self.readers_behind or self.sends_held or bool(self._not_waited)

    def check_readers(self, now: float) -> float | None:
        """Start or end the hold of this node's sends (see the module docstring); ``now`` in
        ms. Returns when the current hold gives up (call again then), or None if not held.

        Cheap unless a handle crossed half its queue, a hold is on, or a reader was given up
        on: the caller may run it after every step."""
        if not self.readers_due:
            return None
        if self.reader_hold_ms <= 0:
            self.readers_behind = False  # (set by an overflow: nothing to hold for)
            return None
        low = self._hold_low
        not_waited = self._not_waited
        handles = self.handles
        if not (self.readers_behind or self.sends_held):
            # Only readers given up on to follow: look at them alone (this runs every step
            # while one lags between a quarter and its bound).
            for hid in list(not_waited):
                h = handles.get(hid)
                if h is None or h.overflowed is not None or h.queued_bytes <= low:
                    not_waited.discard(hid)
            return None
        self.readers_behind = False
        lagging: list[Handle] = []
        for h in handles.values():
            if h.overflowed is not None:
                not_waited.discard(h.id)
                continue
            q = h.queued_bytes
            if h.id in not_waited:
                if q <= low:
                    not_waited.discard(h.id)
            elif q > low and (self.sends_held or q > self._hold_high):
                lagging.append(h)
        if not_waited:
            not_waited.intersection_update(handles)
        if not lagging:
            if self.sends_held:
                self._release()
            return None
        if not self.sends_held:
            self.sends_held = True
            self._hold_since = now
            self.counters["send holds for local readers"] += 1
        deadline = self._hold_since + self.reader_hold_ms
        if now < deadline:  # (a timer at the deadline may fire a hair early: check again)
            return deadline
        for h in lagging:
            not_waited.add(h.id)
            self.counters["local readers no longer waited for"] += 1
        self._release()
        return None

    def _release(self) -> None:
        self.sends_held = False
        self._wake_waiting()

    def take_ready(self) -> list[Handle]:
        """Handles that got events (or overflowed) since the last call."""
        ready = list(self._ready.values())
        self._ready.clear()
        return ready

    def take_room_again(self) -> list[Handle]:
        """Handles that got TryAgain and may now retry (the queue drained since)."""
        woken = [h for h in self._room if not h.waiting_room]
        if woken:
            self._room = [h for h in self._room if h.waiting_room]
        return [h for h in woken if h.id in self.handles]
