"""EvsService.check_readers: a node's client sends wait for a lagging local reader, bounded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from evs.errors import TryAgain
from evs.runtime.send_window import SendWindows
from evs.runtime.service import HEADER, HEADER_VERSION, SIZE, EvsService, Handle
from evs.totem.events import Deliver, Sent
from evs.types import ConfigChange, Guarantee, RingId

A = Guarantee.AGREED
R1 = RingId(4, 1)
QUEUE = 10_000  # hold past 5,000 queued bytes, caught up at 2,500
HOLD_MS = 500.0
#: One delivery of this much data costs 1,000 bytes of a handle's queue (64 of overhead).
DATA = bytes(1000 - 64)


class Core:
    def __init__(self) -> None:
        self.got: list[bytes] = []

    def submit(self, groups: Sequence[bytes], data: bytes, guarantee: Guarantee) -> int:
        self.got.append(data[SIZE:])
        return len(self.got)


class Rig(NamedTuple):
    core: Core
    s: EvsService
    w: SendWindows
    reader: Handle  # joined group g
    sender: Handle  # joined nothing


def setup(hold_ms: float = HOLD_MS) -> Rig:
    core = Core()
    s = EvsService(1, core.submit, handle_queue_bytes=QUEUE, reader_hold_ms=hold_ms)
    s.feed([ConfigChange(R1, False, (1, 2), (), (1, 2))])
    reader = s.open_handle(pid=10)
    s.join(reader, ["g"])
    reader.take_events()
    sender = s.open_handle(pid=20)
    return Rig(core, s, SendWindows(s, 100_000), reader, sender)


def held(s: EvsService) -> bool:
    """``s.sends_held``, read through a call (mypy would narrow the attribute for good)."""
    return s.sends_held


def cut_off(h: Handle) -> bool:
    return h.overflowed is not None


def remote(s: EvsService, count: int) -> None:
    """``count`` deliveries from node 2 to group g."""
    head = HEADER.pack(HEADER_VERSION, 0, 99, 0, 0)
    s.feed([Deliver(2, (b"g",), head + DATA, A, R1) for _ in range(count)])


def test_off_by_default_sends_go_through_a_lagging_reader() -> None:
    r = setup(hold_ms=0)
    core, s, sender = r.core, r.s, r.sender
    remote(s, 9)  # 9,000 of 10,000 bytes queued
    assert not s.readers_due
    assert s.check_readers(0.0) is None
    s.mcast(sender, ["g"], b"x", A)
    assert core.got == [b"x"]


def test_a_reader_past_half_holds_the_nodes_sends_until_it_is_under_a_quarter() -> None:
    r = setup()
    core, s, w, reader, sender = r.core, r.s, r.w, r.reader, r.sender
    remote(s, 5)  # exactly half: not yet
    assert s.check_readers(0.0) is None
    remote(s, 1)
    assert s.readers_due
    assert s.check_readers(1.0) == 1.0 + HOLD_MS
    assert held(s)
    assert s.counters["send holds for local readers"] == 1
    with pytest.raises(TryAgain, match="catches up"):
        s.mcast(sender, ["g"], b"sync", A)
    w.mcast(sender, ["g"], b"windowed", A, 100)  # accepted, kept: no credit yet
    assert w.waiting == 1
    assert w.drain() == 0
    assert w.take_credits() == []
    assert core.got == []
    assert s.counters["try again"] == 1  # the sync send; the window waits without asking
    s.feed([Sent(1, R1)])  # room in the core's queue is no news while held
    assert s.take_room_again() == []
    # The reader takes some: 3,000 bytes left, over a quarter: still held.
    for _ in range(3):
        reader.events.popleft()
    reader.queued_bytes -= 3000
    assert s.check_readers(2.0) == 1.0 + HOLD_MS
    # Down to 2,000: released; the sync sender hears RoomAgain, the window drains in order.
    reader.events.popleft()
    reader.queued_bytes -= 1000
    assert s.check_readers(3.0) is None
    assert not held(s)
    assert s.take_room_again() == [sender]
    assert w.drain() == 1
    assert w.take_credits() == [(sender, 100)]
    s.mcast(sender, ["g"], b"sync", A)
    assert core.got == [b"windowed", b"sync"]
    assert not s.readers_due


def test_a_hold_gives_up_on_a_reader_that_does_not_catch_up_in_time() -> None:
    r = setup()
    core, s, reader, sender = r.core, r.s, r.reader, r.sender
    remote(s, 6)
    assert s.check_readers(100.0) == 100.0 + HOLD_MS
    assert s.check_readers(100.0 + HOLD_MS - 0.001) == 100.0 + HOLD_MS
    assert s.check_readers(100.0 + HOLD_MS) is None
    assert not held(s)
    assert s.counters["local readers no longer waited for"] == 1
    s.mcast(sender, ["g"], b"goes", A)
    assert core.got == [b"goes"]
    # Not waited for: it lags further without a new hold, up to its queue bound.
    remote(s, 3)
    assert s.check_readers(700.0) is None
    assert not held(s)
    remote(s, 2)
    assert reader.overflowed is not None
    assert s.check_readers(800.0) is None
    assert s.counters["send holds for local readers"] == 1
    assert not s.readers_due  # an overflowed handle is forgotten


def test_a_reader_given_up_on_is_waited_for_again_once_it_caught_up() -> None:
    r = setup()
    s, reader = r.s, r.reader
    remote(s, 6)
    s.check_readers(0.0)
    assert s.check_readers(HOLD_MS) is None
    reader.take_events()  # it caught up
    assert s.check_readers(HOLD_MS + 1) is None
    assert not s.readers_due
    remote(s, 6)
    assert s.check_readers(2000.0) == 2000.0 + HOLD_MS
    assert s.counters["send holds for local readers"] == 2


def test_another_reader_lagging_while_one_is_given_up_on_starts_a_hold() -> None:
    r = setup()
    s, reader, sender = r.s, r.reader, r.sender
    s.join(sender, ["g"])
    sender.take_events()
    remote(s, 6)  # both lag
    assert s.check_readers(0.0) == HOLD_MS
    assert s.check_readers(HOLD_MS) is None
    assert s.counters["local readers no longer waited for"] == 2
    sender.take_events()  # one catches up, then lags again
    s.check_readers(HOLD_MS + 1)
    remote(s, 1)
    assert not cut_off(reader)
    sender.events.clear()
    sender.queued_bytes = 0
    remote(s, 3)
    assert s.check_readers(600.0) is None  # the sender's queue: 3,000 bytes, not past half
    remote(s, 3)
    assert cut_off(reader)
    assert s.check_readers(700.0) == 700.0 + HOLD_MS  # the sender's: 6,000, held for it


def test_a_closed_or_muted_reader_ends_the_hold() -> None:
    r = setup()
    s, reader = r.s, r.reader
    remote(s, 6)
    assert s.check_readers(0.0) == HOLD_MS
    s.mute(reader)  # its connection ends
    assert s.check_readers(1.0) is None
    assert not held(s)
    r2 = setup()
    s2, reader2 = r2.s, r2.reader
    remote(s2, 6)
    s2.check_readers(0.0)
    s2.close_handle(reader2)
    assert s2.check_readers(1.0) is None
    assert not held(s2)


# ---------------------------------------------------------------------- stateful property


class HoldMachine(RuleBasedStateMachine):
    """Random lags, reads, sends, closes, a core queue that fills, and clock steps against the
    hold's promises: every accepted send reaches the core once, in each handle's order; a hold
    never outlasts ``reader_hold_ms`` by a check; without a hold (and with room in the core)
    nothing waits in the window; a handle's queue stays within its bound unless cut off."""

    def __init__(self) -> None:
        super().__init__()
        self.core = OrderCore()
        self.s = EvsService(
            1, self.core.submit, handle_queue_bytes=QUEUE, reader_hold_ms=HOLD_MS, traced=False
        )
        self.s.feed([ConfigChange(R1, False, (1, 2), (), (1, 2))])
        self.w = SendWindows(self.s, 4_000)
        self.now = 0.0
        self.accepted: dict[int, list[int]] = {}  # pid -> message numbers, in acceptance order
        self.next_number = 0
        self.open: list[Handle] = []

    @initialize()
    def first_reader(self) -> None:
        self.open_handle()

    @rule()
    def open_handle(self) -> None:
        if len(self.open) < 4:
            h = self.s.open_handle(pid=100 + len(self.accepted))
            self.s.join(h, ["g"])
            self.accepted[h.pid] = []
            self.open.append(h)

    @rule(i=st.integers(0, 3))
    def close_handle(self, i: int) -> None:
        if len(self.open) > 1:
            self.s.close_handle(self.open.pop(i % len(self.open)))

    @rule(count=st.integers(1, 6))
    def remote_traffic(self, count: int) -> None:
        remote(self.s, count)

    @rule(i=st.integers(0, 3), n=st.integers(0, 8))
    def read(self, i: int, n: int) -> None:
        self.open[i % len(self.open)].take_events(n)

    @rule(i=st.integers(0, 3), windowed=st.booleans())
    def send(self, i: int, windowed: bool) -> None:
        h = self.open[i % len(self.open)]
        data = b"%08d" % self.next_number
        if windowed:
            if self.w.held(h) + 1000 > self.w.window:
                return  # the library would wait for credit
            self.w.mcast(h, ["g"], data, A, 1000)
        else:
            if self.w.waiting:
                return  # a sync send must not overtake held windowed ones of its handle
            try:
                self.s.mcast(h, ["g"], data, A)
            except TryAgain:
                return
        self.accepted[h.pid].append(self.next_number)
        self.next_number += 1

    @rule(ms=st.sampled_from([0.0, 1.0, 50.0, HOLD_MS / 2, HOLD_MS]))
    def step(self, ms: float) -> None:
        """One executive step: time passes, the hold is decided, the window drains."""
        self.now += ms
        until = self.s.check_readers(self.now)
        if until is not None:
            assert self.s.sends_held
            assert self.now < until <= self.now + HOLD_MS
        self.w.drain()
        if not self.s.sends_held and not self.core.full:
            assert self.w.waiting == 0  # nothing waits for a hold that is over

    @rule(full=st.booleans())
    def core_queue(self, full: bool) -> None:
        """The core's send queue fills or gets room (windowed sends then wait for it too)."""
        self.core.full = full

    @invariant()
    def queues_within_bounds(self) -> None:
        for h in self.open:
            assert h.overflowed is not None or h.queued_bytes <= QUEUE

    @invariant()
    def sends_reach_the_core_once_in_order(self) -> None:
        got = self.core.by_pid()
        for pid, numbers in self.accepted.items():
            sent = got.get(pid, [])
            assert sent == numbers[: len(sent)]  # a prefix, in order, no duplicate

    def teardown(self) -> None:
        # A hold that starts now ends within one hold's time: then everything accepted has
        # reached the core.
        self.core.full = False
        for _ in range(2):
            self.s.check_readers(self.now)
            self.w.drain()
            self.now += HOLD_MS
        assert self.core.by_pid() == {p: n for p, n in self.accepted.items() if n}


class OrderCore:
    """Takes every submit unless ``full``, remembering each message's sender pid and number."""

    def __init__(self) -> None:
        self.got: list[tuple[int, int]] = []
        self.full = False

    def submit(self, groups: Sequence[bytes], data: bytes, guarantee: Guarantee) -> int:
        if self.full:
            raise TryAgain("full")
        _, _, pid, _, _ = HEADER.unpack_from(data)
        self.got.append((pid, int(data[SIZE:])))
        return len(self.got)

    def by_pid(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for pid, number in self.got:
            out.setdefault(pid, []).append(number)
        return out


TestHoldMachine = HoldMachine.TestCase
TestHoldMachine.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
