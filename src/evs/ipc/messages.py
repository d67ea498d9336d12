"""The frames of the IPC protocol between the executive and the library, as plain values.

Theory of operation: a client speaks first with ``Hello``; every request carries a request id
(u32, never 0) chosen by the client, and the daemon answers each request exactly once, in
order, with a reply echoing that id (``Welcome`` for ``Hello``; ``Ok``, ``Error``,
``MembershipReply``, ``StatusReply`` or ``RekeyReply`` otherwise). ``Rekey`` is an
administrator's request (``evs rekey``): the daemon serves it only to root and its own uid.
Notifications carry request id 0 and may come at any time after ``Welcome``: events
(``DeliverNote``, ``ConfChgNote``), ``RoomAgain`` (the send queue has room again after a
``TryAgain``), ``SendCredit`` and ``Goodbye`` (the daemon is about to disconnect this client and
says why). An ``Error`` with request id 0 is
connection-level (the peer was refused, or spoke garbage) and is followed by the end of the
connection.

Request pipe (version 3): after ``Welcome`` a client may send ``UsePipe``; once the daemon
answers Ok, the client sends one byte carrying the read end of a pipe it made (SCM_RIGHTS), and
every later request goes into the pipe, none into the socket (which still carries everything
from the daemon, and whose end ends the connection: the daemon then reads what is left in the
pipe). A small write costs a Unix socket a buffer of its own, allocated by the writer and freed
by the reader, while a pipe appends it to the page it is filling: about half the system time
per message for a sender of small ones.

Windowed sends: an ``Mcast`` with request id 0 gets no reply. The daemon accepts every such
message as long as the client keeps within the send window announced in ``Welcome``: the
client counts ``mcast_cost`` of each message it sends, and the daemon gives the bytes back with
``SendCredit`` once the message is in the core's send queue (where it waits, in order, if the
queue is full). So a sender streams messages without a round trip per message, and the
executive's memory per client stays bounded by the window. The one exception is a message
costing more than the whole window: it may go when nothing else is outstanding.

These classes know nothing of bytes; ``evs.ipc.codec`` maps them to frames and back. They are
values that nothing changes after it made them. ``Mcast`` and ``DeliverNote``, the frames of
every message, are plain slotted dataclasses rather than frozen ones: a frozen dataclass stores
each field through ``object.__setattr__``, which tripled the cost of making one (0.7 against
0.24 µs), once per message at every client and in the executive.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final

from evs.errors import AccessDenied, EvsError, InvalidArgument, NotConnected, TryAgain
from evs.types import ConfigChange, Delivery, Guarantee, Membership

__all__ = [
    "IPC_VERSION",
    "ConfChgNote",
    "DeliverNote",
    "Error",
    "ErrorCode",
    "Frame",
    "Goodbye",
    "Hello",
    "Join",
    "Leave",
    "Mcast",
    "MembershipGet",
    "MembershipReply",
    "Notification",
    "Ok",
    "Rekey",
    "RekeyReply",
    "Reply",
    "Request",
    "RoomAgain",
    "SendCredit",
    "StatusGet",
    "StatusReply",
    "UsePipe",
    "Welcome",
    "error_code",
    "exception_for",
    "mcast_cost",
]

#: Version of the frame format, sent in ``Hello``; the daemon refuses any other.
IPC_VERSION: Final = 3
#: What a windowed message costs beyond its data (so a flood of tiny ones is bounded too).
MCAST_OVERHEAD: Final = 64


def mcast_cost(data_len: int) -> int:
    """Bytes of the send window one windowed ``Mcast`` of ``data_len`` bytes of data takes."""
    return data_len + MCAST_OVERHEAD


class ErrorCode(enum.IntEnum):
    """Which ``evs`` exception an ``Error`` frame stands for."""

    #: Any other failure (``evs.EvsError``), e.g. a version mismatch.
    ERROR = 1
    TRY_AGAIN = 2
    INVALID_ARGUMENT = 3
    NOT_CONNECTED = 4
    ACCESS_DENIED = 5


_EXCEPTIONS: Final[dict[ErrorCode, type[EvsError]]] = {
    ErrorCode.ERROR: EvsError,
    ErrorCode.TRY_AGAIN: TryAgain,
    ErrorCode.INVALID_ARGUMENT: InvalidArgument,
    ErrorCode.NOT_CONNECTED: NotConnected,
    ErrorCode.ACCESS_DENIED: AccessDenied,
}


def error_code(exc: EvsError) -> ErrorCode:
    """The code that carries ``exc`` over the wire (its most specific known class)."""
    for code, cls in _EXCEPTIONS.items():
        if type(exc) is cls:
            return code
    for code, cls in _EXCEPTIONS.items():
        if code is not ErrorCode.ERROR and isinstance(exc, cls):
            return code
    return ErrorCode.ERROR


def exception_for(code: ErrorCode, message: str) -> EvsError:
    """The exception a client raises for an ``Error`` frame."""
    return _EXCEPTIONS[code](message)


# ---------------------------------------------------------------- requests (client -> daemon)


@dataclass(frozen=True, slots=True)
class Hello:
    """First frame of every connection: the client's protocol version and process id."""

    request_id: int
    version: int
    pid: int


@dataclass(frozen=True, slots=True)
class Join:
    request_id: int
    groups: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Leave:
    request_id: int
    groups: tuple[bytes, ...]


@dataclass(slots=True)
class Mcast:
    """Multicast ``data`` to ``groups``; None means "every group this handle has joined"."""

    request_id: int
    groups: tuple[bytes, ...] | None
    guarantee: Guarantee
    data: bytes


@dataclass(frozen=True, slots=True)
class MembershipGet:
    request_id: int


@dataclass(frozen=True, slots=True)
class StatusGet:
    request_id: int


@dataclass(frozen=True, slots=True)
class UsePipe:
    """From now on this client writes its requests to a pipe, not to the socket. Answered
    with Ok, after which the client sends one byte 0 carrying the pipe's read end (SCM_RIGHTS)
    and then nothing more on the socket; or with an Error, after which it keeps the socket."""

    request_id: int


@dataclass(frozen=True, slots=True)
class Rekey:
    """Start an online key rotation to ``key`` (empty: the daemon makes a random key).

    ``members_only``: require only the current members to take the key, not every configured
    node (see docs/daemon.md, key rotation)."""

    request_id: int
    members_only: bool
    key: bytes = field(repr=False)


# ---------------------------------------------------------------- replies (daemon -> client)


@dataclass(frozen=True, slots=True)
class Welcome:
    """Answer to Hello: who the daemon is and the limits this handle must respect."""

    request_id: int
    version: int
    nodeid: int
    handle_id: int
    #: Largest message data, bytes.
    max_data: int
    #: Longest group name, bytes.
    group_name_max: int
    #: Most groups a handle may join (and a message may name).
    groups_max: int
    #: Bytes of windowed sends (``mcast_cost``) the client may have outstanding.
    send_window: int


@dataclass(frozen=True, slots=True)
class Ok:
    request_id: int


@dataclass(frozen=True, slots=True)
class Error:
    """A refused request (or, with request id 0, a refused connection)."""

    request_id: int
    code: ErrorCode
    message: str


@dataclass(frozen=True, slots=True)
class MembershipReply:
    request_id: int
    membership: Membership


@dataclass(frozen=True, slots=True)
class StatusReply:
    """The executive's status as one JSON object (api.md section 3)."""

    request_id: int
    text: str


@dataclass(frozen=True, slots=True)
class RekeyReply:
    """The rotation started: its key id, fingerprint and required nodes, as one JSON object."""

    request_id: int
    text: str


# ---------------------------------------------------------------- notifications (request id 0)


@dataclass(slots=True)
class DeliverNote:
    delivery: Delivery
    request_id: int = 0


@dataclass(frozen=True, slots=True)
class ConfChgNote:
    change: ConfigChange
    request_id: int = 0


@dataclass(frozen=True, slots=True)
class RoomAgain:
    """The send queue has room again: a sender that got TryAgain may retry now."""

    request_id: int = 0


@dataclass(frozen=True, slots=True)
class SendCredit:
    """``amount`` bytes of the send window come back: those messages reached the core."""

    amount: int
    request_id: int = 0


@dataclass(frozen=True, slots=True)
class Goodbye:
    """The daemon disconnects this client; ``reason`` says why."""

    reason: str
    request_id: int = 0


Request = Hello | Join | Leave | Mcast | MembershipGet | StatusGet | Rekey | UsePipe
Reply = Welcome | Ok | Error | MembershipReply | StatusReply | RekeyReply
Notification = DeliverNote | ConfChgNote | RoomAgain | SendCredit | Goodbye
Frame = Request | Reply | Notification
