"""Many seeds, in parallel processes: the simulator's search for counter-examples.

Each seed is independent and deterministic, so the campaign just fans seeds out over worker
processes and collects the failures with the one-line command that replays each. Every
outcome carries the run's accounting (``cluster.ACCOUNTING``: the faults that took effect,
the configurations delivered, the saturation and window peaks), so a campaign can prove that
what it drew really happened: a fault injector that silently does nothing fails the totals.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from evs.sim.cluster import ACCOUNTING, Cluster
from evs.sim.options import SimOptions, draw_options

__all__ = [
    "EFFECTS",
    "CampaignResult",
    "SeedOutcome",
    "replay_command",
    "run_campaign",
    "run_seed",
]


@dataclass(frozen=True)
class SeedOutcome:
    seed: int
    nodes: int
    violations: tuple[str, ...]
    sim_ms: float
    real_s: float
    converged_ms: float | None
    deliveries: int
    rings: int
    #: The options the seed ran with (drawn and given).
    options: SimOptions
    #: ``ACCOUNTING`` counters of the run.
    accounting: dict[str, int] = field(default_factory=dict)
    liveness_bound_ms: float = 0.0

    @property
    def window_filled(self) -> bool:
        """A token carried a full window: ``window_size`` packets sent in one rotation."""
        return self.accounting.get("token fcc peak", 0) >= self.options.window_size

    @property
    def sort_queue_filled(self) -> bool:
        """Some processor's sort queue spanned more than ``sort_queue_slots - window_size``
        seqs: the point where the token stops senders (the sort queue is full)."""
        opts = self.options
        peak = self.accounting.get("sort queue peak", 0)
        return peak > opts.sort_queue_slots - opts.window_size


@dataclass
class CampaignResult:
    outcomes: list[SeedOutcome] = field(default_factory=list)
    real_s: float = 0.0

    @property
    def failures(self) -> list[SeedOutcome]:
        return [o for o in self.outcomes if o.violations]

    def totals(self) -> Counter[str]:
        """Every ``ACCOUNTING`` counter summed over the seeds (peaks too: a count of seqs)."""
        total: Counter[str] = Counter()
        for o in self.outcomes:
            total.update(o.accounting)
        return total

    def drawn(self) -> Counter[str]:
        """What the seeds' options asked for: each fault kind scheduled inside the safety
        phase (``FaultAction.kind``), and ``saturate`` for the saturating seeds."""
        asked: Counter[str] = Counter()
        for o in self.outcomes:
            opts = o.options
            asked.update(a.kind for a in opts.faults if a.at_ms < opts.duration_ms)
            asked["saturate"] += opts.saturating
        return asked

    def unproven(self) -> list[str]:
        """Each drawn kind whose effect the runs never counted (``EFFECTS``): empty unless
        a fault injector (or the saturating load) silently did nothing."""
        asked = self.drawn()
        totals = self.totals()
        return [
            f"{kind} drawn {asked[kind]} times but {key} = 0"
            for kind, keys in EFFECTS.items()
            if asked[kind]
            for key in keys
            if not totals[key]
        ]


#: The accounting keys that prove each drawn kind of fault (or the saturation) took effect.
EFFECTS = {
    "start": ("late starts",),
    "crash": ("crashes",),
    "restart": ("restarts",),
    "pause": ("pauses", "datagrams held while paused"),
    "partition": ("partitions", "datagrams blocked"),
    "oneway": ("partitions", "datagrams blocked"),
    "heal": ("heals",),
    "burst": ("loss bursts",),
    "slow": ("slow periods", "datagrams lost to slow receivers"),
    "saturate": ("saturated submits", "saturation try again"),
}

#: Options with an ``evs sim`` flag, in the order the replay command spells them.
FLAGS = {
    "nodes": "--nodes",
    "duration_ms": "--duration-ms",
    "loss": "--loss",
    "dup": "--dup",
    "reorder": "--reorder",
    "bandwidth_mbps": "--bandwidth",
    "rate": "--rate",
    "safe_fraction": "--safe-fraction",
    "token_ms": "--token",
    "window_size": "--window-size",
    "max_messages": "--max-messages",
    "sort_queue_slots": "--sort-queue-slots",
    "queue_bytes_max": "--queue-bytes-max",
    "queue_messages_max": "--queue-messages-max",
    "max_message_size": "--max-message-size",
    "saturate": "--saturate",
    "handles": "--handles",
    "canary": "--canary",
}
#: Drawn options the replay command always spells out (with ``options``): the flow control
#: constants and the saturation span, whose drawing is the youngest and the likeliest to
#: change; given explicitly, the same values make the same run.
SPELLED_OUT = (
    "window_size",
    "max_messages",
    "sort_queue_slots",
    "queue_bytes_max",
    "max_message_size",
    "saturate",
)


def _flag_value(value: Any) -> str:
    if isinstance(value, tuple):
        return ":".join(_flag_value(v) for v in value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def replay_command(
    seed: int,
    overrides: dict[str, Any],
    with_faults: bool,
    light: bool = False,
    options: SimOptions | None = None,
) -> str:
    """The ``evs sim`` command line that replays one seed exactly.

    With ``options`` (the run's), the ``SPELLED_OUT`` values are given explicitly even where
    they were drawn.
    """
    values = {k: v for k, v in overrides.items() if v is not None}
    if options is not None:
        for key in SPELLED_OUT:
            values[key] = getattr(options, key)
        if not options.saturating:
            values.pop("saturate")
    parts = ["evs sim", f"--seed {seed}"]
    for key, flag in FLAGS.items():
        if key in values:
            parts.append(f"{flag} {_flag_value(values[key])}")
    if overrides.get("static_ring"):
        parts.append("--static-ring")
    elif not with_faults:
        parts.append("--no-faults")
    if light:
        parts.append("--light")
    return " ".join(parts)


def run_seed(
    seed: int, overrides: dict[str, Any], with_faults: bool, light: bool = False
) -> SeedOutcome:
    options = draw_options(seed, with_faults=with_faults, light=light, **overrides)
    result = Cluster(options).run()
    return SeedOutcome(
        seed=seed,
        nodes=options.nodes,
        violations=tuple(result.violations),
        sim_ms=result.sim_ms,
        real_s=result.real_s,
        converged_ms=result.converged_ms,
        deliveries=result.stats["deliveries"],
        rings=result.stats["regular configurations"],
        options=options,
        accounting={k: int(result.stats[k]) for k in ACCOUNTING},
        liveness_bound_ms=result.liveness_bound_ms,
    )


def _run_star(args: tuple[int, dict[str, Any], bool, bool]) -> SeedOutcome:
    return run_seed(*args)


def run_campaign(
    seeds: Iterable[int],
    overrides: dict[str, Any],
    *,
    with_faults: bool,
    light: bool = False,
    jobs: int = 0,
    progress: Callable[[SeedOutcome, int, int], None] | None = None,
) -> CampaignResult:
    """Run every seed (``jobs`` processes; 0 = one per core) and collect the outcomes."""
    seed_list = list(seeds)
    started = time.perf_counter()
    result = CampaignResult()
    work = [(s, overrides, with_faults, light) for s in seed_list]
    jobs = jobs or multiprocessing.cpu_count()
    if jobs == 1:
        outcomes: Iterable[SeedOutcome] = map(_run_star, work)
        for i, outcome in enumerate(outcomes, 1):
            result.outcomes.append(outcome)
            if progress:
                progress(outcome, i, len(work))
    else:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(jobs) as pool:
            for i, outcome in enumerate(pool.imap_unordered(_run_star, work, chunksize=1), 1):
                result.outcomes.append(outcome)
                if progress:
                    progress(outcome, i, len(work))
    result.outcomes.sort(key=lambda o: o.seed)
    result.real_s = time.perf_counter() - started
    return result
