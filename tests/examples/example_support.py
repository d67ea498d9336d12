"""Helpers for the examples' tests (a module of its own: ``conftest`` is not importable
unambiguously when several test directories have one).

The examples are not a package: their directories go on ``sys.path`` here so the tests
import them as the modules they are (``lock_service``, ``kvstore``) and run them as programs.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import evs
from evs.cli._cluster import LocalCluster

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


def start_all(cluster: LocalCluster) -> None:
    """Start every executive at once (each start waits for its socket; in parallel, the
    waits overlap instead of adding up)."""
    errors: list[BaseException] = []

    def one(n: int) -> None:
        try:
            cluster.start(n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(n,)) for n in cluster.ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
