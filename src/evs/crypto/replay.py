"""Per-sender replay windows: each (sender, boot id, counter) is accepted at most once.

Theory of operation: a sender numbers its datagrams 0, 1, 2, ... within one boot, and takes a
larger boot id each time it starts. For each sender the receiver keeps the newest boot id it has
authenticated, the highest counter seen in that boot (``top``) and a bitmap of the ``width``
counters at and below ``top`` (bit ``i`` set: ``top - i`` was seen). A counter above ``top``
slides the window; one inside it is accepted if its bit is clear; one below it is too old to
tell and is refused. A datagram from a newer boot replaces the sender's state (the node
restarted); one from an older boot is refused, so a recording of a past boot cannot be played
back.

``check`` only looks; ``accept`` records. The opener calls ``check`` before decrypting (a cheap
refusal) and ``accept`` only after the tag verified, so a forger cannot move a window.
The table holds one entry per sender the caller admits, so it is bounded by the node list.
"""

from __future__ import annotations

from typing import Final

__all__ = ["REPLAY_WINDOW", "ReplayWindows"]

#: Datagrams a sender may be reordered by and still be accepted.
REPLAY_WINDOW: Final = 1024


class ReplayWindows:
    """The replay state of every sender; plain ints so a check is a few operations."""

    __slots__ = ("_mask", "_senders", "width")

    def __init__(self, width: int = REPLAY_WINDOW) -> None:
        if not 1 <= width <= 1 << 16:
            raise ValueError(f"replay window must be 1..65536 wide, got {width}")
        self.width = width
        self._mask = (1 << width) - 1
        #: sender -> [boot id, top counter, bitmap]
        self._senders: dict[int, list[int]] = {}

    def check(self, sender: int, boot: int, counter: int) -> str | None:
        """None if the datagram would be new, else the drop reason."""
        state = self._senders.get(sender)
        if state is None:
            return None
        known_boot, top, bits = state
        if boot != known_boot:
            return None if boot > known_boot else "stale_boot"
        if counter > top:
            return None
        behind = top - counter
        if behind >= self.width:
            return "too_old"
        return "replay" if (bits >> behind) & 1 else None

    def accept(self, sender: int, boot: int, counter: int) -> None:
        """Record an authenticated datagram that ``check`` let through."""
        state = self._senders.get(sender)
        if state is None or boot > state[0]:
            self._senders[sender] = [boot, counter, 1]
            return
        top = state[1]
        if counter > top:
            ahead = counter - top
            state[1] = counter
            state[2] = ((state[2] << ahead) | 1) & self._mask if ahead < self.width else 1
        else:
            state[2] |= 1 << (top - counter)

    def boot_of(self, sender: int) -> int | None:
        """The newest boot id seen from ``sender`` (status and tests)."""
        state = self._senders.get(sender)
        return None if state is None else state[0]
