"""The blocking Client against a real IpcServer over a real Unix socket."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import evs
from evs.client.pipe import ENV_PIPE
from evs.daemon.ipc_server import IpcServer, ServerStartError
from evs.ipc.codec import FrameDecoder, encode
from evs.ipc.messages import IPC_VERSION, Error, ErrorCode, Hello, Join, Mcast, Welcome
from evs.types import ConfigChange, Delivery, DispatchFlags, Guarantee

from .conftest import RING, Daemon, FakeHost, SilentDaemon, wait_until

FIRST = ConfigChange(RING, False, (1,), (), (1,))


def test_connect_join_and_self_delivery(daemon: Daemon) -> None:
    with evs.Client(str(daemon.path), context="mine") as c:
        assert c.context == "mine"
        assert c.nodeid == 1
        assert c.membership_get() == evs.Membership(1, RING, (1,))
        c.join(["g"])
        c.mcast_joined(b"hello", evs.Guarantee.SAFE)
        events = c.events(timeout=5)
        assert next(events) == FIRST  # the first join's configuration comes first
        d = next(events)
        assert d == Delivery(1, os.getpid(), (b"g",), b"hello", Guarantee.SAFE)


def test_mcast_groups_reaches_members_only(daemon: Daemon) -> None:
    with evs.Client(daemon.path) as a, evs.Client(daemon.path) as b:
        assert a.handle_id != b.handle_id
        a.join([b"a"])
        b.join([b"b"])
        a.mcast_groups(["b"], b"to b")  # a has not joined b: no self delivery
        a.mcast_groups(["a", "b"], b"to both")
        a.membership_get()
        b.membership_get()  # round trips: what was sent before is buffered now
        assert list(a.events(timeout=0)) == [
            FIRST,
            Delivery(1, os.getpid(), (b"a", b"b"), b"to both", Guarantee.AGREED),
        ]
        got = [e.data for e in b.events(timeout=0) if isinstance(e, Delivery)]
        assert got == [b"to b", b"to both"]


class _ShortWrites:
    """A client's request writer whose writes take at most ``limit`` bytes, and every third
    one none (BlockingIOError): the kernel may do either to a write on a busy pipe or socket."""

    def __init__(self, send: Callable[[bytes | memoryview], int], limit: int) -> None:
        self.send = send
        self.limit = limit
        self.calls = 0

    def __call__(self, data: bytes | memoryview) -> int:
        self.calls += 1
        if self.calls % 3 == 0:
            raise BlockingIOError
        return self.send(data[: self.limit])


@pytest.mark.parametrize("pipe", ["1", "0"])
@pytest.mark.parametrize("limit", [1, 7, 100])
def test_sends_the_socket_takes_in_pieces_arrive_whole_and_in_order(
    daemon: Daemon, limit: int, pipe: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A send the pipe or socket takes only in part (or not at all, for a moment) is finished
    before the call returns: every message arrives whole, once, in order."""
    monkeypatch.setenv(ENV_PIPE, pipe)
    with evs.Client(daemon.path) as c:
        assert (c._wfd >= 0) == (pipe == "1")
        c.join(["g"])
        short = _ShortWrites(c._send_raw, limit)
        c._send_raw = short
        sent = [bytes([i]) * (i * 13 % 300 + 1) for i in range(40)]
        for data in sent:
            c.mcast_groups(["g"], data)
        c._send_raw = short.send
        c.membership_get()  # a round trip: everything sent before it is delivered by now
        got = [e.data for e in c.events(timeout=0) if isinstance(e, Delivery)]
        assert got == sent
        assert short.calls > len(sent)


@pytest.mark.parametrize("pipe", [True, False])
def test_close_ends_a_send_waiting_on_a_daemon_that_stopped_reading(
    sock_path: Path, monkeypatch: pytest.MonkeyPatch, pipe: bool
) -> None:
    """The daemon answers Hello and then never reads: a send waits for room in the pipe or the
    socket, and close() from another thread must end that wait (NotConnected), not hang."""
    from evs.client import sync_client  # noqa: PLC0415

    monkeypatch.setattr(sync_client, "CLOSE_LINGER_S", 0.5)
    d = SilentDaemon(sock_path, 1 << 20, pipe=pipe)
    try:
        c = d.connect()
        errors: list[BaseException] = []

        def flood() -> None:
            try:
                for _ in range(100_000):  # far more than a socket's buffers hold
                    c.mcast_groups(["g"], bytes(60_000))
            except BaseException as exc:
                errors.append(exc)

        sender = threading.Thread(target=flood)
        sender.start()
        wait_until(lambda: c._writing, timeout=10)
        started = time.monotonic()
        c.close()
        sender.join(10)
        assert not sender.is_alive()
        assert time.monotonic() - started < 5
        assert len(errors) == 1
        assert isinstance(errors[0], evs.NotConnected)
        assert "closed while a send waited" in str(errors[0])
    finally:
        d.close()


@pytest.mark.pure_only("evs.client.sync_client")  # stages the race by replacing _take
def test_dispatch_runs_every_waiting_event_when_the_fast_path_comes_up_empty(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dispatch(ALL) counts the waiting events, then takes them; if the fast path finds
    nothing (another thread took one meanwhile), the general path still takes the rest."""
    with evs.Client(daemon.path) as c:
        c.join(["g"])
        for i in range(5):
            c.mcast_groups(["g"], b"%d" % i)
        c.membership_get()  # a round trip: the deliveries are read by now
        ran: list[object] = []
        c.on_deliver = ran.append
        c.on_confchg = ran.append
        monkeypatch.setattr(c, "_take", lambda: None)
        assert c.dispatch(DispatchFlags.ALL) == 6  # the join's configuration and 5 messages
        assert [d.data for d in ran if isinstance(d, Delivery)] == [b"%d" % i for i in range(5)]


def test_groups_given_as_an_iterator_or_a_string(sock_path: Path) -> None:
    """An iterator of groups is read once, even when a full window makes the send wait and try
    again; a single str is refused as the session refuses it, not split into letters."""
    d = Daemon(sock_path, FakeHost(send_window=300))
    try:
        with evs.Client(d.path) as c:
            c.join(["g"])
            c.mcast_groups(iter(["g"]), bytes(200))  # 264 of the window's 300 bytes
            t = threading.Thread(target=lambda: c.mcast_groups(iter(["g"]), b"second"))
            t.start()
            t.join(10)
            assert not t.is_alive()
            with pytest.raises(evs.InvalidArgument, match="not a single str"):
                c.mcast_groups("g", b"x")
            c.membership_get()
            got = [e for e in c.events(timeout=0) if isinstance(e, Delivery)]
            assert [(e.groups, e.data[:6]) for e in got] == [
                ((b"g",), bytes(6)),
                ((b"g",), b"second"),
            ]
    finally:
        d.stop()


def test_a_zero_timeout_reads_what_has_arrived(daemon: Daemon) -> None:
    """events(timeout=0) returns what the socket holds, not only what an earlier call read."""
    with evs.Client(daemon.path) as a, evs.Client(daemon.path) as b:
        b.join(["b"])
        assert next(b.events(timeout=5)) == FIRST
        a.mcast_groups(["b"], b"waiting in b's socket")
        # Wait for b's socket to hold the delivery, without reading it through b.
        assert select.select([b._sock], [], [], 5)[0]
        got = [e.data for e in b.events(timeout=0) if isinstance(e, Delivery)]
        assert got == [b"waiting in b's socket"]


def test_dispatch_flags_and_callbacks(daemon: Daemon) -> None:
    seen: list[object] = []
    c = evs.Client(daemon.path, on_deliver=seen.append, on_confchg=seen.append)
    c.join(["g"])
    for i in range(4):
        c.mcast_joined(b"%d" % i)
    c.membership_get()  # a round trip: every event sent before its reply is buffered now
    assert c.dispatch(DispatchFlags.ONE, timeout=5) == 1
    assert seen == [FIRST]
    assert c.dispatch(DispatchFlags.ONE_NONBLOCKING) == 1
    assert c.dispatch(DispatchFlags.ALL) == 3
    assert [e.data for e in seen[1:]] == [b"0", b"1", b"2", b"3"]  # type: ignore[attr-defined]
    assert c.dispatch(DispatchFlags.ALL) == 0
    assert c.dispatch(DispatchFlags.ONE_NONBLOCKING) == 0
    assert c.dispatch(DispatchFlags.ONE, timeout=0.05) == 0
    assert c.dispatch(DispatchFlags.BLOCKING, timeout=0.05) == 0

    # BLOCKING runs until close() from another thread.
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(c.dispatch(DispatchFlags.BLOCKING)))
    t.start()
    with evs.Client(daemon.path) as other:
        other.mcast_groups(["g"], b"late")
    wait_until(lambda: len(seen) == 6)
    c.close()
    t.join(5)
    assert result == [1]
    with pytest.raises(evs.NotConnected, match="closed"):
        c.dispatch()


@pytest.mark.pure_only("evs.client.sync_client")  # stages the race by replacing _drain
def test_dispatch_all_never_drops_an_event_that_arrives_while_it_looks(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event arriving just after dispatch(ALL) found none must wait for the next dispatch.

    (Found by the fault test: dispatch(ALL) with nothing waiting read the socket a second time
    to detect the connection's end, and the event that came in between was taken and dropped.)
    """
    seen: list[object] = []
    with evs.Client(daemon.path, on_deliver=seen.append) as c, evs.Client(daemon.path) as s:
        c.join(["g"])
        assert c.dispatch(DispatchFlags.ALL) == 1  # the first configuration
        real_drain = c._drain
        calls = 0

        def drain_late() -> None:
            nonlocal calls
            calls += 1
            if calls == 1:  # the first look finds nothing ...
                s.mcast_groups(["g"], b"late")  # ... and the event lands right after it
                assert select.select([c._sock], [], [], 5)[0]  # on the socket, not yet read
                return
            real_drain()

        monkeypatch.setattr(c, "_drain", drain_late)
        c.dispatch(DispatchFlags.ALL)
        monkeypatch.setattr(c, "_drain", real_drain)
        c.dispatch(DispatchFlags.ALL)
        assert [e.data for e in seen] == [b"late"]  # type: ignore[attr-defined]


def test_fileno_readable_exactly_when_events_wait(daemon: Daemon) -> None:
    def readable(c: evs.Client, timeout: float = 0) -> bool:
        return bool(select.select([c], [], [], timeout)[0])

    with evs.Client(daemon.path) as c, evs.Client(daemon.path) as sender:
        assert not readable(c)
        c.join(["g"])
        c.mcast_joined(b"x")
        c.membership_get()  # events now sit in the session buffer, not on the socket
        assert readable(c)
        assert c.dispatch(DispatchFlags.ONE_NONBLOCKING) == 1
        assert readable(c)  # one more is buffered
        assert c.dispatch(DispatchFlags.ALL) == 1
        assert not readable(c)
        sender.mcast_groups(["g"], b"y")  # arrives on the socket
        assert readable(c, 5)
        assert c.dispatch() == 1
        assert not readable(c)


def test_fileno_asked_for_late_is_readable_for_events_read_before(daemon: Daemon) -> None:
    """The descriptor is made at the first fileno() call: it must show what was read before."""
    with evs.Client(daemon.path) as c:
        c.join(["g"])
        c.mcast_joined(b"x")
        c.membership_get()  # the configuration and the delivery are in the session buffer now
        assert select.select([c], [], [], 0)[0]
        assert c.dispatch(DispatchFlags.ALL) == 2
        assert not select.select([c], [], [], 0)[0]


def test_fileno_goes_quiet_when_events_takes_the_last_buffered_event(daemon: Daemon) -> None:
    """events() takes buffered events without a read: the last one must clear the descriptor."""
    with evs.Client(daemon.path) as c:
        c.join(["g"])
        c.mcast_joined(b"x")
        c.mcast_joined(b"y")
        c.membership_get()  # a configuration and two deliveries in the session buffer
        assert select.select([c], [], [], 0)[0]
        events = c.events(timeout=0)
        next(events)
        assert select.select([c], [], [], 0)[0]  # two more buffered
        next(events)
        next(events)
        assert not select.select([c], [], [], 0)[0]


def _deliveries(c: evs.Client, count: int) -> list[Delivery]:
    """The next ``count`` deliveries (fewer if none comes for 5 s)."""
    got: list[Delivery] = []
    for e in c.events(timeout=5):
        if isinstance(e, Delivery):
            got.append(e)
            if len(got) == count:
                break
    return got


def test_events_keep_their_bytes_across_reads_of_the_shared_buffer(daemon: Daemon) -> None:
    """Reads reuse one buffer: an event from an earlier read must not change with later ones."""
    big = bytes(range(256)) * 800  # 200 KiB, most of a read
    with evs.Client(daemon.path) as c, evs.Client(daemon.path) as sender:
        c.join(["g"])
        sender.mcast_groups(["g"], big)
        sender.mcast_groups(["g"], b"small")
        got = _deliveries(c, 2)
        for i in range(20):  # more reads into the same buffer
            sender.mcast_groups(["g"], bytes([i]) * 1000)
        later = _deliveries(c, 20)
        assert [d.data for d in got] == [big, b"small"]
        assert [d.data for d in later] == [bytes([i]) * 1000 for i in range(20)]


def test_a_full_send_window_says_try_again_and_credit_wakes_a_blocked_sender(
    sock_path: Path,
) -> None:
    d = Daemon(sock_path, FakeHost(send_window=1000))  # 6 messages of 100 bytes (164 each)
    try:
        with evs.Client(d.path) as c:
            c.join(["g"])
            d.run(lambda: setattr(d.host, "full", True))
            for i in range(6):  # accepted at once, held by the executive for room
                c.mcast_joined(b"%d" % i + bytes(99), block=False)
            with pytest.raises(evs.TryAgain, match=r"984 bytes .* the send window is 1000 bytes"):
                c.mcast_joined(b"no", block=False)
            with pytest.raises(evs.TryAgain, match=r"for 0\.05 s"):
                c.mcast_joined(b"no", timeout=0.05)
            assert d.run(lambda: d.host.windows.waiting) == 6
            errors: list[BaseException] = []

            def send() -> None:
                try:
                    c.mcast_joined(b"yes", timeout=5)
                except BaseException as exc:
                    errors.append(exc)

            t = threading.Thread(target=send)
            t.start()
            t.join(0.2)
            assert t.is_alive(), "a blocking send must wait while the window is full"

            def room() -> None:
                d.host.full = False
                d.host.step([])

            d.run(room)
            t.join(5)
            assert not t.is_alive()
            assert errors == []
            c.membership_get()
            got = [e.data[:1] for e in c.events(timeout=0) if isinstance(e, Delivery)]
            assert got == [b"0", b"1", b"2", b"3", b"4", b"5", b"y"]  # in order, none lost
            assert c._session.outstanding == 0
    finally:
        d.stop()


def test_held_sends_of_a_closed_client_still_go(daemon: Daemon) -> None:
    with evs.Client(daemon.path) as listener:
        listener.join(["g"])
        sender = evs.Client(daemon.path)
        daemon.run(lambda: setattr(daemon.host, "full", True))
        for i in range(3):
            sender.mcast_groups(["g"], b"m%d" % i, block=False)
        sender.membership_get()  # the executive has read (and holds) all three
        sender.close()
        wait_until(lambda: daemon.run(lambda: len(daemon.host.service.handles)) == 1)

        def room() -> None:
            daemon.host.full = False
            daemon.host.step([])

        daemon.run(room)
        listener.membership_get()
        got = [e.data for e in listener.events(timeout=0) if isinstance(e, Delivery)]
        assert got == [b"m0", b"m1", b"m2"]


def test_close_right_after_sending_loses_nothing(daemon: Daemon) -> None:
    """close() just after a burst of sends: the executive still reads and takes them all.

    (Found by evs bench: a sender that closed at once lost its last message now and then. The
    executive's credit write to the closed socket failed, and its transport stopped reading.)
    """
    with evs.Client(daemon.path) as listener:
        listener.join(["g"])
        for round_ in range(3):
            sender = evs.Client(daemon.path)
            for i in range(2000):
                sender.mcast_groups(["g"], b"%d:%d" % (round_, i), block=False)
            sender.close()
            want = [b"%d:%d" % (round_, i) for i in range(2000)]
            got: list[bytes] = []
            for e in listener.events(timeout=5):  # ends 5 s after the last event
                if isinstance(e, Delivery):
                    got.append(e.data)
                    if e.data == want[-1]:
                        break
            assert got == want, f"round {round_}: {len(got)} of 2000, the last {got[-1:]}"


def test_a_process_that_exits_without_close_loses_nothing(daemon: Daemon) -> None:
    """The executive's credit write to a socket whose process is gone fails; what that
    process sent before it exited is still read (the executive reads its own descriptor)."""
    code = (
        "import os, sys, evs\n"
        "c = evs.Client(sys.argv[1])\n"
        "for i in range(2000):\n"
        "    c.mcast_groups(['g'], b'%s:%d' % (sys.argv[2].encode(), i), block=False)\n"
        "os._exit(0)\n"
    )
    with evs.Client(daemon.path) as listener:
        listener.join(["g"])
        for round_ in range(3):
            subprocess.run(
                [sys.executable, "-c", code, str(daemon.path), str(round_)], check=True, timeout=60
            )
            want = [b"%d:%d" % (round_, i) for i in range(2000)]
            got: list[bytes] = []
            for e in listener.events(timeout=5):
                if isinstance(e, Delivery):
                    got.append(e.data)
                    if e.data == want[-1]:
                        break
            assert got == want, f"round {round_}: {len(got)} of 2000, the last {got[-1:]}"


def test_sends_of_a_client_cut_off_for_not_reading_still_go(sock_path: Path) -> None:
    """A client the executive disconnects (it never read its events) had sends on their way:
    those were accepted by its library, so the executive still takes them, every one."""
    d = Daemon(sock_path, FakeHost(handle_queue_bytes=64 << 10), client_queue_bytes=64 << 10)
    try:
        s = _raw(d.path)
        s.sendall(encode(Hello(1, IPC_VERSION, 1)) + encode(Join(2, (b"g",))))
        frames = [
            encode(Mcast(0, None, Guarantee.AGREED, b"%04d" % i + bytes(4000))) for i in range(400)
        ]  # its own deliveries (1.6 MB) overflow its bounds while it sends
        written = 0
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for frame in frames:  # a frame written whole is what the library calls sent
                s.sendall(frame)
                written += 1
        _frames_until_eof(s)  # (its Goodbye may be among what it never read: aborted)
        s.close()
        assert d.counter("overflow disconnects") == 1
        assert written > 20
        service = d.host.service
        assert d.run(lambda: (service.counters["messages sent"], d.host.windows.waiting)) == (
            written,
            0,
        )
    finally:
        d.stop()


def test_a_client_sending_past_its_window_is_disconnected(sock_path: Path) -> None:
    d = Daemon(sock_path, FakeHost(send_window=1000))
    try:
        d.run(lambda: setattr(d.host, "full", True))
        s = _raw(d.path)
        s.sendall(encode(Hello(1, IPC_VERSION, 1)))
        s.sendall(
            b"".join(encode(Mcast(0, (b"g",), Guarantee.AGREED, bytes(400))) for _ in range(3))
        )
        frames = _frames_until_eof(s)
        s.close()
        assert isinstance(frames[0], Welcome)
        assert frames[0].send_window == 1000
        last = frames[-1]
        assert isinstance(last, Error)
        assert last.code is ErrorCode.INVALID_ARGUMENT
        assert "past its send window" in last.message
        assert "1000" in last.message
        assert d.counter("windowed sends refused") == 1
        assert d.run(lambda: d.host.windows.waiting) == 2  # what it sent within stays accepted
    finally:
        d.stop()


def test_invalid_arguments_say_the_limit(daemon: Daemon) -> None:
    with evs.Client(daemon.path) as c:
        with pytest.raises(evs.InvalidArgument, match=r"names are 1\.\.64"):
            c.join(["x" * 65])
        with pytest.raises(evs.InvalidArgument, match="the limit is 32"):
            c.join([f"g{i}" for i in range(33)])
        with pytest.raises(evs.InvalidArgument, match="joined no group"):
            c.mcast_joined(b"x")  # refused by the daemon's service
        with pytest.raises(evs.InvalidArgument, match=f"limit of {c.max_data}"):
            c.mcast_groups(["g"], b"x" * (c.max_data + 1))
        with pytest.raises(evs.InvalidArgument, match="not a member"):
            c.leave(["g"])
        c.join(["g"])
        c.leave(["g"])
        assert c.status()["members"] == [1]


def test_evs_socket_environment_and_connect_errors(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EVS_SOCKET", str(daemon.path))
    with evs.Client() as c:
        assert c.socket_path == str(daemon.path)
    missing = tmp_path / "nothing.sock"
    with pytest.raises(evs.NotConnected, match=f"{missing}.*No such file"):
        evs.Client(missing)


def test_several_clients_are_independent_handles(daemon: Daemon) -> None:
    a, b = evs.Client(daemon.path), evs.Client(daemon.path)
    a.join(["g"])
    b.join(["g"])
    a.close()
    b.mcast_joined(b"after a closed")
    b.membership_get()
    assert next(e for e in b.events(timeout=0) if isinstance(e, Delivery)).data == (
        b"after a closed"
    )
    wait_until(lambda: daemon.run(lambda: len(daemon.host.service.handles)) == 1)
    b.close()
    wait_until(lambda: daemon.run(lambda: len(daemon.host.service.handles)) == 0)


def test_not_connected_after_the_server_closes(daemon: Daemon) -> None:
    c = evs.Client(daemon.path)
    c.join(["g"])
    daemon.stop()
    with pytest.raises(evs.NotConnected, match="shutting down"):
        list(c.events(timeout=5))
    with pytest.raises(evs.NotConnected, match="shutting down"):
        c.membership_get()
    c.close()
    assert not daemon.path.exists()  # the server removed its socket file


def test_access_denied_for_a_stranger(sock_path: Path) -> None:
    def stranger(sock: socket.socket) -> tuple[int, int, int]:
        return (77, 4242, 4343)

    d = Daemon(sock_path, credentials=stranger)
    try:
        with pytest.raises(evs.AccessDenied, match=r"uid 4242 .*may not use"):
            evs.Client(sock_path)
        assert d.counter("connections refused") == 1
    finally:
        d.stop()
    for uids, gids in (([4242], []), ([], [4343])):
        ok = Daemon(sock_path, allowed_uids=uids, allowed_gids=gids, credentials=stranger)
        try:
            with evs.Client(sock_path) as c:
                c.join(["g"])
                assert ok.handle_pids() == [77]
        finally:
            ok.stop()


def test_a_client_that_never_reads_gets_goodbye(sock_path: Path) -> None:
    host = FakeHost(handle_queue_bytes=64 << 10)
    d = Daemon(sock_path, host, client_queue_bytes=16 << 10)
    try:
        lazy = evs.Client(sock_path)
        lazy.join(["g"])
        with evs.Client(sock_path) as sender:
            chunk = b"z" * (16 << 10)
            for _ in range(400):  # far more than socket buffers + transport + handle bound
                sender.mcast_groups(["g"], chunk)
                if d.counter("overflow disconnects"):
                    break
            assert d.counter("overflow disconnects") == 1
            sender.mcast_groups(["g"], b"still fine")  # the ring never waited for lazy
        with pytest.raises(evs.NotConnected, match=r"did not read its events.*limit is 65536"):
            for _ in lazy.events(timeout=5):  # what was queued before the Goodbye, then it
                pass
        lazy.close()
    finally:
        d.stop()


def _hold_until_blocked(d: Daemon, lazy: evs.Client, sender: evs.Client) -> int:
    """Fill ``lazy``'s queues from ``sender`` until the node holds the sender; how many went."""
    lazy.join(["g"])
    i = 0
    for _ in range(2000):  # 4 MB of sends at most: far past every bound below if nothing held
        try:
            sender.mcast_groups(["g"], b"%06d" % i + bytes(4090), timeout=0.5)
        except evs.TryAgain:
            if d.run(lambda: d.host.service.sends_held):  # (else only a late credit: again)
                assert d.counter("overflow disconnects") == 0
                return i
        else:
            i += 1
    raise AssertionError("the sender was never held for its node's lagging reader")


def _holding_daemon(sock_path: Path) -> Daemon:
    host = FakeHost(handle_queue_bytes=64 << 10, send_window=16 << 10, reader_hold_ms=60000)
    return Daemon(sock_path, host, client_queue_bytes=64 << 10)


def test_a_held_sender_goes_on_as_soon_as_the_lagging_reader_reads(sock_path: Path) -> None:
    """The fake host runs no step on its own: only the reader's drained socket
    (``resume_writing``) can end the hold and send the sender its credit."""
    d = _holding_daemon(sock_path)
    try:
        with evs.Client(sock_path) as lazy, evs.Client(sock_path) as sender:
            sent = _hold_until_blocked(d, lazy, sender)
            got: list[bytes] = []
            for e in lazy.events(timeout=5):
                if isinstance(e, Delivery):
                    got.append(e.data[:6])
                    if len(got) == sent:
                        break
            assert got == [b"%06d" % i for i in range(sent)]
            sender.mcast_groups(["g"], b"after", timeout=5)
            assert not d.run(lambda: d.host.service.sends_held)
            for e in lazy.events(timeout=5):
                if isinstance(e, Delivery):
                    assert e.data == b"after"
                    break
    finally:
        d.stop()


def test_a_held_sender_goes_on_when_the_lagging_reader_disconnects(sock_path: Path) -> None:
    d = _holding_daemon(sock_path)
    try:
        with evs.Client(sock_path) as sender:
            lazy = evs.Client(sock_path)
            _hold_until_blocked(d, lazy, sender)
            lazy.close()
            sender.mcast_groups(["g"], b"after", timeout=5)
            # (Closing, the library lets the executive drain what it still had: the held
            # sends may fill the closing reader's queues once more before its end is seen.)
            wait_until(lambda: not d.run(lambda: d.host.service.sends_held))
            assert d.run(lambda: len(d.host.service.handles)) == 1
            assert d.counter("overflow disconnects") == 0
    finally:
        d.stop()


def test_a_slow_reader_gets_everything_in_order_once_it_reads(sock_path: Path) -> None:
    """Events wait in the handle while the transport is full, and flow again on drain."""
    d = Daemon(sock_path, client_queue_bytes=8 << 10)
    try:
        with evs.Client(sock_path) as slow, evs.Client(sock_path) as sender:
            slow.join(["g"])
            for i in range(300):  # 300 * 8 KiB: well past the socket and transport buffers
                sender.mcast_groups(["g"], b"%06d" % i + b"." * (8 << 10))
            backlog = d.run(lambda: sum(len(h.events) for h in d.host.service.handles.values()))
            assert backlog > 0  # the server left them in the handle's queue
            got: list[bytes] = []
            for e in slow.events(timeout=5):
                if isinstance(e, Delivery):
                    got.append(e.data[:6])
                    if len(got) == 300:
                        break
            assert got == [b"%06d" % i for i in range(300)]
    finally:
        d.stop()


def _raw(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(str(path))
    return s


def _frames_until_eof(s: socket.socket) -> list[object]:
    dec = FrameDecoder()
    while data := s.recv(65536):
        dec.feed(data)
    return list(dec)


@pytest.mark.parametrize(
    ("wire", "counter", "said"),
    [
        (encode(Hello(1, IPC_VERSION, 1)) + b"\0\0\0\x05\xee\0\0\0\0", "malformed frames", "99"),
        (encode(Hello(1, IPC_VERSION, 1)) + b"\xff\xff\xff\xff", "oversized frames", "limit"),
        (encode(Join(1, (b"g",))), "protocol errors", "must be Hello"),
        (encode(Hello(1, IPC_VERSION, 1)) + encode(Welcome(2, 1, 1, 1, 1, 1, 1, 1)), "", ""),
    ],
    ids=["unknown-kind", "oversize", "no-hello", "reply-kind"],
)
def test_bad_frames_close_only_that_client(
    daemon: Daemon, wire: bytes, counter: str, said: str
) -> None:
    with evs.Client(daemon.path) as good:
        good.join(["g"])
        s = _raw(daemon.path)
        s.sendall(wire.replace(b"\xee", b"\x63"))
        frames = _frames_until_eof(s)
        s.close()
        last = frames[-1]
        assert isinstance(last, Error)
        assert last.request_id == 0
        assert said in last.message
        if counter:
            assert daemon.counter(counter) == 1
        good.mcast_joined(b"the server lives on")
        good.membership_get()
        assert any(isinstance(e, Delivery) for e in good.events(timeout=0))


def test_version_mismatch_and_disconnect_mid_frame(daemon: Daemon) -> None:
    s = _raw(daemon.path)
    s.sendall(encode(Hello(7, IPC_VERSION + 1, 1)))
    (err,) = _frames_until_eof(s)
    s.close()
    assert isinstance(err, Error)
    assert err.request_id == 7
    assert err.code is ErrorCode.ERROR
    assert f"speaks version {IPC_VERSION}" in err.message
    assert daemon.counter("version mismatches") == 1

    s = _raw(daemon.path)
    s.sendall(encode(Hello(1, IPC_VERSION, 1)) + encode(Join(2, (b"g",)))[:-1])
    s.recv(65536)  # the Welcome: the Hello was served
    s.close()
    wait_until(lambda: daemon.counter("disconnects mid-frame") == 1)
    wait_until(lambda: daemon.run(lambda: len(daemon.host.service.handles)) == 0)


def test_socket_file_mode_stale_file_and_live_daemon(sock_path: Path) -> None:
    sock_path.parent.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_path))  # bound, never listening: what a crashed daemon leaves
    stale.close()
    d = Daemon(sock_path)
    try:
        assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o660
        second = IpcServer(d.host, sock_path)
        with pytest.raises(ServerStartError, match="another evs daemon is listening"):
            d.call(second.start())
    finally:
        d.stop()
    sock_path.write_text("not a socket")
    with pytest.raises(ServerStartError, match="is not a socket"):
        Daemon(sock_path)


def test_struct_of_peer_credentials_is_real(daemon: Daemon) -> None:
    """The unpatched SO_PEERCRED lookup sees this very process."""
    with evs.Client(daemon.path) as c:
        c.join(["g"])
        assert daemon.handle_pids() == [os.getpid()]
