"""The processes of ``evs bench``: payloads, the stream verifier, a sender and a receiver.

Theory of operation: every client of a benchmark run is its own process (forked by
``evs bench``), with one ``evs.Client``, so the figures are those of an application using the
public library and no two clients share a GIL. A *sender* does not join the group: it
multicasts with ``mcast_groups`` and blocking back-pressure (``block=True``), so it receives
nothing and its node's receiver is the one that sees its messages come back. A *receiver*
joins the group, waits for the regular configuration with every node, and then reads events
with ``Client.events``.

What a payload holds and what a receiver checks about each message is in
``evs.cli._bench_verify`` (the per-message work, compiled in the compiled build as cpgbench's
is C). All processes run on one machine, so CLOCK_MONOTONIC is one clock and send-to-deliver
latency is the receiver's clock minus the stamp.

The coordinator talks to each process over a ``multiprocessing`` pipe (small tuples) and
reads live counts from a shared array for its progress line.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from evs.cli._bench_verify import Payloads, Reading, Sending, Verifier

__all__ = [
    "ClientSpec",
    "compare_orders",
    "percentile",
    "receiver_main",
    "sender_main",
]

#: A draining receiver that delivered nothing for this long (or, while its ring has not
#: changed, three times its longest pause between deliveries when that is longer: a slow but
#: working ring) stops waiting.
DRAIN_IDLE_S = 10.0


def compare_orders(results: Iterable[dict[str, Any]]) -> list[str]:
    """Violations across receivers: each must have the same count and order hash."""
    seen = {(r["total"], r["order_hash"]) for r in results}
    if len(seen) <= 1:
        return []
    return [
        "receivers disagree on the total order (total, hash): "
        + ", ".join(f"{t} {h:016x}" for t, h in sorted(seen))
    ]


def percentile(sorted_values: array[int] | list[int], p: float) -> int:
    """The ``p``-th percentile (nearest rank) of sorted values; 0 when there are none."""
    if not sorted_values:
        return 0
    i = round(p / 100.0 * (len(sorted_values) - 1))
    return int(sorted_values[i])


class _Conn(Protocol):
    """The end of a multiprocessing pipe a worker uses."""

    def send(self, obj: Any) -> None: ...
    def recv(self) -> Any: ...
    def poll(self, timeout: float | None = ...) -> bool: ...


def _profiled(profile_path: str | None) -> Any:
    """A started cProfile.Profile when profiling is asked for, else None."""
    if not profile_path:
        return None
    import cProfile  # noqa: PLC0415  (only in profiled runs)

    prof = cProfile.Profile()
    prof.enable()
    return prof


def _dump(prof: Any, profile_path: str | None) -> None:
    if prof is not None and profile_path:
        prof.disable()
        prof.dump_stats(profile_path)


@dataclass(frozen=True)
class ClientSpec:
    """What one client process of a run needs to know."""

    socket_path: str
    group: str
    size: int
    nodes: int
    slot: int = 0
    profile_path: str | None = None
    #: This sender's index among the sending clients of its node (the high bits of its id).
    stream: int = 0
    #: Messages per second this sender paces itself to; 0 sends as fast as it can.
    rate: float = 0.0
    #: Messages sent together inside ``Client.batch()``; 0 sends (writes) each on its own.
    batch: int = 0


def sender_main(conn: _Conn, spec: ClientSpec) -> None:
    """One sender: waits for ("go", t0, t_stop, count), sends, reports ("sent", ...), with
    why it stopped early when its send window stayed full (a stalled ring), else ""."""
    import evs  # noqa: PLC0415  (the worker imports the client only in its own process)

    socket_path, group, size, profile_path = (
        spec.socket_path,
        spec.group,
        spec.size,
        spec.profile_path,
    )

    try:
        client = evs.Client(socket_path)
    except evs.EvsError as exc:
        conn.send(("error", f"sender cannot connect: {exc}"))
        return
    with client:
        payloads = Payloads(size)
        conn.send(("ready", client.nodeid))
        msg = conn.recv()
        if msg[0] != "go":
            return
        _, t0, t_stop, count = msg
        time.sleep(max(0.0, t0 - time.monotonic()))
        me = client.nodeid | spec.stream << 16
        sending = Sending(
            client.mcast_groups,
            [group],
            payloads,
            sender=me,
            now=time.monotonic_ns,
            who=f"sender {me} on node {client.nodeid}",
        )
        stop_ns = int(t_stop * 1e9)
        limit = count if count else 1 << 62
        # Paced: message k is due at t0 + k / rate (no catching up in bursts after a stall).
        interval_ns = int(1e9 / spec.rate) if spec.rate else 0
        cpu0 = time.process_time()
        prof = _profiled(profile_path)
        try:
            # With --batch, N messages at a time are written together (Client.batch).
            sending.run(
                int(t0 * 1e9),
                stop_ns,
                limit=limit,
                interval_ns=interval_ns,
                per_batch=spec.batch,
                batch=client.batch,
            )
        except evs.EvsError as exc:
            _dump(prof, profile_path)
            conn.send(
                (
                    "error",
                    f"sender {me} on node {client.nodeid} failed after {sending.seq} "
                    f"messages: {exc}",
                )
            )
            return
        _dump(prof, profile_path)
        conn.send(
            (
                "sent",
                me,
                sending.seq,
                sending.busy_ns / 1e9,
                time.process_time() - cpu0,
                sending.stalled,
            )
        )


def receiver_main(conn: _Conn, spec: ClientSpec, counter: Any) -> None:
    """One receiver: joins, says ("ready", nodeid) once the full ring is its configuration,
    gets ("go", w0, w1), verifies and counts deliveries, then gets ("sent", {sender: n},
    drain_s), drains until it has everything, drain_s passed or nothing came for DRAIN_IDLE_S,
    answers ("result", {...})."""
    import evs  # noqa: PLC0415

    socket_path, group, size, nodes, slot, profile_path = (
        spec.socket_path,
        spec.group,
        spec.size,
        spec.nodes,
        spec.slot,
        spec.profile_path,
    )

    try:
        client = evs.Client(socket_path)
        client.join([group])
    except evs.EvsError as exc:
        conn.send(("error", f"receiver cannot connect or join: {exc}"))
        return
    with client:
        deadline = time.monotonic() + 60.0
        ready = False
        while not ready and time.monotonic() < deadline:
            for ev in client.events(timeout=0.5):
                if isinstance(ev, evs.ConfigChange) and not ev.transitional:
                    ready = len(ev.members) == nodes
                    if ready:
                        break
        if not ready:
            conn.send(("error", f"node {client.nodeid}: no ring of {nodes} nodes within 60 s"))
            return
        conn.send(("ready", client.nodeid))
        msg = conn.recv()
        if msg[0] != "go":
            return
        _, w0, w1 = msg
        w0_ns, w1_ns = int(w0 * 1e9), int(w1 * 1e9) if w1 else 1 << 62
        ver = Verifier(size)
        reading = Reading(ver, w0_ns, w1_ns, time.monotonic_ns)
        confchg = reading.other
        sent: dict[int, int] | None = None
        stop_at: float | None = None
        stopped = ""
        last_delivery, last_total, longest_pause = time.monotonic(), 0, 0.0

        def enough() -> bool:
            """Asked every 256 events: everything came, or the coordinator wrote."""
            return (sent is not None and not ver.missing(sent)) or conn.poll()

        cpu0 = time.process_time()
        prof = _profiled(profile_path)
        try:
            while True:
                reading.take(client.events(timeout=0.05), counter, slot, enough)
                mono = time.monotonic()
                if ver.total != last_total:
                    if last_total:
                        longest_pause = max(longest_pause, mono - last_delivery)
                    last_delivery, last_total = mono, ver.total
                if conn.poll():
                    msg = conn.recv()
                    if msg[0] == "sent":
                        sent = msg[1]
                        stop_at = mono + msg[2]
                        last_delivery = mono  # the idle limit counts from the end of sending
                    else:
                        break
                if sent is None:
                    continue
                missing = ver.missing(sent)
                if not missing:
                    break
                if stop_at is not None and mono > stop_at:
                    stopped = f"still missing {sum(missing.values())} messages at the drain's end"
                    break
                # A ring that broke is no slow ring: its pauses were the breaks.
                idle = DRAIN_IDLE_S if confchg else max(DRAIN_IDLE_S, 3 * longest_pause)
                if mono - last_delivery > idle:
                    stopped = (
                        f"nothing delivered for {idle:.0f} s while "
                        f"{sum(missing.values())} messages were missing"
                    )
                    break
        except evs.EvsError as exc:
            ver.violation(f"node {client.nodeid}: the connection failed: {exc}")
        cpu_s = time.process_time() - cpu0
        _dump(prof, profile_path)
        if sent is not None:
            ver.finish(sent)
        for text in confchg:
            ver.violation(f"node {client.nodeid}: configuration changed during the run: {text}")
        lat_sorted = array("q", sorted(reading.lat))
        conn.send(
            (
                "result",
                {
                    "nodeid": client.nodeid,
                    "window_msgs": reading.win_msgs,
                    "first_ns": reading.first_ns,
                    "last_ns": reading.last_ns,
                    "total": ver.total,
                    "order_hash": ver.order_hash,
                    "violation_count": ver.violation_count,
                    "violations": ver.violations,
                    "config_changes": len(confchg),
                    "first_config_change": confchg[0] if confchg else "",
                    "drain_stopped": stopped,
                    "lat_samples": len(lat_sorted),
                    "lat_p50_us": percentile(lat_sorted, 50) / 1000,
                    "lat_p99_us": percentile(lat_sorted, 99) / 1000,
                    "lat_max_us": (lat_sorted[-1] if lat_sorted else 0) / 1000,
                    "cpu_s": cpu_s,
                },
            )
        )
