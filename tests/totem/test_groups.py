"""Example tests of packing, fragmentation and reassembly (evs.totem.groups)."""

from __future__ import annotations

import struct
import tracemalloc

import pytest

from evs.errors import InvalidArgument, TryAgain
from evs.totem.config import ConfigError, TotemConfig
from evs.totem.groups import (
    FORMAT_VERSION,
    HEADER_SIZE,
    LARGE_PER_PACKET,
    Packer,
    Unpacker,
    max_packets_for,
    message_size,
)
from evs.totem.processor import Processor
from evs.types import Guarantee

AGREED = Guarantee.AGREED
SAFE = Guarantee.SAFE
MiB = 1 << 20
PAYLOAD = 1400


def header(packet: bytes) -> tuple[int, int, int, int, int]:
    """(version, flags, count, continues, fragmented) of a packet."""
    return struct.unpack_from("!BBHBB", packet)


def drain(packer: Packer, limit: int | None = None) -> list[tuple[bytes, Guarantee, list[int]]]:
    packets: list[tuple[bytes, Guarantee, list[int]]] = []
    while limit is None or len(packets) < limit:
        packet = packer.next_packet()
        if packet is None:
            break
        packets.append(packet)
    return packets


def feed_all(
    unpacker: Unpacker, packets: list[tuple[bytes, Guarantee, list[int]]], originator: int = 1
) -> list[tuple[tuple[bytes, ...], bytes]]:
    out = []
    for payload, guarantee, _ in packets:
        out += unpacker.feed(originator, payload, guarantee)
    return out


def pattern(size: int, seed: int = 0) -> bytes:
    """Recognisable data, so a splice of two messages cannot look like either."""
    block = bytes((seed * 31 + i) & 0xFF for i in range(256))
    return (block * (size // 256 + 1))[:size]


# --- packing -------------------------------------------------------------------------------


def test_ten_small_messages_share_one_packet() -> None:
    packer = Packer(PAYLOAD)
    numbers = [packer.submit([b"g"], pattern(100, i), AGREED) for i in range(10)]
    assert numbers == list(range(10))
    assert packer.backlog_packets() == 1
    packets = drain(packer)
    assert len(packets) == 1
    payload, guarantee, completed = packets[0]
    assert guarantee is AGREED
    assert completed == numbers
    assert header(payload) == (FORMAT_VERSION, 0, 10, 0, 0)
    assert feed_all(Unpacker(), packets) == [((b"g",), pattern(100, i)) for i in range(10)]
    assert packer.queued_messages() == 0
    assert packer.queued_bytes() == 0
    assert packer.backlog_packets() == 0


def test_empty_queue_gives_no_packet() -> None:
    assert Packer(PAYLOAD).next_packet() is None


def test_packet_is_filled_then_the_next_message_is_fragmented() -> None:
    packer = Packer(PAYLOAD)
    for i in range(20):
        packer.submit([b"g"], pattern(100, i), AGREED)
    packets = drain(packer)
    assert [len(p) for p, _, _ in packets] == [PAYLOAD, len(packets[1][0])]
    first, second = header(packets[0][0]), header(packets[1][0])
    assert first[3:] == (0, 1)  # fresh start, last item continues as fragment 1
    assert second[3:] == (1, 0)  # continues fragment 1, complete
    assert packets[0][2] == list(range(13))  # 13 x (2 + 104) = 1378; the 14th is split
    assert packets[1][2] == list(range(13, 20))
    assert feed_all(Unpacker(), packets) == [((b"g",), pattern(100, i)) for i in range(20)]


def test_fragment_ids_count_1_to_255_and_skip_0() -> None:
    packer = Packer(HEADER_SIZE + 3)  # one byte per packet
    packer.submit([b"g"], bytes(300), AGREED)
    packets = drain(packer)
    ids = [header(p)[4] for p, _, _ in packets]
    assert ids[:3] == [1, 2, 3]
    assert ids[254:257] == [255, 1, 2]
    assert ids[-1] == 0
    assert 0 not in ids[:-1]
    assert [header(p)[3] for p, _, _ in packets[1:]] == ids[:-1]
    assert feed_all(Unpacker(), packets) == [((b"g",), bytes(300))]


def test_guarantee_change_ends_a_packet() -> None:
    packer = Packer(PAYLOAD)
    order = [AGREED, AGREED, SAFE, SAFE, AGREED]
    for i, guarantee in enumerate(order):
        packer.submit([b"g"], pattern(50, i), guarantee)
    assert packer.backlog_packets() == 3
    packets = drain(packer)
    assert [(g, done) for _, g, done in packets] == [
        (AGREED, [0, 1]),
        (SAFE, [2, 3]),
        (AGREED, [4]),
    ]
    unpacker = Unpacker()
    assert [m for p, g, _ in packets for m in unpacker.feed(1, p, g)] == [
        ((b"g",), pattern(50, i)) for i in range(5)
    ]


def test_guarantee_change_after_a_fragment() -> None:
    packer = Packer(200)
    packer.submit([b"g"], pattern(500), SAFE)
    packer.submit([b"g"], pattern(10), AGREED)
    packets = drain(packer)
    assert [g for _, g, _ in packets] == [SAFE, SAFE, SAFE, AGREED]
    assert packets[2][2] == [0]
    assert packets[3][2] == [1]
    assert feed_all(Unpacker(), packets) == [((b"g",), pattern(500)), ((b"g",), pattern(10))]


def test_many_groups_and_empty_data_round_trip() -> None:
    groups = [bytes([65 + i]) * (i + 1) for i in range(32)]
    packer = Packer(PAYLOAD)
    packer.submit(groups, b"", SAFE)
    packer.submit((b"x" * 64,), b"d", AGREED)
    assert feed_all(Unpacker(), drain(packer)) == [
        (tuple(groups), b""),
        ((b"x" * 64,), b"d"),
    ]


def test_one_mebibyte_message_round_trips() -> None:
    packer = Packer(PAYLOAD)
    data = pattern(MiB, 7)
    packer.submit([b"big"], data, SAFE)
    size = message_size([b"big"], MiB)
    assert packer.queued_bytes() == size
    estimate = packer.backlog_packets()
    packets = drain(packer)
    assert len(packets) <= estimate <= len(packets) + 1
    assert len(packets) <= max_packets_for(size, PAYLOAD)
    assert all(len(p) <= PAYLOAD for p, _, _ in packets)
    assert [done for _, _, done in packets if done] == [[0]]
    assert packets[-1][2] == [0]
    assert feed_all(Unpacker(), packets) == [((b"big",), data)]


def test_message_over_the_limit_is_refused() -> None:
    packer = Packer(PAYLOAD)
    with pytest.raises(InvalidArgument, match=r"1048577 bytes exceeds the limit of 1048576"):
        packer.submit([b"g"], bytes(MiB + 1), AGREED)
    small = Packer(PAYLOAD, max_message_size=10)
    small.submit([b"g"], bytes(10), AGREED)
    with pytest.raises(InvalidArgument, match="max_message_size"):
        small.submit([b"g"], bytes(11), AGREED)
    assert packer.queued_messages() == 0
    assert small.queued_messages() == 1


def test_data_may_be_bytearray_or_memoryview() -> None:
    packer = Packer(PAYLOAD)
    packer.submit([b"g"], bytearray(b"ab"), AGREED)
    packer.submit([b"g"], memoryview(b"cd"), AGREED)
    assert feed_all(Unpacker(), drain(packer)) == [((b"g",), b"ab"), ((b"g",), b"cd")]


# --- admission and accounting ---------------------------------------------------------------


def test_try_again_at_the_bound_in_messages_whatever_their_size() -> None:
    packer = Packer(PAYLOAD, queue_messages_max=3)
    for _ in range(3):
        packer.submit([b"g"], b"x", AGREED)
    with pytest.raises(TryAgain, match="holds 3 messages, queue_messages_max=3"):
        packer.submit([b"g"], b"x", AGREED)
    packer.next_packet()  # all three leave in one packet: room again
    packer.submit([b"g"], b"x", AGREED)
    assert packer.queued_messages() == 1
    with pytest.raises(ValueError, match="queue_messages_max"):
        Packer(PAYLOAD, queue_messages_max=0)


def test_the_processor_takes_the_bound_in_messages_from_its_config() -> None:
    p = Processor(TotemConfig(queue_messages_max=2), 1, static_members=(1, 2))
    p.start(0.0)
    p.submit(0.0, [b"g"], b"a", AGREED)
    p.submit(0.0, [b"g"], b"b", AGREED)
    with pytest.raises(TryAgain, match="queue_messages_max=2"):
        p.submit(0.0, [b"g"], b"c", AGREED)
    assert TotemConfig().queue_messages_max == 4096
    with pytest.raises(ConfigError, match="queue_messages_max"):
        TotemConfig(queue_messages_max=0)


def test_try_again_when_full_but_an_empty_queue_takes_any_message() -> None:
    packer = Packer(PAYLOAD, queue_bytes_max=1000)
    packer.submit([b"g"], bytes(600), AGREED)
    with pytest.raises(TryAgain, match="queue_bytes_max=1000"):
        packer.submit([b"g"], bytes(600), AGREED)
    packer.submit([b"g"], bytes(300), AGREED)  # 604 + 304 fits
    assert packer.queued_messages() == 2
    drain(packer)
    packer.submit([b"g"], bytes(MiB), AGREED)  # larger than the queue, but it is empty
    with pytest.raises(TryAgain):
        packer.submit([b"g"], b"", AGREED)
    assert packer.queued_messages() == 1


def test_numbers_keep_increasing_across_refusals() -> None:
    packer = Packer(PAYLOAD, queue_bytes_max=10)
    assert packer.submit([b"g"], bytes(20), AGREED) == 0
    with pytest.raises(TryAgain):
        packer.submit([b"g"], b"x", AGREED)
    drain(packer)
    assert packer.submit([b"g"], b"x", AGREED) == 1


def test_queued_bytes_count_unsent_bytes() -> None:
    packer = Packer(200)
    packer.submit([b"g"], bytes(1000), AGREED)
    assert packer.queued_bytes() == 1003
    packet = packer.next_packet()
    assert packet is not None
    assert packer.queued_bytes() == 1003 - (200 - HEADER_SIZE - 2)
    assert packer.queued_messages() == 1


def test_backlog_estimate_bounds_the_packets() -> None:
    packer = Packer(PAYLOAD)
    for i in range(500):
        packer.submit([b"group"], bytes(i * 7 % 3000), SAFE if i % 50 < 25 else AGREED)
    estimate = packer.backlog_packets()
    count = len(drain(packer))
    # At most one packet per guarantee run (20 here) and 2 bytes per packet over the truth.
    assert count <= estimate <= count * 101 // 100 + 20


def test_mostly_large_is_the_mean_queued_message_against_a_quarter_packet() -> None:
    packer = Packer(206)
    room = 206 - HEADER_SIZE  # what a packet holds after its header: 200 bytes
    quarter = room // LARGE_PER_PACKET
    assert quarter == 50
    assert not packer.mostly_large()  # empty
    packer.submit([b"g"], bytes(quarter - 3), AGREED)  # 3 bytes of group header: a quarter
    assert packer.mostly_large()
    packer.submit([b"g"], bytes(quarter - 4), AGREED)
    assert not packer.mostly_large()  # the mean is now a byte short of a quarter
    packer.submit([b"g"], bytes(room), AGREED)
    assert packer.mostly_large()
    drain(packer)
    assert not packer.mostly_large()


def test_max_packets_for_and_message_size() -> None:
    per_packet = PAYLOAD - HEADER_SIZE - 2
    assert max_packets_for(1, PAYLOAD) == 1
    assert max_packets_for(2, PAYLOAD) == 2
    assert max_packets_for(per_packet + 1, PAYLOAD) == 2
    assert max_packets_for(per_packet + 2, PAYLOAD) == 3
    assert message_size([b"ab", b"c"], 10) == 1 + 2 + 3 + 10
    with pytest.raises(ValueError, match="at least 1 byte"):
        max_packets_for(0, PAYLOAD)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"payload_max": HEADER_SIZE + 2},
        {"payload_max": 70000},
        {"payload_max": PAYLOAD, "queue_bytes_max": 0},
        {"payload_max": PAYLOAD, "max_groups": 256},
        {"payload_max": PAYLOAD, "max_group_name": 0},
    ],
)
def test_bad_configuration_is_a_value_error(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must"):
        Packer(**kwargs)


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("groups", "match"),
    [
        ([], "at least one group"),
        ([b"g"] * 33, "33 groups exceed the limit of 32"),
        ([b""], "names need 1..64 bytes"),
        ([b"n" * 65], "has 65 bytes; names need 1..64"),
        (["text"], "group names must be bytes, got str"),
        (b"grp", "not a single name"),
        ([bytearray(b"g")], "sequence of bytes names"),
        (None, "sequence of bytes names"),
    ],
)
def test_bad_groups_are_refused(groups: object, match: str) -> None:
    packer = Packer(PAYLOAD)
    with pytest.raises(InvalidArgument, match=match):
        packer.submit(groups, b"data", AGREED)  # type: ignore[arg-type]
    assert packer.queued_messages() == 0


def test_custom_group_limits() -> None:
    packer = Packer(PAYLOAD, max_groups=2, max_group_name=3)
    packer.submit([b"abc", b"d"], b"", AGREED)
    with pytest.raises(InvalidArgument, match="limit of 2"):
        packer.submit([b"a", b"b", b"c"], b"", AGREED)
    with pytest.raises(InvalidArgument, match=r"1\.\.3 bytes"):
        packer.submit([b"abcd"], b"", AGREED)


def test_bad_data_and_guarantee_are_refused() -> None:
    packer = Packer(PAYLOAD)
    with pytest.raises(InvalidArgument, match="must be bytes, got str"):
        packer.submit([b"g"], "text", AGREED)
    with pytest.raises(InvalidArgument, match="must be bytes, got int"):
        packer.submit([b"g"], 5, AGREED)
    with pytest.raises(InvalidArgument, match="AGREED or SAFE"):
        packer.submit([b"g"], b"", 1)
    assert packer.submit([b"g"], b"", 3) == 0
    packet = packer.next_packet()
    assert packet is not None
    assert packet[1] is SAFE


# --- configuration changes ------------------------------------------------------------------


def test_restart_partial_resends_the_whole_message_once() -> None:
    packer = Packer(PAYLOAD)
    data = pattern(10_000, 3)
    packer.submit([b"g"], b"before", AGREED)
    packer.submit([b"g"], data, AGREED)
    packer.submit([b"g"], b"after", AGREED)
    unpacker = Unpacker()
    old_ring = drain(packer, limit=3)
    assert [done for _, _, done in old_ring] == [[0], [], []]
    assert feed_all(unpacker, old_ring) == [((b"g",), b"before")]
    assert unpacker.pending_bytes(1) > 0

    backlog = packer.backlog_packets()
    packer.restart_partial()
    assert packer.queued_bytes() == message_size([b"g"], 10_000) + message_size([b"g"], 5)
    assert packer.backlog_packets() > backlog
    unpacker.reset()
    assert unpacker.pending_bytes(1) == 0

    new_ring = drain(packer)
    assert header(new_ring[0][0])[3:] == (0, 1)  # fresh, and fragment ids restart at 1
    assert [n for _, _, done in new_ring for n in done] == [1, 2]
    assert feed_all(unpacker, new_ring) == [((b"g",), data), ((b"g",), b"after")]
    assert not unpacker.drops


def test_restart_partial_without_receiver_reset_still_delivers_once() -> None:
    packer = Packer(PAYLOAD)
    data = pattern(5000, 9)
    packer.submit([b"g"], data, SAFE)
    unpacker = Unpacker()
    assert feed_all(unpacker, drain(packer, limit=2)) == []
    packer.restart_partial()
    assert feed_all(unpacker, drain(packer)) == [((b"g",), data)]
    assert unpacker.drops == {"broken_chain": 1}


def test_restart_partial_without_a_partial_message_changes_nothing() -> None:
    packer = Packer(PAYLOAD)
    packer.submit([b"g"], b"x", AGREED)
    packer.restart_partial()
    assert packer.queued_bytes() == 4
    assert feed_all(Unpacker(), drain(packer)) == [((b"g",), b"x")]


# --- loss -----------------------------------------------------------------------------------


def test_lost_middle_fragment_discards_only_that_message() -> None:
    packer = Packer(PAYLOAD)
    packer.submit([b"g"], b"first", AGREED)
    packer.submit([b"g"], pattern(6000, 1), AGREED)
    for i in range(30):
        packer.submit([b"g"], pattern(100, i), AGREED)
    packets = drain(packer)
    assert len(packets) == 7
    unpacker = Unpacker()
    out = feed_all(unpacker, packets[:2] + packets[3:])
    assert out == [((b"g",), b"first")] + [((b"g",), pattern(100, i)) for i in range(30)]
    assert unpacker.drops == {"broken_chain": 1}
    assert unpacker.pending_bytes(1) == 0


def test_lost_first_fragment_discards_the_orphan_chain() -> None:
    packer = Packer(200)
    packer.submit([b"g"], pattern(1000), AGREED)
    packer.submit([b"g"], b"next", AGREED)
    packets = drain(packer)
    assert len(packets) == 6
    unpacker = Unpacker()
    assert feed_all(unpacker, packets[1:]) == [((b"g",), b"next")]
    assert unpacker.drops == {"broken_chain": 1}


def test_lost_last_fragment_is_noticed_by_a_fresh_packet() -> None:
    packer = Packer(200)
    packer.submit([b"g"], pattern(500), AGREED)
    packets = drain(packer)
    packer.submit([b"g"], b"next", AGREED)
    packets += drain(packer)
    unpacker = Unpacker()
    assert feed_all(unpacker, packets[:-2] + packets[-1:]) == [((b"g",), b"next")]
    assert unpacker.drops == {"broken_chain": 1}


def test_originators_are_reassembled_separately() -> None:
    one, two = Packer(200), Packer(200)
    one.submit([b"a"], pattern(700, 1), AGREED)
    two.submit([b"b"], pattern(900, 2), AGREED)
    unpacker = Unpacker()
    out = []
    for p1, p2 in zip(drain(one), drain(two), strict=False):
        out += unpacker.feed(1, p1[0], p1[1])
        out += unpacker.feed(2, p2[0], p2[1])
    out += feed_all(unpacker, drain(two), originator=2)
    assert out == [((b"a",), pattern(700, 1))]
    assert unpacker.pending_bytes(2) > 0
    unpacker.reset(2)
    assert unpacker.pending_bytes(2) == 0


def test_reset_of_one_originator_keeps_the_others() -> None:
    packer = Packer(200)
    packer.submit([b"g"], pattern(300), AGREED)
    first, rest = drain(packer, limit=1), drain(packer)
    unpacker = Unpacker()
    feed_all(unpacker, first, originator=1)
    feed_all(unpacker, first, originator=2)
    unpacker.reset(1)
    unpacker.reset(99)
    assert unpacker.pending_bytes(1) == 0
    assert unpacker.pending_bytes(2) > 0
    assert feed_all(unpacker, rest, originator=2) == [((b"g",), pattern(300))]
    assert feed_all(unpacker, rest, originator=1) == []


# --- malformed input ------------------------------------------------------------------------


def sample_packets() -> list[tuple[bytes, Guarantee, list[int]]]:
    """A packet that continues a fragment, holds whole messages and ends in a fragment."""
    packer = Packer(300)
    packer.submit([b"one", b"two"], pattern(350, 1), AGREED)
    for i in range(3):
        packer.submit([b"g"], pattern(20, i), AGREED)
    packer.submit([b"g"], pattern(400, 5), AGREED)
    return drain(packer)


def test_every_truncation_is_dropped_and_counted() -> None:
    packets = sample_packets()
    payload, guarantee, _ = packets[1]
    assert header(payload)[3] != 0
    assert header(payload)[4] != 0
    for cut in range(len(payload)):
        unpacker = Unpacker()
        unpacker.feed(1, packets[0][0], guarantee)
        assert unpacker.feed(1, payload[:cut], guarantee) == []
        assert sum(unpacker.drops.values()) == 1
        assert unpacker.pending_bytes(1) == 0


def test_every_truncation_of_a_fresh_packet_is_dropped() -> None:
    packer = Packer(PAYLOAD)
    for i in range(5):
        packer.submit([b"g"], pattern(30, i), AGREED)
    (payload, guarantee, _), *_ = drain(packer)
    unpacker = Unpacker()
    for cut in range(len(payload)):
        assert unpacker.feed(1, payload[:cut], guarantee) == []
    assert sum(unpacker.drops.values()) == len(payload)
    assert set(unpacker.drops) == {"truncated"}


def raw(items: list[bytes], continues: int = 0, fragmented: int = 0, **fields: int) -> bytes:
    version = fields.get("version", FORMAT_VERSION)
    flags = fields.get("flags", 0)
    count = fields.get("count", len(items))
    head = struct.pack("!BBHBB", version, flags, count, continues, fragmented)
    return head + struct.pack(f"!{len(items)}H", *map(len, items)) + b"".join(items)


GOOD = b"\x01\x01gdata"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "truncated"),
        (raw([GOOD], version=2), "bad_version"),
        (raw([GOOD], flags=1), "bad_flag"),
        (raw([], count=0), "no_items"),
        (raw([GOOD]) + b"x", "trailing_bytes"),
        (raw([GOOD, b""]), "empty_item"),
        (raw([GOOD, b"\x00data"]), "bad_groups"),
        (raw([b"\x01\x00data"]), "bad_groups"),
        (raw([b"\x01\x05ab"]), "bad_groups"),
        (raw([b"\x01\x05ab", GOOD]), "bad_groups"),  # the name would run into the next item
        (raw([b"\x01"]), "bad_groups"),  # one group: no room for the name's length byte
        (raw([b"\x01\x01"]), "bad_groups"),  # ... nor for its one byte
        (raw([GOOD, b"\x01\x02g"]), "bad_groups"),  # ... nor for its two
        (raw([b"\x02\x01"]), "bad_groups"),
        (raw([b"\x02\x01\x03ab", GOOD]), "bad_groups"),
        (raw([b"\x02\x01\x00ab"]), "bad_groups"),
        (raw([b"\x02\x01\x02a"]), "bad_groups"),
    ],
)
def test_malformed_packets_are_dropped_whole(payload: bytes, reason: str) -> None:
    unpacker = Unpacker()
    assert unpacker.feed(1, raw([b"\x01\x01gpart"], fragmented=9), AGREED) == []
    assert unpacker.feed(1, payload, AGREED) == []
    expected = {reason: 1}
    if reason == "bad_groups":
        # The header was sound, so the fresh first item already broke the chain.
        expected["broken_chain"] = 1
    assert unpacker.drops == expected
    assert unpacker.pending_bytes(1) == 0


def test_hand_built_packets_parse() -> None:
    unpacker = Unpacker()
    assert unpacker.feed(1, memoryview(raw([GOOD, b"\x02\x01\x02abc", b"\x01\x01g"])), AGREED) == [
        ((b"g",), b"data"),
        ((b"a", b"bc"), b""),
        ((b"g",), b""),
    ]
    assert unpacker.feed(1, raw([b"\x01\x03gr"], fragmented=200), SAFE) == []
    assert unpacker.feed(1, raw([b"p", b"\x01"], continues=200, fragmented=7), SAFE) == [
        ((b"grp",), b"")
    ]
    assert unpacker.feed(1, raw([b"\x02xgz"], continues=7), SAFE) == [((b"xg",), b"z")]
    assert not unpacker.drops


def test_a_malformed_completed_reassembly_is_dropped() -> None:
    unpacker = Unpacker()
    unpacker.feed(1, raw([b"\x03"], fragmented=4), AGREED)
    assert unpacker.feed(1, raw([b"\x01\x01", GOOD], continues=4), AGREED) == []
    assert unpacker.drops == {"bad_groups": 1}


def test_guarantee_change_inside_a_message_is_dropped() -> None:
    unpacker = Unpacker()
    unpacker.feed(1, raw([b"\x01\x01g"], fragmented=1), AGREED)
    assert unpacker.feed(1, raw([b"tail"], continues=1), SAFE) == []
    assert unpacker.drops == {"guarantee_changed": 1}


def test_reassembly_larger_than_the_limit_is_dropped() -> None:
    packer = Packer(PAYLOAD)
    packer.submit([b"g"], bytes(5000), AGREED)
    packer.submit([b"g"], b"after", AGREED)
    unpacker = Unpacker(max_message_size=2000, max_groups=1, max_group_name=1)
    assert feed_all(unpacker, drain(packer)) == [((b"g",), b"after")]
    assert unpacker.drops == {"oversize": 1, "broken_chain": 1}
    tiny = Unpacker(max_message_size=0, max_groups=1, max_group_name=1)
    assert tiny.feed(1, raw([b"\x01\x01gdata"], fragmented=1), AGREED) == []
    assert tiny.drops == {"oversize": 1}


def test_a_malformed_packet_orphans_the_rest_of_the_message() -> None:
    packer = Packer(200)
    packer.submit([b"g"], pattern(800), AGREED)
    packer.submit([b"g"], b"after", AGREED)
    packets = drain(packer)
    unpacker = Unpacker()
    unpacker.feed(1, packets[0][0], AGREED)
    unpacker.feed(1, b"\x01\x00", AGREED)
    assert feed_all(unpacker, packets[1:]) == [((b"g",), b"after")]
    assert unpacker.drops == {"truncated": 1, "broken_chain": 1}


def test_many_distinct_group_lists_keep_working() -> None:
    packer = Packer(PAYLOAD, queue_bytes_max=1 << 30)
    names = [[b"g%d" % i] for i in range(1500)]
    for name in names:
        packer.submit(name, b"", AGREED)
    assert [groups for groups, _ in feed_all(Unpacker(), drain(packer))] == list(map(tuple, names))


def test_the_largest_legal_message_is_reassembled_not_dropped() -> None:
    """Section 7: the reassembly bound is what the largest message a Packer accepts encodes
    to (max_message_size of data, max_groups names of max_group_name bytes); a message of
    exactly that size must still be delivered, only a longer one is a hostile stream."""
    packer = Packer(PAYLOAD, max_message_size=4000, max_groups=3, max_group_name=5)
    groups = [b"aaaaa", b"bbbbb", b"ccccc"]
    data = pattern(4000, 3)
    packer.submit(groups, data, AGREED)
    assert packer.queued_bytes() == 1 + 3 * (1 + 5) + 4000  # the bound, to the byte
    unpacker = Unpacker(max_message_size=4000, max_groups=3, max_group_name=5)
    assert feed_all(unpacker, drain(packer)) == [(tuple(groups), data)]
    assert unpacker.drops == {}


@pytest.mark.parametrize("count", [1, 4, 5, 13])
def test_length_tables_of_any_count_are_checked_alike(count: int) -> None:
    """Short tables are read in a loop and long ones with a struct (the faster of each): both
    must refuse the same packets for the same reasons, and parse the same good ones."""
    items = [GOOD] * count
    assert Unpacker().feed(1, raw(items), AGREED) == [((b"g",), b"data")] * count
    for bad, reason in (
        (raw([*items[:-1], b""]), "empty_item"),
        (raw(items) + b"x", "trailing_bytes"),
        (raw(items)[:-1], "truncated"),
        (raw(items)[: HEADER_SIZE + 2 * count - 1], "truncated"),  # the table itself cut
    ):
        unpacker = Unpacker()
        assert unpacker.feed(1, bad, AGREED) == []
        assert unpacker.drops == {reason: 1}


def test_a_fragment_with_an_empty_group_name_is_dropped_when_complete() -> None:
    unpacker = Unpacker()
    assert unpacker.feed(1, raw([b"\x01\x00abc"], fragmented=3), AGREED) == []
    assert unpacker.feed(1, raw([b"tail", GOOD], continues=3), AGREED) == []
    assert unpacker.drops == {"bad_groups": 1}
    assert unpacker.pending_bytes(1) == 0


def test_messages_that_straddle_packets_keep_their_own_groups() -> None:
    """Every packet completes one message and starts the next: the assembly carried from one
    message to the next must take nothing of the last one (its groups above all), whether
    the next one's group header fits its first fragment or not."""
    packer = Packer(300, queue_bytes_max=1 << 30)
    sent = []
    for i in range(60):
        groups = ([b"a"], [b"bb"], [b"x", b"yy"], [b"g" * 40])[i % 4]
        data = pattern(170 + 37 * (i % 5), i)
        packer.submit(groups, data, AGREED if i % 7 else SAFE)
        sent.append((tuple(groups), data))
    packets = drain(packer)
    assert sum(1 for p, _, _ in packets if header(p)[3] and header(p)[4]) > 20  # straddles
    unpacker = Unpacker()
    assert feed_all(unpacker, packets) == sent
    assert unpacker.drops == {}
    assert unpacker.pending_bytes(1) == 0


def test_a_chain_of_tiny_fragments_holds_about_the_bytes_it_counts() -> None:
    """A hostile sender may cut a message into 2-byte fragments: the reassembly must hold
    about the bytes its limit counts, not an object (40-odd bytes) per fragment."""
    unpacker = Unpacker(max_message_size=100_000, max_groups=1, max_group_name=1)
    limit = 100_000 + 1 + 1 * (1 + 1)
    tracemalloc.start()
    try:
        unpacker.feed(7, raw([b"\x01\x01a"], fragmented=1), AGREED)
        fragment = 1
        while unpacker.pending_bytes(7) + 2 <= limit:
            following = fragment % 255 + 1
            unpacker.feed(7, raw([b"xy"], continues=fragment, fragmented=following), AGREED)
            fragment = following
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert unpacker.pending_bytes(7) > limit - 2
    assert not unpacker.drops
    assert held < 2 * limit, f"{held} bytes held for a {limit}-byte reassembly"
