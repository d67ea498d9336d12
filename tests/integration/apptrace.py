"""Application-level traces for tests against real executives (api.md section 4, per handle).

``TracedHandle`` wraps one ``evs.Client``: every message it sends carries its id
(``<node>:<incarnation>:<counter>|``), and every send, delivery and configuration change it
sees is written as a trace event. A trace's ``node`` must be a member id of the
configurations it reports, so handles are judged in *slots*: handle slot ``k`` of every
executive joins group ``t<k>`` and is traced as its executive's node id; one checker run per
slot sees one handle per node, and several handles per executive are still exercised. When its
executive dies the handle records a ``crash``; ``reconnect`` starts a new incarnation with a
``restart``.
``Traffic`` drives a set of handles from one background thread (each Client is used only by
that thread): a bounded number of sends per round, non-blocking dispatch, reconnects after a
restart. The events of all handles are then judged by ``evs.check`` in handle-trace mode.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import evs
from evs.trace.writer import confchg_event, crash_event, deliver_event, restart_event, send_event


def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``cond`` (state owned by real processes) until it holds; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class TracedHandle:
    def __init__(self, nodeid: int, slot: int, path: str) -> None:
        self.hid = nodeid
        self.nodeid = nodeid
        self.slot = slot
        self.path = path
        self.group = f"t{slot}"
        self.incarnation = 0
        self.counter = 0
        self.events: list[dict[str, Any]] = []
        self.ring = "0.0"
        self.last_conf: evs.ConfigChange | None = None
        #: ring -> messages sent / delivered while that regular configuration was current.
        self.sent: dict[str, set[str]] = {}
        self.delivered: dict[str, set[str]] = {}
        #: Messages this incarnation sent that it has not delivered yet, whatever the ring:
        #: a message sent just before a configuration change is delivered in the next ring.
        self.pending: set[str] = set()
        self.client: evs.Client | None = None
        self.connect()

    def now(self) -> float:
        return time.monotonic() * 1000.0

    def connect(self) -> None:
        c = evs.Client(self.path, on_deliver=self._on_deliver, on_confchg=self._on_confchg)
        c.join([self.group])
        self.client = c

    def reconnect(self) -> bool:
        try:
            c = evs.Client(self.path, on_deliver=self._on_deliver, on_confchg=self._on_confchg)
        except evs.EvsError:
            return False
        self.incarnation += 1
        self.counter = 0
        self.last_conf = None
        self.pending.clear()  # the old incarnation's unsent messages died with its executive
        self.events.append(restart_event(self.now(), self.hid))
        c.join([self.group])
        self.client = c
        return True

    def crashed(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
            self.events.append(crash_event(self.now(), self.hid))

    def send(self, guarantee: evs.Guarantee = evs.Guarantee.AGREED) -> bool:
        assert self.client is not None
        msg = f"{self.hid}:{self.incarnation}:{self.counter}"
        try:
            self.client.mcast_joined(
                (msg + "|").encode() + bytes(self.counter % 300), guarantee, block=False
            )
        except evs.TryAgain:
            return False
        self.counter += 1
        self.sent.setdefault(self.ring, set()).add(msg)
        self.pending.add(msg)
        self.events.append(send_event(self.now(), self.hid, msg, guarantee=guarantee))
        return True

    def pump(self) -> int:
        assert self.client is not None
        return self.client.dispatch(evs.DispatchFlags.ALL)

    def _on_deliver(self, d: evs.Delivery) -> None:
        msg = d.data.split(b"|", 1)[0].decode()
        sender = int(msg.split(":", 1)[0])
        assert sender == d.nodeid, f"{msg} delivered as from node {d.nodeid}"
        self.delivered.setdefault(self.ring, set()).add(msg)
        self.pending.discard(msg)
        self.events.append(
            deliver_event(self.now(), self.hid, msg, sender, self.ring, guarantee=d.guarantee)
        )

    def _on_confchg(self, c: evs.ConfigChange) -> None:
        if not c.transitional:
            self.ring = str(c.ring_id)
        self.last_conf = c
        self.events.append(
            confchg_event(
                self.now(),
                self.hid,
                transitional=c.transitional,
                ring=c.ring_id,
                members=c.members,
                left=c.left,
                joined=c.joined,
            )
        )


class Traffic:
    """Sends from every live handle every ``period`` seconds and dispatches, in one thread."""

    def __init__(self, handles: list[TracedHandle], period: float = 0.05) -> None:
        self.handles = handles
        self.period = period
        self.sending = True
        #: Node ids whose executive is dead or stopped (SIGSTOP): their handles are left alone.
        self.down: set[int] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def set_down(self, nodeid: int, down: bool) -> None:
        with self._lock:
            (self.down.add if down else self.down.discard)(nodeid)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                with self._lock:
                    down = set(self.down)
                for h in self.handles:
                    with self._lock:  # settled() and describe() read the handles' sets
                        self._step(h, down)
                self._stop.wait(self.period)
        except Exception as exc:  # reported by stop()
            self.errors.append(repr(exc))

    def _step(self, h: TracedHandle, down: set[int]) -> None:
        if h.nodeid in down:
            return  # killed or stopped: a request would wait for an answer that cannot come
        if h.client is None:
            h.reconnect()
            return
        try:
            if self.sending and h.last_conf is not None:
                h.send(evs.Guarantee.SAFE if h.counter % 5 == 0 else evs.Guarantee.AGREED)
            h.pump()
        except evs.NotConnected:
            h.crashed()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        assert not self._thread.is_alive(), "traffic thread did not stop"
        assert not self.errors, self.errors

    def _needed(self, live: list[TracedHandle]) -> dict[tuple[int, str], set[str]]:
        """(slot, ring) -> every message a live handle of that slot sent or delivered in it.

        Per slot: the slots' groups differ, and the slots of one executive number their
        messages alike (``<node>:<incarnation>:<counter>``)."""
        need: dict[tuple[int, str], set[str]] = {}
        for h in live:
            need.setdefault((h.slot, h.ring), set()).update(
                h.delivered.get(h.ring, set()) | h.sent.get(h.ring, set())
            )
        return need

    def describe(self) -> str:
        """Where each handle is, and what it lacks of its ring's messages (for a timeout)."""
        with self._lock:
            return self._describe()

    def _describe(self) -> str:
        live = [h for h in self.handles if h.client is not None]
        need = self._needed(live)
        parts = []
        for h in self.handles:
            if h.client is None:
                parts.append(f"{h.nodeid}/{h.slot}: closed")
                continue
            miss = sorted(need[h.slot, h.ring] - h.delivered.get(h.ring, set()))
            miss += sorted(h.pending - set(miss))
            c = h.last_conf
            conf = "none" if c is None else f"{'T' if c.transitional else 'R'}{list(c.members)}"
            elsewhere = {m: [r for r, ms in h.delivered.items() if m in ms] for m in miss[:5]}
            parts.append(
                f"{h.nodeid}/{h.slot}: ring {h.ring} {conf} missing {miss[:5]} "
                f"(delivered in other rings: {elsewhere}; last events {h.events[-2:]})"
            )
        return "; ".join(parts)

    def settled(self, members: tuple[int, ...]) -> bool:
        """Every live handle is in one regular configuration of ``members``, has delivered
        every message a live handle of its slot sent or delivered in it, and has delivered
        every message it sent itself, in any ring (stop sending first)."""
        with self._lock:
            return self._settled(members)

    def _settled(self, members: tuple[int, ...]) -> bool:
        live = [h for h in self.handles if h.client is not None]
        if not live:
            return False
        for h in live:
            c = h.last_conf
            if c is None or c.transitional or c.members != members:
                return False
        if len({h.ring for h in live}) != 1:
            return False
        if any(h.pending for h in live):
            return False
        need = self._needed(live)
        return all(need[h.slot, h.ring] <= h.delivered.get(h.ring, set()) for h in live)
