"""Every seed the simulator ever failed on, pinned: each must stay clean forever.

The note says what was wrong; options given explicitly pin the run where the seed's drawing
has since changed (for example seed 40 now draws a 16-processor ring).
"""

from __future__ import annotations

from typing import Any

import pytest

from evs.sim.cluster import Cluster
from evs.sim.options import draw_options

REGRESSIONS: list[tuple[int, dict[str, Any], str]] = [
    (2, {}, "recovery never installed: the first ORF token carried retrans_flg nobody owned"),
    (11, {}, "transitional delivery skipped a departed member's message before any gap"),
    (49, {}, "same as 11: safe message delivered by a member that then crashed"),
    (19, {"nodes": 2}, "a lone survivor never committed its singleton ring"),
    (40, {"nodes": 2}, "same as 19, the other node surviving"),
    (15, {}, "JOINs with a stranger's failed set restarted the consensus timer forever"),
    (45, {}, "A/B livelock: failed sets kept across an abandoned recovery"),
    (16, {}, "checker false alarm (2.4) when a member abandons a ring another installed"),
]


@pytest.mark.parametrize(
    ("seed", "overrides", "why"), REGRESSIONS, ids=[str(r[0]) for r in REGRESSIONS]
)
def test_regression_seed_stays_clean(seed: int, overrides: dict[str, Any], why: str) -> None:
    options = draw_options(seed, with_faults=True, **overrides)
    result = Cluster(options).run()
    assert result.violations == [], f"{why}: {result.violations[:3]}"
    assert result.converged_ms is not None
