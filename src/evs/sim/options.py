"""Everything a simulated run depends on, drawn from one seed (swarm testing).

``draw_options(seed)`` picks the processor count, the network, the workload, the number of
application handles per process (1-3, its own stream), the ring's flow control constants and
the faults from the seed alone, so ``evs sim --seed N`` is a complete
test; any option given explicitly overrides the drawn value and the rest stay as drawn. The
options are printed first in every run, so a failure report shows exactly what was simulated.

Each group of choices has its own named random stream, and every draw of a stream is made
whether or not an override replaces it, so giving an option explicitly with the value it
would have been drawn with yields the same run: the replay command may spell out drawn
values (the flow control ones, which the drawing may change as the simulator grows) and
still replay byte for byte.

Flow control is drawn small as often as large: a window of 5 packets, one packet per visit
and a sort queue barely over two windows make the ring run full on a light load, which is
where the windowing and retransmission bounds are exercised; the core's defaults are drawn
as one choice among the others. ``saturate`` spans make every processor keep its send queue
full (TryAgain at ``queue_bytes_max``) for part of the safety phase.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Final

from evs.sim.rng import derive
from evs.totem.config import TotemConfig
from evs.totem.groups import NO_MESSAGE_BOUND

__all__ = [
    "FAULT_KINDS",
    "HUGE",
    "LARGE",
    "FaultAction",
    "SimOptions",
    "draw_options",
    "parse_span",
]

_TOTEM = TotemConfig()
#: ``queue_messages_max`` of a seed that does not give one: no bound in messages.
UNBOUNDED_MESSAGES: Final = NO_MESSAGE_BOUND
#: Size of a huge message, and the largest large one (the workload's size mix).
HUGE = 1 << 20
LARGE = 64 << 10
#: Every kind of scheduled fault, as ``FaultAction.kind`` spells it.
FAULT_KINDS = (
    "start",
    "crash",
    "restart",
    "pause",
    "partition",
    "oneway",
    "heal",
    "burst",
    "slow",
)


@dataclass(frozen=True, slots=True)
class FaultAction:
    """One scheduled fault: ``kind`` at ``at_ms`` with its arguments."""

    at_ms: float
    kind: str  # one of FAULT_KINDS
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
    #: The ring's flow control (TotemConfig): packets one token rotation may carry, packets
    #: one processor may send per visit, how far (in seqs) the ring may run ahead of its
    #: slowest member, the send queue's bytes before TryAgain and the largest message.
    window_size: int = _TOTEM.window_size
    max_messages: int = _TOTEM.max_messages
    sort_queue_slots: int = _TOTEM.sort_queue_slots
    queue_bytes_max: int = _TOTEM.queue_bytes_max
    max_message_size: int = _TOTEM.max_message_size
    #: The send queue's messages before TryAgain. Unbounded unless given (the core's default
    #: is 4096 since stop 25): every seed drawn before then replays as it ran.
    queue_messages_max: int = UNBOUNDED_MESSAGES
    #: Saturating load from ``saturate[0]`` to ``saturate[1]`` ms (equal: none): every
    #: processor keeps its send queue full, on top of the Poisson workload.
    saturate: tuple[float, float] = (0.0, 0.0)
    #: Application handles per simulated process (handle slots ``0..handles-1``), each
    #: joining and leaving groups and sending through the node's ``EvsService``.
    handles: int = 1

    @property
    def saturating(self) -> bool:
        return self.saturate[1] > self.saturate[0]

    def totem_config(self) -> TotemConfig:
        """The protocol constants every simulated processor runs with."""
        return TotemConfig(
            token=self.token_ms,
            window_size=self.window_size,
            max_messages=self.max_messages,
            sort_queue_slots=self.sort_queue_slots,
            queue_bytes_max=self.queue_bytes_max,
            max_message_size=self.max_message_size,
            queue_messages_max=self.queue_messages_max,
        )

    def largest_message(self) -> int:
        """The largest message the workload may submit (``huge``: 1 MiB, else 64 KiB)."""
        return HUGE if self.huge_fraction else LARGE

    def describe(self) -> str:
        lines = [
            f"seed={self.seed} nodes={self.nodes} duration={self.duration_ms:.0f}ms "
            f"static_ring={self.static_ring} token={self.token_ms:.0f}ms",
            f"network: delay={self.delay_min_ms:.2f}+exp({self.delay_mean_ms:.2f})ms "
            f"loss={self.loss:.3f} dup={self.dup:.3f} reorder={self.reorder:.3f} "
            f"bandwidth={self.bandwidth_mbps or 'unlimited'}",
            f"workload: rate={self.rate:.0f}/s/node safe={self.safe_fraction:.2f} "
            f"large={self.large_fraction:.3f} huge={self.huge_fraction:.4f}"
            + (
                f" saturate={self.saturate[0]:.0f}-{self.saturate[1]:.0f}ms"
                if self.saturating
                else ""
            ),
            f"flow control: window={self.window_size} max_messages={self.max_messages} "
            f"sort_queue_slots={self.sort_queue_slots} "
            f"queue_bytes_max={self.queue_bytes_max} "
            + (
                f"queue_messages_max={self.queue_messages_max} "
                if self.queue_messages_max != UNBOUNDED_MESSAGES
                else ""
            )
            + f"max_message_size={self.max_message_size}",
            f"service: {self.handles} handle(s) per process",
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
    (rate, message sizes, saturation) so that large campaigns spend their time on faults, not
    on carrying load. Raises ValueError (ConfigError) when explicit flow control options
    contradict each other.
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
    given = {k: v for k, v in overrides.items() if v is not None}
    drawn.update(given)
    handles = derive(seed, "handle-count").randint(1, 3)  # drawn even when given
    drawn.setdefault("handles", handles)
    drawn["saturate"] = _draw_saturate(seed, drawn["duration_ms"], light, given)
    saturating = drawn["saturate"][1] > drawn["saturate"][0]
    largest = HUGE if drawn["huge_fraction"] else LARGE
    drawn.update(_draw_flow(seed, given, saturating=saturating, light=light, largest=largest))
    if with_faults and "faults" not in overrides:
        drawn["faults"] = draw_faults(seed, drawn["nodes"], drawn["duration_ms"])
    names = {f.name for f in dataclasses.fields(SimOptions)}
    unknown = set(drawn) - names
    if unknown:
        raise ValueError(f"unknown simulator options: {sorted(unknown)}")
    options = SimOptions(**drawn)
    options.totem_config()  # raises ConfigError for contradictory explicit values
    if options.max_message_size < options.largest_message():
        raise ValueError(
            f"max_message_size={options.max_message_size} is below the largest message the "
            f"workload draws ({options.largest_message()} bytes)"
        )
    return options


def _draw_flow(
    seed: int, given: dict[str, Any], *, saturating: bool, light: bool, largest: int
) -> dict[str, int]:
    """Window, packets per visit, sort queue slots, queue bytes and the largest message,
    valid together (``largest``: the largest message the workload draws).

    A drawn value gives way to an explicit one: a drawn window grows to an explicit
    ``max_messages`` and shrinks under an explicit ``sort_queue_slots``. A saturating run
    draws a small send queue, since it is filled at once and drained after the faults, so its
    size sets what the run costs: 1-2 MiB, and when light (no huge messages) 128-256 KiB
    with ``max_message_size`` 64 KiB, where TryAgain comes after a few dozen messages.
    """
    rng = derive(seed, "flow")
    u = [rng.random() for _ in range(8)]
    window = given.get("window_size")
    if window is None:
        if u[0] < 0.25:
            window = _TOTEM.window_size
        elif u[0] < 0.5:
            window = 5 + int(u[1] * 11)  # 5..15
        elif u[0] < 0.8:
            window = 16 + int(u[1] * 85)  # 16..100
        else:
            window = 101 + int(u[1] * 100)  # 101..200
        if given.get("max_messages") is not None:
            window = max(window, int(given["max_messages"]))
        if given.get("sort_queue_slots") is not None:
            window = min(window, (int(given["sort_queue_slots"]) - 1) // 2)
        window = max(window, 1)
    messages = given.get("max_messages")
    if messages is None:
        if u[2] < 0.2:
            messages = min(_TOTEM.max_messages, window)
        elif u[2] < 0.35:
            messages = 1
        elif u[2] < 0.6:
            messages = window
        else:
            messages = 1 + int(u[3] * window)  # 1..window
    slots = given.get("sort_queue_slots")
    if slots is None:
        if u[4] < 0.35:
            slots = 2 * window + 1 + int(u[5] * 8)  # barely over two windows
        elif u[4] < 0.7:
            slots = 2 * window + 1 + int(u[5] * 8 * window)  # up to ten windows
        else:
            slots = max(_TOTEM.sort_queue_slots, 2 * window + 1)
    queue = given.get("queue_bytes_max")
    biggest = given.get("max_message_size")
    small = saturating and light and largest <= LARGE and (biggest or LARGE) <= LARGE
    if queue is None:
        if small:
            queue = (128 << 10) if u[6] < 0.5 else (256 << 10)
        elif saturating:
            queue = 1 << 20 if light or u[6] < 0.5 else 2 << 20
        else:
            # Spelled out, not the core's default (1 MiB since stop 25; 2 MiB before): a
            # seed draws the queue it always drew.
            queue = (1 << 20, 2 << 20, 2 << 20)[int(u[6] * 3)]
    if biggest is None:
        biggest = LARGE if small else _TOTEM.max_message_size
        if biggest > queue >= largest:
            biggest = queue  # an explicit small queue: the largest message fits it
    return {
        "window_size": int(window),
        "max_messages": int(messages),
        "sort_queue_slots": int(slots),
        "queue_bytes_max": int(queue),
        "max_message_size": int(biggest),
    }


def _draw_saturate(
    seed: int, duration_ms: float, light: bool, given: dict[str, Any]
) -> tuple[float, float]:
    """A quarter of the seeds saturate for a span of the safety phase (light: 100-300 ms)."""
    rng = derive(seed, "saturate")
    on, u_start, u_len = rng.random(), rng.random(), rng.random()
    if "saturate" in given:
        start, end = given["saturate"]  # an end past the phase (``--saturate``): to its end
        return (float(start), min(float(end), duration_ms))
    if on >= 0.25:
        return (0.0, 0.0)
    start = float(int(u_start * duration_ms * 0.6))
    longest = 300.0 if light else duration_ms - start
    length = float(int(100 + u_len * max(0.0, longest - 100)))
    return (start, min(duration_ms, start + length))


def parse_span(text: str) -> tuple[float, float]:
    """``FROM:TO`` in milliseconds (as the replay command prints a saturation span)."""
    start, sep, end = text.partition(":")
    if not sep:
        raise ValueError(f"expected FROM:TO in milliseconds, got {text!r}")
    span = (float(start), float(end))
    if not 0 <= span[0] <= span[1]:
        raise ValueError(f"need 0 <= FROM <= TO, got {text!r}")
    return span


def draw_faults(seed: int, nodes: int, duration_ms: float) -> tuple[FaultAction, ...]:
    """A schedule of mixed faults inside the safety phase (every kind of ``FAULT_KINDS``)."""
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
            (
                "crash",
                "partition",
                "oneway",
                "pause",
                "burst",
                "flap",
                "crash2",
                "partition",
                "slow",
            )
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
        elif kind == "slow":
            # A slow receiver: most multicasts to it are lost (tokens still pass) for a while,
            # so it lags, holds the ring's aru back and must catch up by retransmission.
            victim = rng.choice(ids)
            actions.append(
                FaultAction(
                    t,
                    "slow",
                    (victim,),
                    duration_ms=rng.uniform(200, 2500),
                    value=rng.uniform(0.8, 0.98),
                )
            )
        else:
            actions.append(
                FaultAction(
                    t, "burst", duration_ms=rng.uniform(50, 800), value=rng.uniform(0.3, 0.9)
                )
            )
        t += rng.uniform(200, 1500)
    return tuple(sorted(actions, key=lambda a: (a.at_ms, a.kind, a.nodes)))
