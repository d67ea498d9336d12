"""The seed's promise of 16 processors, on real executives: 16 daemons on 127.0.0.1-16 form
one ring, every node's client delivers from every node, and a kill -9 is survived. The times
to form and to fail over are printed (run with -s) and recorded as test properties; they are
measurements, not assertions (docs/benchmarks.md has the figures)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from evs.cli._cluster import DemoClient, LocalCluster

N = 16


@pytest.mark.slow
def test_sixteen_executives_form_deliver_and_fail_over(
    make_cluster: Callable[..., LocalCluster], record_property: Callable[[str, object], None]
) -> None:
    cluster = make_cluster(N, token=1000)
    ids = tuple(cluster.ids)
    t0 = time.monotonic()
    for n in ids:
        cluster.start(n)
    clients = {n: DemoClient(n, cluster.socket(n)) for n in ids}
    for c in clients.values():
        c.wait_config(lambda m: m.members == ids, timeout=60)
    formed = time.monotonic() - t0
    for n, c in clients.items():
        c.send(f"all: hello from {n}")
    for c in clients.values():
        c.wait_messages("all", N, timeout=60)
    first = clients[1].messages("all")
    assert sorted(first) == sorted(f"all: hello from {n}" for n in ids)
    assert all(c.messages("all") == first for c in clients.values())

    victim = ids[-1]
    killed = time.monotonic()
    cluster.kill(victim)
    clients.pop(victim).close()
    survivors = ids[:-1]
    for c in clients.values():
        c.wait_config(lambda m: not m.transitional and m.members == survivors, timeout=30)
    failover = time.monotonic() - killed
    for n, c in clients.items():
        c.send(f"after: hello from {n}")
    for c in clients.values():
        c.wait_messages("after", N - 1, timeout=60)
    print(
        f"\n16 executives: ring formed in {formed:.2f} s, failover after kill -9 {failover:.2f} s"
    )
    record_property("formed_s", round(formed, 3))
    record_property("failover_s", round(failover, 3))
    for c in clients.values():
        c.close()
