"""A small language for hand-written cluster scenarios, read like the protocol paper.

    sc = Scenario(nodes=3)
    sc.run_until_ring((1, 2, 3))
    sc.drop_next(MessageType.MCAST, frm=1, to=3)
    sc.submit(1, 100)
    sc.run_ms(500)
    assert sc.delivered(3) == sc.delivered(1)
    sc.assert_evs()

Scenarios start with no workload and no faults; everything that happens is what the test
says. Rare protocol branches are counted in each processor's ``stats``; ``stat(name)`` sums
them so a test can assert that the branch it exists for was taken.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from evs.check import check_events
from evs.sim.cluster import Cluster
from evs.sim.options import SimOptions
from evs.totem.codec import HEADER_SIZE, peek_type
from evs.totem.config import TotemConfig
from evs.totem.events import MembState
from evs.totem.messages import MessageType
from evs.types import Guarantee, RingId

__all__ = ["RingView", "Scenario"]


@dataclass(frozen=True)
class RingView:
    """What one processor believes: its state, ring and members."""

    state: MembState
    ring_id: RingId
    members: tuple[int, ...]


class Scenario:
    """A quiet cluster driven step by step by a test."""

    def __init__(
        self,
        nodes: int = 3,
        *,
        static: bool = False,
        seed: int = 0,
        start: Iterable[int] | None = None,
        config: TotemConfig | None = None,
        **network: Any,
    ) -> None:
        options = SimOptions(seed=seed, nodes=nodes, static_ring=static, rate=1.0, **network)
        self.cluster = Cluster(options, config=config)
        for nodeid in start if start is not None else range(1, nodes + 1):
            self.cluster.start_node(nodeid)

    # -- time
    def run_ms(self, ms: float) -> None:
        self.cluster.run_ms(ms)

    def run_until(self, predicate: Callable[[], bool], within_ms: float) -> float:
        """Run until ``predicate()`` holds; fails the test if it does not within the bound."""
        start = self.cluster.now
        if not self.cluster.run_until(start + within_ms, predicate):
            raise AssertionError(
                f"condition not reached within {within_ms} ms: {self.cluster.describe_states()}"
            )
        return self.cluster.now - start

    def run_until_ring(self, members: tuple[int, ...], within_ms: float = 20000.0) -> float:
        """Run until every listed processor is OPERATIONAL on one ring of exactly them."""

        def formed() -> bool:
            views = [self.ring(n) for n in members]
            return all(
                v.state is MembState.OPERATIONAL
                and v.members == members
                and v.ring_id == views[0].ring_id
                for v in views
            )

        return self.run_until(formed, within_ms)

    # -- application
    def submit(self, node: int, size: int = 100, *, safe: bool = False) -> str:
        guarantee = Guarantee.SAFE if safe else Guarantee.AGREED
        msgid = self.cluster.submit(node, size, guarantee)
        assert msgid is not None, f"node {node} refused the message (TryAgain)"
        return msgid

    # -- network and faults
    def drop_next(
        self,
        kind: MessageType,
        *,
        frm: int | None = None,
        to: int | None = None,
        count: int = 1,
    ) -> Callable[[], int]:
        """Drop the next ``count`` datagrams of ``kind`` (optionally from/to given nodes).

        Returns a function telling how many were dropped so far.
        """
        dropped = [0]

        def rule(src: int, dst: int, data: bytes) -> bool:
            if dropped[0] >= count or len(data) < HEADER_SIZE:
                return False
            if peek_type(data) is not kind:
                return False
            if (frm is not None and src != frm) or (to is not None and dst != to):
                return False
            dropped[0] += 1
            return True

        self.cluster.filters.append(rule)
        return lambda: dropped[0]

    def duplicate_next(self, kind: MessageType, *, frm: int | None = None) -> None:
        """Send the next datagram of ``kind`` twice."""
        cluster = self.cluster
        done = [False]
        original = cluster._send

        def send(src: int, dest: int, data: bytes) -> None:
            original(src, dest, data)
            if not done[0] and peek_type(data) is kind and (frm is None or src == frm):
                done[0] = True
                original(src, dest, data)

        cluster._send = send  # type: ignore[method-assign]

    def partition(self, *groups: tuple[int, ...], oneway: bool = False) -> None:
        self.cluster.partition(*groups, oneway=oneway)

    def heal(self) -> None:
        self.cluster.heal()

    def set_loss(self, loss: float) -> None:
        self.cluster.loss = loss

    def crash(self, node: int) -> None:
        self.cluster.crash(node)

    def restart(self, node: int) -> None:
        self.cluster.restart(node)

    def pause(self, node: int, ms: float) -> None:
        self.cluster.pause(node, ms)

    def leave(self, node: int) -> None:
        driver = self.cluster.nodes[node].driver
        assert driver is not None
        driver.leave(self.cluster.now)
        self.cluster._flush(self.cluster.nodes[node])
        self.cluster.crash(node)

    # -- observations
    def ring(self, node: int) -> RingView:
        proc = self.cluster.nodes[node].proc
        assert proc is not None, f"node {node} is down"
        return RingView(proc.state, proc.ring_id, proc.memb_list)

    def processor(self, node: int) -> Any:
        return self.cluster.nodes[node].proc

    def events(self, node: int, ev: str | None = None) -> list[dict[str, Any]]:
        return [
            e for e in self.cluster.trace if e["node"] == node and (ev is None or e["ev"] == ev)
        ]

    def delivered(self, node: int) -> list[str]:
        return [e["msg"] for e in self.events(node, "deliver")]

    def confchgs(self, node: int) -> list[dict[str, Any]]:
        return self.events(node, "confchg")

    def stat(self, name: str) -> int:
        total = self.cluster.stats[name]
        for node in self.cluster.nodes.values():
            if node.proc is not None:
                total += node.proc.stats[name]
        return total

    def run_until_delivered(
        self, msgid: str, nodes: Iterable[int], within_ms: float = 5000.0
    ) -> float:
        """Run until every listed processor delivered ``msgid``; fails the test otherwise."""
        want = set(nodes)
        got: set[int] = set()
        trace = self.cluster.trace
        cursor = [0]

        def delivered() -> bool:
            for e in trace[cursor[0] :]:
                if e["ev"] == "deliver" and e["msg"] == msgid:
                    got.add(e["node"])
            cursor[0] = len(trace)
            return want <= got

        return self.run_until(delivered, within_ms)

    def assert_evs(self, *, quiet_end: bool = True) -> None:
        """Every EVS property holds on the trace so far.

        ``quiet_end`` (the default) also judges the last configuration: the run must end
        with every live processor on one ring that delivered all of that ring's messages,
        so a scenario runs to quiet before it asserts. Pass False only to check a trace
        cut in the middle of a change.
        """
        report = check_events(self.cluster.trace, quiet_end=quiet_end)
        assert not report.violations, "\n".join(str(v) for v in report.violations)
