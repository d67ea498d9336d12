"""The IPC codec attacked three ways: round trip, truncation at every offset, garbage."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evs.ipc import codec
from evs.ipc.codec import FRAME_MAX, FrameDecoder, FrameError, decode, encode
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
    Welcome,
)
from evs.types import ConfigChange, Delivery, Guarantee, Membership, RingId

u32 = st.integers(0, 2**32 - 1)
rid = st.integers(1, 2**32 - 1)
u16 = st.integers(0, 2**16 - 1)
name = st.binary(min_size=1, max_size=codec.GROUP_NAME_MAX)
groups = st.lists(name, max_size=8).map(tuple)
data = st.binary(max_size=2048)
guarantee = st.sampled_from(Guarantee)
nodes = st.lists(u32, max_size=16).map(tuple)
ring = st.builds(RingId, st.integers(0, 2**64 - 1), u32)
text = st.text(max_size=200)

frames: st.SearchStrategy[Frame] = st.one_of(
    st.builds(Hello, rid, u16, u32),
    st.builds(Join, rid, groups),
    st.builds(Leave, rid, groups),
    st.builds(Mcast, st.integers(0, 2**32 - 1), st.none() | groups, guarantee, data),
    st.builds(MembershipGet, rid),
    st.builds(StatusGet, rid),
    st.builds(Welcome, rid, u16, u32, u32, u32, u16, u16, u32),
    st.builds(Ok, rid),
    st.builds(Error, st.integers(0, 2**32 - 1), st.sampled_from(ErrorCode), text),
    st.builds(MembershipReply, rid, st.builds(Membership, u32, ring, nodes)),
    st.builds(StatusReply, rid, text),
    st.builds(Rekey, rid, st.booleans(), st.binary(max_size=4096)),
    st.builds(RekeyReply, rid, text),
    st.builds(DeliverNote, st.builds(Delivery, u32, u32, groups, data, guarantee)),
    st.builds(ConfChgNote, st.builds(ConfigChange, ring, st.booleans(), nodes, nodes, nodes)),
    st.builds(RoomAgain),
    st.builds(SendCredit, u32),
    st.builds(Goodbye, text),
)


@given(frames)
def test_round_trip(frame: Frame) -> None:
    assert decode(encode(frame)) == frame


@given(st.lists(frames, min_size=1, max_size=5), st.integers(1, 64))
def test_stream_in_any_pieces(batch: list[Frame], step: int) -> None:
    """Frames cut into arbitrary pieces come out whole and in order."""
    wire = b"".join(encode(f) for f in batch)
    dec = FrameDecoder()
    out: list[Frame] = []
    for i in range(0, len(wire), step):
        dec.feed(wire[i : i + step])
        out.extend(dec)
    assert out == batch
    assert dec.buffered == 0


def fused(dec: FrameDecoder) -> list[Frame]:
    """What ``take_deliveries`` gives, deliveries wrapped back into notes for comparison."""
    out: list[Frame] = []
    while (frame := dec.take_deliveries(lambda d: out.append(DeliverNote(d)))) is not None:
        out.append(frame)
    return out


def fused_mcasts(dec: FrameDecoder) -> list[Frame]:
    """What ``take_mcasts`` gives, windowed sends wrapped back into Mcast frames."""
    out: list[Frame] = []

    def accept(groups: tuple[bytes, ...] | None, guarantee: Guarantee, data: bytes) -> bool:
        out.append(Mcast(0, groups, guarantee, data))
        return True

    while (frame := dec.take_mcasts(accept)) is not None:
        out.append(frame)
    return out


def read_in_pieces(
    read: Callable[[FrameDecoder], list[Frame]], batch: list[Frame], step: int
) -> list[Frame]:
    """``batch`` encoded and fed to ``read`` ``step`` bytes at a time; all of it must be taken."""
    wire = b"".join(encode(f) for f in batch)
    dec = FrameDecoder()
    out: list[Frame] = []
    for i in range(0, len(wire), step):
        dec.feed(wire[i : i + step])
        out.extend(read(dec))
    assert dec.buffered == 0
    return out


#: The fused paths: the client's (deliveries) and the executive's (windowed sends).
FUSED = pytest.mark.parametrize("read", [fused, fused_mcasts], ids=["deliveries", "mcasts"])


@FUSED
@given(st.lists(frames, min_size=1, max_size=8), st.integers(1, 64))
def test_fused_paths_read_the_stream_as_iteration_does(
    read: Callable[[FrameDecoder], list[Frame]], batch: list[Frame], step: int
) -> None:
    """The same frames in the same order, in any pieces."""
    assert read_in_pieces(read, batch, step) == batch


@FUSED
@given(st.binary(max_size=300))
def test_fused_paths_on_garbage_agree_with_iteration(
    read: Callable[[FrameDecoder], list[Frame]], junk: bytes
) -> None:
    def run(read: Callable[[FrameDecoder], list[Frame]]) -> tuple[list[Frame], str | None]:
        dec = FrameDecoder()
        got: list[Frame] = []
        try:
            dec.feed(junk)
            got = read(dec)
        except FrameError as exc:
            return got, exc.reason
        return got, None

    assert run(read) == run(list)


#: Group lists alike in their bytes: a name that is another's prefix, the same names in
#: another order or count, a long one; None (an Mcast to the joined groups) and ().
_ALIKE: list[tuple[bytes, ...] | None] = [
    (b"a",),
    (b"ab",),
    (b"a", b"b"),
    (b"b", b"a"),
    (b"a", b"a", b"a"),
    (b"x" * codec.GROUP_NAME_MAX,),
    (),
    None,
]


def _hot_frame(read: Callable[[FrameDecoder], list[Frame]], g: tuple[bytes, ...] | None) -> Frame:
    if read is fused:
        return DeliverNote(Delivery(1, 2, g or (), b"d", Guarantee.AGREED))
    return Mcast(0, g, Guarantee.SAFE, b"d")


@FUSED
@given(st.lists(st.sampled_from(_ALIKE), min_size=1, max_size=12), st.integers(1, 64))
def test_fused_paths_read_repeated_group_lists_as_iteration_does(
    read: Callable[[FrameDecoder], list[Frame]],
    lists: list[tuple[bytes, ...] | None],
    step: int,
) -> None:
    """The fused paths remember the last group list they read (messages name the same one
    after another): every frame still gets its own list, whatever came before it."""
    batch = [_hot_frame(read, g) for g in lists]
    assert read_in_pieces(read, batch, step) == batch


@FUSED
@pytest.mark.parametrize("cut", [1, 2, 3])
def test_a_frame_cut_inside_a_remembered_group_list_is_refused_as_iteration_does(
    read: Callable[[FrameDecoder], list[Frame]], cut: int
) -> None:
    """The second frame names the same list as the first, but its length ends ``cut`` bytes
    into that list, and the rest of the list's bytes follow: bytes beyond the frame's end
    must not match the remembered list."""
    first = encode(_hot_frame(read, (b"abc",)))
    second = encode(_hot_frame(read, (b"abc",)))
    fields = 9 if read is fused else 2  # DeliverNote: nodeid, pid, guarantee; Mcast: 2 bytes
    length = codec.HEADER.size + fields + cut - 4
    cut_frame = codec.HEADER.pack(length, second[4], 0) + second[codec.HEADER.size : 4 + length]
    rest = second[4 + length :]  # the rest of the list follows: it is not the frame's

    def run(read: Callable[[FrameDecoder], list[Frame]]) -> tuple[list[Frame], str | None]:
        dec = FrameDecoder()
        got: list[Frame] = []
        try:
            dec.feed(first + cut_frame + rest)
            got = read(dec)
        except FrameError as exc:
            return got, exc.reason
        return got, None

    got, reason = run(read)
    assert reason is not None
    assert "group" in reason
    assert (got, reason) == run(list)


@pytest.mark.parametrize("announced", [FRAME_MAX + 1, 3])
def test_fused_paths_refuse_a_bad_length_after_a_good_frame(announced: int) -> None:
    """A bad length announced in mid-read is a FrameError, and the stream stays broken (the
    fuzzers found it once as a BufferError: the buffer was cleared under a live view)."""
    bad = codec.HEADER.pack(announced, 128, 0)
    note = encode(DeliverNote(Delivery(1, 2, (b"g",), b"ok", Guarantee.AGREED)))
    send = encode(Mcast(0, None, Guarantee.AGREED, b"ok"))
    taken: list[Delivery] = []
    dec = FrameDecoder()
    dec.feed(note + bad)
    with pytest.raises(FrameError):
        fused_all(dec, taken)
    assert [d.data for d in taken] == [b"ok"]
    assert dec.buffered == 0
    with pytest.raises(FrameError):
        dec.feed(b"more")
    sends: list[bytes] = []
    dec = FrameDecoder()
    dec.feed(send + bad)
    with pytest.raises(FrameError):
        mcasts_all(dec, sends)
    assert sends == [b"ok"]
    assert dec.buffered == 0


def test_a_refused_windowed_send_ends_the_call_after_it() -> None:
    """``accept`` returning False stops at that frame; the next call starts after it."""
    sends: list[Frame] = [Mcast(0, None, Guarantee.AGREED, bytes([i])) for i in range(4)]
    dec = FrameDecoder()
    dec.feed(b"".join(encode(f) for f in [*sends, Ok(9)]))
    seen: list[bytes] = []

    def refuse_second(groups: tuple[bytes, ...] | None, g: Guarantee, data: bytes) -> bool:
        seen.append(data)
        return data != b"\x01"

    assert dec.take_mcasts(refuse_second) is None
    assert seen == [b"\x00", b"\x01"]
    assert dec.take_mcasts(refuse_second) == Ok(9)
    assert seen == [b"\x00", b"\x01", b"\x02", b"\x03"]
    assert dec.take_mcasts(refuse_second) is None
    assert dec.buffered == 0


SAMPLES: list[Frame] = [
    Hello(1, 1, 42),
    Join(2, (b"a", b"bb")),
    Mcast(3, None, Guarantee.SAFE, b"hello"),
    Mcast(4, (b"g",), Guarantee.AGREED, b""),
    Welcome(1, 1, 7, 3, 1000, 64, 32, 1 << 20),
    Mcast(0, None, Guarantee.AGREED, b"windowed"),
    SendCredit(1088),
    Error(5, ErrorCode.TRY_AGAIN, "queue full"),
    MembershipReply(6, Membership(1, RingId(4, 1), (1, 2, 3))),
    DeliverNote(Delivery(1, 99, (b"g",), b"payload", Guarantee.AGREED)),
    ConfChgNote(ConfigChange(RingId(8, 2), True, (1, 2), (3,), ())),
    Goodbye("bye"),
]


@pytest.mark.parametrize("frame", SAMPLES, ids=lambda f: type(f).__name__)
def test_truncation_at_every_offset(frame: Frame) -> None:
    """A cut frame is either still incomplete (no frame yet) or refused: never half-decoded."""
    wire = encode(frame)
    for cut in range(len(wire)):
        dec = FrameDecoder()
        dec.feed(wire[:cut])
        assert list(dec) == []
        assert dec.buffered == cut
        with pytest.raises(FrameError):
            decode(wire[:cut])


@pytest.mark.parametrize("frame", SAMPLES, ids=lambda f: type(f).__name__)
def test_body_shortened_in_its_length(frame: Frame) -> None:
    """A frame whose announced length cuts its body is refused, not misread."""
    wire = encode(frame)
    for cut in range(codec.HEADER.size, len(wire)):
        short = struct.pack("!I", cut - 4) + wire[4:cut]
        try:
            got = decode(short)
        except FrameError:
            continue
        # Only text or data that runs to the end may legally shrink.
        assert type(got) is type(frame)


@given(st.binary(max_size=300))
def test_garbage_is_a_frame_or_a_frame_error(junk: bytes) -> None:
    dec = FrameDecoder()
    error: FrameError | None = None
    try:
        dec.feed(junk)
        list(dec)
    except FrameError as exc:
        error = exc
    if error is not None:
        assert error.reason
        with pytest.raises(FrameError):
            dec.feed(b"more")  # a broken stream stays broken


@given(frames, st.integers(0, 10_000), st.integers(0, 255))
def test_bit_flip_is_a_frame_or_a_frame_error(frame: Frame, pos: int, mask: int) -> None:
    wire = bytearray(encode(frame))
    wire[pos % len(wire)] ^= mask
    with contextlib.suppress(FrameError):
        decode(wire)


def test_oversize_length_refused_on_its_header() -> None:
    dec = FrameDecoder()
    with pytest.raises(FrameError) as info:
        dec.feed(struct.pack("!I", FRAME_MAX + 1))
    assert info.value.oversize
    assert str(FRAME_MAX) in info.value.reason
    assert dec.buffered == 0


def test_maximal_frame_passes() -> None:
    frame = Mcast(1, (b"g" * 255,) * 255, Guarantee.AGREED, b"x" * codec.DATA_MAX)
    wire = encode(frame)
    assert len(wire) - 4 <= FRAME_MAX
    assert decode(wire) == frame


hot_frames: st.SearchStrategy[DeliverNote | Mcast] = st.one_of(
    st.builds(Mcast, st.integers(0, 2**32 - 1), st.none() | groups, guarantee, data),
    st.builds(DeliverNote, st.builds(Delivery, u32, u32, groups, data, guarantee)),
)


@given(hot_frames)
def test_hot_frames_encode_as_the_general_layout(frame: DeliverNote | Mcast) -> None:
    """DeliverNote and Mcast have a fast encoder and decoder: the same bytes, the same frame."""
    body = codec._body(frame)
    kind = codec._KINDS[type(frame)]
    general = codec.HEADER.pack(codec.HEADER.size - 4 + len(body), kind, frame.request_id) + body
    assert encode(frame) == general
    assert decode(general) == frame


@given(st.none() | groups, guarantee, data)
def test_encode_mcast_is_encode_of_the_frame(
    names: tuple[bytes, ...] | None, g: Guarantee, body: bytes
) -> None:
    """The client's send path skips the frame object, not a byte of the layout."""
    assert codec.encode_mcast(names, g, body) == encode(Mcast(0, names, g, body))


def test_encode_mcast_refuses_what_encode_does() -> None:
    with pytest.raises(FrameError, match="limit"):
        codec.encode_mcast(None, Guarantee.AGREED, b"x" * (codec.DATA_MAX + 1))
    with pytest.raises(FrameError):
        codec.encode_mcast((b"",), Guarantee.AGREED, b"")
    with pytest.raises(FrameError):
        codec.encode_mcast((b"g",), 9, b"")


def test_encoder_refuses_what_decoder_would() -> None:
    with pytest.raises(FrameError, match="limit"):
        encode(Mcast(1, None, Guarantee.AGREED, b"x" * (codec.DATA_MAX + 1)))
    big = Delivery(1, 2, (b"g",), b"x" * (codec.DATA_MAX + 1), Guarantee.AGREED)
    with pytest.raises(FrameError, match="limit"):
        encode(DeliverNote(big))
    for bad in (
        Delivery(2**32, 2, (b"g",), b"", Guarantee.AGREED),
        Delivery(1, -1, (b"g",), b"", Guarantee.AGREED),
        Delivery(1, 2, (b"",), b"", Guarantee.AGREED),
        Delivery(1, 2, [b"g"], b"", Guarantee.AGREED),  # type: ignore[arg-type]
        Delivery(1, 2, (b"g",), b"", 9),  # type: ignore[arg-type]
    ):
        with pytest.raises(FrameError):
            encode(DeliverNote(bad))
    with pytest.raises(FrameError, match="names are"):
        encode(Mcast(0, (b"x" * 256,), Guarantee.AGREED, b""))
    with pytest.raises(FrameError, match="names are"):
        encode(Join(1, (b"",)))
    with pytest.raises(FrameError, match="request id"):
        encode(Ok(-1))


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (struct.pack("!IBI", 5, 99, 1), "unknown frame kind 99"),
        (struct.pack("!IBI", 3, 65, 1)[:7], "shorter than its header"),
        (struct.pack("!IBI", 6, 65, 1) + b"x", "stray bytes"),
        (struct.pack("!IBI", 5, 130, 7), "request id 7"),
        (struct.pack("!IBIH", 7, 66, 1, 77), "unknown error code 77"),
        (struct.pack("!IBIBBB", 8, 4, 1, 0, 9, 0), "unknown guarantee 9"),
        (struct.pack("!IBIBBB", 8, 4, 1, 4, 2, 0), "unknown Mcast flags"),
        (struct.pack("!IBIBB", 7, 2, 1, 1, 0), "empty group name"),
        (struct.pack("!IBI", 6, 68, 1) + b"\xff", "not UTF-8"),
        (struct.pack("!IBIIIBBB", 16, 128, 0, 1, 2, 2, 1, 0), "empty group name"),
        (struct.pack("!IBIIIBBB", 16, 128, 0, 1, 2, 2, 1, 5), "ends inside group name"),
        (struct.pack("!IBIIIBB", 15, 128, 0, 1, 2, 7, 0), "unknown guarantee 7"),
        (struct.pack("!IBIIIBB", 15, 128, 3, 1, 2, 2, 0), "request id 3"),
        (struct.pack("!IBIII", 13, 128, 0, 1, 2), "ends inside DeliverNote"),
    ],
)
def test_malformed_frames_say_why(wire: bytes, reason: str) -> None:
    def frames() -> list[Frame]:
        dec = FrameDecoder()
        dec.feed(wire)
        return list(dec)

    with pytest.raises(FrameError, match=reason):
        frames()
    # The same words from the client's fused path, after a good delivery in the same read.
    good = encode(DeliverNote(Delivery(1, 2, (b"g",), b"ok", Guarantee.AGREED)))
    dec = FrameDecoder()
    dec.feed(good + wire)
    taken: list[Delivery] = []
    with pytest.raises(FrameError, match=reason):
        fused_all(dec, taken)
    assert [d.data for d in taken] == [b"ok"]
    with pytest.raises(FrameError, match=reason):
        dec.take_deliveries(taken.append)  # a broken stream stays broken
    # And from the executive's, after a good windowed send in the same read.
    sends: list[bytes] = []
    dec = FrameDecoder()
    dec.feed(encode(Mcast(0, None, Guarantee.AGREED, b"ok")) + wire)
    with pytest.raises(FrameError, match=reason):
        mcasts_all(dec, sends)
    assert sends == [b"ok"]


def mcasts_all(dec: FrameDecoder, sends: list[bytes]) -> None:
    def accept(groups: tuple[bytes, ...] | None, g: Guarantee, data: bytes) -> bool:
        sends.append(data)
        return True

    while dec.take_mcasts(accept) is not None:
        pass


def fused_all(dec: FrameDecoder, taken: list[Delivery]) -> None:
    while dec.take_deliveries(taken.append) is not None:
        pass


def test_fast_made_deliveries_are_ordinary_frozen_deliveries() -> None:
    """The decoders build Delivery without its __init__ (make_delivery): the result must equal,
    hash and refuse assignment exactly like one built the public way."""
    import dataclasses  # noqa: PLC0415

    from evs.types import make_delivery  # noqa: PLC0415

    public = Delivery(3, 77, (b"a", b"bb"), b"payload", Guarantee.SAFE)
    fast = make_delivery(3, 77, (b"a", b"bb"), b"payload", Guarantee.SAFE)
    assert fast == public
    assert hash(fast) == hash(public)
    assert repr(fast) == repr(public)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.data = b"other"  # type: ignore[misc]
    decoded = decode(codec.encode_delivery(public))
    assert isinstance(decoded, DeliverNote)
    assert decoded.delivery == public
    assert codec.encode_delivery(public) == encode(DeliverNote(public))


def test_encode_delivery_refuses_what_encode_refuses() -> None:
    bad = Delivery(1, 2, (b"g",), bytes(codec.DATA_MAX + 1), Guarantee.AGREED)
    with pytest.raises(FrameError, match="limit"):
        codec.encode_delivery(bad)
    with pytest.raises(FrameError, match="limit"):
        encode(DeliverNote(bad))
    # With the group list already encoded (the inline path), the fields are still checked.
    codec.encode_delivery(Delivery(1, 2, (b"g",), b"", Guarantee.AGREED))
    for wrong in (
        Delivery(2**32, 2, (b"g",), b"", Guarantee.AGREED),
        Delivery(1, -1, (b"g",), b"", Guarantee.AGREED),
        Delivery(1, 2, (b"g",), b"", 9),  # type: ignore[arg-type]
        Delivery(1, 2, [b"g"], b"", Guarantee.AGREED),  # type: ignore[arg-type]
    ):
        with pytest.raises(FrameError):
            codec.encode_delivery(wrong)
        with pytest.raises(FrameError):
            encode(DeliverNote(wrong))


def test_encode_delivery_fields_never_reuses_another_deliverys_prefix() -> None:
    """Runs of deliveries share one frame prefix; any field that changes makes a new one."""
    groups, other = (b"g",), (b"g", b"h")
    base = (7, 70, groups, b"x" * 10, Guarantee.AGREED)
    changes = [
        base,
        base,  # the same fields again: the remembered prefix
        (8, 70, groups, b"x" * 10, Guarantee.AGREED),
        (8, 71, groups, b"x" * 10, Guarantee.AGREED),
        (8, 71, groups, b"y" * 10, Guarantee.AGREED),  # other bytes, the same size
        (8, 71, groups, b"x" * 11, Guarantee.AGREED),
        (8, 71, groups, b"x" * 11, Guarantee.SAFE),
        (8, 71, other, b"x" * 11, Guarantee.SAFE),
        (8, 71, (b"g", b"h"), b"x" * 11, Guarantee.SAFE),  # an equal list, another tuple
        (8, 71, groups, b"", Guarantee.SAFE),
        base,
    ]
    for fields in changes:
        want = encode(DeliverNote(Delivery(*fields)))
        assert codec.encode_delivery_fields(fields) == want, fields
    # A refused delivery leaves no prefix behind for the next one to take.
    with pytest.raises(FrameError):
        codec.encode_delivery_fields((2**32, 70, groups, b"x" * 10, Guarantee.AGREED))
    assert codec.encode_delivery_fields(base) == encode(DeliverNote(Delivery(*base)))


def test_encode_mcast_never_reuses_another_sends_prefix() -> None:
    """A sender's run of sends shares one frame prefix; any field that changes makes a new one."""
    groups, other = (b"g",), (b"g", b"h")
    changes: list[tuple[tuple[bytes, ...] | None, Guarantee, bytes]] = [
        (groups, Guarantee.AGREED, b"x" * 10),
        (groups, Guarantee.AGREED, b"x" * 10),  # the same fields again: the remembered prefix
        (groups, Guarantee.AGREED, b"y" * 10),  # other bytes, the same size
        (groups, Guarantee.AGREED, b"x" * 11),
        (groups, Guarantee.SAFE, b"x" * 11),
        (other, Guarantee.SAFE, b"x" * 11),
        ((b"g", b"h"), Guarantee.SAFE, b"x" * 11),  # an equal list, another tuple
        (None, Guarantee.SAFE, b"x" * 11),  # to the joined groups
        (None, Guarantee.SAFE, b""),
        (groups, Guarantee.AGREED, b"x" * 10),
    ]
    for named, g, data in changes:
        want = encode(Mcast(0, named, g, data))
        assert codec.encode_mcast(named, g, data) == want, (named, g, data)
    with pytest.raises(FrameError):
        codec.encode_mcast(groups, 9, b"x" * 10)
    assert codec.encode_mcast(groups, 2, b"x" * 10) == encode(
        Mcast(0, groups, Guarantee.AGREED, b"x" * 10)
    )


@FUSED
@pytest.mark.parametrize("step", [1 << 16, 1 << 22])
def test_fused_reads_slice_small_and_large_messages_alike(
    read: Callable[[FrameDecoder], list[Frame]], step: int
) -> None:
    """Data comes from a copy of a small buffer, and through a view of one past
    _SNAPSHOT_MAX (a large message): the same bytes either way, in order."""
    large = bytes(range(256)) * ((codec._SNAPSHOT_MAX + 1000) // 256)
    if read is fused:
        batch: list[Frame] = [
            DeliverNote(Delivery(n, 7, (b"g",), data, Guarantee.AGREED))
            for n, data in enumerate([b"a" * 64, large, b"b" * 64, b"c" * 100, large[:-1]])
        ]
    else:
        batch = [
            Mcast(0, (b"g",), Guarantee.SAFE, data)
            for data in [b"a" * 64, large, b"b" * 64, b"c" * 100, large[:-1]]
        ]
    assert read_in_pieces(read, batch, step) == batch


def snapshot_of(dec: FrameDecoder) -> bytes | None:
    """The decoder's data snapshot (read through a call: each read may have changed it)."""
    return dec._snap


def test_a_read_copies_its_buffer_once_and_keeps_no_copy_after() -> None:
    """The data snapshot of the hot loop outlives the other frames a read holds (one copy per
    read), and not the read itself (an idle connection holds no copy of its last read)."""
    note = DeliverNote(Delivery(3, 7, (b"g",), b"d" * 64, Guarantee.AGREED))
    credit = encode(SendCredit(64))
    wire = encode(note) + credit + encode(note) + credit + encode(note) * 2
    dec = FrameDecoder()
    dec.feed(wire)
    taken: list[Delivery] = []
    assert dec.take_deliveries(taken.append) == SendCredit(64)
    kept = snapshot_of(dec)
    assert kept is not None
    assert dec.take_deliveries(taken.append) == SendCredit(64)
    assert snapshot_of(dec) is kept  # the same copy, not a second one
    assert dec.take_deliveries(taken.append) is None
    assert taken == [note.delivery] * 4
    assert snapshot_of(dec) is None
    dec.feed(encode(note))  # a new read: a new copy, dropped again at its end
    assert dec.take_deliveries(taken.append) is None
    assert snapshot_of(dec) is None
    assert len(taken) == 5
