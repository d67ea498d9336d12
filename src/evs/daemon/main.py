"""The executive's lifecycle: configuration, logging, signals, start-up and teardown order.

Theory of operation: ``run`` starts an ``Executive`` (state directory locked, transport bound,
IPC socket listening, processor started) and then waits on one shutdown event. SIGTERM and
SIGINT set it; the executive then leaves the ring gracefully (the others form a new ring at
once instead of waiting for a token timeout), closes its clients with a reason, and exits 0.
SIGHUP reopens the log file and the trace (log rotation). pyevs never forks: run it under a
service manager (systemd ``Type=simple``) or in a terminal; ``--foreground`` is accepted for
corosync users and changes nothing.

The executive's process tunes Python's cyclic garbage collector (``tune_gc``, in
``run_forever`` only, never in a process that merely calls ``run``): everything made at start-up
is frozen, so a full collection no longer walks the interpreter's own objects, and a young
collection waits for ``GC_YOUNG`` more tracked objects instead of Python's 700. Under a
saturating sender of small messages the default spent about 5 % of the busiest executive's CPU
in the collector, with a full collection every second or so (docs/benchmarks.md); the
executive's objects are freed by reference counting as messages move on, so cycles are rare
and still collected.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from typing import TextIO

from evs.daemon.config_file import DaemonConfig
from evs.daemon.executive import Executive

__all__ = ["GC_YOUNG", "configure_logging", "run", "run_forever", "tune_gc"]

#: Net new tracked objects between young collections in an executive (Python's default: 700).
GC_YOUNG = 10_000

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


def tune_gc() -> None:
    """Freeze what exists now and make young collections rarer (see the module docstring)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG, older, oldest)


def run_forever(cfg: DaemonConfig) -> int:
    """``evs daemon``: run with uvloop when it is installed (faster sockets), else asyncio."""
    configure_logging(cfg)
    tune_gc()
    try:
        import uvloop  # type: ignore[import-not-found, unused-ignore]  # noqa: PLC0415
    except ImportError:
        return asyncio.run(run(cfg))
    return int(uvloop.run(run(cfg)))
