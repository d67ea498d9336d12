"""Suite-wide policy and fixtures.

Tests marked ``slow`` run only when asked for (``-m slow``): the minute-long regression replays
and the 16-executive test are measured, documented runs, not part of every check
(``scripts/check -m slow`` runs them). ``make_cluster`` gives tests real executives
(``evs daemon`` processes) on loopback or, with ``netns=True``, in a lab of network namespaces
(root only; the test is skipped with the reason otherwise), and stops them afterwards.

Tests marked ``pure_only("evs.x.y")`` put a stand-in where module ``evs.x.y`` calls a function
or method (to record a step's order, or to stage a race). Compiled (tools/compile.py), that
module calls its own methods and its imports directly, never through the attribute the test
replaced, so the compiled pass of scripts/check skips them, saying why; the pure pass runs them
on the same source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from evs._compiled import compiled_modules
from evs.cli._cluster import LocalCluster
from evs.cli._lab import NetLab, lab_available


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    compiled = set(compiled_modules())
    for item in items:
        for mark in item.iter_markers("pure_only"):
            module = mark.args[0]
            if module in compiled:
                item.add_marker(
                    pytest.mark.skip(
                        reason=f"replaces code {module} calls: compiled callers do not see that"
                    )
                )
    if "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def lab_or_skip(n: int) -> NetLab:
    why = lab_available()
    if why:
        pytest.skip(why)
    return NetLab(n)


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Callable[..., LocalCluster]]:
    made: list[tuple[LocalCluster, NetLab | None]] = []

    def make(
        nodes: int, *, netns: bool = False, lab_nodes: int | None = None, **kw: object
    ) -> LocalCluster:
        """``lab_nodes``: namespaces in the lab (default ``nodes``); those past ``nodes`` are
        hosts on the same bridge that run no executive (e.g. an attacker)."""
        lab = lab_or_skip(lab_nodes or nodes) if netns else None
        c = LocalCluster(tmp_path / f"c{len(made)}", nodes=nodes, lab=lab, **kw)  # type: ignore[arg-type]
        made.append((c, lab))
        return c

    yield make
    for c, lab in made:
        c.stop_all()
        if lab is not None:
            lab.close()
