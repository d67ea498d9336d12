"""Seed campaigns: the simulator searching for counter-examples on every CI run.

Longer campaigns (thousands of seeds) are run with ``evs sim --seeds N`` (docs/simulator.md).
Each failing seed is printed with the command that replays it.
"""

from __future__ import annotations

from typing import Any

from evs.sim.campaign import CampaignResult, replay_command, run_campaign


def report(result: CampaignResult, overrides: dict[str, Any], faults: bool, light: bool) -> str:
    lines = [
        f"{o.seed}: {o.violations[0][:300]}\n  {replay_command(o.seed, overrides, faults, light)}"
        for o in result.failures[:10]
    ]
    return "\n".join(lines)


def test_ring_campaign_500_seeds_with_loss_duplication_and_reordering() -> None:
    """Issue 2: 2-9 processors, up to 30% loss, duplication and reordering, no faults."""
    overrides = {"static_ring": True}
    result = run_campaign(range(1, 501), overrides, with_faults=False, jobs=2)
    assert len(result.outcomes) == 500
    assert {o.nodes for o in result.outcomes} == set(range(2, 10))
    assert sum(o.deliveries for o in result.outcomes) > 100_000
    assert not result.failures, report(result, overrides, False, False)


def test_fault_campaign_1000_seeds_every_fault_mixed() -> None:
    """Issue 3: crashes, restarts, partitions, one-way links, pauses, bursts, late joiners."""
    result = run_campaign(range(1, 1001), {}, with_faults=True, light=True, jobs=2)
    assert len(result.outcomes) == 1000
    assert 16 in {o.nodes for o in result.outcomes}
    assert all(o.converged_ms is not None for o in result.outcomes if not o.violations)
    assert not result.failures, report(result, {}, True, True)
