"""Seed campaigns: the simulator searching for counter-examples on every CI run.

Every seed draws its flow control constants (windows of 5-200 packets, one packet per visit,
sort queues barely over two windows), a quarter of them a span of saturating load, and the
fault seeds slow receivers among the other faults. Each campaign asserts what it drew really
happened (``CampaignResult.unproven``: a fault injector that silently does nothing fails
here), that windows and sort queues filled, and that no seed broke a property or liveness.

Every campaign comes in two sizes over the same seed range: the per-commit size, which runs in
every ``scripts/check`` (every fault kind, window shape and saturation kind is still drawn and
asserted), and the full size, marked ``slow``, which runs the same campaign over twice or so as
many seeds (``scripts/check -m slow tests/sim/test_campaigns.py``; before a change to the core
lands). Longer campaigns (thousands of seeds) are run with ``evs sim --seeds N``
(docs/simulator.md). Each failing seed is printed with the command that replays it.
"""

from __future__ import annotations

from typing import Any

import pytest

from evs.sim.campaign import CampaignResult, replay_command, run_campaign


def report(result: CampaignResult, overrides: dict[str, Any], faults: bool, light: bool) -> str:
    lines = [
        f"{o.seed}: {o.violations[0][:300]}\n"
        f"  {replay_command(o.seed, overrides, faults, light, o.options)}"
        for o in result.failures[:10]
    ]
    return "\n".join(lines)


def assert_clean_and_proven(
    result: CampaignResult, overrides: dict[str, Any], faults: bool, light: bool
) -> None:
    assert not result.failures, report(result, overrides, faults, light)
    assert all(o.converged_ms is not None for o in result.outcomes)
    assert result.unproven() == []
    outcomes = result.outcomes
    saturating = [o for o in outcomes if o.options.saturating]
    assert len(saturating) >= len(outcomes) // 8
    # Saturation reaches the send queue's limit: TryAgain in most saturating seeds.
    assert sum(o.accounting["saturation try again"] > 0 for o in saturating) > len(saturating) // 2
    assert sum(o.window_filled for o in outcomes) >= len(outcomes) // 5
    assert sum(o.sort_queue_filled for o in outcomes) >= len(outcomes) // 10
    windows = {o.options.window_size for o in outcomes}
    assert min(windows) <= 6
    assert max(windows) >= 150
    assert any(o.options.max_messages == 1 for o in outcomes)


def assert_faults_took_effect(result: CampaignResult) -> None:
    """Most scheduled faults of each kind took effect (some hit a processor already down)."""
    drawn, happened = result.drawn(), result.totals()
    for kind, key in (
        ("crash", "crashes"),
        ("pause", "pauses"),
        ("burst", "loss bursts"),
        ("slow", "slow periods"),
        ("start", "late starts"),
    ):
        assert drawn[kind] > 0, kind
        assert happened[key] >= drawn[kind] // 2, (kind, drawn[kind], happened[key])
    assert happened["partitions"] >= (drawn["partition"] + drawn["oneway"]) // 2
    assert happened["transitional configurations"] > 0
    assert happened["rings installed"] > len(result.outcomes)


def sizes(per_commit: int, full: int) -> pytest.MarkDecorator:
    """The per-commit size, then the full size (slow) of one campaign."""
    return pytest.mark.parametrize(
        "seeds", [per_commit, pytest.param(full, marks=pytest.mark.slow)], ids=["commit", "full"]
    )


@sizes(200, 400)
def test_ring_campaign_with_loss_small_windows_and_saturation(seeds: int) -> None:
    """Issue 2: 2-9 processors, up to 30% loss, duplication and reordering, no faults."""
    overrides = {"static_ring": True}
    result = run_campaign(range(1, seeds + 1), overrides, with_faults=False, jobs=2)
    assert len(result.outcomes) == seeds
    assert {o.nodes for o in result.outcomes} == set(range(2, 10))
    assert sum(o.deliveries for o in result.outcomes) > 250 * seeds
    assert_clean_and_proven(result, overrides, False, False)


@sizes(500, 850)
def test_fault_campaign_light_seeds_every_fault_mixed(seeds: int) -> None:
    """Issue 3: crashes, restarts, partitions, one-way links, pauses, bursts, late joiners and
    slow receivers, on light workloads (the time goes to faults)."""
    result = run_campaign(range(1, seeds + 1), {}, with_faults=True, light=True, jobs=2)
    assert len(result.outcomes) == seeds
    assert 16 in {o.nodes for o in result.outcomes}
    assert_clean_and_proven(result, {}, True, True)
    assert_faults_took_effect(result)


@sizes(100, 150)
def test_fault_campaign_full_workload_seeds_with_16_processor_rings(seeds: int) -> None:
    """Full workloads (up to 600 messages/s per processor, 1 MiB messages, queues filled to
    TryAgain), 8 of them on 16 processors: liveness after the faults includes draining
    what the ring could not carry during them."""
    result = run_campaign(range(10_001, 10_001 + seeds - 8), {}, with_faults=True, jobs=2)
    big = run_campaign(range(20_001, 20_009), {"nodes": 16}, with_faults=True, jobs=2)
    result.outcomes.extend(big.outcomes)
    assert len(result.outcomes) == seeds
    assert sum(o.nodes == 16 for o in result.outcomes) >= 8
    assert_clean_and_proven(result, {}, True, False)
    assert_faults_took_effect(result)


def test_fault_campaign_with_the_send_queue_bounded_in_messages() -> None:
    """The send queue's bound in messages (``queue_messages_max``, the core's default since
    stop 25; drawn seeds run without it, so that they replay as before), small enough to
    refuse sends at every seed: every EVS property and liveness still hold under faults and
    saturation. (tests/totem/test_groups.py checks the bound itself.)"""
    overrides: dict[str, Any] = {"queue_messages_max": 8, "saturate": (0.0, float("inf"))}
    result = run_campaign(range(50_001, 50_031), overrides, with_faults=True, light=True, jobs=2)
    assert len(result.outcomes) == 30
    assert not result.failures, report(result, overrides, True, True)
    assert all(o.converged_ms is not None for o in result.outcomes)
    assert all(o.options.totem_config().queue_messages_max == 8 for o in result.outcomes)
    assert all(o.accounting["saturation try again"] > 0 for o in result.outcomes)
