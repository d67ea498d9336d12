"""Test-suite wide policy: tests marked ``slow`` run only when asked for (``-m slow``).

The long campaigns, minute-long regression replays and the 16-executive test are measured and
documented runs, not part of every check; ``scripts/check -m slow`` runs them.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
