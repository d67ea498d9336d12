"""Fixtures for the examples' tests: real executives on loopback (or in a namespace lab).

The examples are not a package: their directories go on ``sys.path`` so the tests import
them as the modules they are (``lock_service``, ``kvstore``) and run them as programs.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from evs.cli._cluster import LocalCluster
from evs.cli._lab import NetLab, lab_available

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
for _d in (EXAMPLES, EXAMPLES / "kvstore"):
    if str(_d) not in sys.path:
        sys.path.insert(0, str(_d))


def subprocess_env() -> dict[str, str]:
    """The environment for an example run as a program: this checkout's ``src`` first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
    )
    return env


def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll real processes' observable state until ``pred()``, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def ring_formed(cluster: LocalCluster, members: tuple[int, ...], timeout: float = 15) -> None:
    """Wait until every executive in ``members`` reports that ring (``evs status``)."""
    import evs

    def ok() -> bool:
        for n in members:
            try:
                with evs.Client(cluster.socket(n)) as c:
                    st = c.status()
            except evs.EvsError:
                return False
            if tuple(st["members"]) != members or st["state"] != "operational":
                return False
        return True

    wait_until(ok, timeout, f"the ring {members}")


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
