"""The key rotation state machine, on a small simulated ring with partitions, merges and
restarts: no node ever seals with a key a required node cannot open (the global invariant), and
once everyone is together again the rotation finishes everywhere."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from evs.crypto.rotation import (
    Ack,
    Offer,
    Phase,
    Rotation,
    RotationError,
    decode_message,
    encode_message,
    fingerprint,
)

OLD = bytes(range(32))
NEW = bytes(range(100, 164))


@dataclass
class Disk:
    key_id: int = 0
    key: bytes = OLD
    next: tuple[int, bytes, bool, tuple[int, ...]] | None = None
    switched: frozenset[int] = frozenset()


@dataclass
class Host:
    """One node's keys, disk and outbox, as a ``KeyHost``."""

    me: int
    bus: Bus
    disk: Disk = field(default_factory=Disk)
    slots: dict[int, bytes] = field(default_factory=dict)
    sealing: int = 0
    notes: list[tuple[str, str]] = field(default_factory=list)
    fail_install: bool = False

    def boot(self) -> Rotation:
        d = self.disk
        self.slots = {d.key_id: d.key}
        self.sealing = d.key_id
        pending = None
        if d.next is not None:
            nid, key, sending, required = d.next
            self.slots[nid] = key
            if sending:
                self.sealing = nid
            pending = (nid, key, Phase.SWITCHED if sending else Phase.INSTALLED, required)
        return Rotation(
            self, self.me, d.key_id, fingerprint(d.key), pending=pending, switched=d.switched
        )

    def install(self, key_id: int, key: bytes, required: tuple[int, ...]) -> None:
        if self.fail_install:
            raise OSError("read-only file system")
        assert key_id not in self.slots
        assert len(self.slots) == 1
        self.bus.installs += 1
        self.disk.next = (key_id, key, False, required)
        self.slots[key_id] = key

    def narrow(self, key_id: int, required: tuple[int, ...]) -> None:
        assert self.disk.next is not None
        self.disk.next = (*self.disk.next[:3], required)

    def switch(self, key_id: int) -> None:
        assert self.disk.next is not None
        self.disk.next = (*self.disk.next[:2], True, self.disk.next[3])
        self.sealing = key_id

    def retire(self, old_id: int, new_id: int, switched: frozenset[int]) -> None:
        assert self.sealing == new_id
        self.disk.switched = switched
        del self.slots[old_id]
        assert self.disk.next is not None
        self.disk.key_id, self.disk.key = new_id, self.disk.next[1]
        self.disk.next = None

    def send(self, data: bytes, *, safe: bool) -> None:
        self.bus.submit(self.me, data)

    def note(self, level: str, text: str) -> None:
        self.notes.append((level, text))

    @property
    def seal_key(self) -> bytes:
        return self.slots[self.sealing]


class Bus:
    """Components of a ring: each delivers its members' messages in one total order."""

    def __init__(self, n: int) -> None:
        self.hosts = {i: Host(i, self) for i in range(1, n + 1)}
        self.rot = {i: h.boot() for i, h in self.hosts.items()}
        self.comps: list[list[int]] = [sorted(self.hosts)]
        #: The nodes the invariant is checked among (the rotation's required nodes).
        self.required = set(self.hosts)
        self.installs = 0
        self.queue: dict[int, list[tuple[int, bytes]]] = {0: []}
        for i in self.hosts:
            self.rot[i].on_regular_configuration(self.comps[0])

    def comp_of(self, node: int) -> int:
        return next(c for c, members in enumerate(self.comps) if node in members)

    def submit(self, sender: int, data: bytes) -> None:
        self.queue[self.comp_of(sender)].append((sender, data))

    def deliver_one(self, c: int) -> bool:
        if not self.queue[c]:
            return False
        sender, data = self.queue[c].pop(0)
        for m in self.comps[c]:
            self.rot[m].on_message(sender, data)
        self.check()
        return True

    def settle(self, limit: int = 10_000) -> None:
        for _ in range(limit):
            if not any(self.deliver_one(c) for c in range(len(self.comps))):
                return
        raise AssertionError("the rotation messages never stopped")

    def _reform(
        self, comps: list[list[int]], pending: list[tuple[int, bytes]], rng: random.Random
    ) -> None:
        """Replace the components; the old ones' pending messages reach some of the new ones."""
        old = self.comps
        self.comps = [sorted(c) for c in comps if c]
        self.queue = {c: [] for c in range(len(self.comps))}
        for members in self.comps:
            # transitional delivery: a subsequence of what was pending, always the own sends
            for sender, data in pending:
                if sender in members or rng.random() < 0.5:
                    for m in members:
                        if any(m in o and sender in o for o in old):
                            self.rot[m].on_message(sender, data)
                    self.check()
        for members in self.comps:
            for m in members:
                self.rot[m].on_regular_configuration(members)
        self.check()

    def split(self, rng: random.Random) -> None:
        big = [c for c, m in enumerate(self.comps) if len(m) > 1]
        if not big:
            return
        c = rng.choice(big)
        members = self.comps[c][:]
        rng.shuffle(members)
        cut = rng.randrange(1, len(members))
        pending = self.queue[c]
        rest = [m for i, m in enumerate(self.comps) if i != c]
        others = [x for i, q in self.queue.items() if i != c for x in q]
        self._reform([*rest, members[:cut], members[cut:]], [*pending, *others], rng)

    def merge(self, rng: random.Random) -> None:
        if len(self.comps) < 2:
            return
        a, b = rng.sample(range(len(self.comps)), 2)
        for c in (a, b):
            while self.deliver_one(c):
                pass
        merged = self.comps[a] + self.comps[b]
        rest = [m for i, m in enumerate(self.comps) if i not in (a, b)]
        pending = [x for i, q in self.queue.items() if i not in (a, b) for x in q]
        self._reform([*rest, merged], pending, rng)

    def restart(self, node: int, rng: random.Random) -> None:
        c = self.comp_of(node)
        others = [m for m in self.comps[c] if m != node]
        comps = [m for i, m in enumerate(self.comps) if i != c]
        pending = [x for q in self.queue.values() for x in q if x[0] != node]
        self.rot[node] = self.hosts[node].boot()
        self._reform([*comps, others, [node]], pending, rng)

    def check(self) -> None:
        """Every required node can open what every required node seals."""
        for p, hp in self.hosts.items():
            for q, hq in self.hosts.items():
                if p not in self.required or q not in self.required:
                    continue
                assert hp.slots.get(hq.sealing) == hq.seal_key, (p, q, hp.slots, hq.sealing)


def test_messages_round_trip_and_garbage_is_none() -> None:
    offer = Offer(7, (1, 2, 3), NEW)
    assert decode_message(encode_message(offer)) == offer
    ack = Ack(7, fingerprint(NEW), Phase.SWITCHED, frozenset({1, 2}), frozenset({2}))
    assert decode_message(encode_message(ack)) == ack
    data = encode_message(offer)
    for cut in range(len(data)):
        assert decode_message(data[:cut]) in (None,) or cut >= len(data) - 64 + 32
    assert decode_message(data[:-1] + bytes([data[-1] ^ 1])) is None  # fingerprint mismatch
    assert decode_message(b"\x09" + data[1:]) is None
    rng = random.Random(1)
    for _ in range(2000):
        junk = rng.randbytes(rng.randrange(0, 80))
        decode_message(junk)  # never raises


def test_one_ring_rotates_in_two_rounds() -> None:
    bus = Bus(3)
    key_id, fp = bus.rot[2].start(NEW, (1, 2, 3))
    assert (key_id, fp) == (1, fingerprint(NEW))
    bus.settle()
    for i, h in bus.hosts.items():
        assert h.sealing == 1
        assert h.slots == {1: NEW}
        assert h.disk.key_id == 1
        assert h.disk.key == NEW
        assert h.disk.next is None
        assert bus.rot[i].status() == {"phase": "idle"}
        assert not [n for n in h.notes if n[0] == "warning"]


def test_a_second_rotation_is_refused_while_one_is_in_progress() -> None:
    bus = Bus(2)
    bus.rot[1].start(NEW, (1, 2))
    with pytest.raises(RotationError, match="not yet delivered"):
        bus.rot[1].start(OLD[::-1], (1, 2))
    bus.deliver_one(0)
    with pytest.raises(RotationError, match="in progress"):
        bus.rot[2].start(OLD[::-1], (1, 2))
    bus.settle()
    with pytest.raises(RotationError, match="key in use"):
        bus.rot[1].start(NEW, (1, 2))
    bus.rot[1].start(OLD[::-1], (1, 2))  # the next one may start
    bus.settle()
    assert all(h.sealing == 2 and h.slots == {2: OLD[::-1]} for h in bus.hosts.values())


def test_two_offers_at_once_the_ring_order_decides() -> None:
    bus = Bus(3)
    bus.rot[1].start(NEW, (1, 2, 3))
    other = bytes(range(200, 240))
    bus.rot[3].start(other, (1, 2, 3))
    bus.settle()
    assert all(h.slots == {1: NEW} for h in bus.hosts.values())
    assert bus.rot[3].refused is not None
    assert "being rotated in already" in bus.rot[3].refused


def test_a_node_down_holds_the_switch_until_it_is_back() -> None:
    bus = Bus(3)
    rng = random.Random(0)
    bus.comps, bus.queue = [[1, 2], [3]], {0: [], 1: []}
    for m in (1, 2):
        bus.rot[m].on_regular_configuration([1, 2])
    bus.rot[1].start(NEW, (1, 2, 3))
    bus.settle()
    assert all(bus.hosts[m].sealing == 0 for m in (1, 2))  # 3 has not got the key
    assert bus.rot[1].status()["phase"] == "installed"
    bus.merge(rng)
    bus.settle()
    assert all(h.sealing == 1 and h.slots == {1: NEW} for h in bus.hosts.values())


def test_members_only_leaves_the_absent_node_behind() -> None:
    bus = Bus(3)
    bus.comps, bus.queue = [[1, 2], [3]], {0: [], 1: []}
    for m in (1, 2):
        bus.rot[m].on_regular_configuration([1, 2])
    bus.required = {1, 2}
    bus.rot[1].start(NEW, (1, 2))
    bus.settle()
    assert bus.hosts[1].slots == {1: NEW}
    assert bus.hosts[3].slots == {0: OLD}  # the operator must copy the key files to node 3


def test_a_node_that_cannot_persist_stalls_the_rotation_safely() -> None:
    bus = Bus(3)
    bus.hosts[3].fail_install = True
    bus.rot[1].start(NEW, (1, 2, 3))
    bus.settle()
    assert all(h.sealing == 0 for h in bus.hosts.values())
    assert any("cannot be installed" in t for _, t in bus.hosts[3].notes)


def test_restart_in_the_middle_resumes() -> None:
    bus = Bus(3)
    rng = random.Random(3)
    bus.rot[1].start(NEW, (1, 2, 3))
    bus.deliver_one(0)  # the OFFER: all installed, ACKs queued
    bus.restart(2, rng)
    bus.settle()
    bus.merge(rng)
    bus.settle()
    if len(bus.comps) > 1:
        bus.merge(rng)
        bus.settle()
    assert all(h.sealing == 1 and h.slots == {1: NEW} for h in bus.hosts.values())


@pytest.mark.parametrize("seed", range(300))
def test_random_partitions_merges_and_restarts(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randrange(2, 6)
    bus = Bus(n)
    starter = rng.randrange(1, n + 1)
    bus.rot[starter].start(NEW, tuple(range(1, n + 1)))
    for _ in range(rng.randrange(0, 60)):
        r = rng.random()
        if r < 0.6:
            bus.deliver_one(rng.randrange(len(bus.comps)))
        elif r < 0.75:
            bus.split(rng)
        elif r < 0.9:
            bus.merge(rng)
        else:
            bus.restart(rng.randrange(1, n + 1), rng)
    while len(bus.comps) > 1:
        bus.merge(rng)
    bus.settle()
    # all on the new key; or, if the OFFER died with its sender before anyone installed it,
    # all on the old one
    expect = (1, {1: NEW}) if bus.installs else (0, {0: OLD})
    for h in bus.hosts.values():
        assert (h.sealing, h.slots) == expect
        assert h.disk.next is None


def test_junk_and_wrong_offers_from_the_ring_are_notes_not_exceptions() -> None:
    bus = Bus(2)
    rot, host = bus.rot[1], bus.hosts[1]
    rng = random.Random(5)
    for _ in range(500):
        rot.on_message(2, rng.randbytes(rng.randrange(0, 120)))
    rot.on_message(2, encode_message(Offer(9, (1, 2), NEW)))  # not the next key id
    rot.on_message(
        2, encode_message(Ack(1, fingerprint(NEW), Phase.DONE, frozenset(), frozenset()))
    )
    assert host.slots == {0: OLD}
    assert host.sealing == 0
    assert any("not the next key id" in t for _, t in host.notes)
    assert all(level in ("info", "warning") for level, _ in host.notes)


def test_a_done_answer_tells_only_what_its_sender_knew() -> None:
    """A node that finished a rotation alone (required: itself) does not vouch for others."""
    bus = Bus(3)
    bus.comps, bus.queue = [[1, 2], [3]], {0: [], 1: []}
    for m in (1, 2):
        bus.rot[m].on_regular_configuration([1, 2])
    bus.rot[1].start(NEW, (1, 2, 3))
    bus.settle()
    done = Ack(1, fingerprint(NEW), Phase.DONE, frozenset({3}), frozenset({3}))
    bus.rot[1].on_message(3, encode_message(done))
    assert bus.hosts[1].sealing == 1  # 3 had switched: everyone required has the key ...
    assert bus.hosts[1].slots == {0: OLD, 1: NEW}  # ... but 2 is not known to have switched
    status = bus.rot[1].status()
    assert status["phase"] == "switched"
    assert status["switched"] == [1, 3]


def test_a_stalled_rotation_can_be_narrowed_to_the_members() -> None:
    bus = Bus(3)
    bus.comps, bus.queue = [[1, 2], [3]], {0: [], 1: []}
    for m in (1, 2):
        bus.rot[m].on_regular_configuration([1, 2])
    with pytest.raises(RotationError, match="nothing to narrow"):
        bus.rot[1].narrow((1, 2))
    bus.rot[1].start(NEW, (1, 2, 3))
    bus.settle()
    assert bus.rot[2].status()["phase"] == "installed"  # waiting for node 3
    with pytest.raises(RotationError, match="narrow it"):
        bus.rot[2].start(OLD[::-1], (1, 2))
    bus.required = {1, 2}
    assert bus.rot[2].narrow((1, 2)) == (1, fingerprint(NEW))
    bus.settle()
    assert all(bus.hosts[m].slots == {1: NEW} for m in (1, 2))
    assert bus.hosts[3].slots == {0: OLD}  # left out: the operator copies the key files
    with pytest.raises(RotationError, match="nothing to narrow"):
        bus.rot[1].narrow((1,))


def test_narrowing_survives_a_restart() -> None:
    bus = Bus(3)
    bus.comps, bus.queue = [[1, 2], [3]], {0: [], 1: []}
    for m in (1, 2):
        bus.rot[m].on_regular_configuration([1, 2])
    bus.rot[1].start(NEW, (1, 2, 3))
    bus.settle()
    bus.required = {1, 2}
    bus.rot[1].narrow((1, 2))
    bus.deliver_one(0)  # the narrowing OFFER only
    assert bus.hosts[2].disk.next is not None
    assert bus.hosts[2].disk.next[3] == (1, 2)
