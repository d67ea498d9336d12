"""The checker must catch deliberately injected bugs: a simulator that cannot fail is useless."""

from __future__ import annotations

import pytest

from evs.sim.cluster import Cluster
from evs.sim.options import draw_options


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ordering_canary_is_caught(seed: int) -> None:
    options = draw_options(seed, static_ring=True, nodes=4, rate=300.0, canary="order")
    result = Cluster(options).run()
    assert any(v.startswith(("5 ", "6.1 ")) for v in result.violations), result.violations[:3]


def test_the_same_runs_without_the_canary_are_clean() -> None:
    options = draw_options(1, static_ring=True, nodes=4, rate=300.0)
    assert Cluster(options).run().violations == []


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_membership_canary_skipping_the_transitional_configuration_is_caught(seed: int) -> None:
    options = draw_options(seed, with_faults=True, light=True, canary="skip-transitional")
    result = Cluster(options).run()
    assert any(v.startswith("2.3 ") for v in result.violations), result.violations[:3]


@pytest.mark.parametrize("seed", [1, 2])
def test_safe_canary_delivering_without_waiting_is_caught(seed: int) -> None:
    options = draw_options(
        seed, static_ring=True, nodes=4, rate=300.0, safe_fraction=1.0, loss=0.1, canary="unsafe"
    )
    result = Cluster(options).run()
    assert any(v.startswith("7.3 ") for v in result.violations), result.violations[:3]
