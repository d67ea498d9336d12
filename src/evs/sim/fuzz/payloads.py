"""Hostile group-layer payloads: the shapes that sit on ``evs.totem.groups``' parser edges.

Theory of operation. An mcast's payload is a group-layer packet (a header, a length table,
the items; a message may be fragmented over several packets of one originator). Harvested
payloads are real and parse; ``hostile_groups`` builds the ones a broken or malicious peer
could send instead: tiny items, lying headers and length tables, empty or overlong group
names, 255 groups, fragment chains that start, continue the wrong id, orphan, or reassemble
into a broken header. ``chains`` remembers the fragment id each originator left open, so
that consecutive datagrams of one round can build a chain on it. The shortest shapes are
drawn three times as often as the others: they are where the parser's bounds are.
"""

from __future__ import annotations

from random import Random

from evs.sim.fuzz.wire import group_packet

__all__ = ["hostile_groups"]


def hostile_groups(rng: Random, chains: dict[int, int], frm: int) -> bytes:
    """A group-layer packet from originator ``frm`` built to break the unpacker."""
    # The shortest shapes come first and three times as often: they sit on the parser's edges.
    recipe = rng.randrange(20) % 18 % 16
    msg = bytes([1, 1]) + b"g" + rng.randbytes(rng.randint(0, 8))
    if recipe == 0:
        return group_packet([b"\x01"])  # count 1, one item of a single byte 0x01
    if recipe == 1:
        alphabet = (0, 1, 2, 3, 0xFF, rng.randrange(256))
        items = [
            bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 3)))
            for _ in range(rng.randint(1, 8))
        ]
        return group_packet(items)
    if recipe == 2:
        return group_packet([b"\x01\x00" + b"data"])  # a zero-length group name
    if recipe == 3:
        return group_packet([bytes([1, rng.choice((2, 50, 255))]) + b"ab"])  # name overrun
    if recipe == 4:
        return group_packet([b"\xff" + rng.randbytes(rng.randint(0, 20))])  # 255 groups
    if recipe == 5:
        return group_packet([bytes([rng.randint(2, 9)]) + b"\x01" * rng.randint(0, 3)])
    if recipe == 6:
        return group_packet([b"\x00" + b"abc"])  # no group at all
    if recipe == 7:
        many = bytes([255]) + b"\x01" * 255 + bytes(range(255)) + b"data"
        return group_packet([many, msg])  # 255 one-byte names: legal
    if recipe == 8:
        frag = rng.choice((1, 2, 255, rng.randint(1, 255)))
        chains[frm] = frag
        return group_packet([msg, bytes([1, 1]) + b"g" + b"x" * 20], fragmented=frag)
    if recipe == 9:
        cont = chains.get(frm, rng.randint(1, 255))
        nxt = rng.choice((0, 0, cont, rng.randint(1, 255)))
        piece = rng.choice((b"tail", b"\x01", rng.randbytes(rng.randint(1, 30))))
        items = [piece] if nxt else [piece, msg]
        if nxt:
            chains[frm] = nxt
        return group_packet(items, continues=cont, fragmented=nxt)
    if recipe == 10:
        # A chain whose reassembled message has a broken group header.
        frag = rng.randint(1, 255)
        chains[frm] = frag
        return group_packet([b"\x03\x01"], fragmented=frag)
    if recipe == 11:
        count = rng.choice((0xFFFF, 1000, 256))
        return group_packet([b"\x01"] * 3, lengths=[1] * count)  # table longer than data
    if recipe == 12:
        n = rng.randint(100, 600)
        return group_packet([b"\x01"] * n)  # hundreds of one-byte items
    if recipe == 13:
        lengths = [len(msg) + rng.choice((-1, 1, 5))]
        return group_packet([msg], lengths=lengths)  # table and data disagree
    if recipe == 14:
        return group_packet([msg, b""])  # an empty item
    return group_packet(
        [msg],
        version=rng.choice((0, 2, 255)) if rng.random() < 0.5 else 1,
        flags=rng.choice((0, 1, 0x80)),
        continues=rng.choice((0, 0, 1, 255)),
    )
