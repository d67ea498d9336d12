"""Targets ``ipc`` and ``session``: IPC frame streams into the executive and into a client.

Theory of operation: a case builds a short conversation of valid frames (``evs.ipc.codec.
encode``; 2 to 9 frames with group names from a small pool, so joins, leaves and sends meet),
damages it, and feeds it in random pieces, as a stream socket would:

* damage (one or more, 12 % of streams none): ``engine.mutate`` on one frame or on the whole
  stream; a length prefix set to an extreme (0, 1..8, ``FRAME_MAX`` + 1, 2^32 - 1) or off by
  a little; a kind byte set to another kind or an unknown one; a frame duplicated; a stream
  cut short;
* a frame at the size limit, or one byte over or under it, appended to 0.4 % of streams, so
  the decoder's bound is met with a whole maximal frame held;
* chunking: the stream split at 0 to 8 random points (now and then one byte at a time).

``ipc`` (the executive's side): a real ``IpcServer`` connection (``_Connection``) over an
in-memory transport and a host whose service (a real ``EvsService`` and ``SendWindows``)
delivers every message at once to this node, fed with ``data_received`` per piece, then
``connection_lost``. One stream in eight asks for a request pipe (``UsePipe``) and, once the
server waits for it (its transport paused), passes a real pipe's read end over a real socket
pair (SCM_RIGHTS), or in one case of four something else: no descriptor, another byte, the
pipe's write end, /dev/null, two descriptors, or the end of the socket; the rest of the
stream then comes, and a second damaged stream goes into the pipe, read piece by piece and
then as the rest at ``connection_lost``. Oracle: nothing escapes either
call; no request ends in the server's catch-all ("internal errors" stays 0); the request pipe
is closed once the connection ended; the decoder never holds more than one maximal frame
(``FRAME_MAX`` + 3 bytes, the 4-byte prefix included); everything the server wrote decodes
into whole reply and notification frames.

``session`` (the client's side): a ``ClientSession`` that sent Hello and a few requests
(joins, sends in and out of the window, queries, a rekey) receives a damaged stream of
replies and notifications (Welcome, Ok, Error, MembershipReply, StatusReply, RekeyReply,
DeliverNote, ConfChgNote, RoomAgain, SendCredit, Goodbye), sometimes followed by EOF.
Oracle: ``receive_data`` never raises; the decoder's bound as above; events read back are
Deliveries and ConfigChanges; a finished request's ``result`` returns a reply or raises an
``EvsError`` (NotConnected and the error replies' exceptions), never anything else; once
the session has ended, a new request raises its ``EvsError``; the outstanding window never
goes negative.

The unit counted is a frame encoded into the stream (damaged or not).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import logging
import os
import socket
from collections import Counter
from collections.abc import Sequence
from random import Random
from typing import Any

from evs.client.session import ClientSession
from evs.daemon.ipc_server import IpcServer, _Connection
from evs.errors import EvsError
from evs.fuzz_targets.engine import Case, Escaped, mutate
from evs.ipc.codec import DATA_MAX, FRAME_MAX, FrameDecoder, encode
from evs.ipc.messages import (
    IPC_VERSION,
    ConfChgNote,
    DeliverNote,
    Error,
    ErrorCode,
    Frame,
    Goodbye,
    Hello,
    Join,
    Leave,
    Mcast,
    MembershipGet,
    MembershipReply,
    Ok,
    Rekey,
    RekeyReply,
    RoomAgain,
    SendCredit,
    StatusGet,
    StatusReply,
    UsePipe,
    Welcome,
)
from evs.runtime.send_window import SendWindows
from evs.runtime.service import EvsService
from evs.totem.events import CoreEvent, Deliver, Sent
from evs.types import ConfigChange, Delivery, Guarantee, Membership, RingId

__all__ = [
    "ExecutiveTarget",
    "MemoryTransport",
    "SessionTarget",
    "converse",
    "damage",
    "feed_session",
    "pieces",
]

_GROUPS = (b"a", b"b", b"chat", b"x" * 64, b"\x00", b"\xff" * 3)
_RING = RingId(4, 1)
#: Bytes a decoder may hold: one maximal frame and its length prefix, less one byte.
BUFFER_BOUND = FRAME_MAX + 3
#: Capacity asked for a case's request pipe.
_PIPE_CAPACITY = 1 << 20
_REPLIES = (Welcome, Ok, Error, MembershipReply, StatusReply, RekeyReply)
_NOTES = (DeliverNote, ConfChgNote, RoomAgain, SendCredit, Goodbye)
_KINDS = (*range(1, 12), *range(64, 72), *range(128, 134), 0, 255)


def _groups(rng: Random) -> tuple[bytes, ...]:
    return tuple(rng.sample(_GROUPS, rng.randint(1, 3)))


def _data(rng: Random) -> bytes:
    return rng.randbytes(rng.choice((0, 1, 10, 100, rng.randrange(1, 5000))))


def _text(rng: Random) -> str:
    return rng.choice(("", "ok", "é" * 3, "{}", '{"a": 1}', "x" * rng.randrange(300)))


def damage(frames: Sequence[bytes], rng: Random) -> bytes:
    """The stream of ``frames`` with 0 or more kinds of damage (see the module docstring)."""
    parts = [bytearray(f) for f in frames]
    if rng.random() < 0.12:
        return b"".join(parts)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(6)
        i = rng.randrange(len(parts))
        if op == 0:
            parts[i] = bytearray(mutate(bytes(parts[i]), rng, frames))
        elif op == 1 and len(parts[i]) >= 4:
            length = int.from_bytes(parts[i][:4], "big")
            new = rng.choice((0, 1, 4, 8, FRAME_MAX, FRAME_MAX + 1, 0xFFFFFFFF,
                              length + rng.randint(-5, 5), rng.randrange(1 << 32)))  # fmt: skip
            parts[i][:4] = (new & 0xFFFFFFFF).to_bytes(4, "big")
        elif op == 2 and len(parts[i]) >= 5:
            parts[i][4] = rng.choice(_KINDS)
        elif op == 3:
            parts.insert(i, bytearray(parts[i]))
        elif op == 4:
            whole = b"".join(parts)
            parts = [bytearray(whole[: rng.randrange(len(whole) + 1)])]
        else:
            whole = mutate(b"".join(parts), rng, frames)
            parts = [bytearray(whole)]
    return b"".join(parts)


def maximal(rng: Random) -> bytes:
    """A frame at the size limit (or one byte either side), body zeros but for its header."""
    length = FRAME_MAX + rng.choice((-1, 0, 0, 1))
    kind = rng.choice((4, 128, 1, 64))
    return length.to_bytes(4, "big") + bytes([kind]) + bytes(length - 1)


def _with_maximal(stream: bytes, rng: Random) -> list[bytes]:
    """``pieces`` of ``stream``, now and then with a maximal frame after it whose last byte
    comes alone: the decoder then holds the most it may."""
    if rng.random() >= 0.004:
        return pieces(stream, rng)
    whole = stream + maximal(rng)
    return [*pieces(whole[:-1], rng), whole[-1:]]


def pieces(stream: bytes, rng: Random) -> list[bytes]:
    """``stream`` cut at random points, as reads from a socket would return it."""
    if len(stream) < 64 and rng.random() < 0.1:
        return [stream[i : i + 1] for i in range(len(stream))]
    cuts = sorted(rng.randrange(len(stream) + 1) for _ in range(rng.randrange(9)))
    bounds = [0, *cuts, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def _check_output(written: bytes, allowed: tuple[type, ...], who: str, seen: Counter[str]) -> None:
    dec = FrameDecoder()
    dec.feed(written)  # FrameError out of here is a failure: our own output must decode
    for frame in dec:
        seen["wrote " + type(frame).__name__] += 1
        if not isinstance(frame, allowed):
            raise Escaped(f"{who} wrote a {type(frame).__name__} frame")
    if dec.buffered:
        raise Escaped(f"{who} wrote a frame cut short ({dec.buffered} bytes left)")


# ------------------------------------------------------------------------------ executive


class MemoryTransport:
    """What ``_Connection`` uses of an asyncio transport, in memory (the unit tests drive a
    connection by hand over it too)."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False
        self.reading = True

    def write(self, data: bytes) -> None:
        self.written += data

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class _Host:
    """A ServiceHost whose core delivers every message at once, to this node only."""

    def __init__(self) -> None:
        self.nodeid = 1
        self.service = EvsService(1, self.submit)
        self.windows = SendWindows(self.service, 1 << 16)
        self.server: IpcServer | None = None
        self.service.feed([ConfigChange(_RING, False, (1,), (), (1,))])
        self.queued: list[CoreEvent] = []
        self.numbers = 0

    def submit(self, groups: Sequence[bytes], payload: bytes, guarantee: Guarantee) -> int:
        n = self.numbers
        self.numbers += 1
        self.queued += [Deliver(1, tuple(groups), payload, guarantee, _RING), Sent(n, _RING)]
        return n

    def after_request(self) -> None:
        self.windows.drain()
        events, self.queued = self.queued, []
        self.service.feed(events)
        if self.server is not None:
            self.server.pump()

    def status(self) -> dict[str, Any]:
        return {"nodeid": 1, "members": [1], "counters": dict(self.service.counters)}


def _request(rng: Random, rid: int) -> Frame:
    pick = rng.randrange(9)
    if pick == 7:
        return UsePipe(rid)
    if pick == 0:
        return Join(rid, _groups(rng))
    if pick == 1:
        return Leave(rid, _groups(rng))
    if pick in (2, 3):
        groups = None if rng.random() < 0.3 else _groups(rng)
        return Mcast(rng.choice((0, rid)), groups, rng.choice(list(Guarantee)), _data(rng))
    if pick == 4:
        return MembershipGet(rid)
    if pick == 5:
        return StatusGet(rid)
    if pick == 6:
        return Rekey(rid, rng.random() < 0.5, rng.randbytes(rng.choice((0, 32, 64))))
    return Hello(rid, IPC_VERSION, rng.randrange(1 << 32))


class PipeOffer:
    """What a fuzzed client passes once the server waits for its request pipe."""

    def __init__(self, rng: Random) -> None:
        self.r, self.w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        with contextlib.suppress(OSError):
            fcntl.fcntl(self.w, fcntl.F_SETPIPE_SZ, _PIPE_CAPACITY)
        self.server_end, self.client_end = socket.socketpair()
        self.server_end.setblocking(False)
        self.kind = "pipe" if rng.random() < 0.75 else rng.choice(_HOSTILE_OFFERS)
        self.closed = False

    def give(self) -> None:
        """Send the offer (the server reads it with ``_receive_pipe``)."""
        if self.kind == "eof":
            self.client_end.close()
            self.closed = True
            return
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fds = {
                "pipe": [self.r],
                "no descriptor": [],
                "other byte": [self.r],
                "write end": [self.w],
                "not a pipe": [null],
                "two": [self.r, self.r],
            }[self.kind]
            byte = b"\1" if self.kind == "other byte" else b"\0"
            socket.send_fds(self.client_end, [byte], fds)
        finally:
            os.close(null)

    def close(self) -> None:
        os.close(self.r)
        os.close(self.w)
        self.server_end.close()  # the server closed its own (a dup) if it had it
        if not self.closed:
            self.client_end.close()


_HOSTILE_OFFERS = ("no descriptor", "other byte", "write end", "not a pipe", "two", "eof")


def _hand_over(
    conn: _Connection, transport: MemoryTransport, offer: PipeOffer | None, seen: Counter[str]
) -> None:
    """The server waits for the pipe: the client's offer, then the server's read of it."""
    if transport.reading:
        raise Escaped("the server reads its stream while it waits for the pipe")
    if offer is None:
        raise Escaped("the server waits for a pipe on a connection that cannot pass one")
    offer.give()
    conn._receive_pipe()
    if conn.awaiting_pipe:
        raise Escaped("the server still waits for a pipe it was given")
    seen["pipes offered: " + offer.kind] += 1


async def converse(
    chunks: Sequence[bytes],
    uid: int,
    seen: Counter[str],
    offer: PipeOffer | None = None,
    piped: Sequence[bytes] = (),
) -> None:
    """A fresh connection of a client of ``uid`` reads ``chunks`` from its socket (with
    ``offer``, the pipe is offered once the server waits for it), then ``piped`` from its
    request pipe if it took one, then loses the connection; raises ``Escaped`` when an oracle
    of the ``ipc`` target is broken."""
    host = _Host()
    server = IpcServer(host, "/nonexistent/evs-fuzz.sock")
    host.server = server
    conn = _Connection(server)
    transport = MemoryTransport()
    conn.transport = transport  # type: ignore[assignment]
    conn.pid, conn.uid = 4242, uid
    if offer is not None:
        conn._rest = socket.socket(fileno=os.dup(offer.server_end.fileno()))
    server._conns.add(conn)
    log = logging.getLogger("evs.daemon.ipc")
    was_disabled, log.disabled = log.disabled, True  # the server warns of every bad frame
    try:
        for piece in chunks:
            if conn.awaiting_pipe:  # a real transport reads no more until the pipe came
                _hand_over(conn, transport, offer, seen)
            conn.data_received(piece)
            if conn.decoder.buffered > BUFFER_BOUND:
                raise Escaped(f"the executive buffers {conn.decoder.buffered} bytes")
        if conn.awaiting_pipe:
            _hand_over(conn, transport, offer, seen)
        if conn.piped and offer is not None:
            seen["streams through a pipe"] += 1
            for i, piece in enumerate(piped):
                _write_all(offer.w, piece)
                if conn._pipe >= 0 and i % 2 == 0:  # the rest waits for connection_lost
                    conn._pipe_readable()
                if conn.decoder.buffered > BUFFER_BOUND:
                    raise Escaped(f"the executive buffers {conn.decoder.buffered} bytes")
        conn.connection_lost(None)
        if conn._pipe >= 0 or conn.awaiting_pipe:
            raise Escaped("the request pipe is still open after the connection ended")
    finally:
        log.disabled = was_disabled
        if conn._abort_timer is not None:
            conn._abort_timer.cancel()
        if conn._rest is not None:  # an oracle failed before connection_lost closed it
            conn._stop_awaiting_pipe()
            conn._rest.close()
            conn._rest = None
        if conn._pipe >= 0:
            conn._close_pipe()
    if server.counters["internal errors"]:
        raise Escaped(f"a request hit the server's catch-all: {server.counters}")
    seen.update({k: v for k, v in server.counters.items() if v})
    _check_output(bytes(transport.written), _REPLIES + _NOTES, "the executive", seen)


def _write_all(fd: int, data: bytes) -> None:
    """Into the case's pipe, without blocking: what does not fit is left out (the streams are
    far smaller than the pipe, so that is rare)."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except BlockingIOError:
        pass


def _executive_case(loop: asyncio.AbstractEventLoop, rng: Random, seen: Counter[str]) -> int:
    frames = [encode(Hello(1, rng.choice((IPC_VERSION,) * 9 + (1,)), rng.randrange(1 << 32)))]
    if rng.random() < 0.1:
        frames.pop()
    offer = None
    piped: list[bytes] = []
    after: list[bytes] = []
    if rng.random() < 0.125:
        offer = PipeOffer(rng)
        frames.append(encode(UsePipe(rng.randrange(2, 9))))
        more = [encode(_request(rng, rid)) for rid in range(10, rng.randint(11, 20))]
        piped = pieces(damage(more, rng), rng)
        if rng.random() < 0.5:  # as the library does: UsePipe ends a read, nothing follows
            after = [encode(_request(rng, rid)) for rid in range(20, rng.randint(20, 24))]
            frames += [encode(_request(rng, rid)) for rid in range(2, rng.randint(3, 10))]
    else:
        frames += [encode(_request(rng, rid)) for rid in range(2, rng.randint(3, 10))]
    stream = damage(frames, rng)
    chunks = _with_maximal(stream, rng) + ([b"".join(after)] if after else [])
    try:
        uid = rng.choice((os.geteuid(), 65534))
        loop.run_until_complete(converse(chunks, uid, seen, offer, piped))
    finally:
        if offer is not None:
            offer.close()
    return len(frames)


class ExecutiveTarget:
    name = "ipc"
    unit = "frames"

    def prepare(self, seed: int) -> Case:
        loop = asyncio.new_event_loop()
        return lambda rng, seen: _executive_case(loop, rng, seen)


# ------------------------------------------------------------------------------ client


def _reply(rng: Random, rids: list[int]) -> Frame:
    rid = rng.choice(rids) if rids and rng.random() < 0.85 else rng.randrange(1 << 32)
    pick = rng.randrange(12)
    if pick == 0:
        return Welcome(rid, IPC_VERSION, 1, 1, DATA_MAX, 255, 255, 1 << 16)
    if pick in (1, 2):
        return Ok(rid)
    if pick == 3:
        return Error(rng.choice((0, rid)), rng.choice(list(ErrorCode)), _text(rng))
    if pick == 4:
        members = tuple(sorted(rng.sample(range(1, 50), rng.randint(0, 5))))
        return MembershipReply(rid, Membership(1, RingId(rng.randrange(1 << 40), 1), members))
    if pick == 5:
        return rng.choice((StatusReply, RekeyReply))(rid, _text(rng))
    if pick in (6, 7):
        delivery = Delivery(rng.randrange(1, 9), rng.randrange(1 << 32), _groups(rng),
                            _data(rng), rng.choice(list(Guarantee)))  # fmt: skip
        return DeliverNote(delivery)
    if pick == 8:
        members = tuple(sorted(rng.sample(range(1, 50), rng.randint(0, 5))))
        change = ConfigChange(RingId(rng.randrange(1 << 40), rng.randrange(1, 50)),
                              rng.random() < 0.5, members, members[:1], members[1:])  # fmt: skip
        return ConfChgNote(change)
    if pick == 9:
        return RoomAgain()
    if pick == 10:
        return SendCredit(rng.choice((0, 1, 64, 1 << 16, rng.randrange(1 << 32))))
    return Goodbye(_text(rng))


def feed_session(
    session: ClientSession, rids: Sequence[int], chunks: Sequence[bytes], seen: Counter[str]
) -> None:
    """``chunks`` into ``session`` (which sent ``rids``), then everything read back from it;
    raises ``Escaped`` when an oracle of the ``session`` target is broken."""
    for chunk in chunks:
        session.receive_data(chunk)
        if session._decoder.buffered > BUFFER_BOUND:
            raise Escaped(f"the client buffers {session._decoder.buffered} bytes")
        if session.outstanding < 0:
            raise Escaped(f"send window outstanding went negative: {session.outstanding}")
    seen["ended " + type(session.ended).__name__ if session.ended else "still open"] += 1
    while (event := session.next_event()) is not None:
        seen["event " + type(event).__name__] += 1
        if not isinstance(event, (Delivery, ConfigChange)):
            raise Escaped(f"next_event gave a {type(event).__name__}")
    for rid in rids:
        if session.done(rid):
            try:
                reply = session.result(rid)
            except EvsError as exc:
                seen["result raised " + type(exc).__name__] += 1
                continue
            seen["result " + type(reply).__name__] += 1
            if not isinstance(reply, _REPLIES):
                raise Escaped(f"result gave a {type(reply).__name__}")
    if session.ended is not None:
        try:
            session.status_get()
        except EvsError:
            pass
        else:
            raise Escaped("an ended session took a new request")


def _session_case(rng: Random, seen: Counter[str]) -> int:
    session = ClientSession(rng.randrange(1 << 32))
    rids = [session.hello_id]
    for _ in range(rng.randrange(5)):
        pick = rng.randrange(5)
        if pick == 0:
            rids.append(session.join([rng.choice(_GROUPS)]))
        elif pick == 1:
            rids.append(session.mcast([rng.choice(_GROUPS)], _data(rng), Guarantee.AGREED))
        elif pick == 2:
            session.send([rng.choice(_GROUPS)], _data(rng), Guarantee.SAFE)
        elif pick == 3:
            rids.append(rng.choice((session.membership_get, session.status_get))())
        else:
            rids.append(session.rekey(rng.randbytes(32), rng.random() < 0.5))
    session.data_to_send()
    frames = [encode(Welcome(session.hello_id, IPC_VERSION, 1, 1, DATA_MAX, 255, 255, 1 << 16))]
    frames += [encode(_reply(rng, rids)) for _ in range(rng.randint(1, 8))]
    stream = damage(frames, rng)
    chunks = _with_maximal(stream, rng)
    if rng.random() < 0.3:
        chunks.append(b"")
    feed_session(session, rids, chunks, seen)
    return len(frames)


class SessionTarget:
    name = "session"
    unit = "frames"

    def prepare(self, seed: int) -> Case:
        return _session_case
