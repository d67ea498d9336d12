"""Simulator speed: how long one simulated minute of a loaded 5-processor ring takes.

Membership on, 1% loss, every processor sending; the EVS checker runs over the whole trace
at the end and is timed separately. The goal is a simulated minute in under a real minute.

    .venv/bin/python benchmarks/sim_throughput.py [--rate 200] [--seconds 60]
"""

from __future__ import annotations

import argparse
import time

from evs.check import check_events
from evs.sim.cluster import Cluster
from evs.sim.options import SimOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--rate", type=float, default=200.0, help="messages/s per processor")
    parser.add_argument("--seconds", type=float, default=60.0, help="simulated seconds")
    args = parser.parse_args()
    options = SimOptions(
        seed=1,
        nodes=args.nodes,
        duration_ms=args.seconds * 1000.0,
        loss=0.01,
        rate=args.rate,
        safe_fraction=0.2,
        large_fraction=0.01,
    )
    cluster = Cluster(options)
    started = time.perf_counter()
    result = cluster.run()
    total = time.perf_counter() - started
    t0 = time.perf_counter()
    check_events(cluster.trace, quiet_end=True)
    check_s = time.perf_counter() - t0
    stats = result.stats
    print(
        f"{args.nodes} processors, {args.rate:.0f} msg/s each, 1% loss: "
        f"{result.sim_ms / 1000:.1f} s simulated in {total:.1f} s real "
        f"(of which the checker {check_s:.1f} s): {result.sim_ms / 1000 / total:.2f}x real time"
    )
    print(
        f"{stats['messages submitted']} messages, {stats['deliveries']} deliveries, "
        f"{stats['datagrams sent']} datagrams, {len(cluster.trace)} trace events; "
        f"violations: {len(result.violations)}"
    )


if __name__ == "__main__":
    main()
