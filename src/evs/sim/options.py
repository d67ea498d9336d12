"""Everything a simulated run depends on, drawn from one seed (swarm testing).

``draw_options(seed)`` picks the processor count, the network, the workload and the faults
from the seed alone, so ``evs sim --seed N`` is a complete test; any option given explicitly
overrides the drawn value and the rest stay as drawn. The options are printed first in every
run, so a failure report shows exactly what was simulated.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from evs.sim.rng import derive

__all__ = ["FaultAction", "SimOptions", "draw_options"]


@dataclass(frozen=True, slots=True)
class FaultAction:
    """One scheduled fault: ``kind`` at ``at_ms`` with its arguments."""

    at_ms: float
    kind: str  # crash, restart, pause, partition, oneway, heal, burst, start
    nodes: tuple[int, ...] = ()
    groups: tuple[tuple[int, ...], ...] = ()
    duration_ms: float = 0.0
    value: float = 0.0

    def describe(self) -> str:
        parts = [f"{self.at_ms:.0f}ms {self.kind}"]
        if self.nodes:
            parts.append(",".join(map(str, self.nodes)))
        if self.groups:
            parts.append("|".join(",".join(map(str, g)) for g in self.groups))
        if self.duration_ms:
            parts.append(f"for {self.duration_ms:.0f}ms")
        if self.value:
            parts.append(f"p={self.value:.2f}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class SimOptions:
    """The parameters of one simulated run (times in milliseconds)."""

    seed: int
    nodes: int = 5
    #: The safety phase: workload and faults.
    duration_ms: float = 3000.0
    #: Bound on the liveness phase: one ring of all live processors, everything delivered.
    liveness_ms: float = 30000.0
    #: Install the ring directly (no membership protocol); faults need membership.
    static_ring: bool = False
    token_ms: float = 1000.0
    delay_min_ms: float = 0.05
    delay_mean_ms: float = 0.2
    loss: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0
    reorder_delay_ms: float = 2.0
    #: Per-processor egress limit in megabits per second (0: unlimited).
    bandwidth_mbps: float = 0.0
    #: Application messages per second per processor.
    rate: float = 200.0
    safe_fraction: float = 0.3
    #: Probability that a message is large (4 KiB - 64 KiB), and that it is huge (1 MiB).
    large_fraction: float = 0.03
    huge_fraction: float = 0.0
    faults: tuple[FaultAction, ...] = field(default=())
    canary: str = ""

    def describe(self) -> str:
        lines = [
            f"seed={self.seed} nodes={self.nodes} duration={self.duration_ms:.0f}ms "
            f"static_ring={self.static_ring} token={self.token_ms:.0f}ms",
            f"network: delay={self.delay_min_ms:.2f}+exp({self.delay_mean_ms:.2f})ms "
            f"loss={self.loss:.3f} dup={self.dup:.3f} reorder={self.reorder:.3f} "
            f"bandwidth={self.bandwidth_mbps or 'unlimited'}",
            f"workload: rate={self.rate:.0f}/s/node safe={self.safe_fraction:.2f} "
            f"large={self.large_fraction:.3f} huge={self.huge_fraction:.4f}",
        ]
        if self.faults:
            lines.append("faults: " + "; ".join(f.describe() for f in self.faults))
        if self.canary:
            lines.append(f"canary: {self.canary}")
        return "\n".join(lines)


def draw_options(
    seed: int, *, with_faults: bool = False, light: bool = False, **overrides: Any
) -> SimOptions:
    """Draw every unspecified option from ``seed``; ``overrides`` win over drawn values.

    With faults, one seed in twenty runs a 16-processor ring. ``light`` caps the workload
    (rate, message sizes) so that large campaigns spend their time on faults, not on load.
    """
    rng = derive(seed, "options")
    nodes = int(overrides.get("nodes") or rng.randint(2, 9))
    if with_faults and not overrides.get("nodes") and derive(seed, "scale").random() < 0.05:
        nodes = 16
    drawn: dict[str, Any] = {
        "seed": seed,
        "nodes": nodes,
        "duration_ms": float(rng.choice((1500, 2000, 3000, 4000))),
        "delay_min_ms": rng.uniform(0.02, 0.5),
        "delay_mean_ms": rng.uniform(0.02, 1.5),
        "loss": rng.choice((0.0, rng.uniform(0, 0.05), rng.uniform(0, 0.3))),
        "dup": rng.choice((0.0, rng.uniform(0, 0.1))),
        "reorder": rng.choice((0.0, rng.uniform(0, 0.3))),
        "reorder_delay_ms": rng.uniform(0.5, 5.0),
        "bandwidth_mbps": rng.choice((0.0, 0.0, rng.uniform(20, 1000))),
        "rate": rng.choice((20.0, 100.0, 300.0, 600.0)),
        "safe_fraction": rng.choice((0.0, 0.2, 0.5, 1.0)),
        "large_fraction": rng.choice((0.0, 0.02, 0.1)),
        "huge_fraction": rng.choice((0.0, 0.0, 0.0, 0.002)),
    }
    if light:
        drawn["rate"] = min(drawn["rate"], 100.0)
        drawn["large_fraction"] = min(drawn["large_fraction"], 0.02)
        drawn["huge_fraction"] = 0.0
    drawn.update({k: v for k, v in overrides.items() if v is not None})
    if with_faults and "faults" not in overrides:
        drawn["faults"] = draw_faults(seed, drawn["nodes"], drawn["duration_ms"])
    names = {f.name for f in dataclasses.fields(SimOptions)}
    unknown = set(drawn) - names
    if unknown:
        raise ValueError(f"unknown simulator options: {sorted(unknown)}")
    return SimOptions(**drawn)


def draw_faults(seed: int, nodes: int, duration_ms: float) -> tuple[FaultAction, ...]:
    """A schedule of mixed faults inside the safety phase."""
    rng = derive(seed, "faults")
    ids = list(range(1, nodes + 1))
    actions: list[FaultAction] = []
    down: set[int] = set()
    late = [n for n in ids[1:] if rng.random() < 0.15]
    for n in late:
        actions.append(FaultAction(rng.uniform(0, duration_ms / 2), "start", (n,)))
    t = rng.uniform(100, 600)
    while t < duration_ms:
        kind = rng.choice(
            ("crash", "partition", "oneway", "pause", "burst", "flap", "crash2", "partition")
        )
        if kind in ("crash", "crash2"):
            alive = [n for n in ids if n not in down and n not in late]
            count = 1 if kind == "crash" else min(2, len(alive))
            victims = tuple(sorted(rng.sample(alive, count))) if alive else ()
            for v in victims:
                down.add(v)
                actions.append(FaultAction(t, "crash", (v,)))
                if rng.random() < 0.8:
                    back = t + rng.uniform(5, 2500)
                    actions.append(FaultAction(back, "restart", (v,)))
        elif kind in ("partition", "oneway") and nodes >= 2:
            shuffled = ids[:]
            rng.shuffle(shuffled)
            parts = rng.randint(2, min(3, nodes))
            cuts = sorted(rng.sample(range(1, nodes), parts - 1))
            groups = tuple(
                tuple(sorted(shuffled[a:b]))
                for a, b in zip([0, *cuts], [*cuts, nodes], strict=True)
            )
            actions.append(FaultAction(t, kind, groups=groups))
            actions.append(FaultAction(t + rng.uniform(200, 3000), "heal"))
        elif kind == "flap" and nodes >= 2:
            a, b = sorted(rng.sample(ids, 2))
            for i in range(rng.randint(2, 5)):
                start = t + i * rng.uniform(50, 400)
                actions.append(FaultAction(start, "partition", groups=((a,), (b,))))
                actions.append(FaultAction(start + rng.uniform(20, 300), "heal"))
        elif kind == "pause":
            victim = rng.choice(ids)
            actions.append(FaultAction(t, "pause", (victim,), duration_ms=rng.uniform(100, 3000)))
        else:
            actions.append(
                FaultAction(
                    t, "burst", duration_ms=rng.uniform(50, 800), value=rng.uniform(0.3, 0.9)
                )
            )
        t += rng.uniform(200, 1500)
    return tuple(sorted(actions, key=lambda a: (a.at_ms, a.kind, a.nodes)))
