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
