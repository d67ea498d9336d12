"""examples/kvstore against three real executives: writes agree; conflicting writes on the
two sides of a partition (a namespace lab) merge by last-writer-wins on (lamport, node id) at
every replica; a killed node restarts with an empty replica and receives the state."""

from __future__ import annotations

from collections.abc import Callable

import evs
from evs.cli._cluster import LocalCluster
from examples.example_support import ring_formed, start_all, wait_until
from kvstore import Entry, KvState, KvStore


def test_merge_rule_is_order_independent() -> None:
    writes = [
        ("k", Entry("a", 5, 1, 10)),
        ("k", Entry("b", 5, 3, 30)),  # same clock: the larger node id wins
        ("k", Entry(None, 4, 2, 20)),  # an older delete loses
        ("j", Entry("x", 1, 1, 10)),
        ("j", Entry(None, 2, 2, 20)),  # a newer delete wins
    ]
    forward, backward = KvState(), KvState()
    for k, e in writes:
        forward.put(k, e)
    for k, e in reversed(writes):
        backward.put(k, e)
    assert forward.entries == backward.entries
    assert forward.items() == {"k": "b"}
    assert forward.clock == backward.clock == 5


def stores_for(cluster: LocalCluster, ids: tuple[int, ...]) -> dict[int, KvStore]:
    return {n: KvStore(evs.Client(cluster.socket(n))) for n in ids}


def converged(stores: dict[int, KvStore], members: tuple[int, ...]) -> Callable[[], bool]:
    """Every store of ``members`` sees that configuration, finished its exchange, and all
    hold the same map."""

    def ok() -> bool:
        live = [stores[n] for n in members]
        maps = [s.items() for s in live]
        return all(s.members == members and s.stable for s in live) and all(
            m == maps[0] for m in maps
        )

    return ok


def close_all(stores: dict[int, KvStore]) -> None:
    for s in stores.values():
        s.close()


def test_partition_then_merge_converges_by_the_rule(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = make_cluster(3, netns=True)
    lab = cluster.lab
    assert lab is not None
    start_all(cluster)
    ring_formed(cluster, (1, 2, 3))
    stores = stores_for(cluster, (1, 2, 3))
    try:
        wait_until(converged(stores, (1, 2, 3)), 10, "the first exchange")
        stores[1].set("colour", "red")
        stores[2].set("shape", "square")
        stores[3].set("size", "big")
        expect = {"colour": "red", "shape": "square", "size": "big"}
        wait_until(lambda: all(s.items() == expect for s in stores.values()), 10, "writes")
        clocks = {s.clock for s in stores.values()}
        assert len(clocks) == 1, clocks  # same history, same clock: the races below are even

        lab.partition((1, 2), (3,))
        wait_until(converged(stores, (1, 2)), 15, "the side (1, 2)")
        wait_until(converged(stores, (3,)), 15, "the side (3,)")
        # colour: one write per side, same Lamport clock: node 3 wins the tie.
        # shape: node 1 writes twice (a larger clock), node 3 once: node 1 wins.
        # size: deleted on one side, untouched on the other: the delete stands.
        stores[1].set("colour", "green")
        stores[1].set("shape", "circle")
        stores[1].set("shape", "triangle")
        stores[2].delete("size")
        stores[3].set("colour", "blue")
        stores[3].set("shape", "hexagon")
        stores[3].set("weight", "heavy")
        side_a = {"colour": "green", "shape": "triangle"}
        wait_until(lambda: stores[1].items() == stores[2].items() == side_a, 10, "the side (1, 2)")
        assert stores[3].items() == {
            "colour": "blue",
            "shape": "hexagon",
            "size": "big",
            "weight": "heavy",
        }

        lab.heal()
        wait_until(converged(stores, (1, 2, 3)), 15, "the merged ring's exchange")
        merged = {"colour": "blue", "shape": "triangle", "weight": "heavy"}
        for s in stores.values():
            assert s.items() == merged
        colour = stores[2].entry("colour")
        assert colour is not None
        assert (colour.value, colour.nodeid) == ("blue", 3)
    finally:
        close_all(stores)


def test_restarted_node_receives_the_state(make_cluster: Callable[..., LocalCluster]) -> None:
    cluster = make_cluster(3)
    start_all(cluster)
    ring_formed(cluster, (1, 2, 3))
    stores = stores_for(cluster, (1, 2, 3))
    try:
        wait_until(converged(stores, (1, 2, 3)), 10, "the first exchange")
        stores[3].set("a", "1")
        stores[1].set("b", "2")
        cluster.kill(3)
        wait_until(converged(stores, (1, 2)), 15, "the survivors' exchange")
        stores[2].set("c", "3")
        stores[1].delete("a")
        stores.pop(3).close()

        cluster.start(3)
        stores[3] = KvStore(evs.Client(cluster.socket(3)))
        wait_until(converged(stores, (1, 2, 3)), 15, "node 3's replica to catch up")
        for s in stores.values():
            assert s.items() == {"b": "2", "c": "3"}
        deleted = stores[3].entry("a")
        assert deleted is not None
        assert deleted.value is None  # the tombstone travelled with the state
    finally:
        close_all(stores)
