"""SendWindows: windowed sends handed to the core at once or held, in order, for room."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from evs.errors import InvalidArgument, TryAgain
from evs.runtime.send_window import SendWindows, WindowExceeded
from evs.runtime.service import SIZE, EvsService
from evs.types import Guarantee

A = Guarantee.AGREED


class Core:
    """Takes submits while ``room`` lasts; ``broken`` makes the next submit fail oddly."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.broken = False
        self.got: list[bytes] = []

    def submit(self, groups: Sequence[bytes], data: bytes, guarantee: Guarantee) -> int:
        if self.broken:
            self.broken = False
            raise RuntimeError("a bug below the service")
        if self.room <= 0:
            raise TryAgain("full")
        self.room -= 1
        self.got.append(data[SIZE:])
        return len(self.got)


def setup(room: int, window: int = 1000) -> tuple[Core, EvsService, SendWindows]:
    core = Core(room)
    service = EvsService(1, core.submit)
    return core, service, SendWindows(service, window)


def test_taken_at_once_is_credited_at_once() -> None:
    core, service, w = setup(room=10)
    h = service.open_handle(7)
    w.mcast(h, ["g"], b"a", A, 100)
    w.mcast(h, ["g"], b"b", A, 100)
    assert core.got == [b"a", b"b"]
    assert w.take_credits() == [(h, 200)]
    assert w.take_credits() == []
    assert w.waiting == 0


def test_held_in_arrival_order_across_handles_then_drained_and_credited() -> None:
    core, service, w = setup(room=1)
    a, b = service.open_handle(1), service.open_handle(2)
    w.mcast(a, ["g"], b"a0", A, 100)  # taken
    w.mcast(b, ["g"], b"b0", A, 100)  # held
    w.mcast(a, ["g"], b"a1", A, 100)  # held behind b0
    assert (w.waiting, w.held(a), w.held(b)) == (2, 100, 100)
    assert service.counters["sends held for room"] == 2
    assert w.take_credits() == [(a, 100)]
    core.room = 1
    assert w.drain() == 1  # b0 only: order across handles is arrival order
    core.room = 5
    w.mcast(b, ["g"], b"b1", A, 100)  # queued behind a1 although the core has room
    assert w.drain() == 2
    assert core.got == [b"a0", b"b0", b"a1", b"b1"]
    assert sorted((h.id, n) for h, n in w.take_credits()) == [(1, 100), (2, 200)]
    assert w.waiting == 0


def test_window_enforced_while_held_and_one_large_message_may_go_alone() -> None:
    _, service, w = setup(room=0, window=1000)
    h = service.open_handle(1)
    w.mcast(h, ["g"], b"x", A, 5000)  # larger than the window, nothing held: accepted
    with pytest.raises(WindowExceeded, match="window is 1000 bytes"):
        w.mcast(h, ["g"], b"y", A, 10)
    other = service.open_handle(2)
    w.mcast(other, ["g"], b"z", A, 600)
    w.mcast(other, ["g"], b"z", A, 400)  # exactly the window
    with pytest.raises(WindowExceeded):
        w.mcast(other, ["g"], b"z", A, 1)
    with pytest.raises(InvalidArgument, match="joined no group"):
        w.mcast(other, None, b"z", A, 1)  # checked at acceptance, not when drained
    with pytest.raises(ValueError, match="send window"):
        SendWindows(service, 0)


def test_held_sends_of_a_closed_handle_still_go_uncredited() -> None:
    core, service, w = setup(room=0)
    h = service.open_handle(1)
    service.join(h, ["g"])
    w.mcast(h, None, b"m", A, 100)  # the joined groups, resolved now
    service.close_handle(h)
    core.room = 1
    assert w.drain() == 1
    assert core.got == [b"m"]
    assert w.take_credits() == []


def test_a_failing_submit_is_counted_and_does_not_wedge_the_queue() -> None:
    core, service, w = setup(room=0)
    h = service.open_handle(1)
    w.mcast(h, ["g"], b"bad", A, 100)
    w.mcast(h, ["g"], b"good", A, 100)
    core.room, core.broken = 5, True
    assert w.drain() == 1
    assert core.got == [b"good"]
    assert service.counters["held sends the core refused"] == 1
    assert w.waiting == 0
    assert w.held(h) == 0
