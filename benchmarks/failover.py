"""Failover and merge times in simulation (token = 1000 ms, 5 processors by default).

* crash: from killing one processor to the new regular configuration at every survivor;
* merge: from healing a two-way partition to the merged regular configuration everywhere,
  on an idle ring (found by merge detection) and on a busy one (found by foreign traffic).

Each trial uses its own seed (network delays differ); the figures are simulated time, so
they depend only on the protocol and its timers, not on this machine's speed.

    .venv/bin/python benchmarks/failover.py [--nodes 5] [--trials 20]
"""

from __future__ import annotations

import argparse
import statistics

from evs.sim.scenario import Scenario


def regular_at(sc: Scenario, members: tuple[int, ...], after: float) -> float:
    """When the last of ``members`` delivered a regular configuration of exactly them."""
    times = []
    for n in members:
        times.append(
            min(
                e["t"]
                for e in sc.confchgs(n)
                if e["kind"] == "regular" and e["t"] >= after and tuple(e["members"]) == members
            )
        )
    return float(max(times))


def crash_trial(seed: int, nodes: int) -> float:
    sc = Scenario(nodes, seed=seed)
    everyone = tuple(range(1, nodes + 1))
    sc.run_until_ring(everyone)
    sc.run_ms(500 + seed * 37 % 400)
    victim = 1 + seed % nodes
    t0 = sc.cluster.now
    sc.crash(victim)
    survivors = tuple(n for n in everyone if n != victim)
    sc.run_until_ring(survivors, within_ms=20000)
    sc.assert_evs()
    return regular_at(sc, survivors, t0) - t0


def merge_trial(seed: int, nodes: int, busy: bool) -> float:
    sc = Scenario(nodes, seed=seed)
    everyone = tuple(range(1, nodes + 1))
    sc.run_until_ring(everyone)
    left, right = everyone[: nodes // 2], everyone[nodes // 2 :]
    sc.partition(left, right)
    sc.run_until_ring(left, within_ms=20000)
    sc.run_until_ring(right, within_ms=20000)
    sc.run_ms(300 + seed * 53 % 400)
    t0 = sc.cluster.now
    sc.heal()
    if busy:
        for n in everyone:
            sc.submit(n, 200)
    sc.run_until_ring(everyone, within_ms=20000)
    sc.assert_evs()
    return regular_at(sc, everyone, t0) - t0


def summary(name: str, values: list[float]) -> str:
    values = sorted(values)
    return (
        f"{name:<28} p50 {statistics.median(values):7.0f} ms   "
        f"max {values[-1]:7.0f} ms   min {values[0]:7.0f} ms   ({len(values)} trials)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    seeds = range(1, args.trials + 1)
    print(f"{args.nodes} processors, token 1000 ms, simulated time")
    print(summary("crash -> new configuration", [crash_trial(s, args.nodes) for s in seeds]))
    print(summary("heal -> merged (idle ring)", [merge_trial(s, args.nodes, False) for s in seeds]))
    print(summary("heal -> merged (busy ring)", [merge_trial(s, args.nodes, True) for s in seeds]))


if __name__ == "__main__":
    main()
