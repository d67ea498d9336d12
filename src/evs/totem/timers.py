"""Named deadlines of one processor: the driver only ever asks for the earliest one.

The core never sleeps or reads a clock; it records "fire X at time T" here, the driver calls
``Processor.handle_timer(now)`` once ``now`` reaches ``next_deadline()``, and the processor
fires every expired timer in a fixed order so runs are reproducible.
"""

from __future__ import annotations

import enum

__all__ = ["Timer", "Timers"]


class Timer(enum.IntEnum):
    """Timer names (corosync's), in the order they fire when due at the same instant."""

    TOKEN = 0
    TOKEN_RETRANSMIT = 1
    HOLD = 2
    JOIN = 3
    CONSENSUS = 4
    MERGE_DETECT = 5


class Timers:
    """A small table of deadlines (milliseconds on the driver's monotonic clock)."""

    __slots__ = ("_at",)

    def __init__(self) -> None:
        self._at: dict[Timer, float] = {}

    def arm(self, timer: Timer, at: float) -> None:
        self._at[timer] = at

    def cancel(self, *timers: Timer) -> None:
        for timer in timers:
            self._at.pop(timer, None)

    def running(self, timer: Timer) -> bool:
        return timer in self._at

    def deadline(self, timer: Timer) -> float | None:
        return self._at.get(timer)

    def next_deadline(self) -> float | None:
        # A loop rather than min(): asked on every packet, and compiled it runs on C floats.
        best: float | None = None
        for at in self._at.values():
            if best is None or at < best:
                best = at
        return best

    def pop_next_due(self, now: float) -> Timer | None:
        """Remove and return the earliest timer due at ``now`` (ties by name order), if any."""
        due = [(at, timer) for timer, at in self._at.items() if at <= now]
        if not due:
            return None
        _, timer = min(due)
        del self._at[timer]
        return timer
