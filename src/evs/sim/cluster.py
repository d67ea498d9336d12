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
from evs.sim.canaries import make_processor
from evs.sim.options import HUGE, LARGE, FaultAction, SimOptions
from evs.sim.rng import derive
from evs.totem.codec import cluster_id_for, decode, peek_type
from evs.totem.config import TotemConfig
from evs.totem.events import (
    BROADCAST,
    ConfigChange,
    CoreEvent,
    Deliver,
    GatherEntered,
    MembState,
    Notice,
    PersistRingSeq,
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
from evs.types import Guarantee

__all__ = ["ACCOUNTING", "Cluster", "SimNode", "SimResult"]

GROUPS = (b"sim",)
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
_MCAST = MessageType.MCAST
_TOKEN = MessageType.ORF_TOKEN


class SimNode:
    """One simulated host: its current processor (None while crashed) and durable state."""

    __slots__ = (
        "deferred",
        "full_at",
        "incarnation",
        "nodeid",
        "paused_until",
        "pending",
        "persisted_seq",
        "proc",
        "sent_counter",
        "sq_peak",
        "timer_at",
        "timer_gen",
        "want_restart",
    )

    def __init__(self, nodeid: int) -> None:
        self.nodeid = nodeid
        self.proc: Processor | None = None
        self.incarnation = 0
        self.persisted_seq = 0
        self.sent_counter = 0
        self.pending: dict[int, tuple[str, str, Guarantee]] = {}
        self.timer_gen = 0
        self.timer_at: float | None = None
        self.paused_until = 0.0
        self.deferred: list[bytes] = []
        self.want_restart = False
        #: Saturation: the queued bytes at the last TryAgain (refill once below them).
        self.full_at = 1 << 62
        #: Largest sort queue span seen (highest seq held minus the released mark).
        self.sq_peak = 0


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
        self.nodes = {n: SimNode(n) for n in range(1, options.nodes + 1)}
        self.all_ids = tuple(self.nodes)
        self.trace: list[dict[str, Any]] = []
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
        node.proc = make_processor(
            self.options.canary if nodeid == self.all_ids[-1] else "",
            self.config,
            nodeid,
            ring_seq=node.persisted_seq,
            static_members=static,
        )
        node.sent_counter = 0
        node.pending = {}
        node.deferred = []
        node.paused_until = 0.0
        node.full_at = 1 << 62
        node.proc.start(self.now)
        self._flush(node)

    def crash(self, nodeid: int) -> None:
        node = self.nodes[nodeid]
        if node.proc is None:
            return
        self.stats.update(node.proc.stats)  # keep the dead processor's counters in the totals
        node.proc = None
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
        proc = node.proc
        if proc is None or node.incarnation != incarnation or node.paused_until > self.now:
            return
        backlog, node.deferred = node.deferred, []
        for data in backlog:
            proc.receive(self.now, data)
        proc.handle_timer(self.now)
        self._flush(node)

    def _flush(self, node: SimNode) -> None:
        """After every input: check the processor's invariants, then take its outputs."""
        proc = node.proc
        assert proc is not None
        broken = self.invariants.check(proc)
        if broken and len(self.violations) < 20:
            self.violations.extend(f"invariant at {self.now:.1f} ms: {b}" for b in broken[:3])
        if proc.outbox:
            out, proc.outbox = proc.outbox, []
            for dest, data in out:
                self._send(node.nodeid, dest, data)
        if proc.events:
            events, proc.events = proc.events, []
            self._record(node, events)
        at = proc.next_deadline()
        if at != node.timer_at:
            node.timer_gen += 1
            node.timer_at = at
            if at is not None:
                self.at(max(at, self.now), self._on_timer, node, node.timer_gen)
        if self.saturating and not self._refilling:
            self._refill(node)

    def _on_timer(self, node: SimNode, gen: int) -> None:
        proc = node.proc
        if proc is None or gen != node.timer_gen or node.paused_until > self.now:
            return
        node.timer_at = None
        proc.handle_timer(self.now)
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
        proc = node.proc
        if proc is None:
            return
        if node.paused_until > self.now:
            if len(node.deferred) < 4096:  # a socket buffer: overflow is loss
                node.deferred.append(data)
                self.stats["datagrams held while paused"] += 1
            return
        proc.receive(self.now, data)
        ring = proc.ring
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
        """Submit one traced message at ``nodeid``; None if refused (TryAgain)."""
        node = self.nodes[nodeid]
        proc = node.proc
        if proc is None:
            return None
        msgid = f"{nodeid}:{node.incarnation}:{node.sent_counter}"
        data = payload_for(msgid, size)
        try:
            number = proc.submit(self.now, groups, data, guarantee)
        except TryAgain:
            self.stats["submit try again"] += 1
            if self.saturating:
                self.stats["saturation try again"] += 1
            return None
        node.sent_counter += 1
        node.pending[number] = (msgid, payload_digest(data), guarantee)
        self.stats["messages submitted"] += 1
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
            self.submit(nodeid, size, guarantee)
        self.at(self.now + rng.expovariate(opts.rate / 1000.0), self._load_tick, nodeid)

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

    def _record(self, node: SimNode, events: list[CoreEvent]) -> None:
        t = self.now
        nodeid = node.nodeid
        trace = self.trace
        for ev in events:
            if isinstance(ev, Deliver):
                data = ev.data
                cut = data.find(b"|")
                msgid = data[:cut].decode() if cut > 0 else "?"
                if not msgid.startswith(f"{ev.sender}:"):
                    self.violations.append(
                        f"sim: node {nodeid} delivered {msgid} attributed to sender {ev.sender}"
                    )
                trace.append(
                    deliver_event(
                        t,
                        nodeid,
                        msgid,
                        ev.sender,
                        ev.ring_id,
                        guarantee=ev.guarantee,
                        digest=payload_digest(data),
                    )
                )
                self.stats["deliveries"] += 1
                if ev.guarantee is Guarantee.SAFE and not ev.transitional:
                    self._check_safe_held(node, ev)
                probe = self.delivered_probe.get(msgid)
                if probe is not None:
                    probe.add(nodeid)
            elif isinstance(ev, Sent):
                pending = node.pending.pop(ev.number, None)
                if pending is None:
                    self.violations.append(f"sim: node {nodeid} sent unknown number {ev.number}")
                    continue
                msgid, digest, guarantee = pending
                trace.append(
                    send_event(
                        t, nodeid, msgid, guarantee=guarantee, ring=ev.ring_id, digest=digest
                    )
                )
            elif isinstance(ev, ConfigChange):
                trace.append(
                    confchg_event(
                        t,
                        nodeid,
                        transitional=ev.transitional,
                        ring=ev.ring_id,
                        members=ev.members,
                        left=ev.left,
                        joined=ev.joined,
                    )
                )
                if ev.transitional:
                    self.stats["transitional configurations"] += 1
                else:
                    self.stats["regular configurations"] += 1
            elif isinstance(ev, GatherEntered):
                trace.append(
                    gather_event(t, nodeid, reason=ev.reason.value, from_state=ev.from_state.value)
                )
            elif isinstance(ev, PersistRingSeq):
                node.persisted_seq = max(node.persisted_seq, ev.seq)
                for dest, data in ev.then_send:  # only now: the seq is durable
                    self._send(nodeid, dest, data)
            elif isinstance(ev, Notice):
                self.notices.append(f"{t:.1f} node {nodeid} {ev.kind}: {ev.detail}")

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
                or node.pending
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
        report = check_events(self.trace, quiet_end=converged_at is not None)
        checked = [str(v) for v in report.violations]
        self.violations.extend(checked)
        return SimResult(
            checker_violations=checked,
            options=opts,
            violations=self.violations,
            stats=self.final_stats(),
            sim_ms=self.now,
            real_s=time.perf_counter() - started,
            converged_ms=None if converged_at is None else converged_at - opts.duration_ms,
            trace_events=len(self.trace),
            liveness_bound_ms=bound,
        )

    def drain_bound_ms(self) -> float:
        """Expected time for the ring to carry every live processor's queued packets.

        A rotation carries at most ``window_size`` packets, each processor at most
        ``max_messages`` per visit (shared by backlog), and the sort queue lets the ring run at
        most ``(sort_queue_slots - window - max_messages) / lag`` packets a rotation (see
        below). While ``k`` processors still have a backlog, a rotation carries the least of
        ``window``, ``k x max_messages`` and that, about evenly; so the smallest backlog drains
        first, then the next with one processor fewer sending (a fluid model, summed phase by
        phase). A rotation takes one expected token hop (``delay_min + delay_mean``) per live
        processor, plus the time to serialize what it carries at ``bandwidth_mbps``. Recovery
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
        sq_rate = max(1.0, (cfg.sort_queue_slots - cfg.window_size - cfg.max_messages) / lag)
        rotations = 0.0
        drained = 0
        for i, b in enumerate(backlogs):
            k = len(backlogs) - i  # processors with a backlog during this phase
            per_rotation = min(cfg.window_size, k * cfg.max_messages, sq_rate)
            rotations += (b - drained) * k / per_rotation
            drained = b
        per_rotation = min(cfg.window_size, len(live) * cfg.max_messages)
        hop_ms = opts.delay_min_ms + opts.delay_mean_ms
        rotation_ms = len(live) * hop_ms
        if opts.bandwidth_mbps:
            rotation_ms += per_rotation * _PACKET_BYTES * 8 / (opts.bandwidth_mbps * 1000.0)
        return rotations * rotation_ms

    def _was_started(self, nodeid: int) -> bool:
        return any(e["node"] == nodeid for e in self.trace)

    def _probe(self, deadline: float) -> None:
        """Every live member multicasts once; all must deliver all of them."""
        live = [n for n, node in self.nodes.items() if node.proc is not None]
        probes = []
        for nodeid in live:
            msgid = self.submit(nodeid, 64, Guarantee.SAFE)
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
        total["sends traced"] = sum(1 for e in self.trace if e["ev"] == "send")
        total["rings installed"] = len(
            {e["ring"] for e in self.trace if e["ev"] == "confchg" and e["kind"] == "regular"}
        )
        total["sort queue peak"] = max(n.sq_peak for n in self.nodes.values())
        total["token fcc peak"] = self.fcc_peak
        total["drain estimate ms"] = round(self.drain_ms)
        return total
