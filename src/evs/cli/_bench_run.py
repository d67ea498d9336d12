"""The coordinator of ``evs bench`` (see ``evs.cli.bench`` for the method and its reasons).

Theory of operation: ``Bench`` owns the cluster (and the lab with ``--netns``), forks the
client processes of each run with the ``fork`` start method (the coordinator has no threads
and no open client, so forking is safe and costs milliseconds, where ``spawn`` would re-import
the library per process), steers them over pipes, and aggregates what they report. It never
holds a client across a fork: it only asks each executive for its counters before and after
a run's window (``executives`` in the report), and its own CPU use is otherwise a progress
line four times a second.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.context import ForkProcess
from pathlib import Path
from typing import Any

from evs.cli._bench_verify import SEND_GRACE_S, SEND_TIMEOUT_S
from evs.cli._bench_worker import (
    ClientSpec,
    compare_orders,
    receiver_main,
    sender_main,
)
from evs.cli._cluster import LocalCluster
from evs.cli._lab import LabError, NetLab
from evs.cli.bench import DRAIN_S, SECONDS_MAX, TAIL_S, _now_iso, machine, parse_rate

__all__ = ["Bench", "BenchError", "size_label", "table"]

#: Seconds for the receivers of a run to see the full ring.
READY_S = 90.0
#: Executive counters a run reports (``executives``) when they moved during it: why a run's
#: figures are what they are, e.g. a sender held for its node's lagging receiver.
EXEC_COUNTERS = (
    "send holds for local readers",
    "local readers no longer waited for",
    "ipc overflow disconnects",
)


class BenchError(Exception):
    """The benchmark could not run (cluster did not start, a client failed): exit 2."""


def size_label(size: int) -> str:
    if size % (1 << 20) == 0:
        return f"{size >> 20} MiB"
    if size % 1024 == 0:
        return f"{size >> 10} KiB"
    return f"{size} B"


class _Progress:
    """One line on stderr, rewritten in place (only on a terminal, and not with --quiet)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.width = 0

    def show(self, text: str) -> None:
        if not self.enabled:
            return
        pad = max(0, self.width - len(text))
        sys.stderr.write("\r" + text + " " * pad)
        sys.stderr.flush()
        self.width = len(text)

    def clear(self) -> None:
        if self.enabled and self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()
            self.width = 0


class Bench:
    """A cluster and the runs measured on it."""

    def __init__(self, args: argparse.Namespace, sizes: Sequence[int]) -> None:
        self.args = args
        self.sizes = list(sizes)
        self.ids = list(range(1, args.nodes + 1))
        self.ctx = multiprocessing.get_context("fork")
        self.tmp: Path | None = None
        self.lab: NetLab | None = None
        self.cluster: LocalCluster | None = None
        self.procs: list[ForkProcess] = []
        self.profile_dir = Path(args.profile).resolve() if args.profile else None
        self.progress = _Progress(not args.quiet and sys.stderr.isatty())

    # ---------------------------------------------------------------- cluster

    def start(self) -> None:
        a = self.args
        self.tmp = Path(tempfile.mkdtemp(prefix="evs-bench-"))
        if self.profile_dir is not None:
            self.profile_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.lab = NetLab(a.nodes) if a.netns else None
        except LabError as exc:
            raise BenchError(f"cannot build the network lab: {exc}") from None
        self.cluster = LocalCluster(
            self.tmp,
            nodes=a.nodes,
            port=a.port,
            token=a.token,
            mode=a.mode,
            netmtu=a.netmtu,
            lab=self.lab,
            profile_dir=self.profile_dir,
            cipher=a.cipher,
        )
        if self.lab is not None:
            # The network's conditions hold for the cluster's whole life, its start included.
            rate = parse_rate(a.shape)[0] if a.shape is not None else None
            try:
                for n in self.ids:
                    if a.loss:
                        self.lab.loss(n, a.loss, port=self.cluster.port)
                    if rate is not None:
                        self.lab.shape(n, rate)
            except LabError as exc:
                raise BenchError(f"cannot set the network's loss or rate: {exc}") from None
        self.progress.show(f"starting {a.nodes} executives ...")
        try:
            for n in self.ids:
                self.cluster.start(n)
        except (RuntimeError, TimeoutError) as exc:
            raise BenchError(f"the cluster did not start: {exc}") from None

    def close(self) -> None:
        """Stop every process this benchmark started; remove its files unless --keep."""
        self.progress.clear()
        for p in self.procs:
            if p.is_alive():
                p.kill()
            p.join(5)
        self.procs.clear()
        if self.cluster is not None:
            self.cluster.stop_all()
            self.cluster = None
        if self.lab is not None:
            self.lab.close()
            self.lab = None
        if self.profile_dir is not None:
            _summarize_profiles(self.profile_dir)
        if self.tmp is not None:
            if self.args.keep:
                print(f"evs bench: files kept in {self.tmp}", file=sys.stderr)
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    # ---------------------------------------------------------------- runs

    def run(self) -> dict[str, Any]:
        a = self.args
        date = _now_iso()
        mach = machine()
        self.start()
        modes = ["one", "all"] if a.senders == "both" else [a.senders]
        plan = [(m, s) for _ in range(a.reps) for m in modes for s in self.sizes]
        runs: list[dict[str, Any]] = []
        for i, (mode, size) in enumerate(plan):
            senders = [1] if mode == "one" else list(self.ids)
            label = f"{size_label(size)}, {'one sender' if mode == 'one' else 'all senders'}"
            runs.append(self.one(i, len(plan), label=label, size=size, mode=mode, senders=senders))
        points = _points(runs)
        return {
            "tool": "evs bench",
            "date": date,
            "machine": mach,
            "parameters": {
                "nodes": a.nodes,
                "network": "netns (veth + bridge)" if a.netns else "loopback",
                # Random drop of the cluster's datagrams at every receiving node, per mille.
                "loss_permille": a.loss,
                # The rate cap of every node's link, each way (tc tbf), or None.
                "shape": parse_rate(a.shape)[0] if a.shape is not None else None,
                "shape_bits_per_s": parse_rate(a.shape)[1] if a.shape is not None else None,
                "mode": a.mode,
                "netmtu": a.netmtu or 1500,
                "token_ms": a.token,
                "cipher": a.cipher,
                "sizes": self.sizes,
                "senders": a.senders,
                "seconds": None if a.count else a.seconds,
                "warmup_s": None if a.count else a.warmup,
                "count": a.count or None,
                "reps": a.reps,
                "clients": "one process per client; senders not joined (mcast_groups, "
                "blocking), one joined receiver per node",
                "sender_clients": a.sender_clients,
                # Messages per second each sender paced itself to, or None (unpaced).
                "rate": a.rate or None,
                # Messages each sender wrote together (Client.batch), or None (one by one).
                "batch": a.batch or None,
                "profiled": self.profile_dir is not None,
            },
            "points": points,
            "runs": runs,
            "load_after": list(os.getloadavg()),
            "verified": all(r["verified"] for r in runs),
        }

    def _fork(self, target: Any, *args: Any) -> tuple[ForkProcess, Connection]:
        parent, child = self.ctx.Pipe()
        p = self.ctx.Process(target=target, args=(child, *args), daemon=True)
        p.start()
        child.close()
        self.procs.append(p)
        return p, parent

    def _profile_path(self, index: int, role: str, n: int) -> str | None:
        if self.profile_dir is None:
            return None
        return str(self.profile_dir / f"run{index:02d}-{role}{n}.prof")

    def one(
        self, index: int, total: int, *, label: str, size: int, mode: str, senders: list[int]
    ) -> dict[str, Any]:
        a = self.args
        cluster = self.cluster
        assert cluster is not None
        show = self.progress.show
        head = f"[{index + 1}/{total}] {label}"
        load_before = list(os.getloadavg())
        group = f"bench-{os.getpid()}-{index}"
        counter = self.ctx.RawArray("q", len(self.ids))
        recv: dict[int, Connection] = {}
        for k, n in enumerate(self.ids):
            path = self._profile_path(index, "recv", n)
            spec = ClientSpec(cluster.socket(n), group, size, len(self.ids), k, path)
            _, conn = self._fork(receiver_main, spec, counter)
            recv[n] = conn
        show(f"{head}: waiting for {len(self.ids)} receivers to see the ring ...")
        try:
            _expect(recv, "ready", READY_S, "receiver")
        except BenchError as exc:
            if a.loss:
                raise BenchError(
                    f"{exc} (with {a.loss / 10:g} % of the datagrams dropped, a ring of every "
                    "node may take long to form, or not form at all)"
                ) from None
            raise
        send: dict[int, Connection] = {}
        for n in senders:
            for k in range(a.sender_clients):
                key = n | k << 16
                path = self._profile_path(index, "send", key)
                spec = ClientSpec(
                    cluster.socket(n), group, size, len(self.ids), 0, path, k, a.rate, a.batch
                )
                _, conn = self._fork(sender_main, spec)
                send[key] = conn
        _expect(send, "ready", READY_S, "sender")
        exec0 = self._exec_counters()
        daemon_cpu0 = _cpu_seconds([cluster.pid(n) for n in self.ids])
        net0 = self._net_counters()
        t0 = time.monotonic() + 0.3
        if a.count:
            w0, w1 = t0, 0.0
            t_stop = t0 + SECONDS_MAX
        else:
            w0 = t0 + a.warmup
            w1 = w0 + a.seconds
            t_stop = w1 + TAIL_S
        for conn in recv.values():
            conn.send(("go", w0, w1))
        for conn in send.values():
            conn.send(("go", t0, t_stop, a.count))
        sent: dict[int, int] = {}
        busy: dict[int, float] = {}
        stalls: list[str] = []
        client_cpu = 0.0
        pending = dict(send)
        last_total, last_t = 0, time.monotonic()
        rate = 0.0
        # A sender stops by t_stop, or a blocked send gives up within its timeout: past this,
        # one is stuck (a defect), and the run ends rather than wait for it.
        send_deadline = t_stop + SEND_TIMEOUT_S + SEND_GRACE_S + 15.0
        while pending:
            if time.monotonic() > send_deadline:
                raise BenchError(
                    f"{label}: senders {sorted(k & 0xFFFF for k in pending)} did not report "
                    f"within {send_deadline - t0:.0f} s of the start"
                )
            ready = multiprocessing.connection.wait(list(pending.values()), timeout=0.25)
            for n, conn in list(pending.items()):
                if conn in ready:
                    msg = _recv(conn, f"sender on node {n & 0xFFFF}")
                    if msg[0] == "error":
                        raise BenchError(msg[1])
                    _, nodeid, count, busy_s, cpu_s, stalled = msg
                    client_cpu += cpu_s
                    sent[nodeid] = count
                    busy[nodeid] = busy_s
                    if stalled:
                        stalls.append(stalled)
                    del pending[n]
            t = time.monotonic()
            total_rx = min(counter) if len(counter) else 0
            if t - last_t >= 0.5:
                rate = (total_rx - last_total) / (t - last_t)
                last_total, last_t = total_rx, t
            phase = "warm-up" if t < w0 else ("window" if t < (w1 or t + 1) else "tail")
            elapsed = max(0.0, t - t0)
            span = (t_stop - t0) if not a.count else 0.0
            when = f"{elapsed:5.1f}/{span:.1f} s" if span else f"{elapsed:5.1f} s"
            show(f"{head}: {phase} {when}, {rate:,.0f} msgs/s per receiver, {total_rx:,} each")
        t_sent = time.monotonic()
        for conn in recv.values():
            # A receiver whose connection failed (e.g. its executive cut it off for not
            # reading) has already sent its result, with the reason, and gone: read that.
            with contextlib.suppress(OSError):
                conn.send(("sent", sent, DRAIN_S))
        results: dict[int, dict[str, Any]] = {}
        pending = dict(recv)
        deadline = time.monotonic() + DRAIN_S + 15.0
        want = sum(sent.values())
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(
                    f"{label}: receivers on nodes {sorted(pending)} did not report within "
                    f"{DRAIN_S + 15:.0f} s"
                )
            ready = multiprocessing.connection.wait(list(pending.values()), timeout=min(left, 0.25))
            for n, conn in list(pending.items()):
                if conn in ready:
                    msg = _recv(conn, f"receiver on node {n}")
                    if msg[0] == "error":
                        raise BenchError(msg[1])
                    results[n] = msg[1]
                    del pending[n]
            show(f"{head}: draining, {min(counter):,}/{want:,} delivered at the slowest receiver")
        drain_s = time.monotonic() - t_sent
        daemon_cpu = _cpu_seconds([cluster.pid(n) for n in self.ids]) - daemon_cpu0
        net1 = self._net_counters()
        client_cpu += sum(r["cpu_s"] for r in results.values())
        for p in self.procs:
            p.join(10)
        self.procs.clear()
        self.progress.clear()
        run = _summarize_run(
            label=label,
            size=size,
            mode=mode,
            senders=senders,
            results=results,
            sent=sent,
            busy=busy,
            a=a,
            t0=t0,
            t_stop=t_stop,
            drain_s=drain_s,
            load_before=load_before,
            cpu=(daemon_cpu, client_cpu),
        )
        if net0 is not None and net1 is not None:
            run["network"] = {k: net1[k] - net0[k] for k in net0}
        exec1 = self._exec_counters()
        moved = {
            str(n): {k: v - exec0[n][k] for k, v in c.items() if v != exec0[n][k]}
            for n, c in exec1.items()
            if n in exec0
        }
        run["executives"] = {n: c for n, c in moved.items() if c}
        for n, c in run["executives"].items():
            holds = c.get("send holds for local readers", 0)
            if holds:
                run["notes"].append(
                    f"node {n} held its senders {holds} times for a lagging local receiver"
                )
        run["notes"] = stalls + run["notes"]
        return run

    def _exec_counters(self) -> dict[int, dict[str, int]]:
        """``EXEC_COUNTERS`` of every executive that answers (a status request each)."""
        from evs.client.sync_client import Client  # noqa: PLC0415 - see the module docstring
        from evs.errors import EvsError  # noqa: PLC0415

        assert self.cluster is not None
        out: dict[int, dict[str, int]] = {}
        for n in self.ids:
            try:
                with Client(self.cluster.socket(n)) as c:
                    counters = c.status()["counters"]
            except (EvsError, OSError, KeyError, TypeError):
                continue  # the run's other figures say what happened to that executive
            out[n] = {k: int(counters.get(k, 0)) for k in EXEC_COUNTERS}
        return out

    def _net_counters(self) -> dict[str, int] | None:
        """What the lab's loss rules and rate caps did so far, summed over every node."""
        a = self.args
        if self.lab is None or not (a.loss or a.shape):
            return None
        out: dict[str, int] = {}
        try:
            if a.loss:
                out["loss_dropped"] = sum(self.lab.loss_dropped(n) for n in self.ids)
            if a.shape:
                for n in self.ids:
                    for k, v in self.lab.shape_counters(n).items():
                        out[f"shape_{k}"] = out.get(f"shape_{k}", 0) + v
        except LabError as exc:
            raise BenchError(f"cannot read the lab's counters: {exc}") from None
        return out


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of processes (from /proc; 0 for one that is gone)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _recv(conn: Connection, who: str) -> Any:
    try:
        return conn.recv()
    except (EOFError, OSError):
        raise BenchError(f"the {who} died (see its stderr above)") from None


def _expect(conns: dict[int, Connection], what: str, timeout: float, who: str) -> None:
    """Wait for ``what`` from every process; an "error" message or a death raises BenchError."""
    deadline = time.monotonic() + timeout
    pending = dict(conns)
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BenchError(f"{who}s on nodes {sorted(pending)} were not {what} in {timeout} s")
        ready = multiprocessing.connection.wait(list(pending.values()), timeout=left)
        for n, conn in list(pending.items()):
            if conn in ready:
                msg = _recv(conn, f"{who} on node {n}")
                if msg[0] == "error":
                    raise BenchError(msg[1])
                if msg[0] != what:
                    raise BenchError(f"{who} on node {n} said {msg[0]!r}, expected {what!r}")
                del pending[n]


def _summarize_run(
    *,
    label: str,
    size: int,
    mode: str,
    senders: list[int],
    results: dict[int, dict[str, Any]],
    sent: dict[int, int],
    busy: dict[int, float],
    a: argparse.Namespace,
    t0: float,
    t_stop: float,
    drain_s: float,
    load_before: list[float],
    cpu: tuple[float, float],
) -> dict[str, Any]:
    want = sum(sent.values())
    per: list[dict[str, Any]] = []
    for n in sorted(results):
        r = results[n]
        if a.count:
            span = max(1e-9, r["last_ns"] / 1e9 - t0) if r["last_ns"] else 0.0
        else:
            span = a.seconds
        rate = r["window_msgs"] / span if span else 0.0
        per.append(
            {
                "node": n,
                "msgs_per_s": round(rate, 1),
                "MB_per_s": round(rate * size / 1e6, 3),
                "window_s": round(span, 3),
                "window_msgs": r["window_msgs"],
                "delivered": r["total"],
                "lat_samples": r["lat_samples"],
                "lat_p50_ms": round(r["lat_p50_us"] / 1000, 3),
                "lat_p99_ms": round(r["lat_p99_us"] / 1000, 3),
                "lat_max_ms": round(r["lat_max_us"] / 1000, 3),
                "order_hash": f"{r['order_hash']:016x}",
                "violations": r["violation_count"],
                "config_changes": r["config_changes"],
            }
        )
    violations = [v for n in sorted(results) for v in results[n]["violations"]]
    violations += compare_orders(results.values())
    notes = _notes(results, counted=not a.count)
    rates = [p["msgs_per_s"] for p in per]
    msgs = statistics.median(rates) if rates else 0.0
    # Receivers on nodes that send nothing: what the corosync lab reports as "remote".
    remote = [p["lat_p50_ms"] for p in per if p["node"] not in senders and p["lat_samples"]]
    send_span = max(1e-9, t_stop - t0) if not a.count else None
    return {
        "label": label,
        "size": size,
        "senders": mode,
        "sender_nodes": senders,
        "msgs_per_s": round(msgs, 1),
        "MB_per_s": round(msgs * size / 1e6, 3),
        "min_receiver_msgs_per_s": round(min(rates), 1) if rates else 0.0,
        "lat_p50_ms": round(statistics.median(p["lat_p50_ms"] for p in per), 3) if per else 0,
        "lat_p99_ms": round(max(p["lat_p99_ms"] for p in per), 3) if per else 0,
        "lat_p50_remote_ms": round(statistics.median(remote), 3) if remote else None,
        "sent": {str(k): v for k, v in sorted(sent.items())},
        "sender_mcast_us_mean": {
            str(k): round(busy[k] / sent[k] * 1e6, 1) if sent[k] else None for k in sorted(sent)
        },
        "sender_msgs_per_s": (
            {str(k): round(v / send_span, 1) for k, v in sorted(sent.items())}
            if send_span
            else None
        ),
        "drain_s": round(drain_s, 3),
        # CPU of every executive and client from t0 to the end of the drain, per message
        # delivered at one receiver: a figure the other jobs on the machine do not inflate.
        "cpu_us_per_msg": {
            "executives": round(cpu[0] / max(1, want) * 1e6, 1),
            "clients": round(cpu[1] / max(1, want) * 1e6, 1),
        },
        "receivers": per,
        "verified": not violations and sum(p["violations"] for p in per) == 0,
        "violations": violations,
        # Why figures are low or missing: the ring broke, a receiver got nothing, a drain
        # gave up (the senders' stalls are added by the caller).
        "notes": notes,
        "load_before": load_before,
    }


def _notes(results: dict[int, dict[str, Any]], *, counted: bool) -> list[str]:
    """The reasons, in words, behind a run whose receivers did not get everything."""
    notes: list[str] = []
    changed = {n: r["config_changes"] for n, r in sorted(results.items()) if r["config_changes"]}
    if changed:
        first = min(changed)
        notes.append(
            "the ring broke during the run: configuration changes at "
            + ", ".join(f"node {n} ({k})" for n, k in changed.items())
            + f"; the first at node {first}: {results[first]['first_config_change']}; "
            "deliveries in different configurations need not match, so the checks across "
            "receivers do not hold for this run"
        )
    for n, r in sorted(results.items()):
        if counted and r["window_msgs"] == 0:
            why = "its ring broke" if r["config_changes"] else "nothing arrived"
            notes.append(f"node {n}: delivered nothing in the window ({why}); its rate is 0")
        if r["drain_stopped"]:
            notes.append(f"node {n}: stopped draining: {r['drain_stopped']}")
    return notes


def _points(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median over repetitions of each (senders, size), in the order first measured."""
    keys: list[tuple[str, int]] = []
    by: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in runs:
        k = (r["senders"], r["size"])
        if k not in by:
            keys.append(k)
            by[k] = []
        by[k].append(r)
    out = []
    for k in keys:
        rs = by[k]
        msgs = statistics.median(r["msgs_per_s"] for r in rs)
        out.append(
            {
                "senders": k[0],
                "size": k[1],
                "msgs_per_s": round(msgs, 1),
                "MB_per_s": round(msgs * k[1] / 1e6, 3),
                "lat_p50_ms": round(statistics.median(r["lat_p50_ms"] for r in rs), 3),
                "lat_p99_ms": round(statistics.median(r["lat_p99_ms"] for r in rs), 3),
                "lat_p50_remote_ms": _median_or_none(r.get("lat_p50_remote_ms") for r in rs),
                "cpu_us_per_msg": {
                    k2: round(statistics.median(r["cpu_us_per_msg"][k2] for r in rs), 1)
                    for k2 in ("executives", "clients")
                },
                "runs": len(rs),
                "msgs_per_s_range": [
                    min(r["msgs_per_s"] for r in rs),
                    max(r["msgs_per_s"] for r in rs),
                ],
                "verified": all(r["verified"] for r in rs),
            }
        )
    return out


def _median_or_none(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 3) if known else None


def table(report: dict[str, Any]) -> str:
    """The human-readable result: parameters, machine, one line per point."""
    p = report["parameters"]
    m = report["machine"]
    win = (
        f"{p['count']} messages per sender"
        if p["count"]
        else f"window {p['seconds']:g} s after {p['warmup_s']:g} s warm-up"
    )
    network = p["network"]
    if p.get("loss_permille"):
        network += f", {p['loss_permille'] / 10:g} % of datagrams dropped at each receiver"
    if p.get("shape"):
        network += f", links capped at {p['shape']} each way"
    lines = [
        f"evs bench {report['date']}: {p['nodes']} executives, {network}, {p['mode']}, "
        f"netmtu {p.get('netmtu', 1500)}, token {p['token_ms']} ms, "
        f"cipher {p.get('cipher', 'none')}, {win}, "
        f"{p['reps']} run(s) per point"
        + (
            f", {p['sender_clients']} sending clients per sending node"
            if p["sender_clients"] > 1
            else ""
        )
        + (f", each sender paced to {p['rate']:g} msgs/s" if p.get("rate") else "")
        + (f", senders batch {p['batch']} messages (Client.batch)" if p.get("batch") else ""),
        f"machine: {m['cpu']}, {m['cores']} cores, kernel {m['kernel']}, Python {m['python']}, "
        f"executives on {m['event_loop']}, "
        + (
            f"compiled (mypyc, {m['compiled_modules']} modules), "
            if m.get("compiled_modules")
            else "pure Python (tools/compile.py builds the faster compiled build), "
        )
        + f"load before {m['loadavg'][0]:.2f}, after {report['load_after'][0]:.2f}"
        + (" (PROFILED: figures are not comparable)" if p["profiled"] else ""),
        "",
        f"{'senders':<8} {'size':>7} {'msgs/s':>10} {'MB/s':>8} {'p50 ms':>8} {'remote':>7} "
        f"{'p99 ms':>8} {'CPU us/msg':>14}  verified",
    ]
    for pt in report["points"]:
        remote = pt.get("lat_p50_remote_ms")
        lines.append(
            f"{pt['senders']:<8} {size_label(pt['size']):>7} {pt['msgs_per_s']:>10,.0f} "
            f"{pt['MB_per_s']:>8.2f} {pt['lat_p50_ms']:>8.2f} "
            + (f"{remote:>7.2f} " if remote is not None else f"{'-':>7} ")
            + f"{pt['lat_p99_ms']:>8.2f} "
            f"{pt['cpu_us_per_msg']['executives']:>7.0f}+{pt['cpu_us_per_msg']['clients']:<6.0f}  "
            + ("yes" if pt["verified"] else "NO")
        )
    lines.append("")
    for r in report["runs"]:
        net = r.get("network")
        if net:
            said = []
            if "loss_dropped" in net:
                said.append(f"{net['loss_dropped']:,} datagrams dropped by the loss rules")
            if "shape_packets" in net:
                said.append(
                    f"{net['shape_packets']:,} packets through the rate caps, "
                    f"{net['shape_overlimits']:,} held back, {net['shape_drops']:,} dropped"
                )
            lines.append(f"{r['label']}: {'; '.join(said)}")
        lines.extend(f"{r['label']}: {note}" for note in r.get("notes", ()))
    if lines[-1]:
        lines.append("")
    lines.append(
        "per receiver (median over receivers); p50: median of receivers, p99: worst receiver;\n"
        "remote: p50 of the receivers on nodes that send nothing (the corosync lab's remote "
        "p50; - when every node sends);\n"
        "CPU us/msg: CPU time of the executives + the clients per message delivered at one "
        "receiver;\nverified: FIFO, no gap/duplicate, payload bytes, same total order at every "
        "receiver"
    )
    return "\n".join(lines)


def _summarize_profiles(directory: Path) -> None:
    """Write ``summary.txt``: the top functions by own time of every profile in ``directory``."""
    import io  # noqa: PLC0415
    import pstats  # noqa: PLC0415

    out = io.StringIO()
    for path in sorted(directory.glob("*.prof")):
        try:
            st = pstats.Stats(str(path), stream=out)
        except (OSError, TypeError, EOFError) as exc:
            out.write(f"{path.name}: unreadable ({exc})\n")
            continue
        out.write(f"==== {path.name}\n")
        st.sort_stats("tottime").print_stats(25)
    (directory / "summary.txt").write_text(out.getvalue())
    print(f"evs bench: profiles and summary.txt in {directory}", file=sys.stderr)
