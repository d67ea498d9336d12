"""Scale: 64 processors through crashes, a partition and a merge (the documented scenario).

corosync's EVS promised 16 processors; the fault campaign includes 16-processor rings, and
this scenario takes a ring four times larger through the membership protocol's hard cases.
"""

from __future__ import annotations

from evs.sim.scenario import Scenario

N = 64


def test_64_processors_survive_crashes_and_a_partition_merge() -> None:
    everyone = tuple(range(1, N + 1))
    sc = Scenario(N, seed=64)
    sc.run_until_ring(everyone, within_ms=20000)
    for n in range(1, N + 1, 8):
        sc.submit(n, 300, safe=n % 16 == 1)
    sc.run_ms(20)
    crashed = (1, 20, 41)  # the representative among them
    for n in crashed:
        sc.crash(n)
    survivors = tuple(n for n in everyone if n not in crashed)
    sc.run_until_ring(survivors, within_ms=20000)
    left, right = survivors[:30], survivors[30:]
    sc.partition(left, right)
    sc.run_until_ring(left, within_ms=20000)
    sc.run_until_ring(right, within_ms=20000)
    for n in (left[0], right[0]):
        sc.submit(n, 100)
    sc.heal()
    took = sc.run_until_ring(survivors, within_ms=20000)
    assert took < 3000
    probe = sc.submit(survivors[0], 100, safe=True)
    sc.run_until_delivered(probe, survivors, within_ms=2000)
    for n in survivors:
        assert sc.delivered(n)[-1] == probe, n
    sc.assert_evs()
