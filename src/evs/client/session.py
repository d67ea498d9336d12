"""The client side of the IPC protocol as a sans-I/O state machine.

Theory of operation: ``ClientSession`` turns calls into request frames (``data_to_send``) and
bytes from the daemon (``receive_data``) into replies, events and flags, like h11 does for
HTTP. Nothing here blocks or touches a socket; ``Client`` and ``AsyncClient`` own the I/O and
decide how to wait. Each request gets a fresh id; its reply is kept until ``result`` collects
it. Events are buffered in arrival order for ``next_event``.

Sends are windowed (``evs.ipc.messages``): ``send`` queues an Mcast with request id 0 and no
reply if the message fits in what is left of the send window, and returns False otherwise (the
caller raises TryAgain or waits); SendCredit frames give window bytes back. The session knows
the groups the handle has joined, so it refuses a send to the joined groups with none joined,
as the daemon would (a Join counts from its Ok, a Leave from its request, so threads racing on
one client never make the daemon refuse a send the session let through). ``room_again`` (set
by RoomAgain, cleared by each synchronous ``mcast``) serves a sender of the synchronous form.

Once the connection ends (EOF, Goodbye, a connection-level Error, or bytes that are not
frames) ``ended`` holds the exception every later call raises; events that arrived before
stay readable.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable
from typing import Final, cast

from evs.errors import EvsError, InvalidArgument, NotConnected
from evs.ipc.codec import (
    DATA_MAX,
    GROUP_NAME_MAX,
    GROUPS_MAX,
    FrameDecoder,
    FrameError,
    encode,
    encode_mcast,
)
from evs.ipc.messages import (
    IPC_VERSION,
    ConfChgNote,
    DeliverNote,
    Error,
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
    Reply,
    Request,
    RoomAgain,
    SendCredit,
    StatusGet,
    StatusReply,
    UsePipe,
    Welcome,
    exception_for,
    mcast_cost,
)
from evs.types import Event, Guarantee, group_names_seen

__all__ = ["ClientSession", "window_full"]

_ID_MAX: Final = 0xFFFFFFFF


def window_full(s: ClientSession) -> str:
    """The TryAgain message for a full send window."""
    return (
        f"flow control: {s.outstanding} bytes of this handle's messages are on their way to "
        f"the evs executive or waiting there for room; the send window is {s.send_window} bytes"
    )


class ClientSession:
    """Request ids, pending replies, buffered events and the room-again flag of one client."""

    def __init__(self, pid: int) -> None:
        #: Encoded requests not yet taken by ``data_to_send``, and their bytes: a lone send's
        #: frame goes out as it is, with no copy into and out of a buffer.
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._decoder = FrameDecoder()
        self._next_id = 1
        self._pending: set[int] = set()
        self._replies: dict[int, Reply] = {}
        self._events: deque[Event] = deque()
        #: The daemon's answer to Hello, once it came.
        self.welcome: Welcome | None = None
        #: Why the connection is over (raised by every later call), or None while it lives.
        self.ended: EvsError | None = None
        #: RoomAgain arrived since the last Mcast went out.
        self.room_again = False
        #: Window bytes of windowed sends not yet given back by SendCredit.
        self.outstanding = 0
        #: Groups this handle has joined: a subset of the daemon's set at any later request.
        self.joined: set[bytes] = set()
        #: Join request id -> names, until the reply comes.
        self._joins: dict[int, tuple[bytes, ...]] = {}
        #: Checked group lists by the list or tuple given (an application names the same few
        #: lists again and again); emptied when the Welcome brings the daemon's limits.
        self._names_seen: dict[object, tuple[bytes, ...]] = {}
        #: ``requests_lost`` has said so already.
        self._lost_told = False
        #: The request id of the Hello this session opens with.
        self.hello_id = self._request(Hello(0, IPC_VERSION, pid))

    # ---------------------------------------------------------------- requests

    def _request(self, frame: Request) -> int:
        if self.ended is not None:
            raise self.ended
        rid = self._next_id
        self._next_id = rid + 1 if rid < _ID_MAX else 1
        data = encode(dataclasses.replace(frame, request_id=rid))
        self._out.append(data)
        self._out_bytes += len(data)
        self._pending.add(rid)
        return rid

    def join(self, groups: Iterable[str | bytes]) -> int:
        names = self._names(groups)
        rid = self._request(Join(0, names))
        self._joins[rid] = names
        return rid

    def leave(self, groups: Iterable[str | bytes]) -> int:
        names = self._names(groups)
        rid = self._request(Leave(0, names))
        # At once, not at the Ok: a send to the joined groups queued after this Leave is
        # resolved by the daemon after it, so ``joined`` must never hold more than the
        # daemon's set will (a join counts only once its Ok came).
        self.joined.difference_update(names)
        return rid

    def mcast(self, groups: Iterable[str | bytes] | None, data: object, guarantee: object) -> int:
        """Queue a synchronous multicast (None: to the joined groups); clears ``room_again``."""
        rid = self._request(Mcast(0, *self._message(groups, data, guarantee)))
        self.room_again = False
        return rid

    def send(self, groups: Iterable[str | bytes] | None, data: object, guarantee: object) -> bool:
        """Queue a windowed multicast if the window has room for it; False if not (yet)."""
        if self.ended is not None:
            raise self.ended
        names, g, body = self._message(groups, data, guarantee)
        if names is None and not self.joined:
            raise InvalidArgument("this handle has joined no group: join one, or name groups")
        cost = mcast_cost(len(body))
        if self.outstanding and self.outstanding + cost > self.send_window:
            return False
        frame = encode_mcast(names, g, body)
        self._out.append(frame)
        self._out_bytes += len(frame)
        self.outstanding += cost
        return True

    def window_room(self, data_len: int) -> bool:
        """A windowed send of ``data_len`` bytes would go now (or the connection is over)."""
        if self.ended is not None or not self.outstanding:
            return True
        return self.outstanding + mcast_cost(data_len) <= self.send_window

    @property
    def send_window(self) -> int:
        return self.welcome.send_window if self.welcome else 0

    def _message(
        self, groups: Iterable[str | bytes] | None, data: object, guarantee: object
    ) -> tuple[tuple[bytes, ...] | None, Guarantee, bytes]:
        # ``object`` parameters, checked here: the application's arguments arrive unchecked,
        # and a compiled (mypyc) session must refuse them as the contract says, not with a
        # TypeError from an annotation.
        names = None if groups is None else self._names(groups)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidArgument(f"message data must be bytes, got {type(data).__name__}")
        limit = self.welcome.max_data if self.welcome else DATA_MAX
        if len(data) > limit:
            raise InvalidArgument(f"message of {len(data)} bytes exceeds the limit of {limit}")
        if type(guarantee) is Guarantee:  # the usual case: no enum call
            g = guarantee
        else:
            try:
                if not isinstance(guarantee, int):
                    raise ValueError
                g = Guarantee(guarantee)
            except ValueError:
                raise InvalidArgument(f"unknown guarantee {guarantee!r}") from None
        return names, g, bytes(data)

    def membership_get(self) -> int:
        return self._request(MembershipGet(0))

    def status_get(self) -> int:
        return self._request(StatusGet(0))

    def rekey(self, key: bytes, members_only: bool) -> int:
        return self._request(Rekey(0, members_only, key))

    def use_pipe(self) -> int:
        return self._request(UsePipe(0))

    def _names(self, groups: Iterable[str | bytes]) -> tuple[bytes, ...]:
        """Group names checked against the daemon's limits (from Welcome), first-seen order."""
        # An application names the same one group send after send: the memo that
        # group_names_seen keeps is read here first (as the executive's service reads its
        # own), since compiled, that saves a call into interpreted code per message. Through
        # an object: compiled, a list typed by its items would be checked item by item.
        given = cast(object, groups)
        if (type(given) is list or type(given) is tuple) and len(given) == 1:
            first = given[0]
            if type(first) is bytes or type(first) is str:
                known = self._names_seen.get(first)
                if known is not None:
                    return known
        name_max = self.welcome.group_name_max if self.welcome else GROUP_NAME_MAX
        count_max = self.welcome.groups_max if self.welcome else GROUPS_MAX
        return group_names_seen(groups, self._names_seen, name_max=name_max, count_max=count_max)

    @property
    def pending_bytes(self) -> int:
        """Bytes of requests made and not yet taken by ``data_to_send``."""
        return self._out_bytes

    def data_to_send(self) -> bytes:
        """Bytes of the requests made since the last call, to write to the daemon."""
        frames = self._out
        if not frames:
            return b""
        out = frames[0] if len(frames) == 1 else b"".join(frames)
        frames.clear()
        self._out_bytes = 0
        return out

    # ---------------------------------------------------------------- input

    def receive_data(self, data: bytes) -> None:
        """Bytes from the daemon; ``b""`` means the connection ended."""
        if self.ended is not None:
            return
        if not data:
            if self._decoder.buffered:
                self._end(NotConnected("the evs daemon closed the connection in mid-frame"))
            else:
                self._end(NotConnected("the evs daemon closed the connection"))
            return
        try:
            decoder = self._decoder
            decoder.feed(data)
            append = self._events.append
            # Deliveries go straight to the queue; any other frame comes back to be handled.
            while (frame := decoder.take_deliveries(append)) is not None:
                if not self._on_frame(frame):
                    return
        except FrameError as exc:
            self._end(NotConnected(f"the evs daemon sent a malformed frame: {exc.reason}"))

    def _on_frame(self, frame: Frame) -> bool:
        """Take one frame in; False once the connection is over."""
        if isinstance(frame, DeliverNote):
            self._events.append(frame.delivery)
        elif isinstance(frame, ConfChgNote):
            self._events.append(frame.change)
        elif isinstance(frame, RoomAgain):
            self.room_again = True
        elif isinstance(frame, SendCredit):
            if frame.amount > self.outstanding:
                self._end(
                    NotConnected(
                        f"the evs daemon gave back {frame.amount} bytes of send window; "
                        f"only {self.outstanding} were outstanding"
                    )
                )
                return False
            self.outstanding -= frame.amount
        elif isinstance(frame, Goodbye):
            self._end(NotConnected(f"the evs daemon disconnected this client: {frame.reason}"))
        elif isinstance(frame, Error) and frame.request_id == 0:
            self._end(exception_for(frame.code, frame.message))
        elif isinstance(frame, (Welcome, Ok, Error, MembershipReply, StatusReply, RekeyReply)):
            if frame.request_id not in self._pending:
                self._end(NotConnected(f"the evs daemon answered an unknown request: {frame}"))
                return False
            self._pending.discard(frame.request_id)
            self._replies[frame.request_id] = frame
            if isinstance(frame, Welcome):
                self.welcome = frame
                self._names_seen.clear()
            joined = self._joins.pop(frame.request_id, None)
            if joined is not None and isinstance(frame, Ok):
                self.joined.update(joined)
        else:
            self._end(NotConnected(f"the evs daemon sent a request frame: {type(frame).__name__}"))
        return self.ended is None

    def _end(self, exc: EvsError) -> None:
        self.ended = exc
        self._pending.clear()
        # Nothing more is read: drop the rest of the read the connection ended in.
        self._decoder = FrameDecoder()

    def connection_lost(self, reason: str) -> None:
        """The I/O layer lost the connection (or gave up waiting); ``reason`` says how."""
        if self.ended is None:
            self._end(NotConnected(reason))

    def requests_lost(self, nbytes: int) -> None:
        """``nbytes`` of requests the I/O layer wrote were never read by the daemon (it closed
        its end of the request pipe first): the connection is over, and its reason says so."""
        if self._lost_told:  # once: threads or tasks failing on the same pipe say it again
            return
        self._lost_told = True
        lost = (
            f"{nbytes} bytes of requests written to the evs daemon were never read by it: "
            "the messages in them are lost"
        )
        if self.ended is None:
            self._end(NotConnected(lost))
        else:
            self.ended = type(self.ended)(f"{self.ended}; {lost}")

    def close(self) -> None:
        """The application closed the client: every later call raises NotConnected."""
        if self.ended is None:
            self._end(NotConnected("this client is closed"))

    # ---------------------------------------------------------------- output

    def done(self, rid: int) -> bool:
        """The reply to ``rid`` is here, or none will ever come."""
        return rid in self._replies or self.ended is not None

    def result(self, rid: int) -> Reply:
        """The reply to ``rid`` (removed); raises its Error as an exception, or why it is lost."""
        reply = self._replies.pop(rid, None)
        if reply is None:
            if self.ended is not None:
                raise self.ended
            raise RuntimeError(f"no reply to request {rid} yet")
        if isinstance(reply, Error):
            raise exception_for(reply.code, reply.message)
        return reply

    def next_event(self) -> Event | None:
        """The oldest buffered event, or None."""
        return self._events.popleft() if self._events else None

    @property
    def events_waiting(self) -> int:
        return len(self._events)

    @property
    def queue(self) -> deque[Event]:
        """The buffered events themselves, oldest first (the same deque for the session's
        life): a reader that pops from the left saves two calls per event."""
        return self._events
