"""Driver: persist before send, self-addressed datagrams looped back, no recursion."""

from __future__ import annotations

from evs.runtime.driver import BROADCAST, Driver
from evs.totem.config import TotemConfig
from evs.totem.events import ConfigChange, Deliver
from evs.totem.processor import Processor
from evs.types import Guarantee


def pair_of_drivers(log: list[str]) -> dict[int, Driver]:
    drivers: dict[int, Driver] = {}
    for n in (1, 2):

        def persist(seq: int, n: int = n) -> None:
            # What the driver has already queued to send when it asks for durability.
            queued = [dest for dest, _ in drivers[n].sends]
            log.append(f"persist {n} {seq} queued unicasts {[d for d in queued if d]}")

        drivers[n] = Driver(Processor(TotemConfig(), n), persist)
    return drivers


def exchange(drivers: dict[int, Driver], now: float, log: list[str]) -> list[object]:
    """Move datagrams between the drivers until quiet; returns every event seen."""
    events: list[object] = []
    for _ in range(10_000):
        moved = False
        for n, d in drivers.items():
            d.run_loopback(now)
            sends, evs = d.take()
            events.extend(evs)
            for dest, data in sends:
                moved = True
                log.append(f"send {n}->{dest}")
                for m, peer in drivers.items():
                    if m != n and dest in (BROADCAST, m):
                        peer.datagram(now, data)
        if not moved and not any(d.loopback for d in drivers.values()):
            return events
    raise AssertionError("no quiet point in 10,000 rounds")


def test_ring_seq_is_persisted_before_the_commit_token_leaves() -> None:
    log: list[str] = []
    drivers = pair_of_drivers(log)
    now = 0.0
    for d in drivers.values():
        d.start(now)
    events: list[object] = []
    for _ in range(200):
        now += 10.0
        for d in drivers.values():
            at = d.deadline()
            if at is not None and at <= now:
                d.timer(now)
        events += exchange(drivers, now, log)
        if any(isinstance(e, ConfigChange) and e.members == (1, 2) for e in events):
            break
    assert any(isinstance(e, ConfigChange) and e.members == (1, 2) for e in events)
    persists = [i for i, line in enumerate(log) if line.startswith("persist")]
    assert persists, "a new ring was formed without persisting its sequence"
    # The representative (node 1) persists, then sends the commit token (unicast to node 2).
    first = persists[0]
    assert log[first].startswith("persist 1")
    assert all(log[i].endswith("queued unicasts []") for i in persists)
    assert "send 1->2" in log[first + 1 :]
    assert "send 1->2" not in log[:first]


def test_a_lone_processor_passes_the_token_to_itself_through_loopback() -> None:
    d = Driver(Processor(TotemConfig(), 7, static_members=(7,)), lambda seq: None)
    d.start(0.0)
    d.submit(0.0, (b"g",), b"hello", Guarantee.AGREED)
    delivered: list[bytes] = []
    rounds = 0
    while not delivered and rounds < 100:
        rounds += 1
        if not d.run_loopback(float(rounds)):
            at = d.deadline()
            assert at is not None
            d.timer(at)
        sends, events = d.take()
        assert all(dest != 7 for dest, _ in sends)  # never sent to itself on the wire
        delivered += [e.data for e in events if isinstance(e, Deliver)]
    assert delivered == [b"hello"]
