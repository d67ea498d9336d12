"""Latency and the executives' CPU on a lightly loaded ring, for a given idle-hold threshold.

Why: under light, steady traffic (a message every few ms) the token never rests. The
representative holds it only after ``seqno_unchanged_const`` visits without a new message, and
one rotation takes about 150 us here, so at 500 msgs/s the ring spins between messages and its
executives use a whole core for it. This measures what that costs and buys: three real
executives in the lab's network namespaces (crypto off, ``[totem] seqno_unchanged_const`` as
given), a client on ``--src`` sends one 64-byte message, a client on ``--dst`` waits for it,
then the sender sleeps ``--gap`` seconds. Prints the p50 and p90 of send-to-deliver and the
executives' CPU over the run, as a share of one core. Root only (network namespaces).

    .venv/bin/python benchmarks/light_load.py [--seqno-unchanged 30] [--src 1] [--dst 2] \\
        [--gap 0.002] [--count 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from idle_latency import ping, wait_for_ring  # (benchmarks/ is on the path as the script's dir)

import evs
from evs.cli._cluster import LocalCluster
from evs.cli._lab import NetLab


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seqno-unchanged", type=int, default=30)
    parser.add_argument("--src", type=int, default=1, help="the sending node (1: the rep)")
    parser.add_argument("--dst", type=int, default=2, help="the receiving node")
    parser.add_argument("--gap", type=float, default=0.002, help="seconds between messages")
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()
    lab = NetLab(3)
    with tempfile.TemporaryDirectory(prefix="evs-light-") as root:
        cluster = LocalCluster(
            Path(root),
            nodes=3,
            cipher="none",
            lab=lab,
            extra_totem=f"seqno_unchanged_const = {args.seqno_unchanged}\n",
        )
        try:
            for n in cluster.ids:
                cluster.start(n)
            with (
                evs.Client(cluster.socket(args.dst)) as rx,
                evs.Client(cluster.socket(args.src)) as tx,
            ):
                rx.join(["g"])
                wait_for_ring(tx, 3, "light_load")
                cpu0 = sum(_cpu_s(cluster.pid(n)) for n in cluster.ids)
                t0 = time.monotonic()
                rounds, _ = ping(tx, rx, args.count, args.gap, "light_load")
                elapsed = time.monotonic() - t0
                cpu = sum(_cpu_s(cluster.pid(n)) for n in cluster.ids) - cpu0
        finally:
            cluster.stop_all()
            lab.close()
    rounds.sort()
    print(
        f"seqno_unchanged_const {args.seqno_unchanged}, node {args.src} -> node {args.dst}, "
        f"{args.gap * 1000:g} ms between messages: p50 {statistics.median(rounds) * 1e6:.0f} us, "
        f"p90 {rounds[int(0.9 * (len(rounds) - 1))] * 1e6:.0f} us; executives "
        f"{cpu / elapsed * 100:.0f} % of one core"
    )


if __name__ == "__main__":
    main()
