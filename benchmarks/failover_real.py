"""Failover and merge times of real executives (kill -9), measured like corosync's lab.

For each trial one executive is killed with SIGKILL (node N, then node 1, then node 2, as in
../shared/bench/corosync/results.md); "kill -> confchg" runs from just before ``os.kill`` to
the moment the *last* survivor's client receives the regular configuration without the
victim; "restart -> merged" from starting the victim's executive to the last client seeing
the configuration of every node again. Clients are ordinary ``evs.Client``s in this process,
timestamps from the shared monotonic clock. ``--netns`` puts every executive in its own
network namespace on a bridge (root; the same kind of links as corosync's lab).

    .venv/bin/python benchmarks/failover_real.py [--nodes 3] [--token 1000] [--netns]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from evs.cli._cluster import DemoClient, LocalCluster
from evs.cli._lab import NetLab


def trial(
    cluster: LocalCluster, clients: dict[int, DemoClient], victim: int
) -> tuple[float, float]:
    ids = tuple(cluster.ids)
    survivors = tuple(n for n in ids if n != victim)
    t0 = time.monotonic()
    cluster.kill(victim)
    clients.pop(victim).close()
    for c in clients.values():
        c.wait_config(lambda m: not m.transitional and m.members == survivors, timeout=30)
    failover = time.monotonic() - t0
    t1 = time.monotonic()
    cluster.start(victim)
    clients[victim] = DemoClient(victim, cluster.socket(victim))
    for c in clients.values():
        c.wait_config(lambda m: not m.transitional and m.members == ids, timeout=30)
    return failover, time.monotonic() - t1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--token", type=int, default=1000)
    ap.add_argument("--netns", action="store_true")
    ap.add_argument("--rounds", type=int, default=1, help="rounds of the three victims")
    args = ap.parse_args()
    lab = NetLab(args.nodes) if args.netns else None
    root = Path(tempfile.mkdtemp(prefix="evs-failover-"))
    cluster = LocalCluster(root, nodes=args.nodes, token=args.token, lab=lab)
    try:
        for n in cluster.ids:
            cluster.start(n)
        clients = {n: DemoClient(n, cluster.socket(n)) for n in cluster.ids}
        every = tuple(cluster.ids)
        for c in clients.values():
            c.wait_config(lambda m: m.members == every, timeout=30)
        fails: list[float] = []
        merges: list[float] = []
        for _ in range(args.rounds):
            for victim in (args.nodes, 1, 2):
                f, m = trial(cluster, clients, victim)
                fails.append(f * 1000)
                merges.append(m * 1000)
                print(
                    f"kill node {victim}: confchg after {f * 1000:.0f} ms, merged {m * 1000:.0f} ms"
                )
        for c in clients.values():
            c.close()

        def fmt(xs: list[float]) -> str:
            return f"{statistics.median(xs):.0f} ms ({min(xs):.0f}-{max(xs):.0f})"

        print(
            f"{args.nodes} nodes, token {args.token} ms, {'netns' if lab else 'loopback'}: "
            f"kill -> confchg {fmt(fails)}, restart -> merged {fmt(merges)}"
        )
    finally:
        cluster.stop_all()
        cluster.cleanup()
        if lab is not None:
            lab.close()


if __name__ == "__main__":
    main()
