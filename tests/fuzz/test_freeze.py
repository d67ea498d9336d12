"""Frozen processors (evs.sim.fuzz.freeze): a thawed copy is the processor that was frozen.

Every fuzz round starts from a thawed snapshot, so a copy that lost part of its state would
fuzz a processor no cluster ever had, and quietly: mypyc's own pickling can "succeed" with
attributes left unset. These tests compare whole states, read independently of ``freeze``
(through the classes' attribute descriptors and instance dicts), and then behaviour: the
copy and the original answer the same inputs alike. They run in both passes of
scripts/check, pure Python and compiled.
"""

from __future__ import annotations

import enum
import pickle
from collections import deque
from random import Random
from types import GetSetDescriptorType, MemberDescriptorType
from typing import NamedTuple

import pytest

from evs.sim.cluster import Cluster
from evs.sim.fuzz import Corpus, Forge, kind_of
from evs.sim.fuzz.freeze import freeze, unfreeze
from evs.sim.options import draw_options
from evs.totem.codec import cluster_id_for
from evs.totem.config import TotemConfig
from evs.totem.processor import Processor

#: A faulty simulated cluster whose processors pass through every membership state (the
#: first cluster of ``harvest(7)``, the corpus of test_hostile.py).
SIM_SEED = 1816593919
#: Freeze the sender of every FREEZE_EVERY-th datagram on the wire.
FREEZE_EVERY = 5

_ATOMS = (type(None), bool, int, float, str, bytes, enum.Enum)


def _attribute_names(cls: type) -> set[str]:
    """Slots (Python) and native attributes (mypyc) are data descriptors on the class."""
    return {
        name
        for klass in cls.__mro__
        for name, attr in vars(klass).items()
        if isinstance(attr, GetSetDescriptorType | MemberDescriptorType)
        and not name.startswith("__")
    }


def tree(x: object) -> object:
    """``x`` as nested plain values, equal exactly when the two states are equal."""
    if isinstance(x, _ATOMS):
        return x
    if isinstance(x, bytearray):
        return ("bytearray", bytes(x))
    if isinstance(x, list | tuple | deque):
        return (type(x).__name__, [tree(v) for v in x])
    if isinstance(x, dict):
        return (type(x).__name__, [(tree(k), tree(v)) for k, v in x.items()])
    if isinstance(x, set | frozenset):
        return (type(x).__name__, sorted((tree(v) for v in x), key=repr))
    names = _attribute_names(type(x)) | set(getattr(x, "__dict__", ()))
    assert names, f"no attributes found on a {type(x).__qualname__}: the comparison is blind"
    return (type(x).__qualname__, {n: tree(getattr(x, n, "<unset>")) for n in sorted(names)})


class Run(NamedTuple):
    cluster: Cluster
    #: (membership state, frozen bytes, state tree taken at the moment of freezing)
    frozen: list[tuple[str, bytes, object]]
    #: Every datagram of the run, once each.
    wire: list[bytes]


@pytest.fixture(scope="module")
def run() -> Run:
    """Run the cluster; freeze senders along the way, each with its state tree taken then."""
    options = draw_options(SIM_SEED, with_faults=True, light=True, nodes=5, duration_ms=1500.0)
    cluster = Cluster(options)
    frozen: list[tuple[str, bytes, object]] = []
    wire: list[bytes] = []

    def record(src: int, dst: int, data: bytes) -> bool:
        if wire and data is wire[-1]:
            return False  # the same broadcast, to another destination
        wire.append(data)
        proc = cluster.nodes[src].proc
        if proc is not None and len(wire) % FREEZE_EVERY == 0:
            frozen.append((proc.state.value, freeze(proc), tree(proc)))
        return False

    cluster.filters.append(record)
    cluster.run()
    return Run(cluster, frozen, wire)


def test_a_thawed_processor_has_the_state_that_was_frozen(run: Run) -> None:
    assert {"operational", "gather", "commit", "recovery"} <= {s for s, _, _ in run.frozen}
    for i, (state, blob, expected) in enumerate(run.frozen):
        copy = unfreeze(blob)
        assert copy.state.value == state
        assert tree(copy) == expected, f"snapshot {i} ({state}) thawed into another state"


def test_the_comparison_sees_a_change_deep_inside(run: Run) -> None:
    """The comparison can fail: one number of the ordering state differs, and it sees it."""
    _, blob, expected = run.frozen[len(run.frozen) // 2]
    copy = unfreeze(blob)
    assert tree(copy) == expected
    copy.ring.my_aru += 1
    assert tree(copy) != expected


def test_a_thawed_processor_answers_inputs_as_the_original_does(run: Run) -> None:
    """Every processor left at the end and its copy take the same forged datagrams (fresh to
    the original, half of them mutated) and timers, and give the same datagrams, events and
    states. This test moves the originals on."""
    packets: dict[str, list[bytes]] = {}
    for data in run.wire:
        packets.setdefault(kind_of(data), []).append(data)
    corpus = Corpus(0, cluster_id_for(run.cluster.config.cluster_name), packets)
    forge = Forge(corpus, Random(SIM_SEED))
    live = [n.proc for n in run.cluster.nodes.values() if n.proc is not None]
    assert len(live) >= 2
    sent = 0
    states: set[str] = set()
    for original in live:
        copy = unfreeze(freeze(original))
        now = run.cluster.now
        for i in range(400):
            data = forge.make(original, None if i % 2 else ("none",)).data
            now += 3.0 if i % 40 else original.config.token  # now and then a timeout
            outputs = []
            for p in (original, copy):
                p.receive(now, data)
                due = p.next_deadline()
                if due is not None and due <= now:
                    p.handle_timer(now)
                whole = tree(p) if i % 20 == 19 else None  # the whole state now and then
                outputs.append((p.outbox, tree(p.events), whole))
                p.outbox, p.events = [], []
            assert outputs[0] == outputs[1], f"datagram {i}: the copy answered otherwise"
            sent += len(outputs[0][0])
            states.add(original.state.value)
    assert sent > 100, sent  # the inputs reached the handlers, not just the first checks
    assert len(states) >= 3, states


def test_a_new_processor_thaws_and_anything_else_is_refused() -> None:
    fresh = Processor(TotemConfig(), 3)
    assert tree(unfreeze(freeze(fresh))) == tree(fresh)
    with pytest.raises(TypeError, match="not a frozen Processor"):
        unfreeze(pickle.dumps([1, 2]))
