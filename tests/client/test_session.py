"""ClientSession without sockets: bytes out are requests, frames in become replies and events."""

from __future__ import annotations

import pytest

from evs.client.session import ClientSession
from evs.errors import AccessDenied, EvsError, InvalidArgument, NotConnected, TryAgain
from evs.ipc.codec import FrameDecoder, encode
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
    Mcast,
    MembershipGet,
    MembershipReply,
    Ok,
    RoomAgain,
    SendCredit,
    StatusReply,
    Welcome,
)
from evs.types import ConfigChange, Delivery, Guarantee, Membership, RingId

RING = RingId(2, 1)


def sent(session: ClientSession) -> list[Frame]:
    dec = FrameDecoder()
    dec.feed(session.data_to_send())
    return list(dec)


def welcomed() -> ClientSession:
    s = ClientSession(pid=42)
    (hello,) = sent(s)
    assert hello == Hello(s.hello_id, IPC_VERSION, 42)
    s.receive_data(encode(Welcome(s.hello_id, IPC_VERSION, 1, 9, 100, 8, 3, 1000)))
    assert s.done(s.hello_id)
    assert s.result(s.hello_id) == s.welcome
    return s


def test_requests_get_fresh_ids_and_their_own_replies() -> None:
    s = welcomed()
    a = s.join(["x", b"y", "x"])
    b = s.mcast(None, b"data", Guarantee.SAFE)
    c = s.membership_get()
    assert sent(s) == [
        Join(a, (b"x", b"y")),
        Mcast(b, None, Guarantee.SAFE, b"data"),
        MembershipGet(c),
    ]
    assert len({a, b, c}) == 3
    m = Membership(1, RING, (1, 2))
    # Replies arrive in one piece of bytes, interleaved with events, cut anywhere.
    wire = (
        encode(Ok(a))
        + encode(DeliverNote(Delivery(2, 7, (b"x",), b"d", Guarantee.AGREED)))
        + encode(Error(b, ErrorCode.TRY_AGAIN, "queue full"))
        + encode(MembershipReply(c, m))
    )
    for i in range(len(wire)):
        s.receive_data(wire[i : i + 1])
    assert s.result(a) == Ok(a)
    with pytest.raises(TryAgain, match="queue full"):
        s.result(b)
    assert s.result(c) == MembershipReply(c, m)
    assert s.events_waiting == 1
    assert s.next_event() == Delivery(2, 7, (b"x",), b"d", Guarantee.AGREED)
    assert s.next_event() is None
    with pytest.raises(RuntimeError, match="no reply"):
        s.result(a)


def test_room_again_is_cleared_by_the_next_mcast() -> None:
    s = welcomed()
    s.receive_data(encode(RoomAgain()))
    assert s.room_again
    s.mcast(["g"], b"", Guarantee.AGREED)
    assert not s.room_again


def test_windowed_sends_count_against_the_window_until_credited() -> None:
    s = ClientSession(pid=42)
    sent(s)
    s.receive_data(encode(Welcome(s.hello_id, IPC_VERSION, 1, 9, 10_000, 8, 3, 1000)))
    s.result(s.hello_id)  # window 1000; a message costs its data + 64
    with pytest.raises(InvalidArgument, match="joined no group"):
        s.send(None, b"x", Guarantee.AGREED)
    j = s.join(["g"])
    with pytest.raises(InvalidArgument, match="joined no group"):  # not until the Ok
        s.send(None, b"x", Guarantee.AGREED)
    s.receive_data(encode(Ok(j)))
    assert s.joined == {b"g"}
    sent(s)
    assert s.send(None, bytes(436), Guarantee.SAFE)  # 500
    assert s.send([b"h"], bytes(436), Guarantee.AGREED)  # 1000: exactly full
    assert not s.window_room(0)
    assert not s.send(None, b"", Guarantee.AGREED)  # refused, nothing queued
    assert sent(s) == [
        Mcast(0, None, Guarantee.SAFE, bytes(436)),
        Mcast(0, (b"h",), Guarantee.AGREED, bytes(436)),
    ]
    s.receive_data(encode(SendCredit(500)))
    assert s.outstanding == 500
    assert s.window_room(436)
    assert not s.window_room(437)
    s.receive_data(encode(SendCredit(500)))
    assert s.outstanding == 0
    # A message larger than the whole window goes when nothing else is outstanding.
    assert s.window_room(5000)
    assert s.send(None, bytes(100), Guarantee.AGREED)
    s.leave(["g"])  # counts at once: a send queued after it reaches the daemon after it
    assert s.joined == set()
    with pytest.raises(InvalidArgument, match="joined no group"):
        s.send(None, b"x", Guarantee.AGREED)
    # Credit beyond what is outstanding: the daemon is broken; the session ends.
    s.receive_data(encode(SendCredit(165)))
    assert isinstance(s.ended, NotConnected)
    assert "gave back 165" in str(s.ended)
    with pytest.raises(NotConnected):
        s.send([b"g"], b"", Guarantee.AGREED)


def test_limits_come_from_welcome() -> None:
    s = welcomed()  # max data 100, names 1..8, 3 groups
    with pytest.raises(InvalidArgument, match=r"names are 1\.\.8"):
        s.join(["123456789"])
    with pytest.raises(InvalidArgument, match="the limit is 3"):
        s.join(["a", "b", "c", "d"])
    with pytest.raises(InvalidArgument, match="limit of 100"):
        s.mcast(None, b"x" * 101, Guarantee.AGREED)
    with pytest.raises(InvalidArgument, match="not a single"):
        s.join("abc")
    with pytest.raises(InvalidArgument, match="must be str or bytes"):
        s.join([3])  # type: ignore[list-item]
    with pytest.raises(InvalidArgument, match="at least one"):
        s.leave([])
    with pytest.raises(InvalidArgument, match="unknown guarantee"):
        s.mcast(None, b"", 9)
    with pytest.raises(InvalidArgument, match="must be bytes"):
        s.mcast(None, "text", Guarantee.AGREED)
    assert sent(s) == []


def test_checked_group_lists_are_remembered_until_the_welcome() -> None:
    """A send names the same list again and again: checked once, the same names each time;
    the Welcome's limits apply to every list, also one seen before it."""
    s = ClientSession(pid=42)
    sent(s)
    long_name = ["123456789"]
    s.join(long_name)  # within the defaults before the Welcome
    s.receive_data(encode(Welcome(s.hello_id, IPC_VERSION, 1, 9, 100, 8, 3, 100_000)))
    with pytest.raises(InvalidArgument, match=r"names are 1\.\.8"):
        s.join(long_name)
    sent(s)
    assert s.send(["g", b"h", "g"], b"1", Guarantee.AGREED)
    assert s.send(("g", b"h"), b"2", Guarantee.AGREED)
    assert s.send(["g", b"h", "g"], b"3", Guarantee.AGREED)
    assert [f.groups for f in sent(s) if isinstance(f, Mcast)] == [(b"g", b"h")] * 3
    assert s.send([b"g"], b"4", Guarantee.AGREED)
    assert s.send([b"g"], b"5", Guarantee.AGREED)  # remembered
    # Not exactly str or bytes: refused, also when it hashes like the remembered b"g".
    for bad in (bytearray(b"g"), memoryview(b"g"), memoryview(bytearray(b"g")), 3):
        with pytest.raises(InvalidArgument, match="must be str or bytes"):
            s.send([bad], b"", Guarantee.AGREED)  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("wire", "error", "message"),
    [
        (encode(Goodbye("queue bound reached")), NotConnected, "queue bound reached"),
        (encode(Error(0, ErrorCode.ACCESS_DENIED, "uid 5 refused")), AccessDenied, "uid 5"),
        (b"", NotConnected, "closed the connection"),
        (encode(Ok(1))[:5], NotConnected, "mid-frame"),
        (b"\0\0\0\5\xee\0\0\0\0", NotConnected, "malformed frame"),
        (encode(Ok(999)), NotConnected, "unknown request"),
        (encode(Hello(1, 1, 1)), NotConnected, "request frame"),
    ],
)
def test_the_end_of_a_connection_is_remembered(
    wire: bytes, error: type[EvsError], message: str
) -> None:
    s = welcomed()
    rid = s.membership_get()
    s.receive_data(encode(ConfChgNote(ConfigChange(RING, False, (1,), (), (1,)))))
    s.receive_data(wire)
    if wire.endswith(encode(Ok(1))[:5]):
        s.receive_data(b"")
    assert s.done(rid)
    with pytest.raises(error, match=message):
        s.result(rid)
    with pytest.raises(error, match=message):
        s.join(["g"])
    # Events that came before the end stay readable.
    assert isinstance(s.next_event(), ConfigChange)
    s.receive_data(encode(StatusReply(rid, "{}")))  # ignored after the end
    assert s.next_event() is None


def test_close_and_connection_lost() -> None:
    s = welcomed()
    s.connection_lost("the cable")
    s.close()  # the first reason stays
    with pytest.raises(NotConnected, match="the cable"):
        s.status_get()
    t = welcomed()
    t.close()
    with pytest.raises(NotConnected, match="this client is closed"):
        t.membership_get()
