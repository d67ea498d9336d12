"""Every canary is caught by the trace checker: a checker that cannot fail proves nothing.

Each canary (``evs.sim.canaries``) breaks one rule of the protocol at one node (in its
processor, or in the service that fans deliveries out to its application handles). For each, the
table says which property group of protocol.md section 9 it breaks, the options that give the
bug a chance to show, and the number of seeds within which ``evs.check`` (the code that also
judges real clusters' traces, not the simulator's own oracle) must report that group. Seeds
are tried in order and the search stops at the first catch.
"""

from __future__ import annotations

from typing import Any

import pytest

from evs.sim.canaries import CANARIES, CAUGHT_AS
from evs.sim.cluster import Cluster
from evs.sim.options import draw_options

_STATIC: dict[str, Any] = {"static_ring": True, "nodes": 4, "rate": 300.0}
_FAULTS: dict[str, Any] = {"with_faults": True, "light": True}
_LOSSY: dict[str, Any] = {"with_faults": True, "loss": 0.1, "rate": 300.0, "safe_fraction": 0.0}

#: canary -> (options, seeds within which the trace checker must catch it)
CAUGHT_WITHIN: dict[str, tuple[dict[str, Any], int]] = {
    "duplicate": (_STATIC, 2),
    "skip-transitional": (_FAULTS, 3),
    "wrong-transitional-set": (_FAULTS, 4),
    "drop-own": (_STATIC, 2),
    "transitional-drops-last": (_FAULTS, 4),
    "causal": (_STATIC, 2),
    "order": (_STATIC, 2),
    # Seed 9: the drawing of flow control options, saturation and slow receivers moved the
    # first gap at a change of the canary processor from seed 6 to seed 9; seed 11: the
    # lone-sender window (a lone sender of large messages sends a whole window per visit)
    # moved it again; seed 13: the token ahead of a busy visit's packets (token_ahead_min)
    # did (seeds 1-30 caught at 11 and 13 before it, at 13 with it).
    "gap-all-senders": (_LOSSY, 13),
    "unsafe": ({**_FAULTS, "safe_fraction": 1.0}, 8),
    # The service's canaries: only the per-handle traces (handle_traces=True) can see them.
    "service-fan-out-twice": (_STATIC, 2),
    "service-skip-self": (_STATIC, 2),
}


def test_every_canary_has_a_stated_bound() -> None:
    assert set(CAUGHT_WITHIN) == set(CANARIES) == set(CAUGHT_AS)


@pytest.mark.parametrize("canary", CANARIES)
def test_the_trace_checker_catches_the_canary(canary: str) -> None:
    options, within = CAUGHT_WITHIN[canary]
    group = str(CAUGHT_AS[canary])
    seen: list[str] = []
    for seed in range(1, within + 1):
        result = Cluster(draw_options(seed, canary=canary, **options)).run()
        if any(v.split(" ")[0].split(".")[0] == group for v in result.checker_violations):
            return
        seen.extend(result.checker_violations[:2])
    pytest.fail(f"{canary}: group {group} not reported within {within} seeds; saw {seen[:4]}")


def test_the_same_runs_without_a_canary_are_clean() -> None:
    for options, _ in ({**_STATIC}, 0), ({**_LOSSY}, 0):
        result = Cluster(draw_options(3, **options)).run()
        assert result.violations == [], result.violations[:3]
