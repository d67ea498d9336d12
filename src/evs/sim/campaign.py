"""Many seeds, in parallel processes: the simulator's search for counter-examples.

Each seed is independent and deterministic, so the campaign just fans seeds out over worker
processes and collects the failures with the one-line command that replays each.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from evs.sim.cluster import Cluster
from evs.sim.options import draw_options

__all__ = ["CampaignResult", "SeedOutcome", "replay_command", "run_campaign", "run_seed"]


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


@dataclass
class CampaignResult:
    outcomes: list[SeedOutcome] = field(default_factory=list)
    real_s: float = 0.0

    @property
    def failures(self) -> list[SeedOutcome]:
        return [o for o in self.outcomes if o.violations]


def replay_command(
    seed: int, overrides: dict[str, Any], with_faults: bool, light: bool = False
) -> str:
    """The ``evs sim`` command line that replays one seed exactly."""
    parts = ["evs sim", f"--seed {seed}"]
    flags = {
        "nodes": "--nodes",
        "duration_ms": "--duration-ms",
        "loss": "--loss",
        "dup": "--dup",
        "reorder": "--reorder",
        "bandwidth_mbps": "--bandwidth",
        "rate": "--rate",
        "safe_fraction": "--safe-fraction",
        "token_ms": "--token",
        "canary": "--canary",
    }
    for key, flag in flags.items():
        if overrides.get(key) is not None:
            parts.append(f"{flag} {overrides[key]}")
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
