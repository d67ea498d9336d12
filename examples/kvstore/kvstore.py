"""kvstore: a replicated key-value store that stays identical across partitions and merges.

The idea (README.md in this directory tells the whole story): SET and DEL are multicast and
applied in the agreed order, so the replicas of one configuration stay identical. When the
ring changes, replicas that lived in different configurations (two sides of a partition, or a
restarted node) may hold different maps, so at every regular configuration each replica
multicasts its whole state (STATE), and every replica merges every STATE it delivers with a
deterministic rule. Once the STATE of every member of the configuration has been delivered,
every replica has merged the same states and applied the same operations, so they are
identical again: ``stable`` says so.

The merge rule is per-key last-writer-wins by a stamp ``(lamport, nodeid, pid)``:

* every operation carries a Lamport clock from its sender (one more than the largest clock the
  sender has seen), and the executive's stamp of the sender (node id, pid) breaks ties;
* DEL writes a tombstone (value None) with a stamp, so a delete on one side of a partition
  beats an older write on the other side instead of being undone by the merge;
* applying an operation and merging a state are the same thing: keep, per key, the entry
  with the larger stamp. That is commutative, associative and idempotent, so operations need
  not be buffered during the exchange: whatever order a replica sees states and operations
  in, once it has seen the same ones as the others it holds the same map.

Within one configuration the stamp order is a total order compatible with causality (a writer
that saw a write stamps a larger one), and the ring delivers the same operations to every
replica, so "last writer" is the same everywhere.

A replica that starts on a node already in the ring (its first event is the current
configuration, but the others see no change) multicasts HELLO: the HELLO's place in the stream
starts an exchange exactly like a configuration change does.

Assumptions, on purpose: one replica per node (``stable`` counts the STATE of every member
*node*; a node without a replica keeps ``stable`` false, although operations still apply);
a STATE is one message, so the whole map must fit in the executive's message size limit;
tombstones are never collected.

Command line (``--socket PATH`` or $EVS_SOCKET): a replica that reads commands on stdin and
prints every change::

    python examples/kvstore/kvstore.py --socket /tmp/evs-cluster/node1/evs.sock
    set colour blue
    del colour
    get colour
    dump
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import evs

__all__ = ["Entry", "KvState", "KvStore"]


class Entry(NamedTuple):
    """A key's value (None: deleted) and the stamp of the write that set it."""

    value: str | None
    lamport: int
    nodeid: int
    pid: int

    def order(self) -> tuple[int, int, int, int, str]:
        """The merge order: the stamp, then the value (only ties a reused node+pid+clock)."""
        return (self.lamport, self.nodeid, self.pid, self.value is not None, self.value or "")


class KvState:
    """The replicated state: a last-writer-wins map with tombstones, and a Lamport clock.

    Pure and deterministic. ``put`` is the only mutation; an operation is a ``put`` of one
    entry and a merge is a ``put`` of every entry of another state.
    """

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.clock = 0

    def put(self, key: str, e: Entry) -> bool:
        """Keep ``e`` if it is newer than what ``key`` holds; True if the value changed."""
        self.clock = max(self.clock, e.lamport)
        old = self.entries.get(key)
        if old is not None and old.order() >= e.order():
            return False
        self.entries[key] = e
        return old is None or old.value != e.value

    def items(self) -> dict[str, str]:
        return {k: e.value for k, e in sorted(self.entries.items()) if e.value is not None}

    def to_json(self) -> list[list[Any]]:
        return [[k, *e] for k, e in sorted(self.entries.items())]


class KvStore:
    """A replica over one ``evs.Client`` handle (it takes the handle over).

    A background thread applies the handle's events; ``set``/``delete`` multicast an
    operation and wait until it is applied here (read your writes). ``on_change(key, value)``
    is called from that thread when a key's value changes (None: deleted); it must not call
    ``set``/``delete`` (they wait for that very thread).

    A write is stamped with the clock this replica knows, so write once ``stable`` (the
    replica has merged the others' states): a write made before may lose to older writes
    that carry larger clocks.
    """

    def __init__(
        self,
        client: evs.Client,
        *,
        group: str = "kv",
        on_change: Callable[[str, str | None], object] | None = None,
    ) -> None:
        self.client = client
        self.group = group
        self.on_change = on_change
        self.nodeid = client.nodeid
        self.pid = os.getpid()
        self._id = f"{self.nodeid}.{self.pid}.{secrets.token_hex(4)}"
        self._state = KvState()
        self._cond = threading.Condition()
        self._members: tuple[int, ...] = ()
        #: The exchange in progress or last finished: its name, whose STATE it needs, and
        #: whose STATE was delivered.
        self._epoch = ""
        self._expected: frozenset[int] = frozenset()
        self._got: set[int] = set()
        self._transitional = False
        self._joined = False
        self._sent = 0  # own operations multicast (numbered), and those delivered back
        self._applied: set[int] = set()
        self._error: evs.EvsError | None = None
        client.join([group])
        # Ask for an exchange: the others may be in the ring already, with no change to see.
        self._send({"t": "hello", "id": self._id})
        self._thread = threading.Thread(target=self._run, name=f"kv-{self._id}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public API

    def get(self, key: str) -> str | None:
        with self._cond:
            e = self._state.entries.get(key)
            return None if e is None else e.value

    def entry(self, key: str) -> Entry | None:
        """The entry with its stamp (a tombstone for a deleted key)."""
        with self._cond:
            return self._state.entries.get(key)

    def items(self) -> dict[str, str]:
        with self._cond:
            return self._state.items()

    @property
    def clock(self) -> int:
        with self._cond:
            return self._state.clock

    @property
    def members(self) -> tuple[int, ...]:
        with self._cond:
            return self._members

    @property
    def stable(self) -> bool:
        """True when the exchange of the current configuration is complete: every member's
        STATE was merged, so every replica of this configuration holds the same map (up to
        the operations still in flight, which apply everywhere in the same order)."""
        with self._cond:
            return self._stable()

    def wait(self, pred: Callable[[KvStore], bool], timeout: float) -> bool:
        """Wait until ``pred(self)`` holds after some event (or now); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred(self):
                if self._error is not None:
                    raise self._error
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def set(self, key: str, value: str, timeout: float = 10.0) -> None:
        self._write(key, value, timeout)

    def delete(self, key: str, timeout: float = 10.0) -> None:
        self._write(key, None, timeout)

    def close(self) -> None:
        self.client.close()
        self._thread.join(5)

    # ------------------------------------------------------------------ internals

    def _stable(self) -> bool:
        return not self._transitional and bool(self._expected) and self._expected <= self._got

    def _write(self, key: str, value: str | None, timeout: float) -> None:
        with self._cond:
            # One more than anything seen, and than our own previous writes (not yet back).
            self._state.clock += 1
            lamport = self._state.clock
            self._sent += 1
            mine = self._sent
        op = {"t": "op", "k": key, "v": value, "l": lamport, "s": self._id, "n": mine}
        self._send(op, timeout)
        if not self.wait(lambda s: mine in s._applied, timeout):
            raise TimeoutError(f"kvstore: own write of {key!r} not delivered within {timeout} s")

    def _send(self, msg: dict[str, Any], timeout: float = 10.0) -> None:
        self.client.mcast_joined(json.dumps(msg).encode(), timeout=timeout)

    def _run(self) -> None:
        try:
            for ev in self.client.events():
                changes: list[tuple[str, str | None]] = []
                with self._cond:
                    out = self._on_event(ev, changes)
                    self._cond.notify_all()
                if out is not None:
                    self._send(out)
                if self.on_change is not None:
                    for key, value in changes:
                        self.on_change(key, value)
        except evs.EvsError as exc:
            with self._cond:
                self._error = exc
                self._cond.notify_all()

    def _start_exchange(self, epoch: str) -> dict[str, Any]:
        """Everyone starts this exchange at the same place; our STATE as of that place."""
        self._epoch, self._expected, self._got = epoch, frozenset(self._members), set()
        return {
            "t": "state",
            "epoch": epoch,
            "clock": self._state.clock,
            "entries": self._state.to_json(),
        }

    def _on_event(
        self, ev: evs.Event, changes: list[tuple[str, str | None]]
    ) -> dict[str, Any] | None:
        """Apply one event (lock held); returns a message to multicast, if any."""
        if isinstance(ev, evs.ConfigChange):
            self._members = ev.members
            self._transitional = ev.transitional
            if ev.transitional:
                return None  # the regular configuration right after starts the exchange
            if not self._joined:
                # Our first event: the configuration current when we joined. The others
                # exchanged for it long ago; our HELLO (sent already) starts our exchange.
                self._joined = True
                return None
            return self._start_exchange(f"ring {ev.ring_id}")
        try:
            msg = json.loads(ev.data)
            kind = msg["t"]
            if kind == "hello":
                return self._start_exchange(f"hello {msg['id']}")
            if kind == "op":
                key, value = str(msg["k"]), msg["v"]
                e = Entry(None if value is None else str(value), int(msg["l"]), ev.nodeid, ev.pid)
                if msg.get("s") == self._id:
                    self._applied.add(int(msg["n"]))
                if self._state.put(key, e):
                    changes.append((key, e.value))
            elif kind == "state":
                for k, v, lamport, n, p in msg["entries"]:
                    e = Entry(None if v is None else str(v), int(lamport), int(n), int(p))
                    if self._state.put(str(k), e):
                        changes.append((str(k), e.value))
                self._state.clock = max(self._state.clock, int(msg["clock"]))
                if msg["epoch"] == self._epoch:
                    self._got.add(ev.nodeid)
        except (ValueError, KeyError, TypeError):
            pass  # a malformed message is ignored, identically everywhere
        return None


# ---------------------------------------------------------------------- command line


def _show(key: str, value: str | None) -> None:
    print(f"changed: {key} = {value!r}" if value is not None else f"deleted: {key}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="A replicated key-value store over evs.")
    p.add_argument("--socket", metavar="PATH", help="the executive's socket ($EVS_SOCKET)")
    p.add_argument("--group", default="kv", help="group of the replicas (default: kv)")
    p.add_argument("--quiet", action="store_true", help="do not print every change")
    args = p.parse_args(argv)
    try:
        store = KvStore(evs.Client(args.socket), group=args.group, on_change=None)
    except evs.EvsError as exc:
        print(f"kvstore: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        store.on_change = _show
    # Writes should follow the merge of the others' states (see KvStore): wait a little.
    ok = store.wait(lambda s: s.stable, 3.0)
    print("stable" if ok else "not stable yet (is a replica running on every node?)", flush=True)
    try:
        for line in sys.stdin:
            words = line.split(maxsplit=2)
            if not words:
                continue
            cmd = words[0]
            if cmd == "set" and len(words) == 3:
                store.set(words[1], words[2].rstrip("\n"))
            elif cmd == "del" and len(words) == 2:
                store.delete(words[1])
            elif cmd == "get" and len(words) == 2:
                print(f"{words[1]} = {store.get(words[1])!r}", flush=True)
            elif cmd == "dump":
                state = "stable" if store.stable else "exchanging"
                print(f"{state} members {list(store.members)}: {store.items()}", flush=True)
            elif cmd == "wait":
                ok = store.wait(lambda s: s.stable, float(words[1]) if len(words) > 1 else 10)
                print("stable" if ok else "not stable", flush=True)
            else:
                print("commands: set KEY VALUE | del KEY | get KEY | dump | wait [SECONDS]")
    except KeyboardInterrupt:
        pass
    except (evs.EvsError, TimeoutError) as exc:
        print(f"kvstore: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
