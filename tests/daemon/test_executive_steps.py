"""The order of one executive step: when the datagrams leave against when clients get events.

Without a trace the datagrams of a step (the token among them) leave before the service fans
the step's events out to the clients, so the fan-out does not slow the ring's rotation; but a
light step (no multicast of ours, a few events: low load) hands the events out first. With a
trace, the events are logged first: a receiver must never log a delivery before our send.
A token the core forwards in the middle of a batch of datagrams leaves at once, before the
rest of the batch is handled (not with a trace, for the same reason).
Both rules are checked on a real ``Executive`` whose outputs are recorded, not sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evs.cli._cluster import free_port
from evs.daemon.config_file import load_config, render_config
from evs.daemon.executive import EARLY_BEHIND_MIN, FEED_FIRST_BYTES, FEED_FIRST_MAX, Executive
from evs.runtime.driver import Driver
from evs.totem.events import BROADCAST, Deliver, Notice
from evs.totem.timers import Timer
from evs.trace.writer import TraceWriter
from evs.types import Guarantee, RingId

# Most steps are recorded by standing in for the executive's own methods (``_record``) and for
# what it calls (``Driver.datagram``, ``EvsService.feed``): not where it is compiled.
stands_in = pytest.mark.pure_only("evs.daemon.executive")


@pytest.fixture
def exe(tmp_path: Path) -> Iterator[Executive]:
    text = render_config(
        1,
        {1: ("127.0.0.1", 5405), 2: ("127.0.0.2", 5405)},
        socket=tmp_path / "evs.sock",
        state_dir=tmp_path / "state",
        cipher="none",
    )
    (tmp_path / "evs.toml").write_text(text)
    executive = Executive(load_config(tmp_path / "evs.toml"), ipc=False)
    loop = asyncio.new_event_loop()
    executive._loop = loop  # the step needs a loop for its timer, never runs it
    try:
        yield executive
    finally:
        if executive.trace is not None:
            executive.trace.close()
        loop.close()
        executive.state_dir.close()


def record_step(
    exe: Executive, sends: tuple[int, ...] = (2,), events: int = 1, server: bool = False
) -> list[str]:
    """Run one step with datagrams to ``sends`` and ``events`` events to hand out (with an
    IPC server if ``server``); return what happened, in order."""
    order: list[str] = []
    for dest in sends:
        exe.driver.sends.append((dest, b"token" if dest != BROADCAST else b"message"))
    for _ in range(events):
        exe.driver.events.append(Notice("note", "an event for the service"))
    exe._send = lambda dest, data: order.append(f"send {dest}")
    if server:

        class Server:
            def pump(self) -> None:
                order.append("pump")

        exe.server = Server()  # type: ignore[assignment]
    record = exe._record

    def recording(traced: Any) -> None:  # gets the service's fan-out of the step's events
        order.append("events")
        record(traced)

    exe._record = recording  # type: ignore[method-assign]
    exe._after()
    return order


@stands_in
def test_without_a_trace_the_datagrams_leave_before_the_fan_out(exe: Executive) -> None:
    assert exe.trace is None
    assert record_step(exe) == ["send 2", "events"]


@stands_in
def test_a_light_step_gives_the_clients_their_events_before_the_token_leaves(
    exe: Executive,
) -> None:
    """Low load: a token visit that multicasts nothing of ours and hands out a few events."""
    assert record_step(exe, (2,), FEED_FIRST_MAX, server=True) == [
        "events",
        "pump",
        "send 2",
        "pump",
    ]


@stands_in
def test_a_step_delivering_a_large_message_still_sends_first(exe: Executive) -> None:
    order = record_step(exe, (2,), 0, server=True)
    assert order == ["send 2", "pump"]
    big = Deliver(1, (b"g",), bytes(FEED_FIRST_BYTES + 1), Guarantee.AGREED, RingId(1, 4))
    exe.driver.sends.append((2, b"token"))
    exe.driver.events.append(big)
    order.clear()
    exe._after()
    assert order == ["send 2", "events", "pump"]


@stands_in
def test_a_step_with_our_multicast_or_many_events_still_sends_first(exe: Executive) -> None:
    assert record_step(exe, (BROADCAST, 2), 1, server=True) == [
        "send 0",
        "send 2",
        "events",
        "pump",
    ]
    assert record_step(exe, (2,), FEED_FIRST_MAX + 1, server=True) == ["send 2", "events", "pump"]


@stands_in
def test_with_a_trace_the_events_are_logged_before_the_datagrams_leave(
    exe: Executive, tmp_path: Path
) -> None:
    exe.trace = TraceWriter(tmp_path / "trace.jsonl", append=False, validate=False)
    assert record_step(exe) == ["events", "send 2"]


@stands_in
def test_the_held_tokens_visit_fires_within_the_step_other_due_timers_wait_for_the_loop(
    exe: Executive,
) -> None:
    """A message for an idle ring's holder asks for the held token's visit "now": it leaves
    in the step that took the message, not a loop turn later behind the replies to clients.
    Any other due timer keeps the loop's order (a token waiting in the socket is read before
    a token-loss timeout fires)."""
    proc = exe.driver.proc
    proc.token_copy, proc.token_copy_dest = b"the token", 2
    due = exe.now() - 1.0
    sent: list[tuple[int, bytes]] = []
    exe._send = lambda dest, data: sent.append((dest, data))
    proc.timers.arm(Timer.TOKEN_RETRANSMIT, due)
    exe._after()
    assert sent == []
    assert exe._timer_at == due  # the loop fires it
    proc.timers.cancel(Timer.TOKEN_RETRANSMIT)
    proc.ring.held_token = object()  # type: ignore[assignment]
    proc.timers.arm(Timer.HOLD, due)
    exe._after()
    assert sent == [(2, b"the token")]
    assert proc.ring.held_token is None
    assert proc.timers.deadline(Timer.HOLD) is None


@stands_in
def test_a_light_step_whose_fan_out_fails_still_sends_the_token(exe: Executive) -> None:
    class Server:
        def pump(self) -> None:
            raise RuntimeError("a fan-out bug")

    exe.server = Server()  # type: ignore[assignment]
    sent: list[int] = []
    exe._send = lambda dest, data: sent.append(dest)
    exe.driver.sends.append((2, b"token"))
    exe.driver.events.append(Notice("note", "an event for the service"))
    with pytest.raises(RuntimeError, match="fan-out"):
        exe._after()
    assert sent == [2]


def test_the_ipc_section_reaches_the_service_and_the_server(tmp_path: Path) -> None:
    """``[ipc] client_queue_bytes`` bounds both the handle's queue and the socket's buffer
    (it once reached only the handle), and ``reader_hold_ms`` the service's hold."""
    text = render_config(
        1,
        {1: ("127.0.0.1", free_port())},
        socket=tmp_path / "evs.sock",
        state_dir=tmp_path / "state",
        cipher="none",
    )
    text = text.replace("[ipc]\n", "[ipc]\nclient_queue_bytes = 2097152\nreader_hold_ms = 70\n")
    (tmp_path / "evs.toml").write_text(text)
    executive = Executive(load_config(tmp_path / "evs.toml"))

    async def run() -> tuple[int, int, float]:
        await executive.start()
        try:
            assert executive.server is not None
            return (
                executive.server.client_queue_bytes,
                executive.service.handle_queue_bytes,
                executive.service.reader_hold_ms,
            )
        finally:
            await executive.stop(graceful=False)

    try:
        assert asyncio.run(run()) == (2 << 20, 2 << 20, 70)
    finally:
        executive.state_dir.close()


def run_batch(exe: Executive, batch: list[bytes], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Hand the executive one batch of datagrams and return what happened, in order: each
    datagram handled, each datagram sent, and the fan-out of the batch's events (with their
    count). Every datagram gives the core one event; b"token" also makes it forward a token to
    node 2 after a multicast of its own, b"join" only makes it broadcast."""
    order: list[str] = []

    def datagram(driver: Driver, now: float, data: bytes) -> None:
        order.append(f"handle {data.decode()}")
        driver.events.append(Notice("note", data.decode()))
        if data == b"token":
            driver.sends.append((BROADCAST, b"message"))
            driver.sends.append((2, b"token"))
        elif data == b"join":
            driver.sends.append((BROADCAST, b"join"))

    feed = exe.service.feed

    def fan_out(events: list[Any]) -> Any:
        order.append(f"events {len(events)}")
        return feed(events)

    monkeypatch.setattr(Driver, "datagram", datagram)
    monkeypatch.setattr(exe.service, "feed", fan_out)
    exe._send = lambda dest, data: order.append(f"send {data.decode()} to {dest}")
    exe._on_datagrams([(2, data) for data in batch])
    return order


@stands_in
def test_a_token_in_the_middle_of_a_batch_leaves_before_the_rest_is_handled(
    exe: Executive, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy visit's token comes ahead of its packets: passing it on only after the packets
    behind it in the batch would keep the ring's next members waiting for them. What was
    produced before it leaves with it; the batch's events are all fanned out once, at its end."""
    behind = [b"m%d" % i for i in range(EARLY_BEHIND_MIN)]
    assert run_batch(exe, [b"token", *behind], monkeypatch) == [
        "handle token",
        "send message to 0",
        "send token to 2",
        *(f"handle {m.decode()}" for m in behind),
        f"events {1 + EARLY_BEHIND_MIN}",
    ]
    assert exe.counters["token sent mid-batch"] == 1


@stands_in
def test_a_token_with_little_behind_it_leaves_with_the_step(
    exe: Executive, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Low load (a token and a message or two): the step's usual order, a light step's
    clients first, stays."""
    behind = [b"m%d" % i for i in range(EARLY_BEHIND_MIN - 1)]
    order = run_batch(exe, [b"token", *behind], monkeypatch)
    assert order[: len(behind) + 1] == ["handle token", *(f"handle {m.decode()}" for m in behind)]
    assert exe.counters["token sent mid-batch"] == 0
    assert run_batch(exe, [*behind, b"token"], monkeypatch)[-3:-1] == [
        "send message to 0",
        "send token to 2",
    ]
    assert exe.counters["token sent mid-batch"] == 0


@stands_in
def test_a_broadcast_alone_waits_for_the_batch(
    exe: Executive, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a unicast (a forwarded token) makes the step send early."""
    behind = [b"m%d" % i for i in range(EARLY_BEHIND_MIN)]
    order = run_batch(exe, [b"join", *behind], monkeypatch)
    assert order.index("send join to 0") > order.index(f"handle {behind[-1].decode()}")
    assert exe.counters["token sent mid-batch"] == 0


@stands_in
def test_with_a_trace_a_token_waits_for_the_batch(
    exe: Executive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The send records of a traced step must be written before its datagrams leave."""
    exe.trace = TraceWriter(tmp_path / "trace.jsonl", append=False, validate=False)
    behind = [b"m%d" % i for i in range(EARLY_BEHIND_MIN)]
    order = run_batch(exe, [b"token", *behind], monkeypatch)
    assert order.index("send token to 2") > order.index(f"events {1 + EARLY_BEHIND_MIN}")
    assert exe.counters["token sent mid-batch"] == 0
