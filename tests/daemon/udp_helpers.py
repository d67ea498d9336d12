"""Helpers shared by the UDP transport tests and the multicast body run in a network namespace."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from evs.daemon.udp import UdpTransport

#: Every wait in these tests ends by this many seconds, condition met or not.
TIMEOUT = 5.0


class Inbox:
    """The ``on_datagrams`` callback of one transport: keeps the batches, wakes waiters."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, bytes]]] = []
        self._changed = asyncio.Event()

    def __call__(self, batch: list[tuple[int, bytes]]) -> None:
        self.batches.append(batch)
        self._changed.set()

    @property
    def datagrams(self) -> list[tuple[int, bytes]]:
        return [d for batch in self.batches for d in batch]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        """Until ``predicate()`` holds, re-checked after every delivered batch."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def wait_count(self, count: int) -> list[tuple[int, bytes]]:
        await self.wait_for(lambda: len(self.datagrams) >= count)
        return self.datagrams


def free_port(hosts: list[str]) -> int:
    """A UDP port free on every host (probed by binding; the kernel picks the candidate)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((hosts[0], 0))
            port = int(probe.getsockname()[1])
            with contextlib.ExitStack() as stack:
                try:
                    for host in hosts[1:]:
                        other = stack.enter_context(
                            socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        )
                        other.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no UDP port free on all of " + ", ".join(hosts))


@contextlib.contextmanager
def opened(transports: list[UdpTransport]) -> Iterator[list[UdpTransport]]:
    """Open every transport on the running loop; close them all on the way out."""
    loop = asyncio.get_running_loop()
    try:
        for t in transports:
            t.open(loop)
        yield transports
    finally:
        for t in transports:
            t.close()


HERE = Path(__file__).resolve().parent
SRC = str(HERE.parents[1] / "src")


def namespace_skip_reason() -> str | None:
    """Why a private network namespace cannot be made here, or None."""
    if os.geteuid() != 0:
        return "this test needs a private network namespace: run as root"
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"this test needs `{tool}` (util-linux / iproute2) on PATH"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        return f"cannot create a network namespace: {probe.stderr.decode().strip()}"
    return None


def run_in_namespace(setup: str, body: str) -> Any:
    """Run ``body`` (a script beside this file) in a new network namespace after the shell
    commands ``setup``; skip if no namespace can be made; return the JSON it prints."""
    reason = namespace_skip_reason()
    if reason:
        pytest.skip(reason)
    script = f'{setup} && exec "{sys.executable}" "{HERE / body}"'
    done = subprocess.run(
        ["unshare", "-n", "sh", "-c", script],
        capture_output=True,
        timeout=TIMEOUT * 4,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([SRC, str(HERE)])},
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)
