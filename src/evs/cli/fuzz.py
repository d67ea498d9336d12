"""``evs fuzz``: feed live processors hostile but decodable datagrams (docs/fuzzing.md).

Exit codes: 0 when no call raised, hung, ran long, emitted an undecodable datagram or left
the processor in a broken state; 1 otherwise (with a replay command per failure); 2 for bad
arguments.

``--target core`` (the default) is the core fuzzer above (``evs.sim.fuzz``); ``--target open``,
``ipc``, ``session`` and ``config`` run the decoder fuzzers of ``evs.fuzz_targets`` for
``--count`` cases, with the same exit codes.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from typing import Any

from evs.fuzz_targets import TARGETS, Report, run_cases
from evs.fuzz_targets.engine import run_one
from evs.sim.fuzz import FuzzReport, fuzz, harvest, replay

__all__ = ["add_parser", "run"]

#: Seconds between two progress lines.
PROGRESS_EVERY_S = 3.0

_DESCRIPTION = """\
Harvest real datagrams and processor snapshots (OPERATIONAL, GATHER, COMMIT, RECOVERY) from
small simulated clusters, then deliver mutated datagrams, made fresh for each live target
(its ring, its next sequence numbers, its members), and check that no call raises or runs
long. A run is a pure function of --seed and --nodes: --replay INDEX re-runs one datagram.
--target open|ipc|session|config runs a decoder fuzzer instead (sealed datagrams through
Opener.open and the totem decoder, IPC frames into the executive, IPC frames into a client
session, configuration files through load_config) for --count cases.
Exit status: 0 no failure, 1 failures found (each with its replay command), 2 bad arguments."""


def _whole(least: int = 0, most: int | None = None, why: str = "") -> Callable[[str], int]:
    """An argparse type: a whole number (``1_000`` and ``1,000`` too) in least..most."""

    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", "").replace(",", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
        if most is not None and not least <= value <= most:
            raise argparse.ArgumentTypeError(f"must be {least}..{most}{why}, got {value}")
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``fuzz`` on the ``evs`` command's subparsers and return its parser."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "fuzz",
        help="deliver hostile but decodable datagrams to live processors",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    natural = _whole()
    p.add_argument(
        "--target",
        choices=("core", *TARGETS),
        default="core",
        help="what to fuzz: core (default: the processor), or a decoder: "
        "open, ipc, session, config",
    )
    p.add_argument("--seed", type=natural, required=True, help="the run's seed")
    p.add_argument(
        "--count",
        type=_whole(1),
        default=10_000,
        help="cases to run, for a decoder target (default 10000; each feeds one or more "
        "datagrams, frames or files)",
    )
    p.add_argument("--datagrams", type=_whole(1), default=100_000, help="how many (default 100000)")
    p.add_argument(
        "--nodes",
        type=_whole(2, 16, " (simulated cluster size)"),
        help="size of the harvest clusters (default: drawn, 2-6)",
    )
    p.add_argument(
        "--jobs", type=natural, default=1, help="worker processes (0: one per core; default 1)"
    )
    p.add_argument(
        "--replay", type=natural, metavar="INDEX", help="re-run one datagram and describe it"
    )
    p.add_argument(
        "--watchdog",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="interrupt a call still running after this long (default 10)",
    )
    p.add_argument(
        "--slow",
        type=_seconds,
        default=0.5,
        metavar="SECONDS",
        help="report a call that took longer as a failure (default 0.5)",
    )
    return p


def replay_command(seed: int, nodes: int | None, index: int) -> str:
    """The ``evs fuzz`` command line that re-runs datagram ``index``."""
    parts = ["evs fuzz", f"--seed {seed}"]
    if nodes:
        parts.append(f"--nodes {nodes}")
    parts.append(f"--replay {index}")
    return " ".join(parts)


def _counts(counter: Counter[str], total: int | None = None, limit: int = 40) -> str:
    if not counter:
        return "none"
    items = counter.most_common(limit)
    if total:
        text = ", ".join(f"{k} {v} ({100.0 * v / total:.1f}%)" for k, v in items)
    else:
        text = ", ".join(f"{k} {v}" for k, v in items)
    if len(counter) > limit:
        text += f", ... {len(counter) - limit} more"
    return text


def _other_failures(report: FuzzReport) -> int:
    return sum(report.failure_counts.values()) - report.exceptions


def _summary(report: FuzzReport, seed: int, nodes: int | None) -> None:
    n = report.datagrams
    rate = n / report.real_s if report.real_s else 0.0
    print(
        f"datagrams: {n} in {report.real_s:.1f} s ({rate:.0f}/s), {report.rounds} rounds "
        f"(targets: {_counts(report.targets)}), {report.timer_calls} timer calls"
    )
    print(f"by message type: {_counts(report.by_base, n)}")
    print(f"decoded as: {_counts(report.decoded, n)}")
    applied = ", ".join(
        f"{k} {v} ({100.0 * report.mutation_decoded[k] / v:.0f}% decodable)"
        for k, v in report.by_mutation.most_common()
    )
    print(f"mutations: {applied or 'none'}")
    print(f"codec drops by reason: {_counts(report.codec_drops)}")
    print(f"processor drops by reason: {_counts(report.core_drops)}")
    print(f"reached the handlers: {_counts(report.effects)}")
    print(
        f"slowest call: {report.slowest_ms:.2f} ms (datagram {report.slowest_at}, "
        f"{report.slowest_call or '-'})"
    )
    fc = report.failure_counts
    print(
        f"exceptions: {fc['exception']}, hangs: {fc['hang']}, slow calls: {fc['slow']}, "
        f"insane states: {fc['insane']}, bad outputs: {fc['bad output']}"
    )
    if report.ok:
        print("result: OK, nothing escaped")
        return
    total = sum(fc.values())
    print(f"FAILURES ({total}, first {len(report.failures)} shown):")
    for failure in report.failures:
        print(failure.render())
        print("  replay: " + replay_command(seed, nodes, failure.index))


def target_replay_command(target: str, seed: int, index: int) -> str:
    """The command line that re-runs case ``index`` of a decoder target."""
    return f"evs fuzz --target {target} --seed {seed} --replay {index}"


def _target_summary(report: Report, seed: int) -> None:
    rate = report.units / report.real_s if report.real_s else 0.0
    print(
        f"{report.target}: {report.cases} cases, {report.units} {report.unit} in "
        f"{report.real_s:.1f} s ({rate:.0f} {report.unit}/s)"
    )
    print(f"outcomes: {_counts(report.outcomes)}")
    print(f"slowest case: {report.slowest_ms:.2f} ms (case {report.slowest_at})")
    fc = report.failure_counts
    print(
        f"exceptions: {fc['exception']}, oracle failures: {fc['escaped']}, "
        f"hangs: {fc['hang']}, slow cases: {fc['slow']}"
    )
    if report.ok:
        print("result: OK, nothing escaped")
        return
    print(f"FAILURES ({sum(fc.values())}, first {len(report.failures)} shown):")
    for failure in report.failures:
        print(failure.render())
        print("  replay: " + target_replay_command(report.target, seed, failure.index))


def run_target(args: argparse.Namespace) -> int:
    """``evs fuzz --target T``: one decoder fuzzer (``evs.fuzz_targets``)."""
    target = TARGETS[args.target]
    seed = args.seed
    if args.replay is not None:
        case = target.prepare(seed)
        outcomes: Counter[str] = Counter()
        try:
            units, elapsed = run_one(
                case, target.name, seed, args.replay, watchdog_s=args.watchdog, outcomes=outcomes
            )
        except Exception:
            print(f"case {args.replay}: FAILED")
            print(traceback.format_exc().rstrip())
            return 1
        print(
            f"case {args.replay}: {units} {target.unit} in {1000 * elapsed:.2f} ms, "
            f"outcomes: {_counts(outcomes)}"
        )
        return 1 if elapsed > args.slow else 0
    jobs = args.jobs or multiprocessing.cpu_count()
    print(f"evs fuzz: target={target.name} seed={seed} count={args.count} jobs={jobs}", flush=True)
    last = [time.perf_counter()]

    def progress(report: Report) -> None:
        now = time.perf_counter()
        if now - last[0] < PROGRESS_EVERY_S or report.cases >= args.count:
            return
        last[0] = now
        rate = report.units / report.real_s if report.real_s else 0.0
        print(
            f"  {report.cases}/{args.count} cases, {report.units} {report.unit}, "
            f"{rate:.0f}/s, {sum(report.failure_counts.values())} failures, "
            f"{report.real_s:.0f} s",
            flush=True,
        )

    report = run_cases(
        target,
        seed,
        args.count,
        jobs=jobs,
        watchdog_s=args.watchdog,
        slow_s=args.slow,
        progress=progress,
    )
    _target_summary(report, seed)
    return 0 if report.ok else 1


def run(args: argparse.Namespace) -> int:
    """Run the fuzzer as described by parsed ``args``; returns the exit status."""
    if args.target != "core":
        return run_target(args)
    seed, nodes = args.seed, args.nodes
    jobs = args.jobs or multiprocessing.cpu_count()
    print(f"evs fuzz: seed={seed} nodes={nodes or 'drawn'} jobs={jobs}", flush=True)
    started = time.perf_counter()
    corpus = harvest(seed, nodes)
    print(corpus.describe(), flush=True)
    print(f"  ({time.perf_counter() - started:.1f} s)", flush=True)
    if args.replay is not None:
        text, report = replay(
            seed, args.replay, nodes=nodes, corpus=corpus, watchdog_s=args.watchdog
        )
        print(text)
        mine = [f for f in report.failures if f.index == args.replay]
        for failure in mine:
            print(failure.render())
        return 1 if mine else 0
    total = args.datagrams
    last = [time.perf_counter()]

    def progress(report: FuzzReport) -> None:
        now = time.perf_counter()
        if now - last[0] < PROGRESS_EVERY_S or report.datagrams >= total:
            return
        last[0] = now
        rate = report.datagrams / report.real_s if report.real_s else 0.0
        print(
            f"  {report.datagrams}/{total} datagrams, {rate:.0f}/s, "
            f"{report.exceptions} exceptions, {_other_failures(report)} other failures, "
            f"{report.real_s:.0f} s",
            flush=True,
        )

    report = fuzz(
        seed,
        total,
        jobs=jobs,
        corpus=corpus,
        watchdog_s=args.watchdog,
        slow_s=args.slow,
        progress=progress,
    )
    _summary(report, seed, nodes)
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry: ``python -m evs.cli.fuzz``."""
    parser = argparse.ArgumentParser(prog="evs")
    add_parser(parser.add_subparsers(dest="command"))
    return run(parser.parse_args(["fuzz", *(argv if argv is not None else sys.argv[1:])]))


if __name__ == "__main__":
    sys.exit(main())
