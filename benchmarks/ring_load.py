"""What a simulated ring carries when saturated, and how long its queues take to drain.

* ``throughput``: a static ring of N processors, every one keeping its send queue full
  (``Cluster.set_saturating``), no loss, the simulator's default network (one-way delay
  0.05 ms + Exp(0.2 ms), unlimited bandwidth). Counts the data packets stamped (retransmissions
  excluded) per simulated second after a warm-up, for each window_size / max_messages pair.
  The core costs no simulated time, so this is the protocol's limit on this network: a
  rotation carries at most ``window_size`` packets and takes N token hops.
* ``drain``: the drawn fault run of one seed (default 223479: 16 processors, 300 msg/s each
  with huge messages, more than the ring carries) with the flow constants given; reports how
  long after the faults ended the live processors formed one ring with everything
  delivered, against the simulator's drain estimate (``Cluster.drain_bound_ms``).

    .venv/bin/python benchmarks/ring_load.py throughput [--nodes 3 5 9 16] [--windows 50:17]
    .venv/bin/python benchmarks/ring_load.py drain [--seed 223479] [--windows 50:17] [--queues 8]
"""

from __future__ import annotations

import argparse
import time

from evs.sim.cluster import Cluster
from evs.sim.options import SimOptions, draw_options

MiB = 1 << 20


def pairs(texts: list[str]) -> list[tuple[int, int]]:
    out = []
    for text in texts:
        window, _, messages = text.partition(":")
        out.append((int(window), int(messages or window)))
    return out


def throughput(nodes: int, window: int, messages: int, seconds: float) -> tuple[float, float]:
    """(packets stamped per simulated second, messages delivered per second per processor)."""
    duration = seconds * 1000.0
    options = SimOptions(
        seed=1,
        nodes=nodes,
        static_ring=True,
        duration_ms=duration,
        rate=1.0,
        safe_fraction=0.0,
        large_fraction=0.0,
        window_size=window,
        max_messages=messages,
        sort_queue_slots=max(16384, 2 * window + 1),
        queue_bytes_max=MiB,
    )
    cluster = Cluster(options)
    for n in cluster.all_ids:
        cluster.start_node(n)
    cluster.load_on = True
    cluster.set_saturating(True)
    warmup = 200.0
    cluster.run_until(warmup)
    before = cluster.final_stats()
    cluster.run_until(warmup + duration)
    after = cluster.final_stats()
    span_s = duration / 1000.0
    packets = after["mcast sent"] - before["mcast sent"]
    delivered = (after["deliveries"] - before["deliveries"]) / nodes
    return packets / span_s, delivered / span_s


def drain(seed: int, window: int, messages: int, queue_mib: float, duration_s: float) -> str:
    options = draw_options(
        seed,
        with_faults=True,
        duration_ms=duration_s * 1000.0,
        window_size=window,
        max_messages=messages,
        sort_queue_slots=max(16384, 2 * window + 1),
        queue_bytes_max=int(queue_mib * MiB),
        saturate=(0.0, 0.0),
    )
    cluster = Cluster(options)
    started = time.perf_counter()
    result = cluster.run()
    real = time.perf_counter() - started
    conv = result.converged_ms
    took = f"{conv / 1000:6.1f} s" if conv is not None else "   never"
    return (
        f"window {window:3d} max_messages {messages:3d} queue {queue_mib:g} MiB: drained "
        f"{took} after the faults (estimate {cluster.drain_ms / 1000:5.1f} s, bound "
        f"{result.liveness_bound_ms / 1000:5.1f} s); {result.stats['submit try again']} "
        f"TryAgain; {len(result.violations)} violations; {real:.0f} s real"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--nodes", type=int, nargs="+", default=[3, 5, 9, 16])
    t.add_argument("--windows", nargs="+", default=["50:17", "200:17"], help="WINDOW:MAX_MSGS")
    t.add_argument("--seconds", type=float, default=1.0, help="simulated seconds measured")
    d = sub.add_parser("drain")
    d.add_argument("--seed", type=int, default=223479)
    d.add_argument("--duration", type=float, default=20.0, help="safety phase, seconds")
    d.add_argument("--windows", nargs="+", default=["50:17", "100:17", "200:17"])
    d.add_argument("--queues", type=float, nargs="+", default=[8, 2, 1], help="MiB")
    args = parser.parse_args()
    if args.what == "throughput":
        for window, messages in pairs(args.windows):
            cells = []
            for n in args.nodes:
                packets, delivered = throughput(n, window, messages, args.seconds)
                cells.append(f"N={n}: {packets / 1000:5.1f}k pkt/s ({delivered / 1000:.1f}k msg/s)")
            print(f"window {window:3d} max_messages {messages:3d}  " + "  ".join(cells), flush=True)
    else:
        for queue in args.queues:
            for window, messages in pairs(args.windows):
                print(drain(args.seed, window, messages, queue, args.duration), flush=True)


if __name__ == "__main__":
    main()
