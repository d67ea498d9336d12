"""examples/lock_service.py against three real executives: two nodes ask for one lock at the
same moment; every replica (the two contenders and an observer) names the same holder; the
holder's executive is killed and the configuration change hands the lock to the waiter."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import evs
from evs.cli._cluster import LocalCluster
from examples.example_support import ring_formed, start_all, wait_until
from lock_service import LockService, LockTable, Request


def test_lock_table_is_a_fifo_per_name() -> None:
    t = LockTable()
    a, b, c = Request(1, 10, "a", 1), Request(2, 20, "b", 1), Request(3, 30, "c", 1)
    assert t.lock("x", a) == [("x", a)]
    assert t.lock("x", b) == []
    assert t.lock("x", c) == []
    assert t.unlock("x", 2, 999, "b", 1) == []  # wrong pid: not the requester
    assert t.unlock("x", 2, 20, "b", 1) == []  # a waiter cancels: no change of holder
    assert t.drop_nodes(lambda n: n != 1) == [("x", c)]
    assert t.unlock("x", 3, 30, "c", 1) == [("x", None)]
    assert t.queues == {}


def test_contended_lock_is_agreed_and_freed_by_a_crash(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = make_cluster(3)
    start_all(cluster)
    ring_formed(cluster, (1, 2, 3))
    locks = {n: LockService(evs.Client(cluster.socket(n)), sync_timeout=0.5) for n in cluster.ids}
    try:
        for s in locks.values():
            assert s.wait_synced(10)
        barrier = threading.Barrier(2)
        granted: dict[int, bool] = {}

        def contend(n: int) -> None:
            barrier.wait()
            granted[n] = locks[n].acquire("printer", timeout=15)

        threads = {n: threading.Thread(target=contend, args=(n,)) for n in (1, 2)}
        for t in threads.values():
            t.start()

        def agreed() -> bool:
            tables = [s.table().get("printer", []) for s in locks.values()]
            return len(tables[0]) == 2 and all(t == tables[0] for t in tables)

        wait_until(agreed, 10, "every replica to queue both requests in the same order")
        holder = locks[3].holder("printer")
        assert holder is not None
        winner = holder.nodeid
        loser = 3 - winner
        assert holder.owner == locks[winner].owner
        threads[winner].join(10)
        assert granted == {winner: True}
        assert threads[loser].is_alive()  # still waiting: the lock is held

        cluster.kill(winner)  # SIGKILL: no UNLOCK will ever come from it
        threads[loser].join(15)
        assert granted == {winner: True, loser: True}
        # Each survivor applies the configuration change when its own handle delivers it.
        handed = [Request(loser, os.getpid(), locks[loser].owner, 1)]
        wait_until(
            lambda: all(locks[n].table().get("printer") == handed for n in (loser, 3)),
            10,
            "both survivors to hand the lock to the waiter",
        )

        locks[loser].release("printer")
        wait_until(lambda: locks[3].holder("printer") is None, 10, "the release at node 3")
    finally:
        for s in locks.values():
            s.close()
