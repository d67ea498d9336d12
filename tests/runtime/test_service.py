"""EvsService: fan-out, first join, stream order, bounds and back-pressure, without a ring."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from evs.errors import InvalidArgument, TryAgain
from evs.runtime import service as service_mod
from evs.runtime.service import (
    GROUP_NAME_MAX,
    GROUPS_PER_HANDLE_MAX,
    EvsService,
)
from evs.totem.events import Deliver, Sent
from evs.types import ConfigChange, Delivery, Guarantee, RingId

R1 = RingId(4, 1)
R2 = RingId(8, 1)
REG1 = ConfigChange(R1, False, (1, 2, 3), (), (1, 2, 3))


class FakeCore:
    """Accepts submits up to ``room`` and echoes nothing: tests feed deliveries by hand."""

    def __init__(self, room: int = 1000) -> None:
        self.room = room
        self.submitted: list[tuple[tuple[bytes, ...], bytes, Guarantee]] = []

    def submit(self, groups: Sequence[bytes], data: bytes, guarantee: Guarantee) -> int:
        if len(self.submitted) >= self.room:
            raise TryAgain("full")
        self.submitted.append((tuple(groups), data, guarantee))
        return len(self.submitted) - 1


def deliver_of(core: FakeCore, number: int, sender: int = 1, ring: RingId = R1) -> Deliver:
    groups, data, guarantee = core.submitted[number]
    return Deliver(sender, groups, data, guarantee, ring)


def service(core: FakeCore, **kw: Any) -> EvsService:
    return EvsService(1, core.submit, incarnation=3, **kw)


def test_first_join_gets_current_regular_configuration_with_everyone_joined() -> None:
    core = FakeCore()
    s = service(core)
    s.feed([REG1, ConfigChange(R1, True, (1, 2), (3,), ()), ConfigChange(R2, False, (1, 2))])
    h = s.open_handle(pid=77)
    assert h.take_events() == []
    s.join(h, ["a"])
    assert h.take_events() == [ConfigChange(R2, False, (1, 2), (), (1, 2))]
    s.join(h, ["b"])  # a second join is not a new start
    assert h.take_events() == []


def test_handle_joined_before_first_ring_sees_the_first_regular_configuration() -> None:
    core = FakeCore()
    s = service(core)
    h = s.open_handle(pid=1)
    s.join(h, [b"g"])
    assert h.take_events() == []
    s.feed([REG1])
    assert h.take_events() == [REG1]
    assert s.membership().members == (1, 2, 3)


def test_delivery_fans_out_to_joined_handles_once_including_the_sender() -> None:
    core = FakeCore()
    s = service(core)
    s.feed([REG1])
    sender, both, other, idle = (s.open_handle(pid=p) for p in (10, 11, 12, 13))
    s.join(sender, ["a"])
    s.join(both, ["a", "b"])
    s.join(other, ["c"])
    for h in (sender, both, other):
        h.take_events()
    msgid = s.mcast(sender, ["a", "b"], b"payload", Guarantee.SAFE)
    assert msgid == "1:3:0"
    traced = s.feed([deliver_of(core, 0)])
    assert traced[0][1] == "1:3:0"
    want = Delivery(1, 10, (b"a", b"b"), b"payload", Guarantee.SAFE)
    assert sender.take_events() == [want]
    assert both.take_events() == [want]  # in two of the groups, one copy
    assert other.take_events() == []
    assert idle.take_events() == []


def test_configuration_changes_stay_in_stream_order_with_deliveries() -> None:
    core = FakeCore()
    s = service(core)
    s.feed([REG1])
    h = s.open_handle(pid=5)
    s.join(h, ["g"])
    s.mcast(h, None, b"x", Guarantee.AGREED)
    s.mcast(h, None, b"y", Guarantee.AGREED)
    trans = ConfigChange(R1, True, (1,), (2, 3), ())
    reg = ConfigChange(R2, False, (1,), (), ())
    s.feed([deliver_of(core, 0), trans, deliver_of(core, 1, ring=R2), reg])
    kinds = [e.data if isinstance(e, Delivery) else e.transitional for e in h.take_events()]
    assert kinds == [False, b"x", True, b"y", False]


def test_left_groups_receive_nothing_more_and_leaving_unjoined_is_an_error() -> None:
    core = FakeCore()
    s = service(core)
    h = s.open_handle(pid=5)
    s.join(h, ["g", "k"])
    s.leave(h, ["g"])
    s.mcast(h, ["g"], b"x", Guarantee.AGREED)
    s.feed([deliver_of(core, 0)])
    assert h.take_events() == []
    with pytest.raises(InvalidArgument, match="not a member"):
        s.leave(h, ["g"])


@pytest.mark.parametrize(
    ("groups", "why"),
    [
        ([], "at least one"),
        (["x" * (GROUP_NAME_MAX + 1)], f"1..{GROUP_NAME_MAX}"),
        ([""], "1.."),
        ([f"g{i}" for i in range(GROUPS_PER_HANDLE_MAX + 1)], f"limit is {GROUPS_PER_HANDLE_MAX}"),
        ("abc", "not a single str"),
        ([3], "must be str or bytes"),
    ],
)
def test_bad_group_lists_name_the_limit(groups: object, why: str) -> None:
    s = service(FakeCore())
    h = s.open_handle(pid=1)
    with pytest.raises(InvalidArgument, match=why):
        s.join(h, groups)  # type: ignore[arg-type]


def test_joining_past_the_per_handle_limit_is_refused_and_changes_nothing() -> None:
    s = service(FakeCore())
    h = s.open_handle(pid=1)
    s.join(h, [f"g{i}" for i in range(GROUPS_PER_HANDLE_MAX)])
    with pytest.raises(InvalidArgument, match="at most"):
        s.join(h, ["one-more"])
    assert len(h.groups) == GROUPS_PER_HANDLE_MAX


def test_a_send_names_a_checked_list_again_and_again() -> None:
    """One-name tuples (as decoded frames carry) are checked once and remembered; the same
    checks hold for every call, and a name that is not exactly str or bytes is refused even
    when it hashes like a remembered one (a read-only memoryview) or not at all."""
    core = FakeCore()
    s = service(core)
    h = s.open_handle(pid=1)
    for _ in range(3):
        assert s.check_mcast(h, (b"g",), b"x", Guarantee.AGREED)[0] == (b"g",)
        assert s.check_mcast(h, ("g",), b"x", Guarantee.AGREED)[0] == (b"g",)
        assert s.check_mcast(h, (b"g", "h", b"g"), b"x", Guarantee.AGREED)[0] == (b"g", b"h")
    for bad, why in (
        ((b"",), "1.."),
        ((bytearray(b"g"),), "must be str or bytes"),
        ((memoryview(b"g"),), "must be str or bytes"),
        ((memoryview(bytearray(b"g")),), "must be str or bytes"),
    ):
        for _ in range(2):
            with pytest.raises(InvalidArgument, match=why):
                s.check_mcast(h, bad, b"x", Guarantee.AGREED)  # type: ignore[arg-type]


def test_message_too_large_and_no_groups_are_invalid() -> None:
    s = service(FakeCore(), max_message_size=1000)
    h = s.open_handle(pid=1)
    with pytest.raises(InvalidArgument, match="joined no group"):
        s.mcast(h, None, b"x", Guarantee.AGREED)
    with pytest.raises(InvalidArgument, match=f"limit of {1000 - service_mod.HEADER.size}"):
        s.mcast(h, ["g"], bytes(1000), Guarantee.AGREED)


def test_try_again_then_room_again_after_a_message_leaves() -> None:
    core = FakeCore(room=1)
    s = service(core)
    h = s.open_handle(pid=1)
    s.mcast(h, ["g"], b"a", Guarantee.AGREED)
    with pytest.raises(TryAgain):
        s.mcast(h, ["g"], b"b", Guarantee.AGREED)
    assert s.take_room_again() == []  # nothing left the queue yet
    core.room = 2
    traced = s.feed([Sent(0, R1)])
    assert traced == [(Sent(0, R1), "1:3:0", Guarantee.AGREED)]
    assert s.take_room_again() == [h]
    assert s.take_room_again() == []
    assert s.counters["try again"] == 1


def test_a_handle_that_does_not_read_is_cut_off_at_its_bound() -> None:
    core = FakeCore()
    s = service(core, handle_queue_bytes=10_000)
    reader, sleeper = s.open_handle(pid=1), s.open_handle(pid=2)
    s.join(reader, ["g"])
    s.join(sleeper, ["g"])
    for i in range(40):
        s.mcast(reader, None, bytes(500), Guarantee.AGREED)
        s.feed([deliver_of(core, i)])
        reader.take_events()
    assert sleeper.overflowed is not None
    assert "limit is 10000 bytes" in sleeper.overflowed
    assert sleeper.queued_bytes <= 10_000 + 600  # stopped growing at the bound
    assert reader.overflowed is None
    assert sleeper in s.take_ready()


def test_foreign_message_without_service_header_is_counted_not_delivered() -> None:
    s = service(FakeCore())
    h = s.open_handle(pid=1)
    s.join(h, ["g"])
    h.take_events()
    s.feed([Deliver(2, (b"g",), b"\x09junk", Guarantee.AGREED, R1)])
    assert h.take_events() == []
    assert s.counters["foreign messages dropped"] == 1


def test_closed_handle_gets_nothing() -> None:
    core = FakeCore()
    s = service(core)
    h = s.open_handle(pid=1)
    s.join(h, ["g"])
    s.mcast(h, None, b"x", Guarantee.AGREED)
    s.close_handle(h)
    s.feed([REG1, deliver_of(core, 0)])
    assert h.take_events() == []
    assert s.take_ready() == []


def test_take_events_with_a_limit_keeps_the_byte_count() -> None:
    core = FakeCore()
    s = service(core)
    h = s.open_handle(pid=1)
    s.join(h, ["g"])
    for i in range(3):
        s.mcast(h, None, bytes(100), Guarantee.AGREED)
        s.feed([deliver_of(core, i)])
    full = h.queued_bytes
    assert len(h.take_events(limit=1)) == 1
    assert 0 < h.queued_bytes < full
    assert len(h.take_events()) == 2
    assert h.queued_bytes == 0


def test_take_encoded_stops_at_the_budget_and_keeps_the_byte_count() -> None:
    core = FakeCore()
    s = service(core)
    h = s.open_handle(pid=1)
    s.join(h, ["g"])
    for i in range(4):
        s.mcast(h, None, bytes([i]) * 100, Guarantee.AGREED)
        s.feed([deliver_of(core, i)])
    full = h.queued_bytes
    out: list[bytes] = [b"before"]
    # 100-byte frames, budget 150: the second frame crosses it, and the taking stops there.
    # A delivery reaches the encoder as its queued fields (QueuedDelivery), not a Delivery.
    added = h.take_encoded(lambda ev: bytes(100) if isinstance(ev, tuple) else b"", 150, out)
    assert added == 200
    assert len(out) == 3
    assert out[0] == b"before"
    assert 0 < h.queued_bytes < full
    assert len(h.events) == 2
    assert h.take_encoded(lambda ev: b"x", 1 << 20, out) == 2
    assert h.queued_bytes == 0
    assert not h.events


def test_take_encoded_drops_only_the_event_its_encoder_refuses() -> None:
    core = FakeCore()
    s = service(core)
    h = s.open_handle(pid=1)
    s.join(h, ["g"])
    h.take_events()
    for i in range(3):
        s.mcast(h, None, bytes([i]), Guarantee.AGREED)
        s.feed([deliver_of(core, i)])

    def encode(ev: object) -> bytes:
        assert isinstance(ev, tuple)  # a QueuedDelivery: Delivery's fields in its order
        data = ev[3]
        assert isinstance(data, bytes)
        if data == bytes([1]):
            raise ValueError("refused")
        return data

    out: list[bytes] = []
    with pytest.raises(ValueError, match="refused"):
        h.take_encoded(encode, 1 << 20, out)
    assert out == [bytes([0])]  # the frame before the refused event is kept
    assert [ev.data for ev in h.take_events() if isinstance(ev, Delivery)] == [bytes([2])]
    assert h.queued_bytes == 0


def test_an_untraced_service_delivers_the_same_without_ids() -> None:
    """traced=False (an executive without a trace): the same events reach the handles, and
    feed returns only what the executive logs (configuration changes, notices)."""
    runs: list[tuple[list[str], list[Any], list[Any], list[Any], list[int]]] = []
    for traced in (True, False):
        core = FakeCore(room=2)
        s = EvsService(1, core.submit, incarnation=3, traced=traced)
        s.feed([REG1])
        a, b = s.open_handle(pid=1), s.open_handle(pid=2)
        s.join(a, ["g"])
        s.join(b, ["g", "h"])
        ids = [
            s.mcast(a, None, b"one", Guarantee.AGREED),
            s.mcast(b, ["h"], b"two", Guarantee.SAFE),
        ]
        with pytest.raises(TryAgain):
            s.mcast(a, None, b"three", Guarantee.AGREED)
        out = s.feed([deliver_of(core, 0), Sent(0, R1), deliver_of(core, 1), Sent(1, R1), REG1])
        room = [h.pid for h in s.take_room_again()]
        runs.append((ids, list(out), list(a.take_events()), list(b.take_events()), room))
    (ids_t, out_t, *seen_t), (ids_u, out_u, *seen_u) = runs
    assert [len(x) for x in seen_t] == [3, 4, 1]  # 2 + the first join's configuration; 1 woken
    assert ids_t == ["1:3:0", "1:3:1"]
    assert ids_u == ["", ""]
    assert len(out_t) == 5
    assert out_u == [(REG1, None, None)]
    assert seen_u == seen_t  # the same events in the same order, and the same handle woken


def test_a_header_of_another_version_is_foreign() -> None:
    s = service(FakeCore())
    h = s.open_handle(pid=1)
    s.join(h, ["g"])
    head = service_mod.HEADER.pack(service_mod.HEADER_VERSION + 1, 0, 7, 0, 0)
    traced = s.feed([Deliver(2, (b"g",), head + b"data", Guarantee.AGREED, R1)])
    assert traced[0][1] is None
    assert h.take_events() == []
    assert s.counters["foreign messages dropped"] == 1


def test_internal_messages_reach_only_the_executive_hook() -> None:
    core = FakeCore()
    svc = service(core)
    h = svc.open_handle(77)
    svc.join(h, [b"\x00evs.keys", b"g"])
    svc.feed([REG1])
    h.take_events()
    header = service_mod.HEADER.pack(service_mod.HEADER_VERSION, service_mod.FLAG_INTERNAL, 1, 0, 0)
    internal = Deliver(2, (b"\x00evs.keys",), header + b"key stuff", Guarantee.SAFE, R1)
    svc.feed([internal])  # no hook: a foreign message, counted, handed to nobody
    assert not h.events
    assert svc.counters["foreign messages dropped"] == 1
    seen: list[object] = []
    svc.internal = seen.append
    svc.feed([internal, ConfigChange(R2, False, (1, 2), (3,), ())])
    assert seen[0] is internal
    assert isinstance(seen[1], ConfigChange)
    assert [type(e) for e in h.events] == [ConfigChange]  # the handle sees only the change
    # a client's message never carries the flag, whatever group it names
    svc.mcast(h, [b"\x00evs.keys"], b"forged?", Guarantee.SAFE)
    assert core.submitted[-1][1][1] == 0
