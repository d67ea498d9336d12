"""Binary framing of the IPC protocol: ``encode(frame) -> bytes`` and an incremental decoder.

Theory of operation: every frame is ``u32 length | u8 kind | u32 request id | body``, network
byte order, where ``length`` counts the bytes after itself. A stream socket hands bytes over in
arbitrary pieces, so ``FrameDecoder`` buffers them and yields each frame once it is whole. The
length is checked against ``FRAME_MAX`` as soon as its four bytes arrive, so a hostile peer
cannot make the reader buffer more than one maximal frame. Every count and length inside a body
is bounded too, and a body must be consumed exactly. Anything wrong raises ``FrameError`` and
nothing else; the decoder then refuses further input (the stream has lost its framing, so the
only safe answer is to drop the connection).

Body layouts (``groups`` is ``u8 count`` then per name ``u8 length`` and the name; ``text`` is
UTF-8; the last field marked "rest" runs to the end of the frame):

- Hello: u16 version, u32 pid. This layout, and Error's, never change, so a version mismatch
  can always be reported.
- Join, Leave: groups.   Mcast: u8 flags (bit 0: to the joined groups), u8 guarantee, groups,
  data (rest); request id 0 makes it a windowed send (no reply).   MembershipGet, StatusGet,
  UsePipe, Ok, RoomAgain: empty.   SendCredit: u32 amount.
- Rekey: u8 flags (bit 0: members only), key (rest; empty: the daemon makes one).
- Welcome: u16 version, u32 nodeid, u32 handle id, u32 max data, u16 group name max, u16 groups
  max, u32 send window.   Error: u16 code, text (rest).   StatusReply, RekeyReply, Goodbye: text
  (rest).
- MembershipReply: u32 local nodeid, u64 ring seq, u32 ring rep, u16 count, u32 per member.
- DeliverNote: u32 nodeid, u32 pid, u8 guarantee, groups, data (rest).
- ConfChgNote: u64 ring seq, u32 ring rep, u8 transitional, u16 x3 counts (members, left,
  joined), then u32 per node id.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import Final, cast

from evs.ipc.messages import (
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
from evs.types import ConfigChange, Delivery, Guarantee, Membership, RingId, make_delivery

__all__ = [
    "DATA_MAX",
    "FRAME_MAX",
    "GROUPS_MAX",
    "GROUP_NAME_MAX",
    "HEADER",
    "NODES_MAX",
    "FrameDecoder",
    "FrameError",
    "decode",
    "encode",
    "encode_delivery",
    "encode_delivery_fields",
    "encode_mcast",
]

#: Largest message data a frame may carry, bytes (api.md: at least 1 MiB).
DATA_MAX: Final = 1 << 20
#: Longest group name a frame may carry (the daemon's own limit may be lower; see Welcome).
GROUP_NAME_MAX: Final = 255
#: Most group names in one frame.
GROUPS_MAX: Final = 255
#: Most node ids in one list of a membership or configuration change.
NODES_MAX: Final = 4096
#: Fixed fields of any frame beyond its data and group names (generous; text fits here too).
HEADROOM: Final = 64 << 10
#: Largest frame, bytes after the length field: data + headroom + the largest group list.
FRAME_MAX: Final = DATA_MAX + HEADROOM + 1 + GROUPS_MAX * (1 + GROUP_NAME_MAX)
#: Length, kind, request id.
HEADER: Final = struct.Struct("!IBI")
_ID_MAX: Final = 0xFFFFFFFF

_HELLO: Final = struct.Struct("!HI")
_MCAST: Final = struct.Struct("!BB")
_MCAST_SIZE: Final = 2  # _MCAST.size
_WELCOME: Final = struct.Struct("!HIIIHHI")
_CODE: Final = struct.Struct("!H")
_MEMBERSHIP: Final = struct.Struct("!IQIH")
_DELIVER: Final = struct.Struct("!IIB")
_DELIVER_SIZE: Final = 9  # _DELIVER.size, a constant the compiled build folds in
#: The hot decoding loop slices message data from a copy of a buffer up to this size (and
#: through a view of a larger one): see FrameDecoder._take_hot.
_SNAPSHOT_MAX: Final = 256 << 10
#: Bound once: a method lookup per delivery a client decodes otherwise.
_DELIVER_UNPACK: Final = _DELIVER.unpack_from
_CONFCHG: Final = struct.Struct("!QIBHHH")
_U32: Final = struct.Struct("!I")

_KINDS: Final[dict[type, int]] = {
    Hello: 1,
    Join: 2,
    Leave: 3,
    Mcast: 4,
    MembershipGet: 5,
    StatusGet: 6,
    Rekey: 7,
    UsePipe: 8,
    Welcome: 64,
    Ok: 65,
    Error: 66,
    MembershipReply: 67,
    StatusReply: 68,
    RekeyReply: 69,
    DeliverNote: 128,
    ConfChgNote: 129,
    RoomAgain: 130,
    Goodbye: 131,
    SendCredit: 132,
}
_MCAST_JOINED: Final = 1
#: Longest key a Rekey frame may carry (the longest cluster key).
_REKEY_KEY_MAX: Final = 4096


class FrameError(Exception):
    """A frame that cannot be encoded or decoded; ``reason`` says what was wrong."""

    def __init__(self, reason: str, *, oversize: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        #: The frame was refused for its announced length alone.
        self.oversize = oversize


# ---------------------------------------------------------------- encoding


def _check(ok: bool, reason: str) -> None:
    if not ok:
        raise FrameError(reason)


def _u(value: int, bits: int, what: str) -> None:
    _check(
        isinstance(value, int) and 0 <= value < (1 << bits),
        f"{what} {value!r} is not an unsigned {bits}-bit integer",
    )


def _groups(groups: tuple[bytes, ...]) -> bytes:
    _check(len(groups) <= GROUPS_MAX, f"{len(groups)} groups; a frame carries {GROUPS_MAX}")
    out = bytearray([len(groups)])
    for g in groups:
        _check(isinstance(g, bytes), f"group name {g!r} is not bytes")
        _check(
            1 <= len(g) <= GROUP_NAME_MAX,
            f"group name of {len(g)} bytes; names are 1..{GROUP_NAME_MAX}",
        )
        out.append(len(g))
        out += g
    return bytes(out)


def _nodes(nodes: tuple[int, ...]) -> bytes:
    for n in nodes:
        _u(n, 32, "node id")
    return struct.pack(f"!{len(nodes)}I", *nodes)


def _data(data: bytes) -> bytes:
    _check(len(data) <= DATA_MAX, f"data of {len(data)} bytes; the limit is {DATA_MAX}")
    return bytes(data)


def _text(text: str) -> bytes:
    raw = text.encode("utf-8", "replace")
    # Texts are explanations: shorten rather than refuse.
    return raw[:HEADROOM] if len(raw) > HEADROOM else raw


def _body(frame: Frame) -> bytes:
    if isinstance(frame, Hello):
        _u(frame.version, 16, "version")
        _u(frame.pid, 32, "pid")
        return _HELLO.pack(frame.version, frame.pid)
    if isinstance(frame, (Join, Leave)):
        return _groups(frame.groups)
    if isinstance(frame, Mcast):
        flags = _MCAST_JOINED if frame.groups is None else 0
        groups = _groups(() if frame.groups is None else frame.groups)
        return _MCAST.pack(flags, Guarantee(frame.guarantee)) + groups + _data(frame.data)
    if isinstance(frame, (MembershipGet, StatusGet, UsePipe, Ok, RoomAgain)):
        return b""
    if isinstance(frame, Welcome):
        for value, bits, what in (
            (frame.version, 16, "version"),
            (frame.nodeid, 32, "node id"),
            (frame.handle_id, 32, "handle id"),
            (frame.max_data, 32, "max data"),
            (frame.group_name_max, 16, "group name max"),
            (frame.groups_max, 16, "groups max"),
            (frame.send_window, 32, "send window"),
        ):
            _u(value, bits, what)
        return _WELCOME.pack(
            frame.version,
            frame.nodeid,
            frame.handle_id,
            frame.max_data,
            frame.group_name_max,
            frame.groups_max,
            frame.send_window,
        )
    if isinstance(frame, SendCredit):
        _u(frame.amount, 32, "credit")
        return _U32.pack(frame.amount)
    if isinstance(frame, Error):
        return _CODE.pack(ErrorCode(frame.code)) + _text(frame.message)
    if isinstance(frame, (StatusReply, RekeyReply, Goodbye)):
        return _text(frame.reason if isinstance(frame, Goodbye) else frame.text)
    if isinstance(frame, Rekey):
        _check(len(frame.key) <= _REKEY_KEY_MAX, f"a key of {len(frame.key)} bytes")
        return bytes([int(frame.members_only)]) + frame.key
    if isinstance(frame, MembershipReply):
        m = frame.membership
        _check(len(m.members) <= NODES_MAX, f"{len(m.members)} members; limit {NODES_MAX}")
        _u(m.local_nodeid, 32, "node id")
        _u(m.ring_id.seq, 64, "ring seq")
        _u(m.ring_id.rep, 32, "ring rep")
        head = _MEMBERSHIP.pack(m.local_nodeid, m.ring_id.seq, m.ring_id.rep, len(m.members))
        return head + _nodes(m.members)
    if isinstance(frame, DeliverNote):
        d = frame.delivery
        _u(d.nodeid, 32, "node id")
        _u(d.pid, 32, "pid")
        head = _DELIVER.pack(d.nodeid, d.pid, Guarantee(d.guarantee))
        return head + _groups(d.groups) + _data(d.data)
    if isinstance(frame, ConfChgNote):
        c = frame.change
        for nodes in (c.members, c.left, c.joined):
            _check(len(nodes) <= NODES_MAX, f"{len(nodes)} node ids; limit {NODES_MAX}")
        _u(c.ring_id.seq, 64, "ring seq")
        _u(c.ring_id.rep, 32, "ring rep")
        head = _CONFCHG.pack(
            c.ring_id.seq,
            c.ring_id.rep,
            int(c.transitional),
            len(c.members),
            len(c.left),
            len(c.joined),
        )
        return head + _nodes(c.members) + _nodes(c.left) + _nodes(c.joined)
    raise FrameError(f"not an IPC frame: {type(frame).__name__}")


#: Whole-frame prefix of a DeliverNote / an Mcast: length, kind, request id, fixed fields.
_DELIVER_HEAD: Final = struct.Struct("!IBIIIB")
_MCAST_HEAD: Final = struct.Struct("!IBIBB")
_GUARANTEES: Final = frozenset(int(g) for g in Guarantee)
#: Encoded group lists, by tuple: every message of a group names the same list.
_GROUPS_SEEN: Final[dict[tuple[bytes, ...], bytes]] = {}
_GROUPS_SEEN_MAX: Final = 1024


def _groups_cached(groups: tuple[bytes, ...]) -> bytes:
    out = _GROUPS_SEEN.get(groups)
    if out is None:
        out = _groups(groups)  # checked once; FrameError leaves nothing cached
        if len(_GROUPS_SEEN) >= _GROUPS_SEEN_MAX:
            _GROUPS_SEEN.clear()
        _GROUPS_SEEN[groups] = out
    return out


def _encode_hot(frame: DeliverNote | Mcast) -> bytes:
    """DeliverNote and Mcast, the frames of every message: the same bytes as ``_body``, with
    the same bounds, in one pack and one join (no intermediate copies; the texts of errors
    are built only on an error)."""
    if isinstance(frame, DeliverNote):
        return _encode_delivery(frame.delivery, frame.request_id)
    return _encode_mcast(frame.request_id, frame.groups, frame.guarantee, frame.data)


def _encode_mcast(request_id: int, named: tuple[bytes, ...] | None, g: int, data: bytes) -> bytes:
    if named is None:
        flags, glist = _MCAST_JOINED, b"\0"
    elif type(named) is tuple:
        flags, glist = 0, _groups_cached(named)
    else:
        raise FrameError(_hot_error(g, named, data))
    if g not in _GUARANTEES or len(data) > DATA_MAX:
        raise FrameError(_hot_error(g, (), data))
    length = _MCAST_HEAD.size - 4 + len(glist) + len(data)
    head = _MCAST_HEAD.pack(length, 4, request_id, flags, g)
    return b"".join((head, glist, data))


def _encode_delivery(d: Delivery, request_id: int) -> bytes:
    data, groups, g = d.data, d.groups, d.guarantee
    if g not in _GUARANTEES or type(groups) is not tuple or len(data) > DATA_MAX:
        raise FrameError(_hot_error(g, groups, data))
    glist = _groups_cached(groups)
    length = _DELIVER_HEAD.size - 4 + len(glist) + len(data)
    head = _DELIVER_HEAD.pack(length, 128, request_id, d.nodeid, d.pid, g)
    return b"".join((head, glist, data))


def encode_delivery(d: Delivery) -> bytes:
    """``encode(DeliverNote(d))`` without the note. FrameError if a field is out of its
    bounds."""
    try:
        # Every field checked, every time: a Delivery may come from anywhere (the remembered
        # prefix of encode_delivery_fields is for the executive's own queue).
        return _encode_delivery(d, 0)
    except (struct.error, TypeError) as exc:
        raise FrameError(f"cannot encode DeliverNote: {exc}") from None


#: The frame prefix (header and group list) of the last delivery ``encode_delivery_fields``
#: encoded, with what it was made of: (node id, pid, guarantee, data size, groups, prefix). A
#: node's deliveries come in runs from one sending process, of one size, to one group list
#: (an equal tuple, often the same one), so the next prefix is usually this one: five
#: compares instead of a pack and a three-part join. One tuple, replaced whole: embedded
#: executives in threads of one process share it, and each reads a consistent entry.
_LAST_PREFIX: Final[list[tuple[int, int, int, int, tuple[bytes, ...], bytes]]] = [
    (-1, -1, -1, -1, (), b"")
]


def encode_delivery_fields(fields: tuple[int, int, tuple[bytes, ...], bytes, int]) -> bytes:
    """``encode_delivery`` of a delivery given as its fields in ``Delivery``'s order: the
    executive encodes one per message and receiving handle, from the tuple its handle queues
    hold (``evs.runtime.service.QueuedDelivery``). FrameError if a field is out of its
    bounds. The fields are the service's, of their declared types: one equal by value to the
    remembered prefix's (a float node id, a bytearray name) is not checked again."""
    try:
        # (Compiled, unpacking a field of the wrong type raises TypeError: inside the try.)
        nodeid, pid, groups, data, g = fields
        last_nodeid, last_pid, last_g, last_size, last_groups, prefix = _LAST_PREFIX[0]
        size = len(data)
        if (
            size == last_size
            and (groups is last_groups or groups == last_groups)
            and nodeid == last_nodeid
            and pid == last_pid
            and g == last_g
        ):
            return prefix + data  # checked when the prefix was made: the same fields
        # The usual case inline (a group list already checked and encoded, a known guarantee,
        # data within the limit): two calls less per delivery; anything else is checked.
        glist = _GROUPS_SEEN.get(groups) if type(groups) is tuple else None
        if glist is not None and g in _GUARANTEES and size <= DATA_MAX:
            prefix = (
                _DELIVER_HEAD.pack(
                    _DELIVER_HEAD.size - 4 + len(glist) + size, 128, 0, nodeid, pid, g
                )
                + glist
            )
            _LAST_PREFIX[0] = (nodeid, pid, g, size, groups, prefix)
            return prefix + data
        # Checked there, with the words of each bound (a plain int for a guarantee included).
        return _encode_delivery(make_delivery(nodeid, pid, groups, data, cast(Guarantee, g)), 0)
    except (struct.error, TypeError, ValueError) as exc:  # ValueError: not five fields
        raise FrameError(f"cannot encode DeliverNote: {exc}") from None


def _hot_error(g: object, groups: object, data: bytes) -> str:
    if g not in _GUARANTEES:
        return f"unknown guarantee {g!r}"
    if type(groups) is not tuple:
        return f"groups {groups!r} are not a tuple"
    return f"data of {len(data)} bytes; the limit is {DATA_MAX}"


#: The prefix (header and group list) of the last Mcast ``encode_mcast`` encoded, with what it
#: was made of: (groups, guarantee, data size, prefix); as ``_LAST_PREFIX`` for deliveries: a
#: sender names one group list, at one size, send after send.
_LAST_MCAST: Final[list[tuple[tuple[bytes, ...] | None, int, int, bytes]]] = [(None, -1, -1, b"")]


def encode_mcast(groups: tuple[bytes, ...] | None, guarantee: int, data: bytes) -> bytes:
    """``encode(Mcast(0, groups, guarantee, data))`` without building the frame: a client's
    send path, once per message, with the fields its session checked (of their declared
    types: see ``encode_delivery_fields`` on the remembered prefix)."""
    try:
        last_groups, last_g, last_size, prefix = _LAST_MCAST[0]
        size = len(data)
        if groups is last_groups and size == last_size and guarantee == last_g:
            return prefix + data  # checked when the prefix was made: the same fields
        frame = _encode_mcast(0, groups, guarantee, data)
        _LAST_MCAST[0] = (groups, guarantee, size, frame[: len(frame) - size])
        return frame
    except (struct.error, TypeError) as exc:
        raise FrameError(f"cannot encode Mcast: {exc}") from None


def encode(frame: Frame) -> bytes:
    """The frame as bytes; FrameError if a field is out of its bounds."""
    if type(frame) is DeliverNote or type(frame) is Mcast:
        try:
            return _encode_hot(frame)
        except (struct.error, TypeError) as exc:
            raise FrameError(f"cannot encode {type(frame).__name__}: {exc}") from None
    kind = _KINDS.get(type(frame))
    if kind is None:
        raise FrameError(f"not an IPC frame: {type(frame).__name__}")
    _u(frame.request_id, 32, "request id")
    try:
        body = _body(frame)
    except (ValueError, TypeError, struct.error) as exc:
        raise FrameError(f"cannot encode {type(frame).__name__}: {exc}") from None
    length = HEADER.size - 4 + len(body)
    _check(length <= FRAME_MAX, f"frame of {length} bytes; the limit is {FRAME_MAX}")
    return HEADER.pack(length, kind, frame.request_id) + body


# ---------------------------------------------------------------- decoding


class _Reader:
    """A bounds-checked cursor over one frame's body."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: memoryview) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, n: int, what: str) -> memoryview:
        end = self.pos + n
        _check(end <= len(self.buf), f"frame ends inside {what}")
        out = self.buf[self.pos : end]
        self.pos = end
        return out

    def unpack(self, st: struct.Struct, what: str) -> tuple[int, ...]:
        return st.unpack(self.take(st.size, what))

    def groups(self) -> tuple[bytes, ...]:
        (count,) = self.take(1, "group count")
        out = []
        for _ in range(count):
            (n,) = self.take(1, "group name length")
            _check(n >= 1, "empty group name")
            out.append(bytes(self.take(n, "group name")))
        return tuple(out)

    def nodes(self, count: int) -> tuple[int, ...]:
        _check(count <= NODES_MAX, f"{count} node ids; the limit is {NODES_MAX}")
        return struct.unpack(f"!{count}I", self.take(4 * count, "node ids"))

    def rest(self) -> bytes:
        out = bytes(self.buf[self.pos :])
        self.pos = len(self.buf)
        return out

    def text(self) -> str:
        try:
            return self.rest().decode("utf-8")
        except UnicodeDecodeError:
            raise FrameError("text is not UTF-8") from None

    def data(self) -> bytes:
        out = self.rest()
        _check(len(out) <= DATA_MAX, f"data of {len(out)} bytes; the limit is {DATA_MAX}")
        return out

    def end(self, what: str) -> None:
        extra = len(self.buf) - self.pos
        _check(extra == 0, f"{extra} stray bytes after {what}")


#: Guarantee by wire value: a dict lookup costs a tenth of calling the enum (per message).
_GUARANTEE_OF: Final[dict[int, Guarantee]] = {int(g): g for g in Guarantee}


def _guarantee(value: int) -> Guarantee:
    guarantee = _GUARANTEE_OF.get(value)
    if guarantee is None:
        raise FrameError(f"unknown guarantee {value}")
    return guarantee


def _ring(seq: int, rep: int) -> RingId:
    return RingId(seq=seq, rep=rep)


def _decode_body(kind: int, rid: int, r: _Reader) -> Frame:
    frame: Frame
    if kind == 1:
        version, pid = r.unpack(_HELLO, "Hello")
        frame = Hello(rid, version, pid)
    elif kind in (2, 3):
        groups = r.groups()
        frame = Join(rid, groups) if kind == 2 else Leave(rid, groups)
    elif kind == 4:
        flags, g = r.unpack(_MCAST, "Mcast")
        _check(flags & ~_MCAST_JOINED == 0, f"unknown Mcast flags {flags:#x}")
        groups = r.groups()
        if flags & _MCAST_JOINED:
            _check(not groups, "Mcast to the joined groups names groups")
        frame = Mcast(rid, None if flags else groups, _guarantee(g), r.data())
    elif kind == 5:
        frame = MembershipGet(rid)
    elif kind == 6:
        frame = StatusGet(rid)
    elif kind == 7:
        (flags,) = r.take(1, "Rekey")
        _check(flags in (0, 1), f"unknown Rekey flags {flags:#x}")
        key = r.rest()
        _check(len(key) <= _REKEY_KEY_MAX, f"a key of {len(key)} bytes")
        frame = Rekey(rid, bool(flags), key)
    elif kind == 8:
        frame = UsePipe(rid)
    elif kind == 64:
        frame = Welcome(rid, *r.unpack(_WELCOME, "Welcome"))
    elif kind == 65:
        frame = Ok(rid)
    elif kind == 66:
        (code,) = r.unpack(_CODE, "Error")
        try:
            error = ErrorCode(code)
        except ValueError:
            raise FrameError(f"unknown error code {code}") from None
        frame = Error(rid, error, r.text())
    elif kind == 67:
        nodeid, seq, rep, count = r.unpack(_MEMBERSHIP, "MembershipReply")
        frame = MembershipReply(rid, Membership(nodeid, _ring(seq, rep), r.nodes(count)))
    elif kind == 68:
        frame = StatusReply(rid, r.text())
    elif kind == 69:
        frame = RekeyReply(rid, r.text())
    elif kind == 128:
        nodeid, pid, g = r.unpack(_DELIVER, "DeliverNote")
        guarantee = _guarantee(g)
        groups = r.groups()
        frame = DeliverNote(Delivery(nodeid, pid, groups, r.data(), guarantee), rid)
    elif kind == 129:
        seq, rep, trans, n_members, n_left, n_joined = r.unpack(_CONFCHG, "ConfChgNote")
        _check(trans in (0, 1), f"transitional flag {trans} is not 0 or 1")
        members, left, joined = r.nodes(n_members), r.nodes(n_left), r.nodes(n_joined)
        frame = ConfChgNote(ConfigChange(_ring(seq, rep), bool(trans), members, left, joined), rid)
    elif kind == 130:
        frame = RoomAgain(rid)
    elif kind == 131:
        frame = Goodbye(r.text(), rid)
    elif kind == 132:
        (amount,) = r.unpack(_U32, "SendCredit")
        frame = SendCredit(amount, rid)
    else:
        raise FrameError(f"unknown frame kind {kind}")
    r.end(type(frame).__name__)
    if kind >= 128:
        _check(rid == 0, f"notification {type(frame).__name__} with request id {rid}")
    return frame


def _groups_at(buf: bytearray, pos: int, end: int) -> tuple[tuple[bytes, ...], int]:
    """The group list at ``buf[pos]`` (bounded by ``end``) and the position after it."""
    _check(pos < end, "frame ends inside group count")
    count = buf[pos]
    pos += 1
    if count == 1 and pos < end:  # most messages name one group: no loop, no list
        n = buf[pos]
        stop = pos + 1 + n
        if n >= 1 and stop <= end:
            return (bytes(buf[pos + 1 : stop]),), stop
    groups = []
    for _ in range(count):
        _check(pos < end, "frame ends inside group name length")
        n = buf[pos]
        _check(n >= 1, "empty group name")
        _check(pos + 1 + n <= end, "frame ends inside group name")
        groups.append(bytes(buf[pos + 1 : pos + 1 + n]))
        pos += 1 + n
    return tuple(groups), pos


class _GroupListMemo:
    """The last group list a hot decoding loop read, encoded and decoded.

    A sender's frames (and a receiver's deliveries) name the same list one after the other:
    comparing its bytes in place costs less than decoding them again, and the frames then
    share one tuple. The encoding is self-delimiting (a count, then length-prefixed names), so
    bytes equal to a list already checked are that list."""

    __slots__ = ("groups", "raw")

    def __init__(self) -> None:
        self.raw = b""
        self.groups: tuple[bytes, ...] = ()

    def at(self, buf: bytearray, pos: int, end: int) -> tuple[tuple[bytes, ...], int]:
        """``_groups_at``, remembering the last list."""
        raw = self.raw
        if raw and buf.startswith(raw, pos, end):
            return self.groups, pos + len(raw)
        groups, after = _groups_at(buf, pos, end)
        self.raw = bytes(buf[pos:after])
        self.groups = groups
        return groups, after


class _FrameSink:
    """Where ``FrameDecoder._take_hot`` hands each frame of its kind: an object, not a closure,
    so that the compiled build (tools/compile.py) makes the call a native one, its integers
    unboxed, where a closure is called like any Python callable."""

    __slots__ = ()

    def take(
        self, buf: bytearray, view: memoryview, snap: bytes | None, start: int, end: int
    ) -> bool:
        """The frame body ``buf[start:end]`` (``view`` over ``buf``; ``snap``, when not None, a
        copy of ``buf`` to slice data from); False stops the read."""
        raise NotImplementedError


class _McastSink(_FrameSink):
    """``take_mcasts``: a windowed Mcast's groups, guarantee and data to ``accept``."""

    __slots__ = ("accept", "memo")

    def __init__(
        self, accept: Callable[[tuple[bytes, ...] | None, Guarantee, bytes], bool]
    ) -> None:
        self.accept = accept
        self.memo = _GroupListMemo()

    def take(
        self, buf: bytearray, view: memoryview, snap: bytes | None, start: int, end: int
    ) -> bool:
        head = start + _MCAST_SIZE
        if head > end:
            raise FrameError("frame ends inside Mcast")
        flags = buf[start]
        g = buf[start + 1]
        if flags & ~_MCAST_JOINED:
            raise FrameError(f"unknown Mcast flags {flags:#x}")
        groups, at = self.memo.at(buf, head, end)
        if flags:
            _check(not groups, "Mcast to the joined groups names groups")
        guarantee = _GUARANTEE_OF.get(g)
        if guarantee is None:
            raise FrameError(f"unknown guarantee {g}")
        if end - at > DATA_MAX:
            raise FrameError(f"data of {end - at} bytes; the limit is {DATA_MAX}")
        data = snap[at:end] if snap is not None else bytes(view[at:end])
        return self.accept(None if flags else groups, guarantee, data)


class _DeliverySink(_FrameSink):
    """``take_deliveries``: each DeliverNote's delivery to ``append``."""

    __slots__ = ("append", "memo")

    def __init__(self, append: Callable[[Delivery], object]) -> None:
        self.append = append
        self.memo = _GroupListMemo()

    def take(
        self, buf: bytearray, view: memoryview, snap: bytes | None, start: int, end: int
    ) -> bool:
        head = start + _DELIVER_SIZE
        if head > end:
            raise FrameError("frame ends inside DeliverNote")
        fields: tuple[int, int, int] = _DELIVER_UNPACK(buf, start)  # typed: C integers
        nodeid, pid, g = fields
        guarantee = _GUARANTEE_OF.get(g)
        if guarantee is None:
            raise FrameError(f"unknown guarantee {g}")
        groups, at = self.memo.at(buf, head, end)
        if end - at > DATA_MAX:
            raise FrameError(f"data of {end - at} bytes; the limit is {DATA_MAX}")
        data = snap[at:end] if snap is not None else bytes(view[at:end])
        self.append(make_delivery(nodeid, pid, groups, data, guarantee))
        return True


def _data_at(buf: bytearray, pos: int, end: int) -> bytes:
    if end - pos > DATA_MAX:
        raise FrameError(f"data of {end - pos} bytes; the limit is {DATA_MAX}")
    with memoryview(buf) as view:
        return bytes(view[pos:end])


def _decode_mcast(buf: bytearray, start: int, end: int, rid: int) -> Mcast:
    """An Mcast's body ``buf[start:end]``, checked as ``_decode_body`` checks it."""
    _check(start + _MCAST.size <= end, "frame ends inside Mcast")
    flags, g = _MCAST.unpack_from(buf, start)
    if flags & ~_MCAST_JOINED:
        raise FrameError(f"unknown Mcast flags {flags:#x}")
    groups, pos = _groups_at(buf, start + _MCAST.size, end)
    if flags:
        _check(not groups, "Mcast to the joined groups names groups")
    guarantee = _guarantee(g)
    return Mcast(rid, None if flags else groups, guarantee, _data_at(buf, pos, end))


def _decode_deliver(buf: bytearray, start: int, end: int, rid: int) -> DeliverNote:
    """A DeliverNote's body ``buf[start:end]``, checked as ``_decode_body`` checks it."""
    if rid != 0:
        raise FrameError(f"notification DeliverNote with request id {rid}")
    _check(start + _DELIVER.size <= end, "frame ends inside DeliverNote")
    nodeid, pid, g = _DELIVER.unpack_from(buf, start)
    guarantee = _guarantee(g)
    groups, pos = _groups_at(buf, start + _DELIVER.size, end)
    data = _data_at(buf, pos, end)
    return DeliverNote(make_delivery(nodeid, pid, groups, data, guarantee), rid)


def decode(data: bytes | bytearray | memoryview) -> Frame:
    """Exactly one whole frame; FrameError otherwise."""
    dec = FrameDecoder()
    dec.feed(data)
    frames = list(dec)
    _check(len(frames) == 1 and dec.buffered == 0, f"{len(frames)} frames, not exactly one")
    return frames[0]


class FrameDecoder:
    """Bytes in, whole frames out: ``feed(data)`` then iterate; bounded by one ``FRAME_MAX``.

    Frames are read at an offset into the buffer, and what they used is cut off once per
    ``feed``, so a read holding many small frames costs one pass, not one move per frame.
    """

    def __init__(self, frame_max: int = FRAME_MAX) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._frame_max = frame_max
        self._broken: FrameError | None = None
        #: A copy of the buffer for ``_take_hot`` to slice data from, kept while a read
        #: interleaves other frames (``feed`` changes the buffer: it is dropped there).
        self._snap: bytes | None = None

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held back (nonzero at EOF means "cut mid-frame")."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._broken is not None:
            raise self._broken
        buf = self._buf
        self._snap = None
        if self._pos:
            del buf[: self._pos]
            self._pos = 0
        buf += data
        if len(buf) >= 4:
            self._check_length(_U32.unpack_from(buf)[0])

    def _check_length(self, length: int) -> None:
        if length > self._frame_max:
            self._fail(
                FrameError(
                    f"frame of {length} bytes announced; the limit is {self._frame_max}",
                    oversize=True,
                )
            )
        if length < HEADER.size - 4:
            self._fail(FrameError(f"frame of {length} bytes is shorter than its header"))

    def _fail(self, exc: FrameError) -> None:
        self._broken = exc
        self._buf.clear()
        self._snap = None
        self._pos = 0
        raise exc

    def __iter__(self) -> Iterator[Frame]:
        return self

    def take_mcasts(
        self, accept: Callable[[tuple[bytes, ...] | None, Guarantee, bytes], bool]
    ) -> Frame | None:
        """Decode whole frames, handing each windowed Mcast (request id 0) to
        ``accept(groups, guarantee, data)`` (no frame object; ``groups`` None: the joined
        groups); stop at the first frame of another kind and return it, or return None when
        no whole frame is left or ``accept`` returned False (the frame it refused is taken).
        The same checks and errors as iterating.

        The executive's hot path: nearly every frame a sending client writes is one of these."""
        return self._take_hot(4, _McastSink(accept))

    def take_deliveries(self, append: Callable[[Delivery], object]) -> Frame | None:
        """Decode whole frames, handing each DeliverNote's delivery to ``append`` (no note
        object); stop at the first frame of another kind and return it, or return None when no
        whole frame is left. The same checks and errors as iterating.

        A client's hot path: nearly every frame it reads is a delivery, and one call per read
        instead of one per frame takes a third off its decoding cost."""
        return self._take_hot(128, _DeliverySink(append))

    def _take_hot(self, kind: int, sink: _FrameSink) -> Frame | None:
        """The loop of ``take_mcasts`` and ``take_deliveries``: each whole frame of ``kind``
        with request id 0 goes to ``sink.take(buffer, view, snapshot, body start, end)``,
        which returns False to stop (None is returned, that frame consumed); any other frame is
        decoded as iterating would (a DeliverNote with a request id is refused there) and
        returned; None when no whole frame is left."""
        if self._broken is not None:
            raise self._broken
        buf = self._buf
        size = len(buf)
        pos = self._pos
        unpack_header = HEADER.unpack_from
        header_size = HEADER.size
        frame_max = self._frame_max
        shortest = header_size - 4
        view = memoryview(buf)  # released before returning: feed() resizes the buffer
        # Message data is sliced from one copy of a buffer of at most SNAPSHOT_MAX bytes,
        # taken at its first whole frame: a bytes slice costs a third of a memoryview's
        # (an object the garbage collector tracks) and its copy. A larger buffer (a large
        # message) is sliced through the view, copied once. The copy is kept while this read
        # returns other frames in between (one copy per read, not one per run of frames),
        # and dropped once the read is done, so an idle connection holds none.
        snap = self._snap
        snapshot = size <= _SNAPSHOT_MAX
        try:
            while size - pos >= header_size:
                # Typed: compiled, the compares below are on C integers, not objects.
                head: tuple[int, int, int] = unpack_header(buf, pos)
                length, frame_kind, rid = head
                if length > frame_max or length < shortest:
                    view.release()  # _fail() clears the buffer: no view may be left on it
                    self._pos = pos
                    self._check_length(length)
                end = pos + 4 + length
                if size < end:
                    break
                if frame_kind != kind or rid != 0:
                    self._pos = pos
                    view.release()
                    return next(self)
                start = pos + header_size
                pos = end
                self._pos = pos  # ``take`` may look at the decoder (a refusal ends the read)
                if snapshot and snap is None:
                    snap = self._snap = bytes(buf)
                if not sink.take(buf, view, snap, start, end):
                    break
        except FrameError as exc:
            view.release()
            self._fail(exc)
        view.release()
        self._pos = pos
        self._snap = None
        if size - pos >= 4:
            self._check_length(_U32.unpack_from(buf, pos)[0])
        return None

    def __next__(self) -> Frame:
        if self._broken is not None:
            raise self._broken
        buf = self._buf
        pos = self._pos
        if len(buf) - pos < HEADER.size:
            raise StopIteration
        length, kind, rid = HEADER.unpack_from(buf, pos)
        self._check_length(length)
        end = pos + 4 + length
        if len(buf) < end:
            raise StopIteration
        frame: Frame
        try:
            if kind == 128:  # DeliverNote, most frames a client reads: its data copied once
                frame = _decode_deliver(buf, pos + HEADER.size, end, rid)
            elif kind == 4:  # Mcast, most frames the executive reads: the same
                frame = _decode_mcast(buf, pos + HEADER.size, end, rid)
            else:
                # One copy of the body; the view is released before the buffer can be resized.
                with memoryview(buf) as view:
                    body = memoryview(bytes(view[pos + HEADER.size : end]))
                frame = _decode_body(kind, rid, _Reader(body))
        except FrameError as exc:
            self._fail(exc)
            raise  # unreachable: _fail raises
        self._pos = end
        if len(buf) - end >= 4:
            self._check_length(_U32.unpack_from(buf, end)[0])
        return frame
