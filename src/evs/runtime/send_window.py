"""Windowed sends: messages a client may stream without waiting for each one's answer.

Theory of operation: a synchronous send costs the application a round trip to its executive
per message, which caps one sender at a few thousand messages per second. Instead each handle
gets a *send window* of ``window`` bytes (each message costs what the caller says: the IPC layer
counts ``evs.ipc.messages.mcast_cost``, which its client counts alike). Within
it the executive accepts every message: it is checked at once (groups resolved, size, guarantee;
a refusal means the client broke its own library's checks), then handed to the core, or, if the
core's send queue is full, kept here in arrival order across all handles and handed over as
soon as the queue has room (``drain``, run by the I/O layer before each step); while the
service holds this node's sends for a lagging local reader (``sends_held``) they wait here
too. The window's bytes go back to the client (``take_credits``) only when the core has the
message, so what waits here per handle never exceeds the window, and a client that sends past
it is refused.

Nothing accepted is dropped: the messages of a handle that closes still go to the core, in
their place. Order per handle is kept because a handle's new message never overtakes a waiting
one (every message queues behind anything already waiting, whoever sent it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Final

from evs.errors import InvalidArgument, TryAgain
from evs.runtime.service import EvsService, Handle
from evs.types import Guarantee

__all__ = ["SEND_WINDOW", "SendWindows", "WindowExceeded"]

#: Default bytes of windowed sends one handle may have outstanding (``[ipc]
#: send_window_bytes``). Under saturation a message waits behind its client's whole window:
#: 512 KiB halved the wait of 1 MiB for the same throughput (docs/benchmarks.md, "A smaller
#: send queue").
SEND_WINDOW: Final = 1 << 19

_Waiting = tuple[Handle, tuple[bytes, ...], bytes, Guarantee, int]


class WindowExceeded(InvalidArgument):
    """The client sent more than its window: it does not follow the protocol."""


class SendWindows:
    """The waiting messages and the credits owed, for every handle of one service."""

    __slots__ = ("_credits", "_held", "_waiting", "service", "window")

    def __init__(self, service: EvsService, window: int = SEND_WINDOW) -> None:
        if not 1 <= window < 1 << 31:
            raise ValueError(f"the send window must be 1..2**31-1 bytes, got {window}")
        self.service = service
        self.window = window
        self._waiting: deque[_Waiting] = deque()
        #: handle id -> bytes of that handle's messages waiting here.
        self._held: dict[int, int] = {}
        #: handle id -> (handle, bytes to give back).
        self._credits: dict[int, tuple[Handle, int]] = {}

    @property
    def waiting(self) -> int:
        """Messages accepted and not yet in the core's send queue."""
        return len(self._waiting)

    def held(self, h: Handle) -> int:
        return self._held.get(h.id, 0)

    def mcast(
        self,
        h: Handle,
        groups: Iterable[str | bytes] | None,
        data: bytes,
        guarantee: Guarantee,
        cost: int,
    ) -> None:
        """Accept one windowed message costing ``cost`` bytes of the handle's window; raises
        InvalidArgument (WindowExceeded) only."""
        service = self.service
        names, body, g = service.check_mcast(h, groups, data, guarantee)
        held = self._held.get(h.id, 0)
        if held and held + cost > self.window:
            raise WindowExceeded(
                f"the client sent past its send window: {held} bytes were waiting at the "
                f"executive and a message costing {cost} came; the window is {self.window} bytes"
            )
        if not self._waiting and not service.sends_held:
            try:
                service.submit_checked(h, names, body, g, room_again=False)
            except TryAgain:
                pass
            else:
                self._credit(h, cost)
                return
        self._waiting.append((h, names, body, g, cost))
        self._held[h.id] = held + cost
        service.counters["sends held for room"] += 1

    def drain(self) -> int:
        """Hand waiting messages to the core while it takes them; how many it took."""
        waiting = self._waiting
        if self.service.sends_held:
            return 0  # a local reader is catching up (EvsService.check_readers)
        submit = self.service.submit_checked
        taken = 0
        while waiting:
            h, names, body, g, cost = waiting[0]
            try:
                submit(h, names, body, g, room_again=False)
            except TryAgain:
                break
            except Exception:
                # The checks at acceptance are the core's own; this cannot happen unless they
                # drift apart or a bug is below. Counted (the executive's status shows it) and
                # dropped: raising would wedge every later step on the same message.
                self.service.counters["held sends the core refused"] += 1
            else:
                taken += 1
            waiting.popleft()
            left = self._held[h.id] - cost
            if left:
                self._held[h.id] = left
            else:
                del self._held[h.id]
            self._credit(h, cost)
        return taken

    def _credit(self, h: Handle, cost: int) -> None:
        if h.id in self.service.handles:  # a closed handle's messages still go, uncredited
            got = self._credits.get(h.id)
            self._credits[h.id] = (h, cost if got is None else got[1] + cost)

    def take_credits(self) -> list[tuple[Handle, int]]:
        """(handle, bytes) the clients may send again, since the last call."""
        if not self._credits:
            return []
        out = list(self._credits.values())
        self._credits.clear()
        return out
