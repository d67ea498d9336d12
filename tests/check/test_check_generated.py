"""Seeded model clusters that obey EVS by construction: the checker must accept every trace
they produce, and must catch a few mutations that always break a property.

The model is deliberately simpler than Totem but keeps what the checker judges: one log
(the total order) per regular configuration, gap-free regular delivery, a transitional
configuration per group of nodes moving together (identical regular prefix before it, then a
gap-free stretch, then only members' messages), safe messages delivered by everyone who
lives through the configuration, crashes, restarts (new incarnations) and partitions.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evs.check import check_events
from evs.trace import confchg_event, crash_event, deliver_event, restart_event, send_event


class _Group:
    def __init__(self, ring: str, members: list[int]) -> None:
        self.ring = ring
        self.members = frozenset(members)
        self.log: list[tuple[str, int, str]] = []  # (msg, sender, guarantee) in total order
        self.high = 0  # longest regular prefix anyone delivered (crashed nodes included)


class Cluster:
    """An EVS-correct cluster model that writes trace events as it runs."""

    def __init__(self, seed: int, nodes: int = 3, churn: float = 0.1) -> None:
        self.rng = random.Random(seed)
        self.churn = churn  # share of steps that change membership (reconfigure, crash, restart)
        self.events: list[dict[str, Any]] = []
        self.seq = 0
        self.live = set(range(1, nodes + 1))
        self.down: set[int] = set()
        self.inc = dict.fromkeys(self.live, 0)
        self.counter = dict.fromkeys(self.live, 0)
        self.group_of: dict[int, _Group] = {}
        self.done: dict[int, int] = {}
        self.groups: list[_Group] = []
        self.first(sorted(self.live))

    @property
    def t(self) -> int:
        return len(self.events)

    def new_group(self, members: list[int]) -> _Group:
        self.seq += 4
        g = _Group(f"{min(members)}.{self.seq}", members)
        self.groups.append(g)
        for n in members:
            self.group_of[n] = g
            self.done[n] = 0
        return g

    def first(self, members: list[int]) -> None:
        g = self.new_group(members)
        for n in members:
            self.events.append(
                confchg_event(
                    self.t, n, transitional=False, ring=g.ring, members=members, joined=members
                )
            )

    def send(self, n: int) -> None:
        g = self.group_of[n]
        self.counter[n] += 1
        msg = f"{n}:{self.inc[n]}:{self.counter[n]}"
        guarantee = "safe" if self.rng.random() < 0.25 else "agreed"
        g.log.append((msg, n, guarantee))
        self.events.append(send_event(self.t, n, msg, guarantee=guarantee))

    def deliver(self, n: int, upto: int) -> None:
        g = self.group_of[n]
        for msg, sender, guarantee in g.log[self.done[n] : upto]:
            self.events.append(deliver_event(self.t, n, msg, sender, g.ring, guarantee=guarantee))
        self.done[n] = max(self.done[n], upto)
        g.high = max(g.high, upto)

    def reconfigure(self, old: list[_Group], parts: list[list[int]]) -> None:
        """Move the live members of ``old`` into new configurations ``parts``."""
        rings = [f"{min(part)}.{self.seq + 4 * (i + 1)}" for i, part in enumerate(parts)]
        for g in old:
            here = {n for n in self.live if self.group_of[n] is g}
            moving = [
                (p, ring, sorted(here & set(p))) for p, ring in zip(parts, rings, strict=True)
            ]
            moving = [m for m in moving if m[2]]
            cut = {}
            for _, _, trans in moving:  # 6.4: one regular prefix per transitional group
                r = self.rng.randint(max(self.done[n] for n in trans), len(g.log))
                for n in trans:
                    self.deliver(n, r)
                cut[tuple(trans)] = r
            high = g.high
            safe_hi = max((i + 1 for i, m in enumerate(g.log[:high]) if m[2] == "safe"), default=0)
            for part, ring, trans in moving:
                r = cut[tuple(trans)]
                h = self.rng.randint(max(r, safe_hi), len(g.log))
                tail = g.log[r:h] + [m for m in g.log[h:] if m[1] in trans]
                for n in trans:
                    self.events.append(
                        confchg_event(
                            self.t,
                            n,
                            transitional=True,
                            ring=g.ring,
                            members=trans,
                            left=g.members - set(trans),
                        )
                    )
                    for msg, sender, guarantee in tail:
                        self.events.append(
                            deliver_event(self.t, n, msg, sender, g.ring, guarantee=guarantee)
                        )
                    self.events.append(
                        confchg_event(
                            self.t,
                            n,
                            transitional=False,
                            ring=ring,
                            members=part,
                            joined=set(part) - set(trans),
                        )
                    )
            self.groups.remove(g)
        for part in parts:
            self.new_group(part)

    def step(self) -> None:
        r = self.rng.random()
        live = sorted(self.live)
        if r >= self.churn:
            if r < (1 + self.churn) / 2:
                self.send(self.rng.choice(live))
            else:
                n = self.rng.choice(live)
                self.deliver(n, self.rng.randint(self.done[n], len(self.group_of[n].log)))
        elif r < self.churn / 2:
            self.change()
        elif r < self.churn * 3 / 4 and len(self.live) > 1:
            n = self.rng.choice(live)
            self.live.remove(n)
            self.down.add(n)
            self.events.append(crash_event(self.t, n))
        elif self.down:
            n = self.rng.choice(sorted(self.down))
            self.down.remove(n)
            self.live.add(n)
            self.inc[n] += 1
            self.counter[n] = 0
            self.events.append(restart_event(self.t, n))
            self.first([n])

    def change(self) -> None:
        groups = [g for g in self.groups if any(self.group_of.get(n) is g for n in self.live)]
        if len(groups) > 1 and self.rng.random() < 0.5:
            old = self.rng.sample(groups, 2)
            parts = [sorted(n for g in old for n in self.live if self.group_of[n] is g)]
        else:
            old = [self.rng.choice(groups)]
            members = sorted(n for n in self.live if self.group_of[n] is old[0])
            k = self.rng.randint(1, len(members))
            parts = [p for p in (members[:k], members[k:]) if p]
        self.reconfigure(old, parts)

    def quiet_end(self) -> None:
        """Heal everything into one configuration and let everyone deliver everything."""
        groups = [g for g in self.groups if any(self.group_of.get(n) is g for n in self.live)]
        self.reconfigure(groups, [sorted(self.live)])
        for n in sorted(self.live):
            self.send(n)
        for n in sorted(self.live):
            self.deliver(n, len(self.group_of[n].log))

    def run(self, steps: int, *, quiet: bool = False) -> list[dict[str, Any]]:
        for _ in range(steps):
            self.step()
        if quiet:
            self.quiet_end()
        return self.events


@pytest.mark.parametrize("seed", range(40))
def test_model_traces_hold_every_property(seed: int) -> None:
    quiet = seed % 2 == 0
    events = Cluster(seed, nodes=1 + seed % 5).run(250, quiet=quiet)
    report = check_events(events, quiet_end=quiet)
    assert report.ok, report.render_text(limit=5)
    assert check_events(events, handle_traces=True, compare_time=False, validate=False).ok


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    nodes=st.integers(1, 6),
    churn=st.sampled_from([0.0, 0.02, 0.1, 0.3]),
    steps=st.integers(0, 300),
    quiet=st.booleans(),
)
def test_model_traces_hold_for_any_seed(
    seed: int, nodes: int, churn: float, steps: int, quiet: bool
) -> None:
    events = Cluster(seed, nodes=nodes, churn=churn).run(steps, quiet=quiet)
    report = check_events(events, quiet_end=quiet)
    assert report.ok, report.render_text(limit=5)


def test_a_long_quiet_run_holds() -> None:
    events = Cluster(2024, nodes=5, churn=0.002).run(20_000, quiet=True)
    report = check_events(events, quiet_end=True)
    assert report.ok, report.render_text(limit=5)
    assert report.events == len(events) > 20_000


def _deliveries(events: list[dict[str, Any]]) -> list[int]:
    return [i for i, e in enumerate(events) if e["ev"] == "deliver"]


ORDER = {"5", "6.1", "6.2", "6.3", "6.4"}


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), pick=st.randoms(use_true_random=False))
def test_mutations_are_caught(seed: int, pick: random.Random) -> None:
    events = Cluster(seed, nodes=3, churn=0.05).run(200)
    where = _deliveries(events)
    if not where:
        return
    i = pick.choice(where)

    dup = [*events[: i + 1], {**events[i], "t": events[i]["t"]}, *events[i + 1 :]]
    assert "1.2" in {v.property for v in check_events(dup).violations}

    moved = [*events[:i], {**events[i], "ring": "999.999999"}, *events[i + 1 :]]
    assert {"1.3", "2.6"} <= {v.property for v in check_events(moved).violations}

    unsent = [e for e in events if not (e["ev"] == "send" and e["msg"] == events[i]["msg"])]
    assert "1.1" in {v.property for v in check_events(unsent).violations}

    # Swap a node's two consecutive deliveries that another node delivered in the same ring.
    node, ring = events[i]["node"], events[i]["ring"]
    later = [j for j in where if j > i and events[j]["node"] == node]
    if not later or events[later[0]]["ring"] != ring:
        return
    j = later[0]
    if any(events[k]["ev"] == "confchg" and events[k]["node"] == node for k in range(i, j)):
        return
    both = {events[i]["msg"], events[j]["msg"]}
    others: dict[int, set[str]] = {}
    for e in events:
        if e["ev"] == "deliver" and e["node"] != node and e["ring"] == ring:
            others.setdefault(e["node"], set()).add(e["msg"])
    if not any(both <= got for got in others.values()):
        return
    swapped = list(events)
    swapped[i], swapped[j] = {**events[j], "t": events[i]["t"]}, {**events[i], "t": events[j]["t"]}
    assert ORDER & {v.property for v in check_events(swapped).violations}


def as_handles(events: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """Make each incarnation's first configuration start mid-stream, as for an application
    handle that joined late: drop a prefix of its regular deliveries there (never its own
    messages, and never past one of its sends)."""
    drop: set[int] = set()
    state: dict[int, str] = {}  # node -> "await" (its first configuration), "first", "done"
    run: dict[int, list[int]] = {}

    def cut(n: int) -> None:
        state[n] = "done"
        drop.update(run[n][: rng.randint(0, len(run[n]))])

    for i, e in enumerate(events):
        n, kind = e["node"], e["ev"]
        if kind == "restart":
            state[n] = "await"
        elif kind == "confchg" and state.get(n, "await") == "await":
            state[n], run[n] = "first", []
        elif state.get(n) == "first":
            if kind == "deliver" and e["sender"] != n:
                run[n].append(i)
            else:
                cut(n)
    for n, now in state.items():
        if now == "first":
            cut(n)
    return [e for i, e in enumerate(events) if i not in drop]


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    nodes=st.integers(1, 5),
    churn=st.sampled_from([0.0, 0.05, 0.2]),
    quiet=st.booleans(),
    cut=st.randoms(use_true_random=False),
)
def test_handle_traces_joined_mid_stream_hold(
    seed: int, nodes: int, churn: float, quiet: bool, cut: random.Random
) -> None:
    events = as_handles(Cluster(seed, nodes=nodes, churn=churn).run(200, quiet=quiet), cut)
    report = check_events(events, quiet_end=quiet, handle_traces=True)
    assert report.ok, report.render_text(limit=5)
