"""The executive's event loop adapter: one processor, its sockets, its timer and its clients.

Theory of operation: everything protocol-shaped happens in the sans-I/O runtime (``Driver``
around the core, ``EvsService`` above it); this module only moves bytes and time. Three kinds
of input reach it, each as a callback on the asyncio loop:

- a batch of datagrams from ``UdpTransport`` (everything waiting at one wake-up), opened by
  the ``SealedWire`` first when wire security is on (datagrams leave through it sealed),
- the one timer, re-armed with ``loop.call_at`` at the core's next deadline,
- client requests through the IPC server, which calls ``after_request`` once per batch.

After every input ``_after`` runs the same steps in the same order: hand the core windowed sends
that waited for room in its send queue, fire the held token's visit if it is due (a message
submitted while this node holds the idle token asks for that visit "now": it leaves in this
step rather than a loop turn later, behind the replies to clients), send the datagrams the core
produced (the driver has already persisted the ring sequence for any that need it), feed the
core's events to the service (fan-out to handles; with a trace, before the datagrams leave,
so that no receiver logs a delivery before our send), write the trace and the log lines, re-arm
the timer, schedule the loopback of self-addressed datagrams for the next loop turn, and let the
IPC server write what the handles now have. Time is the loop's monotonic clock in milliseconds.

One exception to "datagrams first": a light step, one that broadcasts nothing and hands out at
most ``FEED_FIRST_MAX`` events carrying at most ``FEED_FIRST_BYTES`` of messages (a low-load
token visit that delivers a small message), gives the clients their events before the token
leaves. On a machine with few CPUs the process the token wakes often runs at once on ours, so
whatever we do after sending waits for its whole step; at low load the clients' deliveries are
the point and the token's rotation is not. A loaded step (many events, large messages, or any
broadcast) still sends first, so throughput keeps the ring's speed (measured neutral;
docs/benchmarks.md).

A token in the middle of a batch leaves at once (``_send_now``), not after the rest of the batch:
a busy visit's token travels ahead of its packets (``token_ahead_min``), so a batch often starts
with the token and goes on with a window of packets, and the ring's next visits then overlap
their delivery instead of waiting for it. What the core produced so far leaves early (the token,
and anything queued before it); the events of the batch wait for its end. Only with at least
``EARLY_BEHIND_MIN`` datagrams behind the token (low load keeps the usual step), and not with a
trace, whose send records must precede the datagrams.

With wire security on, a ``KeyManager`` (``evs.daemon.rekey``) rides along: it hears the
service's internal messages and configuration changes, its messages wait in its outbox for room
in the core's send queue (flushed at the start of every step), and ``rekey`` starts a rotation.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
from collections import Counter
from collections.abc import Callable
from typing import Any, Final

from evs._compiled import HOT_MODULES, compiled_modules
from evs.daemon.config_file import DaemonConfig
from evs.daemon.ipc_server import IpcServer
from evs.daemon.rekey import KeyManager
from evs.daemon.state_dir import StateDir
from evs.daemon.udp import UdpTransport
from evs.daemon.wire import SealedWire, build_wire
from evs.errors import EvsError
from evs.runtime.driver import Driver
from evs.runtime.send_window import SendWindows
from evs.runtime.service import EvsService, Traced
from evs.totem.events import BROADCAST, CoreEvent, Deliver, GatherEntered, Notice, Sent
from evs.totem.processor import Processor
from evs.trace.writer import TraceWriter, confchg_event, deliver_event, restart_event, send_event
from evs.types import ConfigChange

__all__ = ["Executive"]

#: A step that only passes the token on hands out at most this many events, of at most this
#: many bytes of messages, before it does.
FEED_FIRST_MAX: Final = 4
FEED_FIRST_BYTES: Final = 4096
#: A token forwarded mid-batch leaves at once when at least this many datagrams follow it.
EARLY_BEHIND_MIN: Final = 4


def _has_unicast(sends: list[tuple[int, bytes]]) -> bool:
    """Whether a step's datagrams include one to a single node (a token, in a batch)."""
    return any(dest != BROADCAST for dest, _ in sends)


def _gc_status() -> dict[str, Any]:
    """The process's garbage collector: thresholds, objects frozen at start-up (daemon/main.py),
    and collections per generation so far."""
    return {
        "thresholds": list(gc.get_threshold()),
        "frozen_objects": gc.get_freeze_count(),
        "collections": [g["collections"] for g in gc.get_stats()],
    }


@functools.cache
def _build() -> dict[str, int]:
    """Which build runs (fixed for the process: looked up once, not at every status)."""
    return {"compiled_modules": len(compiled_modules()), "hot_modules": len(HOT_MODULES)}


def _build_label() -> str:
    """Which build runs: operators compare it with the figures of docs/benchmarks.md."""
    build = _build()
    if not build["compiled_modules"]:
        return "pure Python; the compiled build carries a quarter more: docs/daemon.md"
    return f"compiled (mypyc): {build['compiled_modules']} of {build['hot_modules']} hot modules"


def _delivered_bytes(events: list[CoreEvent]) -> int:
    return sum(len(ev.data) for ev in events if isinstance(ev, Deliver))


log = logging.getLogger("evs.daemon")


class Executive:
    """One processor with its transport, timer, service and (optionally) IPC server."""

    def __init__(self, cfg: DaemonConfig, *, ipc: bool = True) -> None:
        self.cfg = cfg
        self.nodeid = cfg.nodeid
        self.state_dir = StateDir(cfg.state_dir)
        self.incarnation = self.state_dir.next_incarnation()
        totem = cfg.totem_config()
        self.proc = Processor(totem, cfg.nodeid, ring_seq=self.state_dir.load_ring_seq())
        self.driver = Driver(self.proc, persist=self._persist)
        self.service = EvsService(
            cfg.nodeid,
            self._submit,
            incarnation=self.incarnation,
            max_message_size=totem.max_message_size,
            handle_queue_bytes=cfg.ipc.client_queue_bytes,
            traced=bool(cfg.trace_path),
            reader_hold_ms=cfg.ipc.reader_hold_ms,
        )
        self.windows = SendWindows(self.service, cfg.ipc.send_window_bytes)
        try:
            self.wire: SealedWire | None = build_wire(
                cfg.crypto.cipher,
                str(cfg.crypto.key_file),
                cfg.cluster_name,
                cfg.nodeid,
                (n.nodeid for n in cfg.nodes),
                self.state_dir,
                self._on_datagrams,
            )
        except BaseException:
            self.state_dir.close()
            raise
        self.transport = UdpTransport(
            cfg.transport.mode,
            cfg.transport.bind,
            cfg.transport.port,
            cfg.node_addresses(),
            cfg.nodeid,
            self._on_datagrams if self.wire is None else self.wire.on_datagrams,
            mcast_addr=cfg.transport.mcast_addr,
            ttl=cfg.transport.ttl,
            rcvbuf=cfg.transport.rcvbuf,
            sndbuf=cfg.transport.sndbuf,
            netmtu=cfg.transport.netmtu,
        )
        #: Online key rotation (``evs rekey``); None with cipher "none".
        self.keys: KeyManager | None = None
        if self.wire is not None:
            self.wire.connect(self.transport.send)
            self.keys = KeyManager(
                self.wire,
                self.service,
                lambda groups, data, guarantee: self.driver.submit(
                    self.now(), groups, data, guarantee
                ),
                (n.nodeid for n in cfg.nodes),
            )
        #: Where the core's datagrams go: through the wire (sealed) or straight out.
        self._send = self.transport.send if self.wire is None else self.wire.send
        self._ipc_wanted = ipc
        self.server: IpcServer | None = None
        self.trace: TraceWriter | None = None
        self.counters: Counter[str] = Counter()
        #: Datagrams received per peer node id (``evs status`` shows them).
        self.peer_rx: dict[int, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        #: Wakes ``_after`` when a hold of the sends for a local reader gives up.
        self._hold_timer: asyncio.TimerHandle | None = None
        self._loopback_scheduled = False
        self._started_at = 0.0
        self.stopped = asyncio.Event()
        #: Extra callbacks run after every step (embedded Node uses it; tests too).
        self.observers: list[Callable[[], None]] = []

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._started_at = loop.time()
        self._open_trace(append=True)
        if self.trace is not None and self.incarnation > 1:
            self.trace.write(restart_event(self.now(), self.nodeid))
        self.transport.open(loop)
        if self._ipc_wanted:
            ipc = self.cfg.ipc
            self.server = IpcServer(
                self,
                ipc.socket,
                allowed_uids=ipc.allowed_uids,
                allowed_gids=ipc.allowed_gids,
                client_queue_bytes=ipc.client_queue_bytes,
            )
            await self.server.start()
        log.info(
            "node %d starting (incarnation %d, %s on %s:%d, %d nodes configured, cipher %s, %s)",
            self.nodeid,
            self.incarnation,
            self.cfg.transport.mode,
            self.cfg.transport.bind,
            self.cfg.transport.port,
            len(self.cfg.nodes),
            self.cfg.crypto.cipher,
            _build_label(),
        )
        if self.wire is None:
            log.warning(
                'wire security is off ([crypto] cipher = "none"): anyone who can send to '
                "port %d can disturb the ring, and anyone on the path can read every message",
                self.cfg.transport.port,
            )
        queue_max = self.proc.config.queue_bytes_max
        if self.cfg.ipc.reader_hold_ms and self.cfg.ipc.client_queue_bytes < 2 * queue_max:
            log.warning(
                "[ipc] client_queue_bytes (%d) is under twice [totem] queue_bytes_max (%d): "
                "what the core still holds when a lagging client makes this node hold its "
                "sends can cut that client off anyway",
                self.cfg.ipc.client_queue_bytes,
                queue_max,
            )
        self.driver.start(self.now())
        self._after()

    async def stop(self, *, graceful: bool = True) -> None:
        """Leave the ring (the others need not wait for a token timeout), then close."""
        if self._loop is None:
            return
        if graceful and self.proc.started:
            log.info("node %d leaving the ring", self.nodeid)
            self.driver.leave(self.now())
            self._after()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.server is not None:
            await self.server.close()  # (its clients' last requests may still run steps)
        for timer in (self._timer, self._hold_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._hold_timer = None
        self.transport.close()
        if self.trace is not None:
            self.trace.close()
            self.trace = None
        self.state_dir.close()
        self.stopped.set()

    def reopen(self) -> None:
        """SIGHUP: reopen the trace file (after log rotation moved it)."""
        if self.trace is not None:
            self.trace.close()
            self.trace = None
        self._open_trace(append=True)
        log.info("trace reopened")

    def _open_trace(self, *, append: bool) -> None:
        path = self.cfg.trace_path
        if path:
            self.trace = TraceWriter(path, append=append, validate=False)

    def now(self) -> float:
        """Milliseconds of the loop's monotonic clock (the trace's ``t``)."""
        assert self._loop is not None
        return self._loop.time() * 1000.0

    # ------------------------------------------------------------------ inputs

    def _persist(self, seq: int) -> None:
        self.state_dir.store_ring_seq(seq)
        self.counters["ring seq persisted"] += 1

    def _submit(self, groups: Any, data: bytes, guarantee: Any) -> int:
        return self.driver.submit(self.now(), groups, data, guarantee)

    def _on_datagrams(self, batch: list[tuple[int, bytes]]) -> None:
        now = self.now()
        datagram = self.driver.datagram
        peers = self.peer_rx
        driver = self.driver
        # Only a token with a visit's worth of datagrams behind it leaves early: at low load a
        # batch is a token and a message or two, and the step's usual order (a light step's
        # clients first) is the better one there.
        early_until = len(batch) - EARLY_BEHIND_MIN if self.trace is None else -1
        for index, (source, data) in enumerate(batch):
            peers[source] = peers.get(source, 0) + 1
            datagram(now, data)
            if index < early_until and driver.sends and _has_unicast(driver.sends):
                self._send_now()
        self._after()

    def _send_now(self) -> None:
        """Send what the core produced so far, before the rest of the batch (a token).

        The token must not wait behind the datagrams that follow it in the batch: the
        members after us would idle until we had handled all of them (see the module's
        theory). Only the datagrams leave here; the events wait for the step's end.
        """
        sends = self.driver.sends
        self.driver.sends = []
        transport = self.transport
        transport.cork()
        try:
            send = self._send
            for dest, data in sends:
                send(dest, data)
        finally:
            transport.flush()
        self.counters["token sent mid-batch"] += 1

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.driver.timer(self.now())
        self._after()

    def _on_loopback(self) -> None:
        self._loopback_scheduled = False
        self.driver.run_loopback(self.now())
        self._after()

    def after_request(self) -> None:
        """The IPC server ran client requests (mcast reached the core): take the outputs."""
        self._after()

    # ------------------------------------------------------------------ outputs

    def _after(self) -> None:
        loop = self._loop
        assert loop is not None
        service = self.service
        if service.readers_due:
            self._check_readers(loop)
        if self.windows.waiting:
            self.windows.drain()  # the step may have made room in the core's send queue
        driver = self.driver
        now = self.now()
        if driver.hold_due(now):
            # The held token's visit, for a message just submitted: in this step, so it leaves
            # before the replies to clients, not one loop turn later. (Only this timer: the
            # others keep the loop's order, e.g. a token waiting in the socket before a
            # token-loss timeout.)
            driver.timer(now)
        transport = self.transport
        transport.cork()  # the step's datagrams leave together, in runs (udp.py)
        try:
            if self.keys is not None and self.keys.outbox:
                self.keys.flush()
            sends, events = driver.take()
            traced = self.trace is not None
            if events and traced:
                # Before the datagrams leave: a receiver must not log a delivery before our send.
                self._record(self.service.feed(events))
            server = self.server
            light = (
                server is not None
                and not traced
                and 0 < len(events) <= FEED_FIRST_MAX
                and all(dest != BROADCAST for dest, _ in sends)
                and _delivered_bytes(events) <= FEED_FIRST_BYTES
            )
            try:
                if light:
                    # A light step that broadcasts nothing: our clients first (see above).
                    self._record(self.service.feed(events))
                    assert server is not None
                    server.pump()
            finally:  # the token leaves even if the fan-out failed
                send = self._send
                for dest, data in sends:
                    send(dest, data)
        finally:
            transport.flush()
        if events and not traced and not light:
            # Nothing is logged per message: the token and the visit's messages leave first,
            # and the fan-out to the clients no longer delays the ring's rotation.
            self._record(self.service.feed(events))
        at = self.driver.deadline()
        if at != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = at
            self._timer = None if at is None else loop.call_at(at / 1000.0, self._on_timer)
        if self.driver.loopback and not self._loopback_scheduled:
            self._loopback_scheduled = True
            loop.call_soon(self._on_loopback)
        if server is not None:
            server.pump()
        for observer in self.observers:
            observer()

    def _check_readers(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hold or release this node's client sends for a lagging local reader (service)."""
        until = self.service.check_readers(self.now())
        timer = self._hold_timer
        if timer is not None and (until is None or timer.when() != until / 1000.0):
            timer.cancel()
            timer = self._hold_timer = None
        if until is not None and timer is None:
            self._hold_timer = loop.call_at(until / 1000.0, self._on_hold_timer)

    def _on_hold_timer(self) -> None:
        self._hold_timer = None
        self._after()

    def _record(self, traced: list[Traced]) -> None:
        trace = self.trace
        t = self.now()
        me = self.nodeid
        for ev, msgid, guarantee in traced:
            if isinstance(ev, ConfigChange):
                self._log_confchg(ev)
                if trace is not None:
                    trace.write(
                        confchg_event(
                            t,
                            me,
                            transitional=ev.transitional,
                            ring=ev.ring_id,
                            members=ev.members,
                            left=ev.left,
                            joined=ev.joined,
                        )
                    )
            elif isinstance(ev, GatherEntered | Notice):
                self._log_core(ev)
            elif trace is None or msgid is None or guarantee is None:
                continue
            elif isinstance(ev, Deliver):
                trace.write(deliver_event(t, me, msgid, ev.sender, ev.ring_id, guarantee=guarantee))
            elif isinstance(ev, Sent):
                trace.write(send_event(t, me, msgid, guarantee=guarantee, ring=ev.ring_id))

    def _log_confchg(self, ev: ConfigChange) -> None:
        if ev.transitional:
            log.info(
                "transitional configuration of ring %s: members %s, left %s",
                ev.ring_id,
                list(ev.members),
                list(ev.left),
            )
        else:
            log.info(
                "ring %s formed: members %s, joined %s, left %s",
                ev.ring_id,
                list(ev.members),
                list(ev.joined),
                list(ev.left),
            )

    def _log_core(self, ev: GatherEntered | Notice) -> None:
        if isinstance(ev, GatherEntered):
            log.info(
                "membership: gathering from %s because %s", ev.from_state.value, ev.reason.value
            )
        else:
            log.debug("%s: %s", ev.kind, ev.detail)

    # ------------------------------------------------------------------ admin

    def rekey(self, key: bytes, members_only: bool) -> dict[str, Any]:
        """``evs rekey``: start a key rotation here (raises EvsError with the reason)."""
        if self.keys is None:
            raise EvsError('wire security is off ([crypto] cipher = "none"): no key to rotate')
        return self.keys.start(key, members_only=members_only)

    # ------------------------------------------------------------------ status

    def _crypto_status(self) -> dict[str, Any]:
        if self.wire is None:
            return {"cipher": "none"}
        out = dict(self.wire.status())
        if self.keys is not None:
            out.update(self.keys.status())
        return out

    def status(self) -> dict[str, Any]:
        proc = self.proc
        counters: dict[str, int] = {}
        for name, value in (
            *proc.stats.items(),
            *(("drop " + k, v) for k, v in proc.drops.items()),
            *self.service.counters.items(),
            *self.transport.counters.items(),
            *(self.wire.counters.items() if self.wire is not None else ()),
            *(self.keys.counters.items() if self.keys is not None else ()),
            *self.counters.items(),
        ):
            counters[name] = counters.get(name, 0) + int(value)
        if self.server is not None:
            for name, value in self.server.counters.items():
                counters["ipc " + name] = int(value)
        m = self.service.membership()
        return {
            "nodeid": self.nodeid,
            "ring_id": str(proc.ring_id),
            "state": proc.state.value,
            "members": list(proc.members),
            "configuration": {"ring_id": str(m.ring_id), "members": list(m.members)},
            "incarnation": self.incarnation,
            "pid": os.getpid(),
            "uptime_s": round((self._loop.time() - self._started_at) if self._loop else 0.0, 3),
            "clients": len(self.service.handles),
            "ordering": {
                "high_seq_received": proc.ring.my_high_seq_received,
                "aru": proc.ring.my_aru,
                "delivered": proc.ring.my_high_delivered,
                "released": proc.ring.last_released,
                "holding_token": proc.ring.holding,
            },
            "send_queue": {
                "messages": proc.packer.queued_messages(),
                "bytes": proc.packer.queued_bytes(),
                "held_for_room": self.windows.waiting,
                "held_for_readers": self.service.sends_held,
            },
            "transport": {
                "mode": self.cfg.transport.mode,
                "bind": self.cfg.transport.bind,
                "port": self.cfg.transport.port,
            },
            "crypto": self._crypto_status(),
            "peers": {str(k): v for k, v in sorted(self.peer_rx.items())},
            "gc": _gc_status(),
            "build": dict(_build()),
            "counters": counters,
        }
