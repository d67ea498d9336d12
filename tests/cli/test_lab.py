"""The network lab (``evs.cli._lab``): a lab whose process was killed outright is removed,
with whatever still runs in it, by the next lab; a live lab of another process is not."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from evs.cli._lab import OWNER_DIR, NetLab, lab_available

SRC = Path(__file__).resolve().parents[2] / "src"

#: A process that builds a two-node lab, starts a sleeper in node 1, says so, and waits.
OWNER = """
import subprocess, sys, time
from evs.cli._lab import NetLab
lab = NetLab(2)
sleeper = subprocess.Popen([*lab.exec_prefix(1), "sleep", "300"])
print(lab.prefix, sleeper.pid, flush=True)
time.sleep(300)
"""


def _namespaces() -> str:
    return subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=False
    ).stdout


class Owner(NamedTuple):
    proc: subprocess.Popen[str]
    prefix: str
    sleeper: int


@pytest.fixture
def owner() -> Iterator[Owner]:
    """Another process's lab (``OWNER``); whatever is left of it is removed afterwards."""
    why = lab_available(("ip",))
    if why:
        pytest.skip(why)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(
        [sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    prefix, sleeper = proc.stdout.readline().split()  # blocks until the lab is built
    try:
        yield Owner(proc, prefix, int(sleeper))
    finally:
        if proc.poll() is None:
            proc.kill()  # (no atexit: its lab is removed here)
        proc.wait(10)
        proc.stdout.close()
        with contextlib.suppress(OSError):
            os.kill(int(sleeper), signal.SIGKILL)
        for ns in ("n1", "n2", "br"):
            subprocess.run(
                ["ip", "netns", "del", f"{prefix}-{ns}"], capture_output=True, check=False
            )
        (OWNER_DIR / f"{prefix}.owner").unlink(missing_ok=True)


def test_a_killed_labs_namespaces_and_processes_go_with_the_next_lab(owner: Owner) -> None:
    prefix, sleeper = owner.prefix, owner.sleeper
    assert f"{prefix}-n1" in _namespaces()
    assert (OWNER_DIR / f"{prefix}.owner").exists()
    owner.proc.send_signal(signal.SIGKILL)  # no atexit, no close(): the lab stays behind
    owner.proc.wait(10)
    assert f"{prefix}-n1" in _namespaces()
    lab = NetLab(1)  # reaps before it builds
    try:
        left = _namespaces()
        assert f"{prefix}-n1" not in left
        assert f"{prefix}-br" not in left
        assert not (OWNER_DIR / f"{prefix}.owner").exists()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{sleeper}").exists() and b"Z" not in _state(sleeper):
            assert time.monotonic() < deadline, "the killed lab's process still runs"
            time.sleep(0.05)
    finally:
        lab.close()
    assert not (OWNER_DIR / f"{lab.prefix}.owner").exists()


def test_a_live_lab_of_another_process_is_left_alone(owner: Owner) -> None:
    lab = NetLab(1)
    lab.close()
    assert f"{owner.prefix}-n1" in _namespaces()
    assert Path(f"/proc/{owner.sleeper}").exists()


def _state(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[-1][:3]
    except OSError:
        return b"Z"
