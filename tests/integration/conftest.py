"""Fixtures for tests with real executives: a lab of network namespaces, a local cluster."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from evs.cli._cluster import LocalCluster
from evs.cli._lab import NetLab, lab_available


def lab_or_skip(n: int) -> NetLab:
    why = lab_available()
    if why:
        pytest.skip(why)
    return NetLab(n)


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Callable[..., LocalCluster]]:
    made: list[tuple[LocalCluster, NetLab | None]] = []

    def make(nodes: int, *, netns: bool = False, **kw: object) -> LocalCluster:
        lab = lab_or_skip(nodes) if netns else None
        c = LocalCluster(tmp_path / f"c{len(made)}", nodes=nodes, lab=lab, **kw)  # type: ignore[arg-type]
        made.append((c, lab))
        return c

    yield make
    for c, lab in made:
        c.stop_all()
        if lab is not None:
            lab.close()
