"""What a fuzz run counts and what it keeps of each failure.

Theory of operation. A ``FuzzReport`` is plain counters (datagrams by base kind, by what
they decode as, by mutation and how many of those decode, the codec's and the processor's
drops, the effects that prove the datagrams reached the handlers, targets by state) plus the
slowest call and the failures. Reports of rounds and of worker processes ``merge`` in any
order to the same totals, which is what makes a run independent of ``--jobs``; of the
failures, the first ``FAILURES_KEPT`` by datagram index are kept in full and the rest are
only counted by kind: exception, hang, slow, insane (a broken state), bad output.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["FAILURES_KEPT", "Failure", "FuzzReport"]

#: Failures kept with all their details (the rest are only counted).
FAILURES_KEPT = 20


@dataclass
class Failure:
    """A broken promise: what happened, at which datagram, and how to get there again."""

    index: int
    kind: str  # exception, hang, slow, insane, bad output
    detail: str
    call: str  # receive or handle_timer
    datagram: str  # hex of the datagram delivered (the one before the timer, for a timer)
    base: str
    mutations: tuple[str, ...]
    target: str
    trace: str = ""

    def render(self) -> str:
        lines = [
            f"datagram {self.index}: {self.kind} in {self.call}: {self.detail}",
            f"  target: {self.target}",
            f"  datagram ({self.base}, mutations {'+'.join(self.mutations)}): {self.datagram}",
        ]
        if self.trace:
            lines.append("  " + self.trace.rstrip().replace("\n", "\n  "))
        return "\n".join(lines)


@dataclass
class FuzzReport:
    """Counts of one run (mergeable across rounds and worker processes)."""

    datagrams: int = 0
    timer_calls: int = 0
    rounds: int = 0
    by_base: Counter[str] = field(default_factory=Counter)
    decoded: Counter[str] = field(default_factory=Counter)
    by_mutation: Counter[str] = field(default_factory=Counter)
    mutation_decoded: Counter[str] = field(default_factory=Counter)
    codec_drops: Counter[str] = field(default_factory=Counter)
    core_drops: Counter[str] = field(default_factory=Counter)
    core_stats: Counter[str] = field(default_factory=Counter)
    effects: Counter[str] = field(default_factory=Counter)
    targets: Counter[str] = field(default_factory=Counter)
    failure_counts: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    slowest_ms: float = 0.0
    slowest_at: int = -1
    slowest_call: str = ""
    real_s: float = 0.0

    @property
    def exceptions(self) -> int:
        return self.failure_counts["exception"]

    @property
    def ok(self) -> bool:
        return not self.failure_counts

    def merge(self, other: FuzzReport) -> None:
        self.datagrams += other.datagrams
        self.timer_calls += other.timer_calls
        self.rounds += other.rounds
        for name in (
            "by_base",
            "decoded",
            "by_mutation",
            "mutation_decoded",
            "codec_drops",
            "core_drops",
            "core_stats",
            "effects",
            "targets",
            "failure_counts",
        ):
            getattr(self, name).update(getattr(other, name))
        room = FAILURES_KEPT - len(self.failures)
        self.failures.extend(sorted(other.failures, key=lambda f: f.index)[: max(0, room)])
        self.failures.sort(key=lambda f: f.index)
        if other.slowest_ms > self.slowest_ms:
            self.slowest_ms = other.slowest_ms
            self.slowest_at = other.slowest_at
            self.slowest_call = other.slowest_call

    def fail(self, failure: Failure) -> None:
        self.failure_counts[failure.kind] += 1
        if len(self.failures) < FAILURES_KEPT:
            self.failures.append(failure)
