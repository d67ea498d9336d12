"""Embedded mode: a whole processor in this process, used through ordinary ``evs.Client``s.

Theory of operation: ``Node`` runs the same ``Executive`` as ``evs daemon`` (same transport,
runtime and core) on an asyncio loop in a background thread, with its IPC server on a private
Unix socket in a temporary directory. ``node.client()`` returns an ``evs.Client`` connected to
it, so embedded and daemon mode share every line of semantics, and one conformance suite runs
against both. The thread is the only difference: start-up waits until the socket listens, and
``close()`` leaves the ring gracefully before the thread ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from evs.client.sync_client import Client
from evs.daemon.config_file import DaemonConfig, load_config
from evs.daemon.executive import Executive
from evs.errors import EvsError, NotConnected
from evs.types import Membership

__all__ = ["Node"]

_START_TIMEOUT_S = 10.0


class Node:
    """A processor embedded in this process (api.md: ``evs.Node(config)``)."""

    def __init__(self, config: DaemonConfig | str | os.PathLike[str]) -> None:
        cfg = config if isinstance(config, DaemonConfig) else load_config(Path(config))
        self._tmp = tempfile.TemporaryDirectory(prefix="evs-node-")
        self.socket_path = os.path.join(self._tmp.name, "evs.sock")
        self.config = dataclasses.replace(
            cfg, ipc=dataclasses.replace(cfg.ipc, socket=Path(self.socket_path))
        )
        self.nodeid = cfg.nodeid
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._exe: Executive | None = None
        self._ready = threading.Event()
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._run, name=f"evs-node-{cfg.nodeid}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT_S):
            raise EvsError(f"embedded node {self.nodeid} did not start in {_START_TIMEOUT_S} s")
        if self._errors:
            self._tmp.cleanup()
            raise self._errors[0]

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            self._exe = Executive(self.config)
            await self._exe.start()
        except BaseException as exc:  # reported to the constructor's caller
            self._errors.append(exc)
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self._exe.stop(graceful=True)

    def client(self, **kwargs: Any) -> Client:
        """A new handle on this node (same arguments as ``evs.Client`` after the path)."""
        if self._exe is None or not self._thread.is_alive():
            raise NotConnected(f"embedded node {self.nodeid} is closed")
        return Client(self.socket_path, **kwargs)

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(executive, *args)`` on the node's loop and return its result."""
        loop, exe = self._loop, self._exe
        if loop is None or exe is None or not self._thread.is_alive():
            raise NotConnected(f"embedded node {self.nodeid} is closed")

        async def job() -> Any:
            return fn(exe, *args)

        return asyncio.run_coroutine_threadsafe(job(), loop).result(_START_TIMEOUT_S)

    def status(self) -> dict[str, Any]:
        """What ``evs status --json`` shows for a daemon."""
        return dict(self.call(lambda exe: exe.status()))

    def membership(self) -> Membership:
        return self.call(lambda exe: exe.service.membership())  # type: ignore[no-any-return]

    def close(self) -> None:
        """Leave the ring gracefully and stop the node's thread."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and self._thread.is_alive():
            loop.call_soon_threadsafe(stop.set)
            self._thread.join(_START_TIMEOUT_S)
        self._tmp.cleanup()

    def __enter__(self) -> Node:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
