"""lock_service: a replicated lock service built on one agreed stream of messages.

The idea: every replica runs the same deterministic state machine (``LockTable``) over the
same sequence of events. evs gives every member of a group the same messages in the same
total order, with configuration changes at the same place, so every replica computes the same
lock table at every point of the stream, and "who holds lock X" has one answer everywhere,
with no voting round and no leader:

* LOCK(name, request): appended to the lock's FIFO queue; the head of the queue holds the lock.
  Two nodes asking "at the same moment" are not a race: the ring ordered their requests, and
  every replica grants the one delivered first.
* UNLOCK(name, request): removes the request (a release if it held the lock, a cancel if it
  waited); the next in the queue becomes the holder.
* A configuration change that removes a node removes every request of that node, held or
  queued. A holder whose machine dies therefore frees its lock at the configuration change,
  at the same point of the stream at every survivor. (Extended virtual synchrony says every
  survivor delivered the same messages before that change, so they agree on what the dead
  node held.)

Requests are identified by the executive's stamp on the message (sender node id and pid) plus
an owner token of the ``LockService`` object and a request number: a process cannot release
another process's lock, because it cannot forge the stamp.

Joining late (state transfer): a new replica does not know the requests delivered before it
joined. It multicasts HELLO; every synced replica answers with a SNAPSHOT of its table *as of
the HELLO's place in the stream*; the newcomer keeps the events delivered after its HELLO,
installs the first snapshot answering it, and replays them. If no snapshot comes within
``sync_timeout`` it assumes it is the first replica: it multicasts BOOT, and at the BOOT's
place every replica that is still unsynced starts from an empty table (together, so they
agree).

Limits, on purpose (this is an example, not a product):

* Crash failures only. A network partition looks like a crash to each side: each side frees
  the other side's locks, so two holders can exist until the merge, and the tables are not
  merged afterwards. A real lock service grants only in a primary component (e.g. a majority
  of a known node list); see ``examples/kvstore`` for merging state after a partition.
* The unit of failure is the node: configurations list executives, not processes, so a
  holder *process* that dies while its executive runs keeps its lock (a real service would
  add leases, or a per-process membership like corosync's CPG).
* The bootstrap assumes that a synced replica, if one exists, answers a HELLO within
  ``sync_timeout``; one that is slower than that is not detected.

Usage as a library::

    locks = LockService(evs.Client(socket_path))
    if locks.acquire("printer", timeout=5):
        ...
        locks.release("printer")

and from the command line (``--socket PATH`` or $EVS_SOCKET)::

    python examples/lock_service.py hold printer --seconds 10   # take it, hold, release
    python examples/lock_service.py watch                       # print every change of holder
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import evs

__all__ = ["LockService", "LockTable", "Request"]


class Request(NamedTuple):
    """One LOCK request: who asked (stamped by the executive) and which request it was."""

    nodeid: int
    pid: int
    owner: str
    req: int


#: A change of holder: the lock's name and its new holder (None: free).
Change = tuple[str, Request | None]


class LockTable:
    """The replicated state machine: per lock name, a FIFO queue whose head holds the lock.

    Pure and deterministic (no clock, no randomness, no I/O): applied to the same events in
    the same order, every copy ends in the same state. Each mutation returns the changes of
    holder it caused, so callers can wake waiters or print them.
    """

    def __init__(self) -> None:
        self.queues: dict[str, list[Request]] = {}

    def holder(self, name: str) -> Request | None:
        q = self.queues.get(name)
        return q[0] if q else None

    def lock(self, name: str, r: Request) -> list[Change]:
        q = self.queues.setdefault(name, [])
        if any(x.owner == r.owner for x in q):
            return []  # one request per owner and lock: a repeat is ignored, identically
        q.append(r)
        return [(name, r)] if len(q) == 1 else []

    def unlock(self, name: str, nodeid: int, pid: int, owner: str, req: int) -> list[Change]:
        """Remove the request if the sender is the one who made it (else: ignored)."""
        q = self.queues.get(name, [])
        for i, x in enumerate(q):
            if (x.nodeid, x.pid, x.owner, x.req) == (nodeid, pid, owner, req):
                del q[i]
                return self._after_removal(name, was_head=i == 0)
        return []

    def drop_nodes(self, alive: Callable[[int], bool]) -> list[Change]:
        """Remove every request of a node that is not ``alive`` (it left the configuration)."""
        changes: list[Change] = []
        for name in sorted(self.queues):  # sorted: the order of the changes is agreed too
            q = self.queues[name]
            head = q[0]
            q[:] = [x for x in q if alive(x.nodeid)]
            changes += self._after_removal(name, was_head=not q or q[0] != head)
        return changes

    def _after_removal(self, name: str, *, was_head: bool) -> list[Change]:
        q = self.queues[name]
        if not q:
            del self.queues[name]
        if not was_head:
            return []
        return [(name, q[0] if q else None)]

    def to_json(self) -> dict[str, list[list[Any]]]:
        return {name: [list(r) for r in q] for name, q in self.queues.items()}

    @classmethod
    def from_json(cls, data: dict[str, list[list[Any]]]) -> LockTable:
        t = cls()
        t.queues = {
            str(name): [Request(int(a), int(b), str(c), int(d)) for a, b, c, d in q]
            for name, q in data.items()
        }
        return t


class LockService:
    """A lock service replica over one ``evs.Client`` handle (it takes the handle over).

    A background thread reads the handle's events and applies them to the ``LockTable``;
    ``acquire`` multicasts a LOCK and waits until the table (the agreed one) names this
    request as the holder. ``on_change(name, holder)`` is called from that thread for each
    change of holder; it must not call ``acquire``/``release`` (they wait for that thread).
    """

    def __init__(
        self,
        client: evs.Client,
        *,
        group: str = "locks",
        sync_timeout: float = 2.0,
        on_change: Callable[[str, Request | None], object] | None = None,
    ) -> None:
        self.client = client
        self.group = group
        self.on_change = on_change
        #: Unique per object: tells this object's requests from another's in the same process.
        self.owner = f"{client.nodeid}.{os.getpid()}.{secrets.token_hex(4)}"
        self._table = LockTable()
        self._cond = threading.Condition()
        self._synced = False
        self._hello_seen = False
        self._buffer: list[evs.Event] = []
        #: Members of the configuration at the point applied so far (what decides whether a
        #: request's node is alive), and at the newest event read (used when booting).
        self._members: frozenset[int] = frozenset()
        self._latest_members: frozenset[int] = frozenset()
        self._next_req = 0
        self._error: evs.EvsError | None = None
        client.join([group])
        self._send({"t": "hello", "id": self.owner})
        self._boot_timer = threading.Timer(sync_timeout, self._boot)
        self._boot_timer.daemon = True
        self._boot_timer.start()
        self._thread = threading.Thread(target=self._run, name=f"locks-{self.owner}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public API

    @property
    def synced(self) -> bool:
        return self._synced

    def wait_synced(self, timeout: float | None = None) -> bool:
        with self._cond:
            return self._wait_for(lambda: self._synced, timeout)

    def holder(self, name: str) -> Request | None:
        """The holder of ``name`` in this replica's table (the agreed one, once synced)."""
        with self._cond:
            return self._table.holder(name)

    def table(self) -> dict[str, list[Request]]:
        with self._cond:
            return {name: list(q) for name, q in self._table.queues.items()}

    def acquire(self, name: str, timeout: float | None = None) -> bool:
        """Take ``name``; False if it was not granted within ``timeout`` seconds.

        On a timeout the request is withdrawn with an UNLOCK, which also releases the lock
        if it was granted in the meantime: the stream decides, not the clock.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            if not self._wait_for(lambda: self._synced, timeout):
                return False
            if any(r.owner == self.owner for r in self._table.queues.get(name, [])):
                raise RuntimeError(f"lock {name!r}: this LockService already holds or awaits it")
            self._next_req += 1
            req = self._next_req
        self._send({"t": "lock", "name": name, "owner": self.owner, "req": req})

        def granted() -> bool:
            h = self._table.holder(name)
            return h is not None and (h.owner, h.req) == (self.owner, req)

        with self._cond:
            left = None if deadline is None else deadline - time.monotonic()
            if self._wait_for(granted, left):
                return True
        self._send({"t": "unlock", "name": name, "owner": self.owner, "req": req})
        return False

    def release(self, name: str, timeout: float = 10.0) -> None:
        """Release ``name`` and wait (up to ``timeout``) until the release is applied here."""
        with self._cond:
            h = self._table.holder(name)
            if h is None or h.owner != self.owner:
                raise RuntimeError(f"lock {name!r} is not held by this LockService")
        self._send({"t": "unlock", "name": name, "owner": self.owner, "req": h.req})
        with self._cond:
            self._wait_for(lambda: self._table.holder(name) != h, timeout)

    def close(self) -> None:
        """Close the handle. Release first: the others learn nothing from a closed handle
        (configurations list nodes, not processes), so what this object holds or awaits
        stays in every table until its node leaves the configuration."""
        self._boot_timer.cancel()
        self.client.close()
        self._thread.join(5)

    # ------------------------------------------------------------------ internals

    def _wait_for(self, pred: Callable[[], bool], timeout: float | None) -> bool:
        """Wait on the condition (lock held); a dead handle raises its error."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not pred():
            if self._error is not None:
                raise self._error
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            self._cond.wait(left)
        return True

    def _send(self, msg: dict[str, Any]) -> None:
        self.client.mcast_joined(json.dumps(msg).encode(), timeout=10)

    def _boot(self) -> None:
        with self._cond:
            if self._synced or self._error is not None or self.client.closed:
                return
        with contextlib.suppress(evs.EvsError):  # the event thread reports a broken handle
            self._send({"t": "boot"})

    def _run(self) -> None:
        try:
            for ev in self.client.events():
                with self._cond:
                    out, changes = self._on_event(ev)
                    self._cond.notify_all()
                for msg in out:
                    self._send(msg)
                if self.on_change is not None:
                    for name, h in changes:
                        self.on_change(name, h)
        except evs.EvsError as exc:
            with self._cond:
                self._error = exc
                self._cond.notify_all()

    def _on_event(self, ev: evs.Event) -> tuple[list[dict[str, Any]], list[Change]]:
        """Sync first (see the module docstring), then apply; returns messages to send."""
        if self._synced:
            return self._apply(ev)
        msg = _decode(ev) if isinstance(ev, evs.Delivery) else None
        kind = msg.get("t") if msg else None
        if kind == "boot":
            # Every unsynced replica starts from nothing here; what it buffered before came
            # from no synced replica (acquire waits for sync), so nothing is lost.
            self._synced, self._buffer = True, []
            self._members = self._latest_members
            self._boot_timer.cancel()
            return [], []
        if isinstance(ev, evs.ConfigChange):
            self._latest_members = frozenset(ev.members)
        if not self._hello_seen:
            if kind == "hello" and msg and msg.get("id") == self.owner:
                self._hello_seen = True  # a snapshot will describe the table at this point
            return [], []
        if kind == "snapshot" and msg and msg.get("for") == self.owner:
            self._table = LockTable.from_json(msg["locks"])
            self._members = frozenset(msg["members"])
            self._synced = True
            self._boot_timer.cancel()
            out: list[dict[str, Any]] = []
            changes: list[Change] = []
            for old in self._buffer:
                o, c = self._apply(old)
                out += o
                changes += c
            self._buffer = []
            return out, changes
        self._buffer.append(ev)
        return [], []

    def _apply(self, ev: evs.Event) -> tuple[list[dict[str, Any]], list[Change]]:
        if isinstance(ev, evs.ConfigChange):
            # Transitional: the nodes that left are gone, their requests go. Regular: the
            # same rule (nothing new is removed; members that joined had no requests here).
            self._members = frozenset(ev.members)
            return [], self._table.drop_nodes(lambda n: n in self._members)
        msg = _decode(ev)
        kind = msg.get("t") if msg else None
        if msg is None or ev.nodeid not in self._members:
            # A message of a node that already left (delivered in the transitional
            # configuration): its requests would never be released, so it is ignored.
            return [], []
        try:
            if kind == "lock":
                r = Request(ev.nodeid, ev.pid, str(msg["owner"]), int(msg["req"]))
                return [], self._table.lock(str(msg["name"]), r)
            if kind == "unlock":
                name, owner, req = str(msg["name"]), str(msg["owner"]), int(msg["req"])
                return [], self._table.unlock(name, ev.nodeid, ev.pid, owner, req)
        except (KeyError, TypeError, ValueError):
            return [], []  # a malformed message is ignored, identically everywhere
        if kind == "hello" and msg.get("id") != self.owner:
            snap = {"t": "snapshot", "for": msg.get("id"), "locks": self._table.to_json()}
            snap["members"] = sorted(self._members)
            return [snap], []
        return [], []


def _decode(ev: evs.Delivery) -> dict[str, Any] | None:
    try:
        msg = json.loads(ev.data)
    except ValueError:
        return None
    return msg if isinstance(msg, dict) else None


# ---------------------------------------------------------------------- command line


def _show(name: str, h: Request | None) -> None:
    who = "free" if h is None else f"held by node {h.nodeid} pid {h.pid} ({h.owner})"
    print(f"{name}: {who}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="A replicated lock service over evs.")
    p.add_argument("--socket", metavar="PATH", help="the executive's socket ($EVS_SOCKET)")
    p.add_argument("--group", default="locks", help="group of the replicas (default: locks)")
    sub = p.add_subparsers(dest="cmd", required=True)
    hold = sub.add_parser("hold", help="acquire a lock, hold it, release it")
    hold.add_argument("name")
    hold.add_argument("--timeout", type=float, default=None, help="give up after seconds")
    hold.add_argument("--seconds", type=float, default=0, help="hold time (0: until Enter)")
    sub.add_parser("watch", help="print every change of holder")
    args = p.parse_args(argv)

    try:
        client = evs.Client(args.socket)
        watch = args.cmd == "watch"
        locks = LockService(client, group=args.group, on_change=_show if watch else None)
        try:
            if watch:
                locks.wait_synced()
                print(f"synced; table: {locks.table()}", flush=True)
                threading.Event().wait()  # Ctrl-C ends it
            if not locks.acquire(args.name, args.timeout):
                print(f"{args.name}: not granted within {args.timeout} s", file=sys.stderr)
                return 1
            print(f"{args.name}: acquired by {locks.owner}", flush=True)
            if args.seconds:
                time.sleep(args.seconds)  # holding the lock is the point here
            else:
                input("press Enter to release ")
            locks.release(args.name)
            print(f"{args.name}: released", flush=True)
            return 0
        finally:
            locks.close()
    except KeyboardInterrupt:
        return 0
    except evs.EvsError as exc:
        print(f"lock_service: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
