"""A simulated cluster: N processors, a virtual clock, a hostile network and a trace.

Theory of operation. One heap of ``(time, order, action, args)`` drives everything: packet
arrivals, each processor's next timer, workload submissions and scheduled faults. Popping an
entry advances the virtual clock; the action feeds one input to one processor and routes what
comes out (datagrams through the network model, events into the trace). Randomness comes only
from named streams of the seed, so a run is a pure function of its options.

A run has two phases. The safety phase applies the workload and the faults. The liveness phase
heals the network and stops the load; the live processors must then form one ring, deliver
everything, and deliver a probe message from every member, within the liveness bound: the
fixed ``liveness_ms`` for membership and recovery, plus twice the time the ring needs to carry
what is still queued (``drain_bound_ms``: backlog packets over what one token rotation may
carry, times a rotation's expected length). The trace is then judged by ``evs.check``.

Saturation: during ``options.saturate`` every processor refills its send queue after each of
its inputs until the core refuses a message (TryAgain), so every token visit finds more than
the window lets it send. A slow receiver loses most multicasts addressed to it (tokens still
pass), lags, holds the ring's aru back and catches up by retransmission.

Accounting: every fault is counted when it takes effect (a crash of a live processor, a
partition that blocks datagrams, a slow period that drops them), not when it is scheduled, so
a campaign can assert that the faults it drew really happened (``SimResult.stats``, keys in
``ACCOUNTING``). The peaks of the sort queue (seqs between a processor's released mark and the
highest seq it holds) and of the token's fcc (packets sent in the last rotation) show whether
the sort queues and windows filled.

What runs in a simulated process is what runs in a daemon: a ``Driver`` (``evs.runtime``)
around the processor, which persists the ring sequence before the datagrams that name it leave
and keeps self-addressed datagrams (a one-member ring's token) out of the network, and an
``EvsService`` above it. The simulator feeds the driver's core events to the service and
routes its datagrams; it runs the loopback as a simulated event ``delay_min_ms`` later (one
turn of a real event loop; a one-member ring cannot rotate faster than its peers could pass a
token). Every message is submitted by an application handle through ``EvsService.mcast``, so
the message ids the trace uses are the service header's (``node:incarnation:counter``).

Handles and their traces. Each process has ``options.handles`` application handles (slots
``0..H-1``) and one system handle (probes, saturation fillers; it joins nothing). Slot ``k``
of every node follows group ``g<k>``: while its handle is joined to ``g<k>`` it writes the
per-handle trace of api.md section 4 into ``handle_traces[k]`` (node = the node id): each
configuration change the handle sees, each message of ``g<k>`` delivered to it (the id read
from the application data, as an application would), and the send of each message of its
node addressed to ``g<k>``. Leaving ``g<k>`` ends that trace's incarnation (``crash``); a
later join starts one (``restart``), whose first configuration is the current one (the
service's for a new handle, the one the handle last saw for a handle joining again). The
workload keeps the slot traces judgeable: a message names ``g<k>`` only while its node's
slot ``k`` is joined and configured, so every send of a ``g<k>`` message is in slot ``k``'s
trace. Handles also join and leave ``x``, a group no trace follows, and send to groups they
have not joined (``y`` has no member), which tests the service's filtering. At the end each
slot's trace is judged by ``evs.check`` with ``handle_traces=True``.
"""

from __future__ import annotations

import heapq
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from evs.check import check_events
from evs.errors import TryAgain
from evs.runtime.driver import Driver
from evs.runtime.service import SIZE as HEADER_SIZE
from evs.runtime.service import EvsService, Handle, Traced
from evs.sim.canaries import make_processor, make_service
from evs.sim.options import HUGE, LARGE, FaultAction, SimOptions
from evs.sim.rng import derive
from evs.totem.codec import cluster_id_for, decode, peek_type
from evs.totem.config import TotemConfig
from evs.totem.events import (
    BROADCAST,
    ConfigChange,
    Deliver,
    GatherEntered,
    MembState,
    Notice,
    Sent,
)
from evs.totem.invariants import Invariants
from evs.totem.messages import MessageType, OrfToken
from evs.totem.processor import Processor
from evs.trace import (
    confchg_event,
    crash_event,
    deliver_event,
    gather_event,
    payload_digest,
    restart_event,
    send_event,
)
from evs.types import Delivery, Guarantee

__all__ = ["ACCOUNTING", "Cluster", "SimNode", "SimResult", "Slot"]

#: The group of the system handle's messages (probes, saturation fillers): no handle joins it.
GROUPS = (b"sim",)
#: A group handles join and leave beside their slot's, which no slot trace follows.
EXTRA = b"x"
#: A group nobody joins: messages to it reach no handle.
NOBODY = b"y"
#: Process ids in the service header: the system handle's, and slot k's ``SLOT_PID + k``.
SYSTEM_PID = 1
SLOT_PID = 100
#: Mean time between two join/leave actions of one process's handles (ms).
_HANDLE_TICK_MS = 400.0
#: What happened in a run, each counted as it took effect (``SimResult.stats`` keys).
ACCOUNTING = (
    "crashes",
    "restarts",
    "late starts",
    "partitions",
    "heals",
    "datagrams blocked",
    "pauses",
    "datagrams held while paused",
    "loss bursts",
    "slow periods",
    "datagrams lost to slow receivers",
    "transitional configurations",
    "regular configurations",
    "rings installed",
    "saturated submits",
    "saturation try again",
    "sort queue peak",
    "token fcc peak",
)
#: Bytes of a full data packet on the wire (serialization time in the liveness bound).
_PACKET_BYTES = 1500
#: A processor's send buffer under ``bandwidth``: the daemon's default SO_SNDBUF (4 MiB,
#: ``evs.daemon.config_file``). Its sockets are non-blocking, so a datagram that does not fit
#: is dropped (EAGAIN), not queued: an unbounded egress queue would let a one-member ring,
#: whose token loops back without touching the wire, queue minutes of saturated traffic ahead
#: of its JOINs (seed 44485: 49 s at 27 Mbit/s, past the liveness bound).
SEND_BUFFER_BYTES = 4 << 20
_MCAST = MessageType.MCAST
_TOKEN = MessageType.ORF_TOKEN


def slot_group(k: int) -> bytes:
    """The group handle slot ``k`` of every process follows (its trace's messages)."""
    return b"g%d" % k


class Slot:
    """Handle slot ``k`` of one process: its handle (None while closed) and its trace state.

    ``reg`` and ``trans`` are the configurations the handle last saw (what its application
    knows), kept while the slot's trace is stopped so that a handle joining ``g<k>`` again
    can start its new trace incarnation in the configuration it is in.
    """

    __slots__ = ("configured", "ever", "group", "handle", "k", "reg", "traced", "trans")

    def __init__(self, k: int) -> None:
        self.k = k
        self.group = slot_group(k)
        self.handle: Handle | None = None
        #: Joined to ``group``: the slot's trace incarnation is running.
        self.traced = False
        #: That incarnation has logged a regular configuration (its sends are placeable).
        self.configured = False
        #: The slot's trace has events (a join then starts with ``restart``).
        self.ever = False
        self.reg: ConfigChange | None = None
        self.trans: ConfigChange | None = None

    def reset(self) -> None:
        """The process died: its handle and what the handle knew are gone."""
        self.handle = None
        self.traced = self.configured = False
        self.reg = self.trans = None


class SimNode:
    """One simulated host: its current processor, driver and service (None while crashed)
    and durable state."""

    __slots__ = (
        "deferred",
        "driver",
        "full_at",
        "incarnation",
        "loop_scheduled",
        "nodeid",
        "paused_until",
        "persisted_seq",
        "proc",
        "refused",
        "sent_counter",
        "service",
        "slot_by_group",
        "slot_of",
        "slots",
        "sq_peak",
        "system",
        "timer_at",
        "timer_gen",
        "unsent",
        "want_restart",
    )

    def __init__(self, nodeid: int, handles: int) -> None:
        self.nodeid = nodeid
        self.proc: Processor | None = None
        self.driver: Driver | None = None
        self.service: EvsService | None = None
        #: The handle probes and saturation fillers are sent from.
        self.system: Handle | None = None
        self.slots = [Slot(k) for k in range(handles)]
        self.slot_by_group = {s.group: s for s in self.slots}
        #: Handle id -> its slot, for the handles of the current incarnation.
        self.slot_of: dict[int, Slot] = {}
        self.incarnation = 0
        self.persisted_seq = 0
        self.sent_counter = 0
        #: Message id -> payload digest, from submission until the core reports it ``Sent``.
        self.unsent: dict[str, str] = {}
        self.timer_gen = 0
        self.timer_at: float | None = None
        self.loop_scheduled = False
        #: A handle met TryAgain and waits to hear there is room again.
        self.refused = False
        self.paused_until = 0.0
        self.deferred: list[bytes] = []
        self.want_restart = False
        #: Saturation: the queued bytes at the last TryAgain (refill once below them).
        self.full_at = 1 << 62
        #: Largest sort queue span seen (highest seq held minus the released mark).
        self.sq_peak = 0

    def persist(self, seq: int) -> None:
        """The driver's persist callback: the simulated disk survives crashes."""
        self.persisted_seq = max(self.persisted_seq, seq)


@dataclass
class SimResult:
    """What a run did and whether it kept every promise."""

    options: SimOptions
    violations: list[str]
    stats: Counter[str]
    sim_ms: float
    real_s: float
    converged_ms: float | None
    trace_events: int
    #: How long the liveness phase was allowed to take (see ``Cluster.drain_bound_ms``).
    liveness_bound_ms: float = 0.0
    details: list[str] = field(default_factory=list)
    #: The violations the trace checker (evs.check) found, also part of ``violations``.
    checker_violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


def payload_for(msgid: str, size: int) -> bytes:
    """Deterministic message bytes that start with the id (so deliveries can be traced)."""
    head = msgid.encode() + b"|"
    if size <= len(head):
        return head
    body = (msgid.encode() + b".") * (1 + (size - len(head)) // (len(msgid) + 1))
    return head + body[: size - len(head)]


class Cluster:
    """N processors on a simulated network; see the module docstring."""

    def __init__(self, options: SimOptions, *, config: TotemConfig | None = None) -> None:
        self.options = options
        self.config = config or options.totem_config()
        self._cluster_id = cluster_id_for(self.config.cluster_name)
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._order = 0
        self.net_rng = derive(options.seed, "network")
        self.load_rng = derive(options.seed, "workload")
        self.fill_rng = derive(options.seed, "saturate-load")
        self.handle_rng = derive(options.seed, "handle-load")
        self.nodes = {n: SimNode(n, options.handles) for n in range(1, options.nodes + 1)}
        self.all_ids = tuple(self.nodes)
        self.trace: list[dict[str, Any]] = []
        #: Per handle slot k, the application-level trace of every process's slot-k handle.
        self.handle_traces: list[list[dict[str, Any]]] = [[] for _ in range(options.handles)]
        self.notices: list[str] = []
        self.stats: Counter[str] = Counter()
        self.violations: list[str] = []
        self.invariants = Invariants()
        self.loss = options.loss
        self.dup = options.dup
        self.reorder = options.reorder
        self.group_of: dict[int, int] = {}
        self.oneway = False
        self.egress_busy = dict.fromkeys(self.nodes, 0.0)
        self.load_on = False
        self.faults_on = False
        #: Every processor keeps its send queue full (``options.saturate``).
        self.saturating = False
        self._refilling = False
        #: Slow receivers: node -> (loss of the multicasts to it, period generation).
        self.slow: dict[int, tuple[float, int]] = {}
        self._slow_gen = 0
        #: Largest fcc a token carried: packets sent ring-wide in one rotation.
        self.fcc_peak = 0
        #: The liveness bound's drain allowance, computed when the faults end.
        self.drain_ms = 0.0
        #: Test hooks: a filter returning True drops the datagram (src, dst, data).
        self.filters: list[Callable[[int, int, bytes], bool]] = []
        #: Delivered message ids per node (for the liveness probe).
        self.delivered_probe: dict[str, set[int]] = {}

    # ------------------------------------------------------------------ event loop

    def at(self, t: float, action: Callable[..., None], *args: Any) -> None:
        self._order += 1
        heapq.heappush(self._heap, (t, self._order, action, args))

    def run_until(self, t_end: float, until: Callable[[], bool] | None = None) -> bool:
        """Advance to ``t_end`` (or until ``until()`` holds, checked every 10 ms)."""
        heap = self._heap
        next_check = self.now
        while heap and heap[0][0] <= t_end:
            t, _, action, args = heapq.heappop(heap)
            self.now = t
            action(*args)
            if until is not None and t >= next_check:
                next_check = t + 10.0
                if until():
                    return True
        self.now = max(self.now, t_end)
        return until() if until is not None else True

    def run_ms(self, ms: float) -> None:
        self.run_until(self.now + ms)

    # ------------------------------------------------------------------ processors

    def start_node(self, nodeid: int) -> None:
        node = self.nodes[nodeid]
        if node.proc is not None:
            return
        static = self.all_ids if self.options.static_ring else None
        canary = self.options.canary if nodeid == self.all_ids[-1] else ""
        proc = make_processor(
            canary, self.config, nodeid, ring_seq=node.persisted_seq, static_members=static
        )
        driver = Driver(proc, node.persist)
        node.proc = proc
        node.driver = driver
        node.service = service = make_service(
            canary,
            nodeid,
            lambda groups, data, guarantee: driver.submit(self.now, groups, data, guarantee),
            incarnation=node.incarnation,
            max_message_size=self.config.max_message_size,
        )
        node.system = service.open_handle(SYSTEM_PID)
        node.slot_of = {}
        node.sent_counter = 0
        node.unsent = {}
        node.deferred = []
        node.paused_until = 0.0
        node.full_at = 1 << 62
        node.loop_scheduled = False
        node.refused = False
        for slot in node.slots:
            self._join_slot(node, slot, extra=False)
        driver.start(self.now)
        self._flush(node)

    def crash(self, nodeid: int) -> None:
        node = self.nodes[nodeid]
        if node.proc is None or node.service is None:
            return
        self.stats.update(node.proc.stats)  # keep the dead processor's counters in the totals
        self.stats.update(node.service.counters)
        for slot in node.slots:
            if slot.traced:
                self.handle_traces[slot.k].append(crash_event(self.now, nodeid))
            slot.reset()
        node.proc = node.driver = node.service = node.system = None
        node.timer_gen += 1
        node.timer_at = None
        node.deferred = []
        self.stats["crashes"] += 1
        self.trace.append(crash_event(self.now, nodeid))

    def restart(self, nodeid: int) -> None:
        node = self.nodes[nodeid]
        if node.proc is not None:
            return
        node.incarnation += 1
        node.want_restart = False
        self.trace.append(restart_event(self.now, nodeid))
        self.stats["restarts"] += 1
        self.start_node(nodeid)

    def pause(self, nodeid: int, duration_ms: float) -> None:
        node = self.nodes[nodeid]
        if node.proc is None or node.paused_until > self.now:
            return
        node.paused_until = self.now + duration_ms
        self.stats["pauses"] += 1
        self.at(node.paused_until, self._resume, node, node.incarnation)

    def _resume(self, node: SimNode, incarnation: int) -> None:
        driver = node.driver
        if driver is None or node.incarnation != incarnation or node.paused_until > self.now:
            return
        backlog, node.deferred = node.deferred, []
        for data in backlog:
            driver.datagram(self.now, data)
        driver.timer(self.now)
        self._flush(node)

    def _flush(self, node: SimNode) -> None:
        """After every input: check the processor's invariants, then take its outputs.

        The core's events go through the service (fan-out to the handles, whose traces are
        written as they read) before the datagrams leave, as in the executive.
        """
        driver = node.driver
        assert driver is not None
        proc = driver.proc
        broken = self.invariants.check(proc)
        if broken and len(self.violations) < 20:
            self.violations.extend(f"invariant at {self.now:.1f} ms: {b}" for b in broken[:3])
        if driver.events:
            events, driver.events = driver.events, []
            service = node.service
            assert service is not None
            self._record(node, service.feed(events))
        if driver.sends:
            sends, driver.sends = driver.sends, []
            for dest, data in sends:
                self._send(node.nodeid, dest, data)
        at = proc.next_deadline()
        if at != node.timer_at:
            node.timer_gen += 1
            node.timer_at = at
            if at is not None:
                self.at(max(at, self.now), self._on_timer, node, node.timer_gen)
        if node.refused:
            self._room_again(node)
        if driver.loopback and not node.loop_scheduled:
            node.loop_scheduled = True
            self.at(self.now + self.options.delay_min_ms, self._on_loopback, node, driver)
        if self.saturating and not self._refilling:
            self._refill(node)

    def _room_again(self, node: SimNode) -> None:
        """A handle met TryAgain: take the handles the service says may retry, as the
        executive does (so its list stays short), and count them: a saturated run that never
        hears "room again" has lost the service's back-pressure notice."""
        service = node.service
        assert service is not None
        woken = service.take_room_again()
        if woken:
            node.refused = False
            self.stats["room again"] += len(woken)

    def _on_timer(self, node: SimNode, gen: int) -> None:
        driver = node.driver
        if driver is None or gen != node.timer_gen or node.paused_until > self.now:
            return
        node.timer_at = None
        driver.timer(self.now)
        self._flush(node)

    def _on_loopback(self, node: SimNode, driver: Driver) -> None:
        """One turn of the process's event loop feeds back its self-addressed datagrams."""
        if node.driver is not driver:
            return  # the process crashed since; its successor schedules its own
        node.loop_scheduled = False
        if node.paused_until > self.now:
            return  # a stalled process: ``_resume``'s flush schedules it again
        driver.run_loopback(self.now)
        self._flush(node)

    # ------------------------------------------------------------------ network

    def blocked(self, src: int, dst: int) -> bool:
        if not self.group_of:
            return False
        a, b = self.group_of.get(src, -1), self.group_of.get(dst, -1)
        if a == b:
            return False
        return not self.oneway or a < b

    def _send(self, src: int, dest: int, data: bytes) -> None:
        opts = self.options
        rng = self.net_rng
        depart = self.now
        if opts.bandwidth_mbps:
            start = max(self.now, self.egress_busy[src])
            # Bytes still waiting in the send buffer: what the link has not yet serialized.
            queued = (start - self.now) * opts.bandwidth_mbps * 1000.0 / 8
            if queued + len(data) > SEND_BUFFER_BYTES:
                self.stats["datagrams dropped at a full send buffer"] += 1
                return
            depart = start + len(data) * 8 / (opts.bandwidth_mbps * 1000.0)
            self.egress_busy[src] = depart
        if dest == BROADCAST:
            targets = [n for n in self.all_ids if n != src]
        else:
            targets = [dest]
            if peek_type(data) is _TOKEN:
                self._note_token(data)
        self.stats["datagrams sent"] += 1
        self.stats["bytes sent"] += len(data)
        slow = self.slow
        for dst in targets:
            if dst != src and self.blocked(src, dst):
                self.stats["datagrams blocked"] += 1
                continue
            if self.filters and any(f(src, dst, data) for f in self.filters):
                self.stats["datagrams filtered"] += 1
                continue
            if self.loss and rng.random() < self.loss:
                self.stats["datagrams lost"] += 1
                continue
            if slow and dst in slow and peek_type(data) is _MCAST and rng.random() < slow[dst][0]:
                self.stats["datagrams lost to slow receivers"] += 1
                continue
            copies = 2 if self.dup and rng.random() < self.dup else 1
            for _ in range(copies):
                delay = opts.delay_min_ms + rng.expovariate(1.0 / opts.delay_mean_ms)
                if self.reorder and rng.random() < self.reorder:
                    delay += rng.uniform(0, opts.reorder_delay_ms)
                self.at(depart + delay, self._arrive, dst, data)

    def _note_token(self, data: bytes) -> None:
        tok = decode(data, self._cluster_id)
        if isinstance(tok, OrfToken) and tok.fcc > self.fcc_peak:
            self.fcc_peak = tok.fcc

    def _arrive(self, dst: int, data: bytes) -> None:
        node = self.nodes[dst]
        driver = node.driver
        if driver is None:
            return
        if node.paused_until > self.now:
            if len(node.deferred) < 4096:  # a socket buffer: overflow is loss
                node.deferred.append(data)
                self.stats["datagrams held while paused"] += 1
            return
        driver.datagram(self.now, data)
        ring = driver.proc.ring
        span = ring.my_high_seq_received - ring.last_released
        if span > node.sq_peak:  # noqa: PLR1730 (hot path: cheaper than max())
            node.sq_peak = span
        self._flush(node)

    # ------------------------------------------------------------------ workload

    def submit(
        self,
        nodeid: int,
        size: int,
        guarantee: Guarantee = Guarantee.AGREED,
        groups: tuple[bytes, ...] = GROUPS,
    ) -> str | None:
        """Submit one traced message from ``nodeid``'s system handle; None if refused
        (TryAgain). ``size`` is the message's size in the core, service header included."""
        node = self.nodes[nodeid]
        if node.system is None:
            return None
        return self._mcast(node, node.system, groups, size, guarantee)

    def _mcast(
        self,
        node: SimNode,
        handle: Handle,
        groups: tuple[bytes, ...] | None,
        size: int,
        guarantee: Guarantee,
    ) -> str | None:
        """``EvsService.mcast`` from ``handle`` (``groups`` None: its joined groups).

        The application data starts with the id the service will give the message (the
        simulator counts along; a different id is a violation), so a handle that receives it
        can name it, as an application does. The send is logged in the trace of every slot
        whose group the message names (the workload only names a slot's group while that
        slot is joined and configured).
        """
        service = node.service
        assert service is not None
        nodeid = node.nodeid
        msgid = f"{nodeid}:{node.incarnation}:{node.sent_counter}"
        data = payload_for(msgid, size - HEADER_SIZE)
        try:
            got = service.mcast(handle, groups, data, guarantee)
        except TryAgain:
            node.refused = True
            self.stats["submit try again"] += 1
            if self.saturating:
                self.stats["saturation try again"] += 1
            return None
        if got != msgid:
            self.violations.append(f"service: node {nodeid} named its message {got}, not {msgid}")
        node.sent_counter += 1
        digest = payload_digest(data)
        node.unsent[msgid] = digest
        self.stats["messages submitted"] += 1
        by_group = node.slot_by_group
        for g in handle.groups if groups is None else groups:
            slot = by_group.get(g)
            if slot is None:
                continue
            if not slot.configured:
                self.violations.append(
                    f"sim: node {nodeid} addressed {msgid} to {g!r} while its slot "
                    f"{slot.k} was not joined and configured"
                )
                continue
            self.handle_traces[slot.k].append(
                send_event(self.now, nodeid, msgid, guarantee=guarantee, digest=digest)
            )
        self._flush(node)
        return msgid

    def _load_tick(self, nodeid: int) -> None:
        if not self.load_on:
            return
        opts = self.options
        rng = self.load_rng
        node = self.nodes[nodeid]
        if node.proc is not None and node.paused_until <= self.now:
            size = self._message_size(
                rng, lambda: rng.randint(16, 1200) if rng.random() < 0.2 else rng.randint(16, 200)
            )
            guarantee = Guarantee.SAFE if rng.random() < opts.safe_fraction else Guarantee.AGREED
            self._handle_send(node, size, guarantee)
        self.at(self.now + rng.expovariate(opts.rate / 1000.0), self._load_tick, nodeid)

    def _handle_send(self, node: SimNode, size: int, guarantee: Guarantee) -> None:
        """One message of the workload from a drawn handle of ``node``: to its joined groups
        (``mcast_joined``) or to named groups, joined or not (``mcast_groups``)."""
        rng = self.handle_rng
        slot = node.slots[rng.randrange(len(node.slots))]
        handle = slot.handle
        joined = rng.random() < 0.5
        if (
            joined
            and handle is not None
            and handle.groups
            and (slot.configured or slot.group not in handle.groups)
        ):
            self._mcast(node, handle, None, size, guarantee)
            return
        names = [s.group for s in node.slots if s.configured]
        names += (EXTRA, NOBODY)
        count = 1 if rng.random() < 0.6 else 2
        groups = tuple(rng.sample(names, count))
        sender = handle if handle is not None else node.system
        assert sender is not None
        self._mcast(node, sender, groups, size, guarantee)

    def _handle_tick(self, nodeid: int) -> None:
        """A drawn handle joins or leaves its slot's group, or ``x``; a leaving handle is
        sometimes closed, so that its slot's next join opens a new one."""
        if not self.load_on:
            return
        rng = self.handle_rng
        node = self.nodes[nodeid]
        slot = node.slots[rng.randrange(len(node.slots))]
        r = rng.random()
        if node.service is not None and node.paused_until <= self.now:
            if not slot.traced:
                self._join_slot(node, slot, extra=r < 0.3)
            elif r < 0.5:
                self._leave_slot(node, slot, close=r < 0.25)
            else:
                self._toggle_extra(node, slot)
        self.at(self.now + rng.expovariate(1.0 / _HANDLE_TICK_MS), self._handle_tick, nodeid)

    def _join_slot(self, node: SimNode, slot: Slot, *, extra: bool) -> None:
        """Join ``g<k>`` (opening the slot's handle if it is closed): a new incarnation of
        the slot's trace, whose first configuration is the current one."""
        service = node.service
        assert service is not None
        handle = slot.handle
        if handle is None:
            slot.handle = handle = service.open_handle(SLOT_PID + slot.k)
            node.slot_of[handle.id] = slot
        trace = self.handle_traces[slot.k]
        if slot.ever:
            trace.append(restart_event(self.now, node.nodeid))
        slot.ever = slot.traced = True
        slot.configured = False
        again = handle.started
        service.join(handle, (slot.group, EXTRA) if extra else (slot.group,))
        if again and slot.reg is not None:
            # The service gives a handle its configuration at its first join only; this one
            # has seen every change since, so its trace starts in the one it knows.
            reg = slot.reg
            trace.append(
                confchg_event(
                    self.now,
                    node.nodeid,
                    transitional=False,
                    ring=reg.ring_id,
                    members=reg.members,
                    joined=reg.members,
                )
            )
            slot.configured = True
            if slot.trans is not None:
                self._trace_confchg(node.nodeid, trace, slot.trans)
        self._take_handles(node)

    def _leave_slot(self, node: SimNode, slot: Slot, *, close: bool) -> None:
        service = node.service
        handle = slot.handle
        assert service is not None
        assert handle is not None
        service.leave(handle, (slot.group,))
        slot.traced = slot.configured = False
        self.handle_traces[slot.k].append(crash_event(self.now, node.nodeid))
        if close:
            service.close_handle(handle)
            del node.slot_of[handle.id]
            slot.handle = None
            slot.reg = slot.trans = None

    def _toggle_extra(self, node: SimNode, slot: Slot) -> None:
        service = node.service
        handle = slot.handle
        assert service is not None
        assert handle is not None
        if EXTRA in handle.groups:
            service.leave(handle, (EXTRA,))
        else:
            service.join(handle, (EXTRA,))

    def _message_size(self, rng: random.Random, ordinary: Callable[[], int]) -> int:
        """One message size of the workload's mix: huge, large, or ``ordinary()``."""
        opts = self.options
        r = rng.random()
        if r < opts.huge_fraction:
            return HUGE
        if r < opts.huge_fraction + opts.large_fraction:
            return rng.randint(4096, LARGE)
        return ordinary()

    def set_saturating(self, on: bool) -> None:
        """Start or stop the saturating load (only while the workload runs)."""
        self.saturating = on and self.load_on
        if self.saturating:
            for node in self.nodes.values():
                self._refill(node)

    def _refill(self, node: SimNode) -> None:
        """Submit until the core says TryAgain; again only once its queue has drained some.

        Fillers are mostly about one packet long (few deliveries per packet carried, so a
        saturated ring costs little to check), some large or huge as the workload draws.
        """
        proc = node.proc
        if proc is None or node.paused_until > self.now:
            return
        if proc.packer.queued_bytes() >= node.full_at:
            return
        opts = self.options
        rng = self.fill_rng
        self._refilling = True
        try:
            while True:
                size = self._message_size(rng, lambda: rng.randint(200, 2400))
                safe = rng.random() < opts.safe_fraction
                if self.submit(node.nodeid, size, Guarantee.SAFE if safe else Guarantee.AGREED):
                    self.stats["saturated submits"] += 1
                    continue
                node.full_at = proc.packer.queued_bytes()
                return
        finally:
            self._refilling = False

    # ------------------------------------------------------------------ trace

    def _record(self, node: SimNode, traced: list[Traced]) -> None:
        """The processor's trace from the service's view of the core's events, then the
        handles' traces from what the service queued for them."""
        t = self.now
        nodeid = node.nodeid
        trace = self.trace
        to_handles = False
        for ev, msgid, guarantee in traced:
            if isinstance(ev, Deliver):
                to_handles = True
                data = ev.data
                cut = data.find(b"|", HEADER_SIZE)
                named = data[HEADER_SIZE:cut].decode() if cut > 0 else "?"
                if msgid is None or named != msgid or guarantee is None:
                    self.violations.append(
                        f"sim: node {nodeid} delivered {named} (data) from node {ev.sender} "
                        f"as {msgid} (service header)"
                    )
                    if msgid is None:
                        continue
                trace.append(
                    deliver_event(
                        t,
                        nodeid,
                        msgid,
                        ev.sender,
                        ev.ring_id,
                        guarantee=ev.guarantee,
                        digest=payload_digest(data[HEADER_SIZE:]),
                    )
                )
                self.stats["deliveries"] += 1
                if ev.guarantee is Guarantee.SAFE and not ev.transitional:
                    self._check_safe_held(node, ev)
                probe = self.delivered_probe.get(msgid)
                if probe is not None:
                    probe.add(nodeid)
            elif isinstance(ev, Sent):
                digest = None if msgid is None else node.unsent.pop(msgid, None)
                if msgid is None or guarantee is None or digest is None:
                    self.violations.append(f"sim: node {nodeid} sent unknown number {ev.number}")
                    continue
                trace.append(
                    send_event(
                        t, nodeid, msgid, guarantee=guarantee, ring=ev.ring_id, digest=digest
                    )
                )
            elif isinstance(ev, ConfigChange):
                to_handles = True
                self._trace_confchg(nodeid, trace, ev)
                if ev.transitional:
                    self.stats["transitional configurations"] += 1
                else:
                    self.stats["regular configurations"] += 1
            elif isinstance(ev, GatherEntered):
                trace.append(
                    gather_event(t, nodeid, reason=ev.reason.value, from_state=ev.from_state.value)
                )
            elif isinstance(ev, Notice):
                self.notices.append(f"{t:.1f} node {nodeid} {ev.kind}: {ev.detail}")
        if to_handles:
            self._take_handles(node)

    def _trace_confchg(self, nodeid: int, trace: list[dict[str, Any]], ev: ConfigChange) -> None:
        trace.append(
            confchg_event(
                self.now,
                nodeid,
                transitional=ev.transitional,
                ring=ev.ring_id,
                members=ev.members,
                left=ev.left,
                joined=ev.joined,
            )
        )

    def _take_handles(self, node: SimNode) -> None:
        """Read every handle's queued events, as its application would, into its slot's trace.

        A slot logs a delivery only of a message that names its group (the others are the
        concern of other slots, or of none); it reads the message id from the data. The
        digest of one message is computed once per read, for every handle that got it.
        """
        service = node.service
        assert service is not None
        ready = service.take_ready()
        if not ready:
            return
        t = self.now
        nodeid = node.nodeid
        digests: dict[str, tuple[bytes, str]] = {}
        for handle in ready:
            if handle.overflowed:
                self.violations.append(f"service: node {nodeid}: {handle.overflowed}")
            slot = node.slot_of.get(handle.id)
            events = handle.take_events()
            if slot is None:
                continue  # the system handle joins nothing; a closed handle's leftovers
            group = slot.group
            trace = self.handle_traces[slot.k]
            for ev in events:
                if isinstance(ev, Delivery):
                    if handle.groups.isdisjoint(ev.groups):
                        self.violations.append(
                            f"service: node {nodeid} handed a message to {ev.groups!r} to its "
                            f"slot {slot.k} handle, which joined {sorted(handle.groups)!r}"
                        )
                    if not slot.traced or group not in ev.groups:
                        continue
                    self._trace_delivery(nodeid, slot, trace=trace, ev=ev, digests=digests, t=t)
                elif ev.transitional:
                    slot.trans = ev
                    if slot.traced:
                        self._trace_confchg(nodeid, trace, ev)
                else:
                    slot.reg = ev
                    slot.trans = None
                    if slot.traced:
                        slot.configured = True
                        self._trace_confchg(nodeid, trace, ev)

    def _trace_delivery(
        self,
        nodeid: int,
        slot: Slot,
        *,
        trace: list[dict[str, Any]],
        ev: Delivery,
        digests: dict[str, tuple[bytes, str]],
        t: float,
    ) -> None:
        data = ev.data
        cut = data.find(b"|")
        if cut <= 0:
            self.violations.append(
                f"service: node {nodeid} slot {slot.k} got data that names no message"
            )
            return
        msgid = data[:cut].decode()  # the checker compares the sender it names with ev.nodeid
        if slot.reg is None:
            self.violations.append(
                f"service: node {nodeid} slot {slot.k} got {msgid} before any configuration"
            )
            return
        known = digests.get(msgid)
        if known is not None and known[0] is data:
            digest = known[1]
        else:
            digest = payload_digest(data)
            digests[msgid] = (data, digest)
        trace.append(
            deliver_event(
                t,
                nodeid,
                msgid,
                ev.nodeid,
                slot.reg.ring_id,
                guarantee=ev.guarantee,
                digest=digest,
            )
        )

    def _check_safe_held(self, node: SimNode, ev: Deliver) -> None:
        """Property 7.3, which only the simulator can see: a safe message delivered in a
        regular configuration is held by every member still on that ring."""
        proc = node.proc
        assert proc is not None
        if ev.ring_id != proc.ring_id or proc.state is not MembState.OPERATIONAL:
            return  # delivered at install, from the saved old ring
        for member in proc.memb_list:
            other = self.nodes[member].proc
            if other is None or other.ring_id != ev.ring_id:
                continue  # crashed or already gone to another ring
            if not other.has_received(ev.ring_id, ev.seq):
                self.violations.append(
                    f"7.3 (safe held by all): node {node.nodeid} delivered safe seq {ev.seq} "
                    f"of ring {ev.ring_id} at {self.now:.1f} ms, but node {member} does not "
                    f"hold it"
                )
                return

    # ------------------------------------------------------------------ faults

    def partition(self, *groups: tuple[int, ...], oneway: bool = False) -> None:
        self.group_of = {n: i for i, g in enumerate(groups) for n in g}
        self.oneway = oneway
        self.stats["partitions"] += 1

    def heal(self) -> None:
        self.group_of = {}
        self.oneway = False

    def set_slow(self, nodeid: int, loss: float, duration_ms: float) -> None:
        """Make ``nodeid`` a slow receiver: it loses ``loss`` of the multicasts sent to it."""
        if self.nodes[nodeid].proc is None:
            return
        self._slow_gen += 1
        self.slow[nodeid] = (loss, self._slow_gen)
        self.stats["slow periods"] += 1
        self.at(self.now + duration_ms, self._end_slow, nodeid, self._slow_gen)

    def _end_slow(self, nodeid: int, gen: int) -> None:
        if nodeid in self.slow and self.slow[nodeid][1] == gen:
            del self.slow[nodeid]

    def _apply(self, action: FaultAction) -> None:
        if not self.faults_on and action.kind != "restart":
            return
        kind = action.kind
        if kind == "start":
            if self.nodes[action.nodes[0]].proc is None:
                self.stats["late starts"] += 1
            self.start_node(action.nodes[0])
        elif kind == "crash":
            victim = action.nodes[0]
            self.crash(victim)
            self.nodes[victim].want_restart = any(
                a.kind == "restart" and a.nodes == (victim,) and a.at_ms >= self.now
                for a in self.options.faults
            )
        elif kind == "restart":
            self.restart(action.nodes[0])
        elif kind == "pause":
            self.pause(action.nodes[0], action.duration_ms)
        elif kind in ("partition", "oneway"):
            self.partition(*action.groups, oneway=kind == "oneway")
        elif kind == "heal":
            if self.group_of:
                self.stats["heals"] += 1
            self.heal()
        elif kind == "burst":
            self.loss = action.value
            self.dup = action.value / 3
            self.stats["loss bursts"] += 1
            self.at(self.now + action.duration_ms, self._end_burst)
        elif kind == "slow":
            self.set_slow(action.nodes[0], action.value, action.duration_ms)

    def _end_burst(self) -> None:
        if self.faults_on:
            self.loss = self.options.loss
            self.dup = self.options.dup

    # ------------------------------------------------------------------ phases

    def converged(self) -> bool:
        """One ring of exactly the live processors, all quiet and all delivered."""
        live = [n for n in self.nodes.values() if n.proc is not None]
        if not live:
            return True
        ids = tuple(n.nodeid for n in live)
        first = live[0].proc
        assert first is not None
        ring = first.ring_id
        high = first.ring.my_high_delivered
        for node in live:
            p = node.proc
            assert p is not None
            if (
                p.state is not MembState.OPERATIONAL
                or p.ring_id != ring
                or p.memb_list != ids
                or node.paused_until > self.now
                or p.packer.queued_messages()
                or node.unsent
                or p.ring.my_high_delivered != high
                or p.ring.my_high_seq_received != high
            ):
                return False
        return True

    def run(self) -> SimResult:
        """The whole run: safety phase, liveness phase, then the EVS checker."""
        opts = self.options
        if opts.static_ring and opts.faults:
            raise ValueError("faults need the membership protocol (static_ring=False)")
        started = time.perf_counter()
        late = {a.nodes[0] for a in opts.faults if a.kind == "start"}
        for nodeid in self.all_ids:
            if nodeid not in late:
                self.start_node(nodeid)
        self.load_on = True
        self.faults_on = True
        for nodeid in self.all_ids:
            self.at(self.load_rng.uniform(0, 10), self._load_tick, nodeid)
        for nodeid in self.all_ids:
            self.at(self.handle_rng.uniform(0, 2 * _HANDLE_TICK_MS), self._handle_tick, nodeid)
        for action in opts.faults:
            self.at(action.at_ms, self._apply, action)
        if opts.saturating:
            self.at(opts.saturate[0], self.set_saturating, True)
            self.at(opts.saturate[1], self.set_saturating, False)
        self.run_until(opts.duration_ms)

        # Liveness: heal, stop the load, restart whoever was meant to come back.
        self.load_on = False
        self.faults_on = False
        self.saturating = False
        self.heal()
        self.slow.clear()
        self.loss = self.dup = self.reorder = 0.0
        for nodeid, node in self.nodes.items():
            if node.proc is None and not self._was_started(nodeid):
                self.start_node(nodeid)  # a late joiner whose start fell after the faults
            elif node.proc is None and node.want_restart:
                self.restart(nodeid)
        for node in self.nodes.values():  # every live handle follows its slot's group again
            if node.service is not None:
                for slot in node.slots:
                    if not slot.traced:
                        self._join_slot(node, slot, extra=False)
        self.drain_ms = self.drain_bound_ms()
        bound = opts.liveness_ms + 2 * self.drain_ms
        deadline = self.now + bound
        converged_at: float | None = None
        if self.run_until(deadline, self.converged):
            converged_at = self.now
            self._probe(deadline)
        else:
            self.violations.append(
                f"liveness: no quiet ring of all live processors within {bound:.0f} ms after "
                f"the faults ended ({opts.liveness_ms:.0f} ms + twice the drain estimate of "
                f"{self.drain_ms:.0f} ms); states: {self.describe_states()}"
            )
        quiet = converged_at is not None
        # The events come from evs.trace's builders: valid by construction, not re-validated.
        report = check_events(self.trace, quiet_end=quiet, validate=False)
        checked = [str(v) for v in report.violations]
        for k, events in enumerate(self.handle_traces):
            slot_report = check_events(events, quiet_end=quiet, handle_traces=True, validate=False)
            checked.extend(f"{v} [handle slot {k}]" for v in slot_report.violations)
        self.violations.extend(checked)
        return SimResult(
            checker_violations=checked,
            options=opts,
            violations=self.violations,
            stats=self.final_stats(),
            sim_ms=self.now,
            real_s=time.perf_counter() - started,
            converged_ms=None if converged_at is None else converged_at - opts.duration_ms,
            trace_events=len(self.trace) + sum(map(len, self.handle_traces)),
            liveness_bound_ms=bound,
        )

    def drain_bound_ms(self) -> float:
        """Expected time for the ring to carry every live processor's queued packets.

        A rotation carries at most ``window_size`` packets, each processor at most
        ``max_messages`` per visit (shared by backlog; a lone sender of large messages may take
        the window, which only makes the drain faster than estimated), and the sort queue lets
        the ring run at most ``(sort_queue_slots - window - max_messages) / lag`` packets a
        rotation (see below). While ``k`` processors still have a backlog, a rotation carries
        the least of ``window``, ``k x max_messages`` and that, about evenly; so the smallest
        backlog drains first, then the next with one processor fewer sending (a fluid model,
        summed phase by phase). A rotation takes one expected token hop (``delay_min +
        delay_mean``) per live processor, plus the time to serialize what that phase's rotation
        carries at ``bandwidth_mbps``. Recovery
        re-sends at most the largest sort queue span once, which is added to the backlog.
        """
        opts = self.options
        cfg = self.config
        live = [n.proc for n in self.nodes.values() if n.proc is not None]
        if not live:
            return 0.0
        backlogs = sorted(p.packer.backlog_packets() for p in live)
        backlogs[-1] += max(p.ring.my_high_seq_received - p.ring.last_released for p in live)
        # The sort queue caps how far the ring's seq may run ahead of the released mark, which
        # trails by about two rotations (the aru must come round twice) and one more when
        # messages wait for SAFE delivery; a small sort queue, not the window, then limits a
        # rotation (seed 1004250: 28 slots, every message safe, about 4 packets a rotation).
        lag = 3 if opts.safe_fraction > 0 else 2
        hops_ms = len(live) * (opts.delay_min_ms + opts.delay_mean_ms)
        packet_ms = 0.0
        if opts.bandwidth_mbps:
            packet_ms = _PACKET_BYTES * 8 / (opts.bandwidth_mbps * 1000.0)
        total_ms = 0.0
        drained = 0
        for i, b in enumerate(backlogs):
            k = len(backlogs) - i  # processors with a backlog during this phase
            # A lone sender of large messages may use the whole window (docs/protocol.md), but
            # not in RECOVERY nor with small messages: the estimate keeps max_messages.
            sq_rate = max(1.0, (cfg.sort_queue_slots - cfg.window_size - cfg.max_messages) / lag)
            per_rotation = min(cfg.window_size, k * cfg.max_messages, sq_rate)
            rotations = (b - drained) * k / per_rotation
            # A rotation of this phase: the token's hops plus serializing what it carries.
            total_ms += rotations * (hops_ms + per_rotation * packet_ms)
            drained = b
        return total_ms

    def _was_started(self, nodeid: int) -> bool:
        return any(e["node"] == nodeid for e in self.trace)

    def _probe(self, deadline: float) -> None:
        """Every live member multicasts once; all must deliver all of them."""
        live = [n for n, node in self.nodes.items() if node.proc is not None]
        probes = []
        for nodeid in live:
            node = self.nodes[nodeid]
            slots = tuple(s.group for s in node.slots if s.configured)
            msgid = self.submit(nodeid, 64, Guarantee.SAFE, GROUPS + slots)
            if msgid is None:
                self.violations.append(f"liveness: probe refused at node {nodeid}")
                continue
            self.delivered_probe[msgid] = set()
            probes.append(msgid)
        want = set(live)

        def done() -> bool:
            return all(self.delivered_probe[m] >= want for m in probes)

        if not self.run_until(max(deadline, self.now + 5000.0), done):
            missing = {m: sorted(want - self.delivered_probe[m]) for m in probes}
            self.violations.append(f"liveness: probes not delivered everywhere: {missing}")

    def describe_states(self) -> str:
        parts = []
        for nodeid, node in self.nodes.items():
            p = node.proc
            if p is None:
                parts.append(f"{nodeid}:down")
            else:
                parts.append(
                    f"{nodeid}:{p.state.value} ring={p.ring_id} members={list(p.memb_list)}"
                    f" delivered={p.ring.my_high_delivered}/{p.ring.my_high_seq_received}"
                    f" queued={p.packer.queued_messages()}"
                )
        return "; ".join(parts)

    def final_stats(self) -> Counter[str]:
        total: Counter[str] = Counter(self.stats)
        for node in self.nodes.values():
            if node.proc is not None:
                total.update(node.proc.stats)
                total.update({f"drop: {k}": v for k, v in node.proc.drops.items()})
            if node.service is not None:
                total.update(node.service.counters)
        total["sends traced"] = sum(1 for e in self.trace if e["ev"] == "send")
        total["handle trace events"] = sum(map(len, self.handle_traces))
        total["rings installed"] = len(
            {e["ring"] for e in self.trace if e["ev"] == "confchg" and e["kind"] == "regular"}
        )
        total["sort queue peak"] = max(n.sq_peak for n in self.nodes.values())
        total["token fcc peak"] = self.fcc_peak
        total["drain estimate ms"] = round(self.drain_ms)
        return total
