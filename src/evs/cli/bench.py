"""``evs bench``: throughput and latency of a local cluster through the public API.

Theory of operation: the command starts ``--nodes`` real ``evs daemon`` processes
(``LocalCluster``, on 127.0.0.N or, with ``--netns``, each in a network namespace on a veth
bridge like the corosync lab), then runs one measurement per (sender mode, size, repetition).
A run forks one receiver process per node (joined to a fresh group) and one sender process per
sending node, or ``--sender-clients`` K of them (not joined; ``mcast_groups`` with blocking
back-pressure; each its own verified stream): one process per
client, so the Python library's GIL never makes one client wait for another and the figures
are those of separate applications. Once every receiver has the full ring as its
configuration, the senders start together at t0 and send until t0 + warm-up + seconds + 0.3 s
(or ``--count`` messages each); each receiver counts what it delivers in the window
[t0 + warm-up, t0 + warm-up + seconds), samples the send-to-deliver latency of every message in
it, and drains until it has every message sent. Figures are per receiver (with all senders,
the sum over every sender), the median over receivers; latency p50 is the median over
receivers, p99 the worst receiver's. This is the method of the corosync lab's ``cpgbench``
(``/work/shared/bench/corosync``), so the two can be set side by side.

With ``--netns``, ``--loss PERMILLE`` drops that share of the cluster's datagrams at random at
every receiving node (an nftables rule on each namespace's input hook, for the cluster's UDP
port, with a counter the report reads back per run) and ``--shape RATE`` caps every node's
link each way (tc ``tbf`` on both ends of its veth pair), like the corosync lab's ``lab.sh
loss`` and ``lab.sh shape`` applied to every node; both hold from before the executives start.
A ring that stalls or breaks under loss must not hang the command: a blocked send gives up a
few seconds past the end of sending (``SEND_GRACE_S``; the run goes on with what was sent), a
draining receiver gives up after ``DRAIN_IDLE_S`` (or three times its longest pause) without a
delivery, and each run's ``notes`` say why its figures are low or zero (the ring broke, a
receiver got nothing, a sender's window stayed full).

Every receiver verifies everything it delivers (``_bench_verify.Verifier``: per-sender
sequence numbers, header CRC, sender id, body bytes, and a rolling hash of the whole delivery
sequence compared across receivers). Any violation, lost message or configuration change
during a run makes the command exit 1 and say why.

Ctrl-C, SIGTERM and SIGHUP stop a run and remove its executives, clients and namespaces (exit
130); after a SIGKILL the next lab removes them (``evs.cli._lab.reap_stale_labs``).

Exit codes: 0 measured and verified; 1 a verification failed; 2 bad arguments or the cluster
could not be started; 130 interrupted. The module imports nothing heavy at load time (the CLI
imports every command's parser); the cluster, multiprocessing and the client load in ``run``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from types import FrameType
from typing import Any

from evs.crypto.names import CIPHERS, DEFAULT_CIPHER

__all__ = ["add_parser", "parse_rate", "parse_sizes", "run"]

_DESCRIPTION = """\
Measure throughput (msgs/s and MB/s per receiver) and send-to-deliver latency (p50/p99) of a
local cluster of real executives through the public evs.Client API, one process per client,
and verify order and integrity of every delivered message (per-sender FIFO, no gap, no
duplicate, payload bytes, the same total order at every receiver). Exit status 0 when every
run verified, 1 on any violation, 2 on bad arguments or a cluster that does not start."""

_SIZE_UNITS = {"": 1, "B": 1, "K": 1024, "KIB": 1024, "M": 1 << 20, "MIB": 1 << 20}
#: Bounds that keep one invocation finite.
SECONDS_MAX = 300.0
COUNT_MAX = 10_000_000
#: Senders keep sending this long past the window (the window ends under full load).
TAIL_S = 0.3
#: How long receivers may take, after the senders stopped, to deliver what was sent.
DRAIN_S = 60.0
#: ``--loss``: at most half of the datagrams (beyond that no ring forms at all).
LOSS_MAX = 500
#: ``--shape``: tc's rate units (``bps`` is bytes per second) in bits per second.
_RATE_UNITS = {
    "bit": 1,
    "kbit": 10**3,
    "mbit": 10**6,
    "gbit": 10**9,
    "tbit": 10**12,
    "bps": 8,
    "kbps": 8 * 10**3,
    "mbps": 8 * 10**6,
    "gbps": 8 * 10**9,
    "tbps": 8 * 10**12,
}
#: ``--shape`` bounds, bits per second: slower links make a run mostly time-outs.
RATE_MIN, RATE_MAX = 10**6, 10**11


def parse_sizes(text: str) -> list[int]:
    """``"64,1K,16KiB,65536"`` -> ``[64, 1024, 16384, 65536]``; ValueError names the bad item."""
    out: list[int] = []
    for raw in text.split(","):
        item = raw.strip().upper()
        digits = item
        while digits and not digits[-1].isdigit():
            digits = digits[:-1]
        unit = item[len(digits) :]
        if not digits.isdigit() or unit not in _SIZE_UNITS:
            raise ValueError(f"bad message size {raw.strip()!r} (examples: 64, 1K, 16KiB)")
        out.append(int(digits) * _SIZE_UNITS[unit])
    return out


def parse_rate(text: str) -> tuple[str, int]:
    """``"100mbit"`` -> ``("100mbit", 100_000_000)``: a tc rate and its bits per second.

    ValueError says what is wrong. Only whole numbers and tc's decimal units (bit, kbit,
    mbit, gbit, tbit, and bps..tbps for bytes per second), so the text passed to tc means
    exactly what is recorded.
    """
    t = text.strip().lower()
    digits = ""
    while len(digits) < len(t) and t[len(digits)].isdigit():
        digits += t[len(digits)]
    unit = t[len(digits) :]
    if not digits or unit not in _RATE_UNITS:
        raise ValueError(
            f"bad rate {text!r}: a whole number and a unit, e.g. 100mbit, 1gbit, 10mbit "
            f"(units: {', '.join(_RATE_UNITS)})"
        )
    bits = int(digits) * _RATE_UNITS[unit]
    if not RATE_MIN <= bits <= RATE_MAX:
        raise ValueError(f"rate {text!r} is outside 1mbit..100gbit")
    return f"{int(digits)}{unit}", bits


#: Most messages ``--batch`` writes together.
BATCH_MAX = 4096
#: Highest pace ``--rate`` takes, messages per second per sender.
RATE_MSGS_MAX = 1_000_000


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bench",
        help="throughput / latency benchmark through the public API",
        description=_DESCRIPTION,
    )
    p.add_argument("--nodes", type=int, default=3, help="executives to start (2..9, default 3)")
    p.add_argument(
        "--netns",
        action="store_true",
        help="run each executive in its own network namespace on a veth bridge (root only)",
    )
    p.add_argument(
        "--loss",
        type=int,
        default=0,
        metavar="PERMILLE",
        help=f"with --netns: drop PERMILLE/1000 of the cluster's UDP datagrams at random, at "
        f"every receiving node (nftables, 0..{LOSS_MAX}; default 0)",
    )
    p.add_argument(
        "--shape",
        default=None,
        metavar="RATE",
        help="with --netns: cap every node's link at RATE each way (tc tbf), e.g. 100mbit",
    )
    p.add_argument("--mode", choices=("udpu", "udp"), default="udpu", help="transport mode")
    p.add_argument("--token", type=int, default=1000, help="token timeout, ms (default 1000)")
    p.add_argument(
        "--cipher",
        choices=CIPHERS,
        default=DEFAULT_CIPHER,
        help=f'wire security (default {DEFAULT_CIPHER}; "none" to compare with unsealed rings)',
    )
    p.add_argument("--port", type=int, default=0, help="UDP port (default: a free one)")
    p.add_argument(
        "--netmtu",
        type=int,
        default=None,
        help="the executives' [transport] netmtu, bytes (576..65507; default: the daemon's, "
        "1500). Above the links' MTU the kernel fragments each datagram (docs/benchmarks.md)",
    )
    p.add_argument(
        "--sizes",
        default="64,1K,16K,64K",
        help="message sizes, comma separated (default 64,1K,16K,64K; at least 32 bytes)",
    )
    p.add_argument(
        "--senders",
        choices=("one", "all", "both"),
        default="both",
        help="one sender (node 1), every node sending, or both series (default both)",
    )
    p.add_argument(
        "--sender-clients",
        type=int,
        default=1,
        metavar="K",
        help="sending client processes per sending node (default 1): K > 1 shows how much "
        "one sending process (its CPU, its send window) limits the rate",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=0.0,
        metavar="MSGS",
        help="each sender paces itself to MSGS messages per second (default 0: as fast as it "
        "can): latency at a load the ring carries easily, like the corosync lab's lat mode",
    )
    p.add_argument(
        "--batch",
        type=int,
        default=0,
        metavar="N",
        help="each sender sends N messages at a time inside Client.batch(), written together "
        "(default 0: one write per message, as corosync's cpgbench sends)",
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=5.0,
        help=f"measurement window per run, s (default 5, at most {SECONDS_MAX:g})",
    )
    p.add_argument(
        "--warmup", type=float, default=1.0, help="sending before the window opens, s (default 1)"
    )
    p.add_argument(
        "--count",
        type=int,
        default=0,
        help="instead of a window: each sender sends COUNT messages, rate over the whole run",
    )
    p.add_argument("--reps", type=int, default=1, help="runs per point; the median is kept")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    p.add_argument(
        "--profile",
        metavar="DIR",
        default=None,
        help="run every executive and client under cProfile; .prof files and a summary in DIR",
    )
    p.add_argument("--keep", action="store_true", help="keep the cluster's temporary directory")


def _check_args(args: argparse.Namespace) -> str | None:
    """Why the arguments cannot be run, or None."""
    if not 2 <= args.nodes <= 9:
        return "--nodes must be 2..9"
    if args.token < 10:
        return "--token must be at least 10 ms"
    if not 0 < args.seconds <= SECONDS_MAX:
        return f"--seconds must be in (0, {SECONDS_MAX:g}]"
    if not 0 <= args.warmup <= 60:
        return "--warmup must be in [0, 60]"
    if not 0 <= args.count <= COUNT_MAX:
        return f"--count must be in [0, {COUNT_MAX}]"
    if not 0 <= args.rate <= RATE_MSGS_MAX:
        return f"--rate must be 0..{RATE_MSGS_MAX} messages per second (0: unpaced)"
    if not 0 <= args.batch <= BATCH_MAX:
        return f"--batch must be 0..{BATCH_MAX} messages (0: no batching)"
    if not 1 <= args.sender_clients <= 16:
        return "--sender-clients must be 1..16"
    if not 1 <= args.reps <= 20:
        return "--reps must be 1..20"
    if args.netmtu is not None and not 576 <= args.netmtu <= 65507:
        return "--netmtu must be 576..65507"
    if args.port and not 1024 <= args.port <= 65535:
        return "--port must be 1024..65535"
    try:
        sizes = parse_sizes(args.sizes)
    except ValueError as exc:
        return str(exc)
    from evs.cli._bench_verify import MIN_SIZE  # noqa: PLC0415  (light: struct, zlib)

    for s in sizes:
        if not MIN_SIZE <= s <= 1 << 20:
            return f"message size {s} is outside {MIN_SIZE}..{1 << 20} bytes"
    if not 0 <= args.loss <= LOSS_MAX:
        return f"--loss must be 0..{LOSS_MAX} (per mille of the datagrams)"
    if args.shape is not None:
        try:
            parse_rate(args.shape)
        except ValueError as exc:
            return f"--shape: {exc}"
    for flag, given in (("--loss", args.loss > 0), ("--shape", args.shape is not None)):
        if given and not args.netns:
            return f"{flag} needs --netns (it acts on the executives' network namespaces)"
    if args.netns:
        from evs.cli._lab import lab_available  # noqa: PLC0415

        tools = ("ip", "nft", "tc") if args.shape is not None else ("ip", "nft")
        why = lab_available(tools)
        if why:
            return f"--netns: {why} (run without --netns to measure on loopback)"
    return None


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPU model, cores, kernel, Python, event loop, load.

    The executives run on this interpreter and use uvloop when it is importable
    (``evs.daemon.main.run_forever``), which changes the figures, so the loop is recorded.
    """
    import importlib.metadata  # noqa: PLC0415
    import platform  # noqa: PLC0415

    from evs._compiled import compiled_modules  # noqa: PLC0415

    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        loop = f"uvloop {importlib.metadata.version('uvloop')}"
    except importlib.metadata.PackageNotFoundError:
        loop = "asyncio"
    return {
        "cpu": model,
        "event_loop": loop,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg": list(os.getloadavg()),
        # mypyc-compiled hot modules (tools/compile.py) in the executives and clients, which
        # run on this interpreter with this PYTHONPATH: 0 means pure Python.
        "compiled_modules": len(compiled_modules()),
    }


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run(args: argparse.Namespace) -> int:
    why = _check_args(args)
    if why:
        print(f"evs bench: {why}", file=sys.stderr)
        return 2
    from evs.cli._bench_run import Bench, BenchError, table  # noqa: PLC0415

    bench = Bench(args, parse_sizes(args.sizes))
    # kill/timeout (SIGTERM) and a closed terminal (SIGHUP) end the run like Ctrl-C does, so
    # that its executives, clients and lab namespaces go with it (they once outlived a killed
    # run and loaded the next measurements).
    previous = {sig: signal.signal(sig, _interrupted) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        report = bench.run()
    except BenchError as exc:
        print(f"evs bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        by = f" by {exc.args[0]}" if exc.args else ""
        print(
            f"\nevs bench: interrupted{by}; its executives and namespaces are gone", file=sys.stderr
        )
        return 130
    finally:
        bench.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if args.json:
        import json  # noqa: PLC0415

        print(json.dumps(report, indent=1))
    else:
        print(table(report))
    if not report["verified"]:
        for r in report["runs"]:
            for v in r["violations"]:
                print(f"evs bench: {r['label']}: {v}", file=sys.stderr)
        print("evs bench: VERIFICATION FAILED (see above)", file=sys.stderr)
        return 1
    return 0


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
