"""The fuzzer's raw material: real datagrams and frozen processors from simulated clusters.

Theory of operation. ``harvest`` runs three small simulated clusters (``evs.sim.cluster``,
options drawn by ``draw_options`` from the fuzz seed: two with faults, so that JOINs, commit
tokens and recovery's encapsulated mcasts are on the wire, and one without). A filter on the
simulated wire sees every datagram once (a broadcast is one datagram, whatever its
destinations) and keeps a seeded reservoir sample of each kind (``wire.KINDS``). The same
filter freezes the sending processor, caught between two of its inputs, into a reservoir of
*targets* per membership state (``freeze``: a pickle that works for the mypyc-compiled core
too). A ``Snapshot`` thaws into a private live ``Processor`` with its outputs drained, as a
driver leaves it; a ``Corpus`` holds the lot. The harvest draws from the seed's "hostile
harvest" stream only, so the same seed gives the same corpus.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from random import Random
from typing import TypeVar

from evs.sim.cluster import Cluster
from evs.sim.fuzz.freeze import freeze, unfreeze
from evs.sim.fuzz.wire import KINDS, kind_of
from evs.sim.options import draw_options
from evs.sim.rng import derive
from evs.totem.codec import cluster_id_for
from evs.totem.processor import Processor

__all__ = ["Corpus", "Snapshot", "harvest"]

T = TypeVar("T")


@dataclass(frozen=True)
class Snapshot:
    """A processor frozen between two inputs of a simulated run."""

    label: str
    state: str
    now: float
    blob: bytes

    def thaw(self) -> Processor:
        """A private live copy with empty outputs (the driver drained them)."""
        proc = unfreeze(self.blob)
        proc.outbox = []
        proc.events = []
        return proc


@dataclass
class Corpus:
    """What a harvest keeps: datagrams by kind and targets by membership state."""

    seed: int
    cluster_id: int
    packets: dict[str, list[bytes]] = field(default_factory=dict)
    targets: dict[str, list[Snapshot]] = field(default_factory=dict)
    #: Datagrams seen on the simulated wire by kind (before the reservoir cut them down).
    seen: Counter[str] = field(default_factory=Counter)
    clusters: list[str] = field(default_factory=list)

    def describe(self) -> str:
        kinds = ", ".join(f"{k} {len(self.packets.get(k, ()))}/{self.seen[k]}" for k in KINDS)
        states = ", ".join(f"{s} {len(v)}" for s, v in sorted(self.targets.items()))
        return (
            f"harvest: {'; '.join(self.clusters)}\n"
            f"  datagrams kept/seen: {kinds}\n  targets: {states}"
        )


class _Reservoir:
    """Uniform samples of a stream, per key (reservoir sampling, seeded)."""

    def __init__(self, rng: Random, size: int) -> None:
        self.rng = rng
        self.size = size
        self.seen: Counter[str] = Counter()

    def slot(self, key: str) -> int | None:
        """Where the next item of ``key`` goes (len() means append), or None to skip it."""
        self.seen[key] += 1
        n = self.seen[key]
        if n <= self.size:
            return n - 1
        j = self.rng.randrange(n)
        return j if j < self.size else None


def _place(kept: list[T], slot: int, item: T) -> None:
    if slot == len(kept):
        kept.append(item)
    else:
        kept[slot] = item


def _harvest_one(
    corpus: Corpus, sim_seed: int, *, faults: bool, nodes: int, rng: Random, tag: str
) -> None:
    options = draw_options(
        sim_seed, with_faults=faults, light=True, nodes=nodes, duration_ms=1500.0
    )
    cluster = Cluster(options)
    corpus.cluster_id = cluster_id_for(cluster.config.cluster_name)
    packets = _Reservoir(rng, 300)
    states = _Reservoir(rng, 6)
    last: list[object] = [None]

    def record(src: int, dst: int, data: bytes) -> bool:
        if data is last[0]:
            return False  # the same broadcast, to another destination
        last[0] = data
        kind = kind_of(data)
        corpus.seen[kind] += 1
        slot = packets.slot(kind)
        if slot is not None:
            _place(corpus.packets.setdefault(kind, []), slot, data)
        proc = cluster.nodes[src].proc
        if proc is not None:
            state = proc.state.value
            slot = states.slot(state)
            if slot is not None:
                label = f"{tag} node {src} at {cluster.now:.1f} ms"
                snap = Snapshot(label, state, cluster.now, freeze(proc))
                _place(corpus.targets.setdefault(state, []), slot, snap)
        return False

    cluster.filters.append(record)
    cluster.run()
    corpus.clusters.append(f"{tag}: sim seed {sim_seed}, {nodes} nodes, faults {faults}")


def harvest(seed: int, nodes: int | None = None) -> Corpus:
    """Run three small simulated clusters drawn from ``seed`` and keep their traffic.

    Two with faults (crashes, partitions, loss: joins, commit tokens, recovery's encapsulated
    mcasts) and one without; ``nodes`` fixes their size, else each draws 2 to 6 processors.
    """
    rng = derive(seed, "hostile harvest")
    corpus = Corpus(seed, 0)
    for i, faults in enumerate((True, False, True)):
        size = nodes if nodes else rng.randint(2, 6)
        _harvest_one(
            corpus, rng.randrange(1 << 31), faults=faults, nodes=size, rng=rng, tag=f"cluster {i}"
        )
    return corpus
