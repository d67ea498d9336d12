"""Group addressing, packing and fragmentation of application messages (totempg's job).

The ring orders opaque packets of at most ``payload_max`` bytes. Applications send messages of
any size up to ``max_message_size`` to one or more groups. This module maps one onto the other:
``Packer`` turns the local send queue into packets, ``Unpacker`` turns each originator's packets
back into messages. Both are pure: bytes and counters in, bytes and counters out.

Packet format (the MCAST payload; integers big-endian)::

    u8  version        FORMAT_VERSION (1); any other value is dropped as "bad_version"
    u8  flags          reserved, must be 0 (dropped as "bad_flag" otherwise)
    u16 count          number of items, at least 1
    u8  continues      fragment id the FIRST item continues; 0 = the first item starts a message
    u8  fragmented     fragment id the LAST item continues with in the next packet; 0 = complete
    u16 length[count]  byte length of each item, each at least 1
    ...                the items, back to back; nothing may follow them

Fragment ids come from a per-sender counter 1..255 that skips 0 and advances on every packet
that ends in a fragment, so a receiver notices a lost packet in the middle of a message: the
next packet's ``continues`` no longer matches the ``fragmented`` it stored. An item is a slice of
one encoded application message: ``u8 group count (1..255), u8 name length (1..255) per
group, the names, then the data``.

Why packing is lazy: ``submit`` only queues; packets are cut by ``next_packet`` when the node
holds the token. Everything submitted since the last token visit is therefore batched into as
few packets as possible (ten 100-byte messages share one packet), and the ring, whose cost is
per packet, carries the most data per token rotation.

Why a partial message restarts at a configuration change: receivers reset their reassembly at
each regular configuration change (protocol.md section 5.8 step 5, pitfall 14), and the old
ring's trailing fragments may be lost in the transitional configuration anyway. A message whose
first fragments left in the old ring and whose last did not is sent again from its first byte
in the new ring, so a message is never lost or split across configurations, and is delivered
exactly once: no receiver can have completed the old copy, since its last byte never left.
"""

from __future__ import annotations

import struct
from collections import Counter, deque
from collections.abc import Sequence
from typing import Final, cast

from evs.errors import InvalidArgument, TryAgain
from evs.types import Guarantee

__all__ = [
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "LARGE_PER_PACKET",
    "NO_MESSAGE_BOUND",
    "Packer",
    "Unpacker",
    "max_packets_for",
    "message_size",
]

#: Version byte of the packet header.
FORMAT_VERSION: Final = 1
_HEADER: Final = struct.Struct("!BBHBB")
#: Bytes of the fixed packet header, before the length table.
HEADER_SIZE: Final = _HEADER.size
#: Bytes of one entry of the length table.
_SLOT: Final = 2
#: Smallest useful payload: the header, one length slot and one byte.
_MIN_PAYLOAD: Final = HEADER_SIZE + _SLOT + 1
#: u16 item lengths cap one item, hence the packet body.
_MAX_PAYLOAD: Final = HEADER_SIZE + _SLOT + 0xFFFF

MiB = 1 << 20
#: ``queue_messages_max`` of a Packer given none: no bound in messages.
NO_MESSAGE_BOUND: Final = 1 << 30
#: A queued message is large when it takes at least 1/LARGE_PER_PACKET of a packet's room.
LARGE_PER_PACKET: Final = 4

_LENGTH_TABLES: Final[dict[int, struct.Struct]] = {}
#: A mid-message piece shorter than this is appended to a bytearray rather than kept as its
#: own bytes object (about 40 bytes of overhead each): a sender cutting 1-byte fragments must
#: not make a reassembly hold many times the bytes ``max_message_size`` allows.
_SMALL_PIECE: Final = 512
#: Length tables of at most this many entries are read in a loop, longer ones with a struct:
#: the loop is the faster of the two, compiled or not, for a few entries, and the struct for
#: many when interpreted (measured: a 13-entry loop costs interpreted feed 18 %).
_SHORT_TABLE: Final = 4


def _length_table(count: int) -> struct.Struct:
    """The struct for a table of ``count`` u16 lengths, cached for the counts real packets use.

    The count comes from peers, so rarer large counts are built each time rather than cached.
    """
    table = _LENGTH_TABLES.get(count)
    if table is None:
        table = struct.Struct(f"!{count}H")
        if count <= 1024:
            _LENGTH_TABLES[count] = table
    return table


_PACKET_HEADS: Final[dict[int, struct.Struct]] = {}


def _packet_head(count: int) -> struct.Struct:
    """The struct of a packet's header and its table of ``count`` lengths, packed in one
    call; ``count`` is at most a packet's room over 3 (our own packets only)."""
    head = _PACKET_HEADS.get(count)
    if head is None:
        head = _PACKET_HEADS[count] = struct.Struct(f"{_HEADER.format}{count}H")
    return head


def _room(payload_max: int) -> int:
    """Bytes of a packet left for the length table and items."""
    if not _MIN_PAYLOAD <= payload_max <= _MAX_PAYLOAD:
        raise ValueError(
            f"payload_max must be in {_MIN_PAYLOAD}..{_MAX_PAYLOAD} bytes, got {payload_max}"
        )
    return payload_max - HEADER_SIZE


def message_size(groups: Sequence[bytes], data_len: int) -> int:
    """Encoded size of a message: its group header plus ``data_len`` bytes of data."""
    return 1 + len(groups) + sum(len(name) for name in groups) + data_len


def max_packets_for(size: int, payload_max: int) -> int:
    """Most packets that can carry a byte of one encoded message of ``size`` bytes.

    Meant for admission: the first piece may share a packet with earlier messages, and every
    later packet carries ``payload_max - HEADER_SIZE - 2`` bytes of it.
    """
    if size < 1:
        raise ValueError(f"an encoded message has at least 1 byte, got {size}")
    per_packet = _room(payload_max) - _SLOT
    return 1 + -(-(size - 1) // per_packet)


def _guarantee(value: object) -> Guarantee:
    """The Guarantee a caller meant (an int value is accepted), else InvalidArgument."""
    if not isinstance(value, int) or value not in (Guarantee.AGREED, Guarantee.SAFE):
        raise InvalidArgument(f"guarantee must be AGREED or SAFE, got {value!r}")
    return Guarantee(value)


class Packer:
    """The local send queue, cut into packets lazily at token time.

    Messages are numbered 0, 1, 2, ... at ``submit``; ``next_packet`` reports a number once the
    message's last byte has left, so the caller knows when it is wholly in the ring's hands.
    Numbers follow the queue order, so the head's number is implicit and the queue holds only
    the encoded bytes and the guarantee of each message.
    """

    __slots__ = (
        "_cap",
        "_continues",
        "_guarantees",
        "_head_number",
        "_head_offset",
        "_header_cache",
        "_items",
        "_max_group_name",
        "_max_groups",
        "_max_message_size",
        "_next_fragment",
        "_next_number",
        "_queue_bytes_max",
        "_queue_messages_max",
        "_queued_bytes",
        "_room",
        "_runs",
    )

    def __init__(
        self,
        payload_max: int,
        queue_bytes_max: int = 8 * MiB,
        max_message_size: int = MiB,
        max_groups: int = 32,
        max_group_name: int = 64,
        *,
        queue_messages_max: int = NO_MESSAGE_BOUND,
    ) -> None:
        self._room = _room(payload_max)
        # Every packet but the last of a guarantee run moves at least this many queued bytes
        # (counting 2 per message for its length slot); see backlog_packets.
        self._cap = self._room - _SLOT
        if queue_bytes_max < 1 or max_message_size < 0 or queue_messages_max < 1:
            raise ValueError(
                "queue_bytes_max and queue_messages_max must be positive and max_message_size "
                "not negative"
            )
        if not (1 <= max_groups <= 255 and 1 <= max_group_name <= 255):
            raise ValueError("max_groups and max_group_name must be in 1..255 (u8 on the wire)")
        self._queue_bytes_max = queue_bytes_max
        self._queue_messages_max = queue_messages_max
        self._max_message_size = max_message_size
        self._max_groups = max_groups
        self._max_group_name = max_group_name
        self._items: deque[bytes] = deque()
        self._guarantees: deque[Guarantee] = deque()
        self._header_cache: dict[tuple[object, ...], bytes] = {}
        self._next_number = 0
        self._head_number = 0
        # Bytes of the head message already handed out in earlier packets.
        self._head_offset = 0
        # Fragment id the next packet's first item continues (0 when the head is fresh).
        self._continues = 0
        self._next_fragment = 1
        # Unsent encoded bytes, and the number of maximal same-guarantee runs in the queue.
        self._queued_bytes = 0
        self._runs = 0

    def submit(self, groups: Sequence[bytes], data: object, guarantee: Guarantee | int) -> int:
        """Queue one message for ``groups``; returns its local number.

        Raises InvalidArgument for a bad group list, data or guarantee, and TryAgain when the
        queue is too full; an empty queue accepts any valid message, so a message of
        ``max_message_size`` bytes can always be sent eventually.
        """
        # ``object`` parameters, checked here: compiled (mypyc) or not, a bad argument is an
        # InvalidArgument, never a TypeError from an annotation.
        body: bytes
        if type(data) is bytes:
            body = data
        elif isinstance(data, (bytearray, memoryview)):
            body = bytes(data)
        else:
            raise InvalidArgument(f"message data must be bytes, got {type(data).__name__}")
        if len(body) > self._max_message_size:
            raise InvalidArgument(
                f"message of {len(body)} bytes exceeds the limit of "
                f"{self._max_message_size} bytes (max_message_size)"
            )
        if type(guarantee) is not Guarantee:
            guarantee = _guarantee(guarantee)
        assert isinstance(guarantee, Guarantee)
        header = self._group_header(groups)
        size = len(header) + len(body)
        queued = self._queued_bytes
        items = self._items
        if items:
            if queued + size > self._queue_bytes_max:
                raise TryAgain(
                    f"send queue holds {queued} bytes and {size} more would exceed "
                    f"queue_bytes_max={self._queue_bytes_max}"
                )
            if len(items) >= self._queue_messages_max:
                raise TryAgain(
                    f"send queue holds {len(items)} messages, "
                    f"queue_messages_max={self._queue_messages_max}"
                )
        guarantees = self._guarantees
        if not guarantees or guarantees[-1] != guarantee:
            self._runs += 1
        items.append(header + body)
        guarantees.append(guarantee)
        self._queued_bytes = queued + size
        number = self._next_number
        self._next_number = number + 1
        return number

    def _group_header(self, groups: Sequence[bytes]) -> bytes:
        """The encoded group header; valid lists are cached, since senders reuse a few."""
        key: tuple[object, ...]
        try:
            key = tuple(groups)
            return self._header_cache[key]
        except KeyError:
            pass
        except TypeError:
            raise InvalidArgument("groups must be a sequence of bytes names") from None
        if not key:
            raise InvalidArgument("a message needs at least one group")
        if len(key) > self._max_groups:
            raise InvalidArgument(
                f"{len(key)} groups exceed the limit of {self._max_groups} per message"
            )
        for name in key:
            if not isinstance(name, bytes):
                raise InvalidArgument(
                    f"group names must be bytes, got {type(name).__name__} "
                    "(pass a list of names, not a single name)"
                )
            if not 1 <= len(name) <= self._max_group_name:
                raise InvalidArgument(
                    f"group name {name!r} has {len(name)} bytes; "
                    f"names need 1..{self._max_group_name} bytes"
                )
        names = cast("tuple[bytes, ...]", key)
        header = bytes([len(names), *(len(name) for name in names)]) + b"".join(names)
        if len(self._header_cache) >= 1024:
            self._header_cache.clear()
        self._header_cache[names] = header
        return header

    def queued_messages(self) -> int:
        """Messages not yet wholly handed out (including a partly sent head)."""
        return len(self._items)

    def queued_bytes(self) -> int:
        """Encoded bytes (group headers included) not yet handed out."""
        return self._queued_bytes

    def mostly_large(self) -> bool:
        """The queued messages average at least a quarter of a packet's room each (O(1)).

        Such a queue costs its receivers little per packet (on average at most four messages
        complete in one), so the ring's fixed cost per rotation, not per-message work, bounds
        it. Measured (docs/protocol.md, the lone-sender rule): a whole-window visit raised one
        sender's throughput at 512 B and up, and lowered it for 64-byte messages."""
        count = len(self._items)
        return count > 0 and LARGE_PER_PACKET * self._queued_bytes >= count * self._room

    def backlog_packets(self) -> int:
        """Upper bound on the packets ``next_packet`` needs to drain the queue, in O(1).

        Each packet that is not the last of a same-guarantee run moves at least
        ``payload_max - HEADER_SIZE - 2`` bytes of the queue, counting 2 per message for its
        length slot; so every ``next_packet`` lowers the bound by at least one, and it exceeds
        the truth by about 0.2 % plus one packet per guarantee change in the queue.
        """
        count = len(self._items)
        if not count:
            return 0
        return -(-(self._queued_bytes + _SLOT * count) // self._cap) + self._runs - 1

    def next_packet(self) -> tuple[bytes, Guarantee, list[int]] | None:
        """Cut one packet from the head of the queue, or None if the queue is empty.

        Packs whole messages while they fit and fills the rest of the packet with a fragment
        of the next one; stops at a change of guarantee, since a packet has one guarantee.
        Returns the payload, its guarantee and the numbers of the messages it completes.
        """
        items = self._items
        if not items:
            return None
        guarantees = self._guarantees
        guarantee = guarantees[0]
        room = self._room
        offset = self._head_offset
        number = self._head_number
        first_number = number
        # Slot 0 receives the header and the length table once the items are known. Pieces
        # of a message are bytes slices: a copy of at most a packet, cheaper than the two
        # memoryview objects a view takes.
        parts: list[bytes] = [b""]
        lengths: list[int] = []
        sent = 0
        fragment = 0
        while True:
            item = items[0]
            size = len(item) - offset
            room -= _SLOT
            if size <= room:
                parts.append(item[offset:] if offset else item)
                lengths.append(size)
                sent += size
                room -= size
                offset = 0
                number += 1
                items.popleft()
                guarantees.popleft()
                if not items or guarantees[0] != guarantee:
                    self._runs -= 1
                    break
                if room <= _SLOT:
                    break
            else:
                parts.append(item[offset : offset + room])
                lengths.append(room)
                sent += room
                offset += room
                fragment = self._next_fragment
                self._next_fragment = fragment % 255 + 1
                break
        parts[0] = _packet_head(len(lengths)).pack(
            FORMAT_VERSION, 0, len(lengths), self._continues, fragment, *lengths
        )
        self._continues = fragment
        self._head_offset = offset
        self._head_number = number
        self._queued_bytes -= sent
        return b"".join(parts), guarantee, list(range(first_number, number))

    def restart_partial(self) -> None:
        """Forget how much of the head message left in the old ring; resend it whole.

        Called at a configuration change. Also restarts the fragment ids, so the first packet
        of the new ring continues nothing.
        """
        self._queued_bytes += self._head_offset
        self._head_offset = 0
        self._continues = 0
        self._next_fragment = 1


class _Assembly:
    """One originator's message in progress, or an orphan chain being thrown away."""

    __slots__ = ("expect", "groups", "guarantee", "pieces", "size")

    def __init__(
        self,
        expect: int,
        pieces: list[bytes | bytearray] | None,
        size: int,
        guarantee: Guarantee,
        groups: tuple[bytes, ...] | None = None,
    ) -> None:
        #: The fragment id the next packet's first item must continue.
        self.expect = expect
        #: The fragments so far, joined once when the last comes (one copy of the message, not
        #: one per fragment); None while discarding the remainder of an orphaned message.
        self.pieces = pieces
        #: Bytes of the message so far, its group header included.
        self.size = size
        self.guarantee = guarantee
        #: The message's one group when the first fragment held its header whole (the usual
        #: case): ``pieces`` then hold only data. None: ``pieces`` hold the whole encoding.
        self.groups = groups


#: Reasons counted in Unpacker.drops: short stable strings, like the codec's drop reasons.
TRUNCATED: Final = "truncated"
BAD_VERSION: Final = "bad_version"
BAD_FLAG: Final = "bad_flag"
NO_ITEMS: Final = "no_items"
EMPTY_ITEM: Final = "empty_item"
TRAILING_BYTES: Final = "trailing_bytes"
BAD_GROUPS: Final = "bad_groups"
GUARANTEE_CHANGED: Final = "guarantee_changed"
OVERSIZE: Final = "oversize"
#: Not a malformed packet: a fragment chain broke (a lost packet, as across a configuration
#: change), so the message in progress or an orphaned continuation was thrown away.
BROKEN_CHAIN: Final = "broken_chain"


def _parse_message(payload: bytes, start: int, stop: int) -> tuple[tuple[bytes, ...], bytes] | None:
    """Split one encoded message into (groups, data); None if the group header is malformed."""
    if start >= stop:
        return None
    count = payload[start]
    names_at = start + 1 + count
    if names_at > stop:
        return None  # the name lengths alone run past the item: read nothing beyond it
    if count == 1:
        # Fast path: most messages name one group.
        length = payload[start + 1]
        end = names_at + length
        if length == 0 or end > stop:
            return None
        return (payload[names_at:end],), payload[end:stop]
    if count == 0:
        return None
    names = []
    position = names_at
    for length in payload[start + 1 : names_at]:
        end = position + length
        if length == 0 or end > stop:
            return None
        names.append(payload[position:end])
        position = end
    return tuple(names), payload[position:stop]


def _assemble(
    assembly: _Assembly, pieces: list[bytes | bytearray]
) -> tuple[tuple[bytes, ...], bytes] | None:
    """(groups, data) of a completed message; None if its group header is malformed."""
    if assembly.groups is not None:
        return assembly.groups, b"".join(pieces)
    whole = b"".join(pieces)
    return _parse_message(whole, 0, len(whole))


class Unpacker:
    """Reassembles each originator's packets into messages; never raises on peer input.

    Feed every packet of an originator in the ring's order. A malformed packet is dropped
    whole, discards that originator's message in progress, and is counted in ``drops`` by
    reason. Call ``reset()`` at each regular configuration change, after the transitional
    configuration's messages are delivered (pitfall 14): old-ring fragments must still find
    their beginnings, and new-ring traffic must not be glued to them. Senders restart their
    fragment ids in the new ring, so without the reset a lost first packet could let a new
    fragment id match a stale one.
    """

    __slots__ = ("_assemblies", "_limit", "drops")

    def __init__(
        self, max_message_size: int = MiB, max_groups: int = 32, max_group_name: int = 64
    ) -> None:
        # A longer reassembly cannot come from a Packer with the same limits: a broken or
        # hostile stream, refused before it can grow without bound.
        self._limit = max_message_size + 1 + max_groups * (1 + max_group_name)
        self._assemblies: dict[int, _Assembly] = {}
        self.drops: Counter[str] = Counter()

    def reset(self, originator: int | None = None) -> None:
        """Discard the partial assembly of one originator, or of all when None."""
        if originator is None:
            self._assemblies.clear()
        else:
            self._assemblies.pop(originator, None)

    def pending_bytes(self, originator: int) -> int:
        """Bytes held for ``originator``'s message in progress."""
        assembly = self._assemblies.get(originator)
        if assembly is None or assembly.pieces is None:
            return 0
        return assembly.size

    def _drop(self, originator: int, reason: str) -> list[tuple[tuple[bytes, ...], bytes]]:
        self._assemblies.pop(originator, None)
        self.drops[reason] += 1
        return []

    def feed(
        self, originator: int, payload: bytes | memoryview, guarantee: Guarantee
    ) -> list[tuple[tuple[bytes, ...], bytes]]:
        """Take the next packet of ``originator``; return the messages it completes, in order.

        A packet whose first item continues anything but the fragment we hold means packets
        were lost: the message in progress and that orphaned item are thrown away (counted as
        "broken_chain"), and the packet's fresh items are delivered as usual.
        """
        data: bytes = payload if isinstance(payload, bytes) else bytes(payload)
        size = len(data)
        if size < HEADER_SIZE:
            return self._drop(originator, TRUNCATED)
        # The fixed header read byte by byte (as _HEADER lays it out): native integers when
        # compiled, and no tuple to build and take apart.
        if data[0] != FORMAT_VERSION:
            return self._drop(originator, BAD_VERSION)
        if data[1]:
            return self._drop(originator, BAD_FLAG)
        count = data[2] << 8 | data[3]
        if not count:
            return self._drop(originator, NO_ITEMS)
        continues = data[4]
        fragmented = data[5]
        position = HEADER_SIZE + _SLOT * count
        if position > size:
            return self._drop(originator, TRUNCATED)
        lengths: list[int]
        if count <= _SHORT_TABLE:
            # A few lengths (messages of a quarter packet and up): read in a loop, which
            # compiled is C arithmetic, rather than through a struct's tuple.
            table: list[int] = []
            total = 0
            empty = False
            at = HEADER_SIZE
            while at < position:
                length = data[at] << 8 | data[at + 1]
                empty = empty or not length
                total += length
                table.append(length)
                at += _SLOT
            lengths = table
        else:
            lengths = list(_length_table(count).unpack_from(data, HEADER_SIZE))
            total = sum(lengths)
            empty = 0 in lengths
        if total != size - position:
            return self._drop(originator, TRUNCATED if total > size - position else TRAILING_BYTES)
        if empty:
            return self._drop(originator, EMPTY_ITEM)

        out: list[tuple[tuple[bytes, ...], bytes]] = []
        last = count - 1
        index = 0
        assembly = self._assemblies.get(originator)
        # The assembly of a message this packet completes, kept for a fragment the packet
        # ends with (one object per originator, not one per message), else removed below.
        spare: _Assembly | None = None
        if assembly is not None:
            if continues == assembly.expect:
                length = lengths[0]
                pieces = assembly.pieces
                if pieces is not None:
                    if assembly.guarantee != guarantee:
                        return self._drop(originator, GUARANTEE_CHANGED)
                    if assembly.size + length > self._limit:
                        return self._drop(originator, OVERSIZE)
                    piece = data[position : position + length]
                    if last == 0 and fragmented and length < _SMALL_PIECE:
                        # A small piece in mid-message (only a hostile or oddly configured
                        # sender cuts those): appended to a bytearray, not kept as an object
                        # of its own, so what we hold stays near ``size``, not 40 bytes a piece.
                        tail = pieces[-1]
                        if type(tail) is bytearray:
                            tail += piece
                        else:
                            pieces.append(bytearray(piece))
                    else:
                        pieces.append(piece)
                    assembly.size += length
                if last == 0 and fragmented:
                    assembly.expect = fragmented
                    return out
                spare = assembly
                if pieces is not None:
                    message = _assemble(assembly, pieces)
                    if message is None:
                        return self._drop(originator, BAD_GROUPS)
                    out.append(message)
                position += length
                index = 1
            else:
                del self._assemblies[originator]
                self.drops[BROKEN_CHAIN] += 1
                if continues:
                    index = self._orphan(originator, last, fragmented, guarantee)
                    if index < 0:
                        return out
                    position += lengths[0]
        elif continues:
            self.drops[BROKEN_CHAIN] += 1
            index = self._orphan(originator, last, fragmented, guarantee)
            if index < 0:
                return out
            position += lengths[0]

        while index <= last:
            length = lengths[index]
            stop = position + length
            if index == last and fragmented:
                if length > self._limit:
                    return self._drop(originator, OVERSIZE)
                # The group header read now when the fragment holds it whole (a malformed one
                # is left to _assemble, so it is reported when the message completes).
                groups: tuple[bytes, ...] | None = None
                start = position
                if length > 2 and data[position] == 1:
                    end = position + 2 + data[position + 1]
                    if position + 2 < end <= stop:
                        groups = (data[position + 2 : end],)
                        start = end
                if spare is None:
                    self._assemblies[originator] = _Assembly(
                        fragmented, [data[start:stop]], length, guarantee, groups
                    )
                else:
                    spare.expect = fragmented
                    spare.pieces = [data[start:stop]]
                    spare.size = length
                    spare.guarantee = guarantee
                    spare.groups = groups
                    spare = None
                break
            if length > 2 and data[position] == 1:
                # One group, the usual case, parsed here (as _parse_message does): a call less
                # per message. length > 2 keeps the name's length byte inside the item.
                end = position + 2 + data[position + 1]
                if end == position + 2 or end > stop:
                    return self._drop(originator, BAD_GROUPS)
                out.append(((data[position + 2 : end],), data[end:stop]))
            else:
                message = _parse_message(data, position, stop)
                if message is None:
                    return self._drop(originator, BAD_GROUPS)
                out.append(message)
            position = stop
            index += 1
        if spare is not None:
            del self._assemblies[originator]
        return out

    def _orphan(self, originator: int, last: int, fragmented: int, guarantee: Guarantee) -> int:
        """Skip a first item that continues a message we do not hold.

        Returns the index of the first fresh item, or -1 when the orphan also fills the packet
        and continues, in which case its later pieces are thrown away as they arrive.
        """
        if last == 0 and fragmented:
            self._assemblies[originator] = _Assembly(fragmented, None, 0, guarantee)
            return -1
        return 1
