"""The shared engine of the decoder fuzzers: a seeded byte mutator, a watchdog, a runner.

Theory of operation: a run is ``count`` independent *cases*, numbered 0, 1, 2, ... Case ``i``
of target ``t`` under seed ``s`` draws everything it does from its own ``random.Random``
seeded with the string ``"t/s/i"`` (Python hashes a str seed with SHA-512, so the stream is
the same on every machine and every run), and from the target's *corpus*, which is built once
per process from the seed alone. So a case is a pure function of (target, seed, index):
``--jobs`` only decides which process runs it, and ``replay`` re-runs one case by its index.

A case returns how many *units* it fed the decoder under test (datagrams, frames, files), so
the summary counts what the acceptance criteria count. The target's oracle raises
``Escaped`` for a documented outcome broken (a forged datagram opened, a frame buffer over
its bound); any other exception out of a case is itself the failure (the decoder let
something other than its documented error out). A case that runs longer than ``slow_s`` is
a failure (slow); one still running after ``watchdog_s`` is interrupted by SIGALRM and
reported as a hang, so that a true infinite loop cannot stall the run.

``mutate`` is the generic byte mutator: bit flips, byte sets to edge values, integer fields
of 1, 2, 4 or 8 bytes overwritten with extremes, truncation, extension, deletion, insertion,
duplication of a slice and splices with another corpus entry; one to four of them stacked.
"""

from __future__ import annotations

import multiprocessing
import signal
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from random import Random
from types import FrameType
from typing import Any, Protocol

__all__ = [
    "Case",
    "Escaped",
    "Failure",
    "FuzzTarget",
    "Hang",
    "Report",
    "case_rng",
    "mutate",
    "run_cases",
    "run_one",
]

#: Cases handed to a worker process at a time.
CHUNK = 500
#: Failures kept in full in a report.
KEEP_FAILURES = 20


class Escaped(Exception):
    """An oracle's finding: the decoder's documented contract was broken."""


class Hang(BaseException):
    """Raised by the watchdog in a case that ran too long (BaseException: not caught by code
    under test that catches Exception)."""


#: A case: its random stream and a counter of outcomes in, the units it fed out.
Case = Callable[[Random, Counter[str]], int]


class FuzzTarget(Protocol):
    """A fuzz target: ``name``, ``unit`` and a ``prepare(seed)`` returning its case function."""

    name: str
    unit: str

    def prepare(self, seed: int) -> Case: ...


@dataclass
class Failure:
    index: int
    kind: str  # "exception", "escaped", "slow", "hang"
    detail: str

    def render(self) -> str:
        return f"case {self.index}: {self.kind}\n" + "\n".join(
            "    " + line for line in self.detail.rstrip().splitlines()
        )


@dataclass
class Report:
    target: str
    unit: str
    cases: int = 0
    units: int = 0
    real_s: float = 0.0
    slowest_ms: float = 0.0
    slowest_at: int = -1
    failure_counts: Counter[str] = field(default_factory=Counter)
    #: How far the inputs got (the target's own names: "opened", "decoded", ...).
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failure_counts

    def merge(self, other: Report) -> None:
        self.cases += other.cases
        self.units += other.units
        if other.slowest_ms > self.slowest_ms:
            self.slowest_ms, self.slowest_at = other.slowest_ms, other.slowest_at
        self.failure_counts.update(other.failure_counts)
        self.outcomes.update(other.outcomes)
        room = KEEP_FAILURES - len(self.failures)
        self.failures.extend(other.failures[: max(room, 0)])


def case_rng(target: str, seed: int, index: int) -> Random:
    """The random stream of one case (see the module docstring)."""
    return Random(f"{target}/{seed}/{index}")


# ------------------------------------------------------------------------------ mutation

_EDGE_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)


def _edge_int(rng: Random, width: int) -> int:
    top = (1 << (8 * width)) - 1
    k = rng.randrange(8 * width + 1)
    return rng.choice((0, 1, 2, top, top - 1, top >> 1, (top >> 1) + 1, (1 << k) - 1, 1 << k,
                       rng.randrange(top + 1))) & top  # fmt: skip


def mutate(data: bytes, rng: Random, others: Sequence[bytes] = (), most: int = 4) -> bytes:
    """``data`` with 1 to ``most`` random mutations stacked (see the module docstring)."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, most)):
        op = rng.randrange(10)
        n = len(buf)
        if op == 0 and n:  # bit flip
            i = rng.randrange(n)
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # edge byte
            buf[rng.randrange(n)] = rng.choice(_EDGE_BYTES)
        elif op == 2 and n:  # integer field overwritten with an extreme
            width = rng.choice((1, 2, 4, 8))
            if n >= width:
                i = rng.randrange(n - width + 1)
                buf[i : i + width] = _edge_int(rng, width).to_bytes(width, "big")
        elif op == 3 and n:  # truncate
            del buf[rng.randrange(n) :]
        elif op == 4:  # extend
            buf += rng.randbytes(rng.choice((1, 2, 4, 8, rng.randrange(1, 300))))
        elif op == 5 and n:  # delete a slice
            i = rng.randrange(n)
            del buf[i : i + rng.randint(1, 16)]
        elif op == 6:  # insert random bytes
            i = rng.randrange(n + 1)
            buf[i:i] = rng.randbytes(rng.randint(1, 16))
        elif op == 7 and n:  # duplicate a slice
            i = rng.randrange(n)
            j = min(n, i + rng.randint(1, 64))
            buf[j:j] = buf[i:j]
        elif op == 8 and others:  # splice: our head, another's tail
            other = rng.choice(others)
            buf = buf[: rng.randrange(n + 1)] + other[rng.randrange(len(other) + 1) :]
        elif op == 9 and n:  # a run of one byte value
            i = rng.randrange(n)
            buf[i : i + rng.randint(1, 8)] = bytes([rng.choice(_EDGE_BYTES)]) * rng.randint(1, 8)
    return bytes(buf)


# ------------------------------------------------------------------------------ running


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise Hang


@contextmanager
def _watchdog(seconds: float) -> Iterator[None]:
    if seconds <= 0 or not hasattr(signal, "setitimer"):
        yield
        return
    old = signal.signal(signal.SIGALRM, _on_alarm)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_one(
    case: Case, target: str, seed: int, index: int, *, watchdog_s: float, outcomes: Counter[str]
) -> tuple[int, float]:
    """Run case ``index`` once: (units, seconds); raises what escaped, or Hang."""
    rng = case_rng(target, seed, index)
    if watchdog_s > 0:
        signal.setitimer(signal.ITIMER_REAL, watchdog_s)
    started = time.perf_counter()
    try:
        units = case(rng, outcomes)
    finally:
        elapsed = time.perf_counter() - started
        if watchdog_s > 0:
            signal.setitimer(signal.ITIMER_REAL, 0)
    return units, elapsed


def _run_range(
    target: FuzzTarget, case: Case, seed: int, indices: range, *, watchdog_s: float, slow_s: float
) -> Report:
    report = Report(target.name, target.unit)
    with _watchdog(watchdog_s):
        for index in indices:
            report.cases += 1
            try:
                units, elapsed = run_one(
                    case, target.name, seed, index, watchdog_s=watchdog_s, outcomes=report.outcomes
                )
            except Hang:
                report.failure_counts["hang"] += 1
                report.failures.append(
                    Failure(index, "hang", f"still running after {watchdog_s} s")
                )
                continue
            except Escaped as exc:
                kind, detail = "escaped", f"{exc}\n{traceback.format_exc()}"
            except Exception:
                kind, detail = "exception", traceback.format_exc()
            else:
                report.units += units
                ms = 1000.0 * elapsed
                if ms > report.slowest_ms:
                    report.slowest_ms, report.slowest_at = ms, index
                if elapsed > slow_s:
                    report.failure_counts["slow"] += 1
                    report.failures.append(Failure(index, "slow", f"{ms:.1f} ms"))
                continue
            report.failure_counts[kind] += 1
            if len(report.failures) < KEEP_FAILURES:
                report.failures.append(Failure(index, kind, detail))
    del report.failures[KEEP_FAILURES:]
    return report


#: The worker's prepared case, per (target, seed): built once per process.
_PREPARED: dict[tuple[str, int], Case] = {}


def _prepared(target: FuzzTarget, seed: int) -> Case:
    key = (target.name, seed)
    if key not in _PREPARED:
        _PREPARED[key] = target.prepare(seed)
    return _PREPARED[key]


def _worker(args: tuple[FuzzTarget, int, int, int, float, float]) -> Report:
    target, seed, start, stop, watchdog_s, slow_s = args
    case = _prepared(target, seed)
    return _run_range(target, case, seed, range(start, stop), watchdog_s=watchdog_s, slow_s=slow_s)


def run_cases(
    target: FuzzTarget,
    seed: int,
    count: int,
    *,
    jobs: int = 1,
    watchdog_s: float = 10.0,
    slow_s: float = 1.0,
    progress: Callable[[Report], Any] | None = None,
) -> Report:
    """Run cases 0..count-1 of ``target``; ``jobs`` worker processes (1: in this process)."""
    total = Report(target.name, target.unit)
    started = time.perf_counter()
    chunks = [
        (target, seed, i, min(i + CHUNK, count), watchdog_s, slow_s) for i in range(0, count, CHUNK)
    ]
    if jobs <= 1:
        results: Iterator[Report] = map(_worker, chunks)
        for part in results:
            total.merge(part)
            total.real_s = time.perf_counter() - started
            if progress is not None:
                progress(total)
    else:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(jobs) as pool:
            for part in pool.imap_unordered(_worker, chunks):
                total.merge(part)
                total.real_s = time.perf_counter() - started
                if progress is not None:
                    progress(total)
    total.real_s = time.perf_counter() - started
    total.failures.sort(key=lambda f: f.index)
    return total
