"""Fixtures for the examples' tests: real executives on loopback (or in a namespace lab),
stopped (and the lab removed) when the test ends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from evs.cli._cluster import LocalCluster
from evs.cli._lab import NetLab, lab_available


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Callable[..., LocalCluster]]:
    """``make_cluster(nodes, netns=False, **kw)``: a LocalCluster, stopped at teardown."""
    made: list[tuple[LocalCluster, NetLab | None]] = []

    def make(nodes: int, *, netns: bool = False, token: int = 1000) -> LocalCluster:
        lab = None
        if netns:
            why = lab_available()
            if why:
                pytest.skip(f"partitions need a namespace lab: {why}")
            lab = NetLab(nodes)
        c = LocalCluster(tmp_path / f"c{len(made)}", nodes=nodes, token=token, lab=lab)
        made.append((c, lab))
        return c

    yield make
    for c, lab in made:
        c.stop_all()
        if lab is not None:
            lab.close()
