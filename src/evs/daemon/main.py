"""The executive's lifecycle: configuration, logging, signals, start-up and teardown order.

Theory of operation: ``run`` starts an ``Executive`` (state directory locked, transport bound,
IPC socket listening, processor started) and then waits on one shutdown event. SIGTERM and
SIGINT set it; the executive then leaves the ring gracefully (the others form a new ring at
once instead of waiting for a token timeout), closes its clients with a reason, and exits 0.
SIGHUP reopens the log file and the trace (log rotation). pyevs never forks: run it under a
service manager (systemd ``Type=simple``) or in a terminal; ``--foreground`` is accepted for
corosync users and changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import TextIO

from evs.daemon.config_file import DaemonConfig
from evs.daemon.executive import Executive

__all__ = ["configure_logging", "run", "run_forever"]

_FORMAT = "%(asctime)s.%(msecs)03d evs[%(process)d] %(levelname)s %(message)s"


class _Reopening(logging.Handler):
    """A log handler writing to a file it can reopen (SIGHUP) or to stderr."""

    def __init__(self, path: str | None) -> None:
        super().__init__()
        self.path = path
        self.stream: TextIO = sys.stderr
        self.reopen()

    def reopen(self) -> None:
        if self.path:
            old = self.stream
            self.stream = open(self.path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
            if old is not sys.stderr:
                old.close()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + "\n")
            self.stream.flush()
        except Exception:  # a full disk must not take the ring down
            self.handleError(record)


def configure_logging(cfg: DaemonConfig) -> _Reopening:
    handler = _Reopening(str(cfg.logging.file) if cfg.logging.file else None)
    handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger("evs")
    root.handlers[:] = [handler]
    root.setLevel(cfg.logging.level.upper())
    root.propagate = False
    return handler


async def run(cfg: DaemonConfig, shutdown: asyncio.Event | None = None) -> int:
    """Run one executive until ``shutdown`` is set (by default: SIGTERM or SIGINT)."""
    loop = asyncio.get_running_loop()
    stop = shutdown or asyncio.Event()
    handler = next(
        (h for h in logging.getLogger("evs").handlers if isinstance(h, _Reopening)), None
    )
    exe = Executive(cfg)
    await exe.start()

    def hangup() -> None:
        if handler is not None:
            handler.reopen()
        exe.reopen()

    installed: list[signal.Signals] = []
    if shutdown is None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        loop.add_signal_handler(signal.SIGHUP, hangup)
        installed.append(signal.SIGHUP)
    try:
        await stop.wait()
        logging.getLogger("evs.daemon").info("shutting down")
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await exe.stop(graceful=True)
    return 0


def run_forever(cfg: DaemonConfig) -> int:
    """``evs daemon``: run with uvloop when it is installed (faster sockets), else asyncio."""
    configure_logging(cfg)
    try:
        import uvloop  # type: ignore[import-not-found, unused-ignore]  # noqa: PLC0415
    except ImportError:
        return asyncio.run(run(cfg))
    return int(uvloop.run(run(cfg)))
