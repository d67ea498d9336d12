"""The decoder fuzzers (evs.fuzz_targets): a bounded CI run per target, and proof that each
oracle bites.

The CI run is the promise: thousands of damaged sealed datagrams, IPC frame streams in both
directions and configuration files, and nothing but the documented outcomes. The other tests
plant a defect where each oracle should see it (an exception, a forged datagram opened, a
request that hits the server's catch-all, a decoder buffering past its bound, a hang) and
require the run to report it, with a replay that reproduces it; a fuzzer whose oracle could
not fail would promise nothing. The last tests are regressions for the defects the long run
found (docs/fuzzing.md, "Long runs of the decoder fuzzers").

Beside the small committed corpus (tests/fuzz/corpus, test_corpus.py), every target builds
its seeds deterministically from the run's seed (real simulated traffic for ``open``,
``render_config`` files for ``config``, encoded frames for ``ipc`` and ``session``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from random import Random
from typing import Any

import pytest

from evs.cli.__main__ import main
from evs.client.session import ClientSession
from evs.crypto.frame import HEADER_SIZE, TAG_SIZE, Opener
from evs.daemon.config_file import load_config
from evs.daemon.ipc_server import IpcServer, _Connection
from evs.errors import NotConnected
from evs.fuzz_targets import TARGETS, Report, mutate, run_cases
from evs.fuzz_targets import config as config_target
from evs.fuzz_targets import ipc as ipc_target
from evs.fuzz_targets import sealed as sealed_target
from evs.ipc.codec import DATA_MAX, FRAME_MAX, encode
from evs.ipc.messages import (
    IPC_VERSION,
    Goodbye,
    Hello,
    Join,
    RoomAgain,
    SendCredit,
    StatusGet,
    Welcome,
)
from evs.ipc.messages import (
    Mcast as IpcMcast,
)
from evs.runtime.service import EvsService
from evs.totem.codec import decode as codec_decode
from evs.totem.messages import Mcast
from evs.types import Guarantee

from .planting import plant

#: Cases per target in CI (about 48,000 datagrams, 44,000 frames each way, 2,000 files).
CI_CASES = {"open": 20_000, "ipc": 8000, "session": 8000, "config": 2000}


def _shown(report: Report) -> str:
    return "\n".join(f.render() for f in report.failures[:3])


# ------------------------------------------------------------------------------ the CI run


@pytest.mark.parametrize("name", sorted(CI_CASES))
def test_nothing_escapes_a_bounded_run(name: str) -> None:
    report = run_cases(TARGETS[name], 1, CI_CASES[name], watchdog_s=5.0, slow_s=1.0)
    assert report.cases == CI_CASES[name]
    assert report.ok, f"{dict(report.failure_counts)}\n{_shown(report)}"
    seen = report.outcomes
    # It reached past the first check: the decoders behind saw real work.
    if name == "open":
        assert report.units >= 2 * CI_CASES[name]
        assert seen["opened"] > 0.3 * report.cases
        assert {"decoded Mcast", "decoded OrfToken", "decoded Join"} <= set(seen)
        assert seen["group messages"] > 100
        assert sum(v for k, v in seen.items() if k.startswith("decode error")) > 100
    elif name == "ipc":
        assert report.units >= 5 * CI_CASES[name]
        assert seen["requests"] > report.cases
        for wrote in ("Welcome", "Ok", "MembershipReply", "DeliverNote", "ConfChgNote"):
            assert seen["wrote " + wrote] > 0, wrote
        assert seen["malformed frames"] > 0
        assert seen["oversized frames"] > 0
    elif name == "session":
        assert report.units >= 5 * CI_CASES[name]
        assert seen["event Delivery"] > 0
        assert seen["result Ok"] > 0
        assert seen["ended NotConnected"] > 0
        assert seen["still open"] > 0
    else:
        assert seen["loaded"] > 0
        sections = {k for k in seen if k.startswith("refused at ")}
        assert len(sections) >= 8, sections


def test_a_seed_is_the_same_run_whatever_the_jobs() -> None:
    one = run_cases(TARGETS["session"], 5, 1200, jobs=1)
    two = run_cases(TARGETS["session"], 5, 1200, jobs=2)
    assert one.outcomes == two.outcomes
    assert one.units == two.units


def test_the_mutator_changes_its_input_and_is_deterministic() -> None:
    data = bytes(range(200))
    outs = [mutate(data, Random(i)) for i in range(500)]
    assert sum(o != data for o in outs) > 480
    assert outs == [mutate(data, Random(i)) for i in range(500)]
    assert any(len(o) < len(data) for o in outs)
    assert any(len(o) > len(data) for o in outs)


# ------------------------------------------------------------------------------ planted defects


def test_an_exception_out_of_the_totem_decoder_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    real = codec_decode

    def broken(data: bytes, cluster_id: int) -> Any:
        msg = real(data, cluster_id)
        if isinstance(msg, Mcast) and msg.payload[:1] == b"\x01" and len(msg.payload) % 7 == 3:
            raise IndexError("planted")
        return msg

    monkeypatch.setattr(sealed_target, "decode", broken)
    report = run_cases(TARGETS["open"], 1, 1500)
    assert report.failure_counts["exception"] > 0
    assert "IndexError: planted" in report.failures[0].detail


@pytest.mark.pure_only("evs.crypto.frame")  # a subclass of the native Opener
def test_a_forged_datagram_that_opens_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """An opener that skips the tag check: the AEAD oracle must catch it."""

    class Careless(Opener):
        def open(self, datagram: bytes, source: int | None = None) -> bytes | None:
            before = self.drops["bad_tag"]
            payload = super().open(datagram, source)
            if payload is None and self.drops["bad_tag"] > before:
                return datagram[HEADER_SIZE:-TAG_SIZE]
            return payload

    monkeypatch.setattr(sealed_target, "Opener", Careless)
    report = run_cases(TARGETS["open"], 1, 300)
    assert report.failure_counts["escaped"] > 0
    details = " ".join(f.detail for f in report.failures)
    assert "altered after sealing was opened" in details


@pytest.mark.pure_only("evs.daemon.ipc_server")  # calls EvsService.join directly
def test_a_request_that_hits_the_servers_catch_all_is_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = EvsService.join

    def broken(self: EvsService, h: Any, groups: Any) -> None:
        if b"chat" in groups:
            raise KeyError("planted")
        real(self, h, groups)

    monkeypatch.setattr(EvsService, "join", broken)
    report = run_cases(TARGETS["ipc"], 1, 400)
    assert report.failure_counts["escaped"] > 0
    assert "catch-all" in report.failures[0].detail


def test_a_decoder_over_its_bound_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the bound lowered below what a frame in flight takes, the check must fire."""
    monkeypatch.setattr(ipc_target, "BUFFER_BOUND", 64)
    for name in ("ipc", "session"):
        report = run_cases(TARGETS[name], 1, 400)
        assert report.failure_counts["escaped"] > 0, name
        assert "buffers" in report.failures[0].detail, name


def test_an_exception_out_of_the_client_session_is_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = ClientSession._on_frame

    def broken(self: ClientSession, frame: Any) -> bool:
        if isinstance(frame, SendCredit) and frame.amount == 64:
            raise ValueError("planted")
        return real(self, frame)

    plant(monkeypatch, ClientSession, "_on_frame", broken)
    report = run_cases(TARGETS["session"], 1, 600)
    assert report.failure_counts["exception"] > 0
    index = report.failures[0].index
    # The replay command reproduces it, and the run's own command fails with it.
    assert main(["fuzz", "--target", "session", "--seed", "1", "--replay", str(index)]) == 1
    assert main(["fuzz", "--target", "session", "--seed", "1", "--count", "600"]) == 1


def test_an_exception_out_of_load_config_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    real = load_config

    def broken(path: Any) -> Any:
        if b"nan" in path.read_bytes():
            raise TypeError("planted")
        return real(path)

    monkeypatch.setattr(config_target, "load_config", broken)
    report = run_cases(TARGETS["config"], 1, 300)
    assert report.failure_counts["exception"] > 0


def test_a_hang_is_cut_by_the_watchdog_and_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    real = ClientSession._on_frame
    hung = Counter[str]()

    def looping(self: ClientSession, frame: Any) -> bool:
        if isinstance(frame, SendCredit) and not hung:
            hung["once"] += 1
            while True:
                pass
        return real(self, frame)

    plant(monkeypatch, ClientSession, "_on_frame", looping)
    report = run_cases(TARGETS["session"], 1, 300, watchdog_s=0.3, slow_s=0.2)
    assert report.failure_counts["hang"] == 1
    assert report.cases == 300


def test_a_target_run_prints_its_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fuzz", "--target", "config", "--seed", "2", "--count", "50"]) == 0
    out = capsys.readouterr().out
    assert "config: 50 cases, 50 files" in out
    assert "result: OK" in out


def test_bad_target_arguments_exit_2() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["fuzz", "--target", "nope", "--seed", "1"])
    assert exc.value.code == 2


# ------------------------------------------------------------------------------ regressions


def _served(chunks: list[bytes]) -> tuple[int, int]:
    """(messages submitted, bytes left in the decoder) after a client sent ``chunks``."""
    host = ipc_target._Host()
    server = IpcServer(host, "/nonexistent/evs-test.sock")
    host.server = server
    conn = _Connection(server)
    conn.transport = ipc_target.MemoryTransport()  # type: ignore[assignment]
    server._conns.add(conn)

    async def run() -> None:
        for chunk in chunks:
            conn.data_received(chunk)
        if conn._abort_timer is not None:
            conn._abort_timer.cancel()

    asyncio.run(run())
    return host.numbers, conn.decoder.buffered


def test_windowed_sends_after_a_protocol_error_do_not_depend_on_the_reads() -> None:
    """Found by the ipc fuzzer (seed 2026): the rest of the read in which a client broke the
    protocol stayed in the decoder, past its one-frame bound, and the windowed sends in it
    were dropped, while the same sends in the next read were taken."""
    head = encode(Hello(1, IPC_VERSION, 7)) + encode(Join(2, (b"chat",)))
    bad = encode(RoomAgain())  # a notification: a client may not send it
    sends = b"".join(
        encode(IpcMcast(0, (b"chat",), Guarantee.AGREED, b"m%d" % i)) for i in range(3)
    )
    tail = FRAME_MAX.to_bytes(4, "big") + b"\x04" + bytes(FRAME_MAX - 2)  # one byte short
    one_read = _served([head + bad + sends + tail])
    two_reads = _served([head + bad, sends + tail])
    assert one_read == two_reads == (3, len(tail))


def test_a_session_keeps_no_bytes_once_ended() -> None:
    """Found by the session fuzzer (seed 2026): after a Goodbye, the rest of its read stayed
    buffered in the ended session, past the decoder's bound."""
    session = ClientSession(1)
    welcome = encode(Welcome(1, IPC_VERSION, 1, 1, DATA_MAX, 255, 255, 1 << 16))
    big = FRAME_MAX.to_bytes(4, "big") + b"\x80" + bytes(FRAME_MAX - 2)
    session.receive_data(welcome + encode(Goodbye("bye")) + encode(RoomAgain()) + big)
    assert isinstance(session.ended, NotConnected)
    assert session._decoder.buffered == 0


def test_a_refused_windowed_send_while_closing_leaves_no_frames_behind() -> None:
    """Found by the ipc fuzzer (seed 2027, case 646573): a windowed send refused while the
    connection was closing stopped the reading, and the frames after it stayed in the
    decoder past its bound."""
    head = encode(Hello(1, IPC_VERSION, 7))
    bad = encode(RoomAgain())
    refused = encode(IpcMcast(0, None, Guarantee.AGREED, b"no group joined"))
    after = encode(StatusGet(9)) * 3
    tail = FRAME_MAX.to_bytes(4, "big") + b"\x04" + bytes(FRAME_MAX - 2)
    assert _served([head + bad, refused + after + tail]) == (0, len(tail))
