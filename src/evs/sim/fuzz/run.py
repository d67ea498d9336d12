"""The trial loop: rounds of hostile datagrams to live targets, every call watched.

Theory of operation. A run is a sequence of rounds of ``ROUND`` datagrams. Each round draws
from its own named stream of the seed (``evs.sim.rng.derive``), thaws one harvested target
(OPERATIONAL twice as often as each other state) and delivers to it, one forged datagram at
a time, with the clock moving on between datagrams (a few ms, now and then a jump of up to
1.5 token timeouts) so that timers fire on whatever state the datagrams left. The oracle,
after each ``receive`` and each ``handle_timer`` that was due:

* nothing raised, and no call ran longer than ``slow_s``; a SIGALRM watchdog interrupts a
  true infinite loop (``Hang``), so that it is reported instead of stalling the run;
* the driver contract: ``outbox`` and ``events`` are drained, and every datagram the target
  emits decodes (a sequence number the core itself raised to 2^62 is counted, not failed);
* the state is sane (``probe.check_state``).

After a failure the round goes on with a fresh copy of its target. Since every round has its
own stream, datagram ``i`` is replayed by re-running round ``i // ROUND`` up to it, and
``jobs`` worker processes (forked, each with the corpus) give the same totals as one.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

from evs.sim.fuzz.forge import Forge, Forged
from evs.sim.fuzz.harvest import Corpus, harvest
from evs.sim.fuzz.probe import Glance, check_state, describe_target, glance, holds
from evs.sim.fuzz.report import Failure, FuzzReport
from evs.sim.rng import derive
from evs.totem.codec import DecodeError, decode
from evs.totem.events import ConfigChange, Deliver
from evs.totem.messages import CommitToken, Join, Mcast, OrfToken
from evs.totem.processor import Processor

__all__ = ["CHUNK_ROUNDS", "ROUND", "Hang", "fuzz", "replay"]

#: Datagrams per round: one thawed target takes this many before the next round's fresh one.
ROUND = 250
#: Rounds per task of a parallel run (and between two progress reports).
CHUNK_ROUNDS = 8
#: How often each state's snapshots are drawn as targets: a ring is mostly operational.
_STATE_WEIGHTS = {"operational": 2, "gather": 1, "commit": 1, "recovery": 1}
#: The codec's drop reason for a sequence number at or above 2^62 (not in every version).
_OUT_OF_RANGE = "out_of_range"


class Hang(BaseException):
    """Raised by the watchdog's SIGALRM handler inside a call that ran too long.

    A BaseException, so that no ``except Exception`` in the code under test can swallow it.
    """


class _Watchdog:
    """SIGALRM armed around each call: a true infinite loop becomes a Hang, not a stuck run.

    Only in the main thread of a process that has SIGALRM (signal handlers live there);
    elsewhere calls are only timed.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.active = (
            seconds > 0
            and hasattr(signal, "setitimer")
            and threading.current_thread() is threading.main_thread()
        )
        self._old: Any = None

    def __enter__(self) -> _Watchdog:
        if self.active:
            self._old = signal.signal(signal.SIGALRM, self._fire)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.active:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._old)

    def _fire(self, signum: int, frame: FrameType | None) -> None:
        raise Hang(f"call still running after {self.seconds:g} s (watchdog)")

    def arm(self) -> None:
        if self.active:
            signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def disarm(self) -> None:
        if self.active:
            signal.setitimer(signal.ITIMER_REAL, 0)


@dataclass(frozen=True)
class _Limits:
    """How a run's calls are judged, and which mutations it draws (None: all)."""

    watchdog_s: float
    slow_s: float
    kinds: tuple[str, ...] | None


class _Round:
    """One target, ROUND datagrams (or fewer), every call watched and every output checked."""

    def __init__(  # noqa: PLR0917
        self,
        corpus: Corpus,
        seed: int,
        number: int,
        report: FuzzReport,
        limits: _Limits,
        watchdog: _Watchdog,
    ) -> None:
        self.corpus = corpus
        self.number = number
        self.report = report
        self.watchdog = watchdog
        self.slow_s = limits.slow_s
        self.kinds = limits.kinds
        self.rng = derive(seed, f"hostile round {number}")
        self.forge = Forge(corpus, self.rng)
        self.cid = corpus.cluster_id
        states = sorted(corpus.targets)
        weights = [_STATE_WEIGHTS.get(state, 1) for state in states]
        state = self.rng.choices(states, weights)[0]
        self.snapshot = self.rng.choice(corpus.targets[state])
        self.proc = self.snapshot.thaw()
        self.now = self.snapshot.now
        self._counters(self.proc)
        report.targets[self.snapshot.state] += 1
        self.trace_line = ""

    def _counters(self, p: Processor) -> None:
        self.base_drops = Counter(p.drops)
        self.base_stats = Counter(p.stats)

    def _retire(self) -> None:
        p = self.proc
        self.report.core_drops.update(Counter(p.drops) - self.base_drops)
        self.report.core_stats.update(Counter(p.stats) - self.base_stats)

    def _reload(self) -> None:
        """After a failure the target's state is suspect: start over from the snapshot."""
        self._retire()
        self.proc = self.snapshot.thaw()
        self._counters(self.proc)

    def run(self, start: int, stop: int, detail_at: int = -1) -> None:
        for index in range(start, stop):
            self.step(index, detail_at == index)
        self._retire()
        self.report.rounds += 1

    def step(self, index: int, detail: bool = False) -> None:
        report = self.report
        rng = self.rng
        p = self.proc
        forged = self.forge.make(p, self.kinds)
        data = forged.data
        report.datagrams += 1
        report.by_base[forged.base] += 1
        try:
            msg = decode(data, self.cid)
        except DecodeError as exc:
            msg = None
            report.codec_drops[exc.reason.value] += 1
        for kind in forged.mutations:
            report.by_mutation[kind] += 1
            if msg is not None:
                report.mutation_decoded[kind] += 1
        before = glance(p)
        self.now += rng.expovariate(1 / 3.0)
        if rng.random() < 0.02:
            self.now += rng.uniform(0, 1.5 * p.config.token)
        if detail:
            self.trace_line = "\n".join(
                [
                    f"datagram {index}: round {self.number}, {forged.base} with mutations "
                    f"{'+'.join(forged.mutations)}, {len(data)} bytes",
                    f"  target before: {describe_target(self.snapshot.label, before)}",
                    f"  hex: {data.hex()}",
                    f"  decodes as: {msg!r}"[:2000],
                ]
            )
        now = self.now
        ok = self._call(index, "receive", lambda: p.receive(now, data), forged, before)
        if ok:
            if msg is not None:
                report.decoded[_type_name(msg)] += 1
                self._effects(p, msg, data, before)
            ok = self._check(index, "receive", p, forged, before)
        if ok:
            due = p.next_deadline()
            if due is not None and due <= self.now:
                report.timer_calls += 1
                ok = self._call(index, "handle_timer", lambda: p.handle_timer(now), forged, before)
                ok = ok and self._check(index, "handle_timer", p, forged, before)
        if detail:
            after = describe_target(self.snapshot.label, glance(p))
            self.trace_line += "\n  target after: " + after
            self.trace_line += "\n  outcome: " + ("ok" if ok else "FAILED")
        if not ok:
            self._reload()

    def _call(
        self, index: int, what: str, fn: Callable[[], None], forged: Forged, before: Glance
    ) -> bool:
        """Run one input under the watchdog; False if it failed."""
        report = self.report
        watchdog = self.watchdog
        started = time.perf_counter()
        error: BaseException | None = None
        watchdog.arm()
        try:
            fn()
        except Hang as exc:
            error = exc
        except Exception as exc:  # the oracle: nothing may escape
            error = exc
        finally:
            watchdog.disarm()
        took = time.perf_counter() - started
        if took * 1000.0 > report.slowest_ms:
            report.slowest_ms = took * 1000.0
            report.slowest_at = index
            report.slowest_call = f"{what} of {forged.base} ({'+'.join(forged.mutations)})"
        if isinstance(error, Hang):
            kind, detail = "hang", str(error)
        elif error is not None:
            kind, detail = "exception", f"{type(error).__name__}: {error}"
        elif took > self.slow_s:
            kind, detail = "slow", f"took {took:.3f} s (limit {self.slow_s:g} s)"
        else:
            return True
        trace = "".join(traceback.format_exception(error)) if error is not None else ""
        self._fail(index, kind, detail, what, forged, before, trace)
        return False

    def _effects(self, p: Processor, msg: object, data: bytes, before: Glance) -> None:
        """What the datagram did to the target: proof it got past the first checks."""
        effects = self.report.effects
        after = glance(p)
        if before.state is not after.state:
            effects[f"state {before.state.value} -> {after.state.value}"] += 1
        if isinstance(msg, OrfToken):
            if after.my_token_seq == msg.token_seq and before.my_token_seq != after.my_token_seq:
                effects["token accepted"] += 1
        elif isinstance(msg, Mcast):
            if holds(p, msg.seq, data):
                effects["mcast stored (encapsulated)" if msg.inner else "mcast stored"] += 1
        elif isinstance(msg, Join):
            if before.gather != after.gather or before.state is not after.state:
                effects["join changed the gather sets"] += 1
        elif isinstance(msg, CommitToken) and (
            before.commit_token_seq != after.commit_token_seq or before.ring_id != after.ring_id
        ):
            effects["commit token taken"] += 1

    def _check(self, index: int, what: str, p: Processor, forged: Forged, before: Glance) -> bool:
        """Drain the outputs (the driver contract) and check them and the target's state."""
        kind = "bad output"
        bad = self._drain(p)
        if bad is None:
            kind = "insane"
            bad = check_state(p)
        if bad is None:
            return True
        self._fail(index, kind, bad, what, forged, before)
        return False

    def _drain(self, p: Processor) -> str | None:
        """Take the outbox and events as a driver does; what is wrong with them, if anything."""
        report = self.report
        out, p.outbox = p.outbox, []
        events, p.events = p.events, []
        sent = [d for _, d in out]
        for ev in events:
            if isinstance(ev, Deliver):
                report.effects["delivered"] += 1
            elif isinstance(ev, ConfigChange):
                report.effects[
                    "transitional configuration" if ev.transitional else "regular configuration"
                ] += 1
            sent.extend(d for _, d in getattr(ev, "then_send", ()))
        for d in sent:
            try:
                decode(d, self.cid)
            except DecodeError as exc:
                if exc.reason.value != _OUT_OF_RANGE:
                    return f"emitted an undecodable datagram ({exc}): {d.hex()}"
                # A number the core raised past 2^62 by its own +1 (accepted just below):
                # encodable, though peers drop it. Counted, not a failure.
                report.effects["emitted out of range (peers drop it)"] += 1
        return None

    def _fail(  # noqa: PLR0917
        self,
        index: int,
        kind: str,
        detail: str,
        what: str,
        forged: Forged,
        before: Glance,
        trace: str = "",
    ) -> None:
        self.report.fail(
            Failure(
                index=index,
                kind=kind,
                detail=detail,
                call=what,
                datagram=forged.data.hex(),
                base=forged.base,
                mutations=forged.mutations,
                target=describe_target(self.snapshot.label, before),
                trace=trace,
            )
        )


def _type_name(msg: object) -> str:
    if isinstance(msg, Mcast):
        return "mcast (encapsulated)" if msg.inner is not None else "mcast"
    return type(msg).__name__


# ------------------------------------------------------------------------------ runs

#: Rounds as (round number, first datagram index, end index).
_Chunk = Sequence[tuple[int, int, int]]


def _rounds(total: int) -> Iterator[tuple[int, int, int]]:
    """(round number, first index, end index) covering datagrams 0 .. total-1."""
    for number in range(-(-total // ROUND)):
        yield number, number * ROUND, min(total, (number + 1) * ROUND)


def _run_chunk(
    corpus: Corpus, seed: int, chunk: _Chunk, limits: _Limits, detail_at: int = -1
) -> tuple[FuzzReport, str]:
    """Run the rounds of ``chunk``; the report, and the description of datagram ``detail_at``."""
    report = FuzzReport()
    started = time.perf_counter()
    detail = ""
    with _Watchdog(limits.watchdog_s) as watchdog:
        for number, start, stop in chunk:
            rnd = _Round(corpus, seed, number, report, limits, watchdog)
            rnd.run(start, stop, detail_at)
            detail = detail or rnd.trace_line
    report.real_s = time.perf_counter() - started
    return report, detail


_WORKER_CORPUS: list[Corpus] = []


def _worker_init(corpus: Corpus) -> None:
    _WORKER_CORPUS[:] = [corpus]


def _worker(task: tuple[int, _Chunk, _Limits]) -> FuzzReport:
    seed, chunk, limits = task
    return _run_chunk(_WORKER_CORPUS[0], seed, chunk, limits)[0]


def fuzz(
    seed: int,
    datagrams: int,
    *,
    nodes: int | None = None,
    jobs: int = 1,
    corpus: Corpus | None = None,
    kinds: Sequence[str] | None = None,
    watchdog_s: float = 10.0,
    slow_s: float = 0.5,
    progress: Callable[[FuzzReport], None] | None = None,
) -> FuzzReport:
    """Feed ``datagrams`` hostile datagrams to live targets harvested from ``seed``.

    ``jobs`` worker processes share the rounds (the result does not depend on it);
    ``kinds`` restricts the mutations (tests); ``progress`` sees the running totals after
    every chunk of rounds.
    """
    if datagrams < 0:
        raise ValueError(f"datagrams must not be negative, got {datagrams}")
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    started = time.perf_counter()
    if corpus is None:
        corpus = harvest(seed, nodes)
    limits = _Limits(watchdog_s, slow_s, None if kinds is None else tuple(kinds))
    rounds = list(_rounds(datagrams))
    chunks = [rounds[i : i + CHUNK_ROUNDS] for i in range(0, len(rounds), CHUNK_ROUNDS)]
    total = FuzzReport()

    def gather(parts: Iterable[FuzzReport]) -> None:
        for part in parts:
            total.merge(part)
            total.real_s = time.perf_counter() - started
            if progress:
                progress(total)

    if jobs == 1 or len(chunks) <= 1:
        gather(_run_chunk(corpus, seed, chunk, limits)[0] for chunk in chunks)
    else:
        ctx = multiprocessing.get_context("fork")
        work = [(seed, chunk, limits) for chunk in chunks]
        with ctx.Pool(jobs, initializer=_worker_init, initargs=(corpus,)) as pool:
            gather(pool.imap_unordered(_worker, work))
    total.real_s = time.perf_counter() - started
    return total


def replay(
    seed: int,
    index: int,
    *,
    nodes: int | None = None,
    corpus: Corpus | None = None,
    watchdog_s: float = 10.0,
) -> tuple[str, FuzzReport]:
    """Re-run datagram ``index`` of seed ``seed`` (its round up to it) and describe it."""
    if index < 0:
        raise ValueError(f"index must not be negative, got {index}")
    if corpus is None:
        corpus = harvest(seed, nodes)
    number = index // ROUND
    chunk = [(number, number * ROUND, index + 1)]
    report, text = _run_chunk(corpus, seed, chunk, _Limits(watchdog_s, 0.5, None), index)
    return text, report
