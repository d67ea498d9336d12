"""Hypothesis properties of packing, fragmentation and reassembly (evs.totem.groups)."""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evs.totem.groups import HEADER_SIZE, Packer, Unpacker, max_packets_for
from evs.types import Guarantee

KiB = 1 << 10

Message = tuple[tuple[bytes, ...], bytes]

group_names = st.binary(min_size=1, max_size=64)
group_lists = st.lists(
    st.sampled_from([b"a", b"group", b"x" * 64]) | group_names, min_size=1, max_size=32
)
guarantees = st.sampled_from([Guarantee.AGREED, Guarantee.SAFE])
payload_maxes = st.sampled_from([HEADER_SIZE + 3, 64, 300, 1400, 9000])


def sizes_for(payload_max: int) -> st.SearchStrategy[int]:
    """Message sizes up to 200 KiB, capped so tiny packets keep an example quick."""
    top = min(200 * KiB, (payload_max - HEADER_SIZE) * 300)
    return st.integers(0, 300) | st.integers(0, 5000) | st.integers(0, top)


@st.composite
def workloads(draw: st.DrawFn) -> tuple[int, Sequence[tuple[str, object]]]:
    """A payload_max and a list of operations: submits, token visits and ring changes."""
    payload_max = draw(payload_maxes)
    submit = st.tuples(
        st.just("submit"), st.tuples(group_lists, sizes_for(payload_max), guarantees)
    )
    visit = st.tuples(st.just("visit"), st.integers(1, 40))
    change = st.tuples(st.just("change"), st.none())
    ops = draw(st.lists(submit | visit | change, max_size=25))
    return payload_max, ops


@dataclass
class Sender:
    """A Packer plus the bookkeeping a test needs to predict what receivers see."""

    packer: Packer
    payload_max: int
    rng: random.Random
    sent: list[Message] = field(default_factory=list)
    completed: list[int] = field(default_factory=list)
    packets: list[tuple[bytes, Guarantee]] = field(default_factory=list)
    #: Packet indices carrying a piece of each message (in the ring where it completed).
    pieces: dict[int, list[int]] = field(default_factory=dict)
    #: Packet indices after which a configuration change happened.
    changes: list[int] = field(default_factory=list)

    def submit(self, groups: list[bytes], size: int, guarantee: Guarantee) -> None:
        data = self.rng.randbytes(size)
        number = self.packer.submit(groups, data, guarantee)
        assert number == len(self.sent)
        self.sent.append((tuple(groups), data))

    def visit(self, limit: int) -> None:
        """One token visit: at most ``limit`` packets, checking each against the estimate."""
        for _ in range(limit):
            estimate = self.packer.backlog_packets()
            packet = self.packer.next_packet()
            if packet is None:
                assert estimate == 0
                return
            payload, guarantee, done = packet
            assert len(payload) <= self.payload_max
            # Each packet lowers the estimate by at least one, so it bounds the drain.
            assert self.packer.backlog_packets() <= estimate - 1
            index = len(self.packets)
            self.packets.append((payload, guarantee))
            head = len(self.completed)
            fragmented = payload[5] != 0
            for number in [*done, *([head + len(done)] if fragmented else [])]:
                self.pieces.setdefault(number, []).append(index)
            self.completed += done

    def change(self) -> None:
        self.packer.restart_partial()
        self.changes.append(len(self.packets))
        self.pieces.pop(len(self.completed), None)

    def drain(self) -> None:
        estimate = self.packer.backlog_packets()
        before = len(self.packets)
        self.visit(10**9)
        assert len(self.packets) - before <= estimate


def run(payload_max: int, ops: Sequence[tuple[str, object]], seed: int) -> Sender:
    sender = Sender(Packer(payload_max, queue_bytes_max=1 << 30), payload_max, random.Random(seed))
    for op, arg in ops:
        if op == "submit":
            assert isinstance(arg, tuple)
            sender.submit(*arg)
        elif op == "visit":
            assert isinstance(arg, int)
            sender.visit(arg)
        else:
            sender.change()
    sender.drain()
    return sender


def deliver(sender: Sender, lost: set[int] = frozenset(), originator: int = 1) -> list[Message]:  # type: ignore[assignment]
    """Feed the sender's packets, resetting at each ring change as the processor does."""
    unpacker = Unpacker()
    out: list[Message] = []
    changes = set(sender.changes)
    for index, (payload, guarantee) in enumerate(sender.packets):
        if index in changes:
            unpacker.reset()
        if index not in lost:
            out += unpacker.feed(originator, payload, guarantee)
    assert not any(reason != "broken_chain" for reason in unpacker.drops)
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads(), st.integers(0, 2**32))
def test_round_trip_delivers_every_message_once_in_order(
    workload: tuple[int, Sequence[tuple[str, object]]], seed: int
) -> None:
    sender = run(*workload, seed)
    assert sender.completed == list(range(len(sender.sent)))
    assert deliver(sender) == sender.sent
    assert sender.packer.queued_messages() == 0
    assert sender.packer.queued_bytes() == 0


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads(), st.integers(0, 2**32), st.data())
def test_loss_discards_exactly_the_messages_it_touched(
    workload: tuple[int, Sequence[tuple[str, object]]], seed: int, data: st.DataObject
) -> None:
    sender = run(*workload, seed)
    count = len(sender.packets)
    lost = set(data.draw(st.lists(st.integers(0, max(count - 1, 0)), max_size=min(count, 20))))
    expected = [
        message
        for number, message in enumerate(sender.sent)
        if not lost.intersection(sender.pieces[number])
    ]
    assert deliver(sender, lost) == expected


@settings(max_examples=60, deadline=None)
@given(workloads(), st.integers(0, 2**32))
def test_without_receiver_reset_a_lossless_stream_still_round_trips(
    workload: tuple[int, Sequence[tuple[str, object]]], seed: int
) -> None:
    sender = run(*workload, seed)
    sender.changes.clear()
    assert deliver(sender) == sender.sent


@settings(max_examples=60, deadline=None)
@given(workloads(), st.integers(0, 2**32))
def test_interleaved_originators_do_not_mix(
    workload: tuple[int, Sequence[tuple[str, object]]], seed: int
) -> None:
    one = run(*workload, seed)
    two = run(*workload, seed + 1)
    unpacker = Unpacker()
    got: dict[int, list[Message]] = {1: [], 2: []}
    streams = [(1, one.packets), (2, two.packets)]
    cursors = {1: 0, 2: 0}
    rng = random.Random(seed)
    while any(cursors[n] < len(packets) for n, packets in streams):
        n, packets = rng.choice([s for s in streams if cursors[s[0]] < len(s[1])])
        payload, guarantee = packets[cursors[n]]
        cursors[n] += 1
        got[n] += unpacker.feed(n, payload, guarantee)
    # No receiver reset here: a restarted message still arrives whole, exactly once.
    assert got[1] == one.sent
    assert got[2] == two.sent
    assert not unpacker.drops.keys() - {"broken_chain"}


@given(st.data(), st.sampled_from([HEADER_SIZE + 3, 64, 1400, 9000]))
def test_max_packets_for_bounds_a_message_after_any_prefix(
    data: st.DataObject, payload_max: int
) -> None:
    per_packet = payload_max - HEADER_SIZE - 2
    size = data.draw(st.integers(3, min(per_packet * 300, 1 << 20)), label="size")
    prefix = data.draw(st.none() | st.integers(0, per_packet * 3), label="prefix")
    packer = Packer(payload_max)
    if prefix is not None:
        packer.submit([b"p"], bytes(prefix), Guarantee.AGREED)
    packer.submit([b"g"], bytes(size - 3), Guarantee.AGREED)
    carrying = 0
    prefix_open = prefix is not None
    while (packet := packer.next_packet()) is not None:
        payload, _, done = packet
        if prefix_open:
            # Only the packet that ends the prefix may also carry the start of the message.
            prefix_open = 0 not in done
            if prefix_open or struct.unpack_from("!H", payload, 2)[0] == 1:
                continue
        carrying += 1
    assert carrying <= max_packets_for(size, payload_max)
    if prefix is None:
        assert carrying == -(-size // per_packet)


@settings(max_examples=500)
@given(st.binary(max_size=3000), st.integers(1, 3), guarantees)
def test_random_bytes_never_raise(payload: bytes, originator: int, guarantee: Guarantee) -> None:
    unpacker = Unpacker()
    out = unpacker.feed(originator, payload, guarantee)
    # Every outcome is visible: messages, a counted drop, or a message left open.
    assert out or unpacker.drops or unpacker.pending_bytes(originator) > 0
    for groups, data in out:
        assert isinstance(data, bytes)
        assert groups
        assert all(isinstance(name, bytes) and name for name in groups)


@st.composite
def mutated_streams(draw: st.DrawFn) -> tuple[list[tuple[bytes, Guarantee]], str]:
    packer = Packer(draw(st.sampled_from([64, 300, 1400])))
    for _ in range(draw(st.integers(1, 6))):
        packer.submit(draw(group_lists), draw(st.binary(max_size=3000)), draw(guarantees))
    packets = []
    while (packet := packer.next_packet()) is not None:
        packets.append((packet[0], packet[1]))
    index = draw(st.integers(0, len(packets) - 1))
    payload = bytearray(packets[index][0])
    kind = draw(st.sampled_from(["flip", "truncate", "extend", "overwrite"]))
    if kind == "flip":
        bit = draw(st.integers(0, len(payload) * 8 - 1))
        payload[bit // 8] ^= 1 << (bit % 8)
    elif kind == "truncate":
        del payload[draw(st.integers(0, len(payload) - 1)) :]
    elif kind == "extend":
        payload += draw(st.binary(min_size=1, max_size=10))
    else:
        at = draw(st.integers(0, len(payload) - 1))
        chunk = draw(st.binary(min_size=1, max_size=8))
        payload[at : at + len(chunk)] = chunk
    packets[index] = (bytes(payload), packets[index][1])
    return packets, kind


@settings(max_examples=300, deadline=None)
@given(mutated_streams())
def test_a_corrupted_packet_never_raises(stream: tuple[list[tuple[bytes, Guarantee]], str]) -> None:
    packets, kind = stream
    unpacker = Unpacker()
    out = []
    for payload, guarantee in packets:
        out += unpacker.feed(7, payload, guarantee)
    assert unpacker.pending_bytes(7) <= sum(len(p) for p, _ in packets)
    for groups, data in out:
        assert isinstance(data, bytes)
        assert groups
        assert all(isinstance(name, bytes) and name for name in groups)
    if kind in ("truncate", "extend"):
        # The length table no longer matches; a flip may hit message bytes and go unnoticed.
        assert unpacker.drops.keys() & {"truncated", "trailing_bytes"}


def test_header_layout_is_stable() -> None:
    packer = Packer(100)
    packer.submit([b"g"], bytes(200), Guarantee.SAFE)
    packet = packer.next_packet()
    assert packet is not None
    assert struct.unpack_from("!BBHBBH", packet[0]) == (1, 0, 1, 0, 1, 100 - HEADER_SIZE - 2)
