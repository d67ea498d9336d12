"""The executives' memory (RSS) under a saturating sender, a client that never reads and a
member that stops, on a local cluster of real daemons (issue 9, "bounded memory").

Three phases on one 3-node cluster (loopback, the daemon's defaults unless given), each
``--seconds`` long, the resident set of every executive sampled from /proc every 0.1 s:

* ``saturating``: a client on node 1 sends ``--size`` messages as fast as its send window
  lets it; a client on every node reads everything.
* ``never reads``: the same, plus a client on node 2 that joined the group and never reads.
  Its executive must cut it off at ``client_queue_bytes`` and carry on.
* ``member stopped``: the same, with node 3 stopped (SIGSTOP) for ``--stop`` seconds, below the
  token timeout, so the ring waits for it instead of reforming; then continued.

What bounds each: the handle queue and the write buffer per client (``client_queue_bytes``,
8 MiB each by default), the send window per client (1 MiB), the core's send queue
(``queue_bytes_max``, 2 MiB), and the retransmission store (at most ``sort_queue_slots``
packets of ``netmtu`` bytes while a member lags). Prints the baseline and the peak RSS of each
executive per phase.

    .venv/bin/python benchmarks/memory_bound.py [--size 65536] [--seconds 8] [--netmtu 1500]
"""

from __future__ import annotations

import argparse
import signal
import tempfile
import threading
import time
from pathlib import Path

import evs
from evs.cli._cluster import LocalCluster

GROUP = "mem"


def rss_kib(pid: int) -> int:
    """Resident set of ``pid`` in KiB (VmRSS), 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


class Sampler:
    """Peak RSS per executive, sampled in a thread until ``stop``."""

    def __init__(self, pids: dict[int, int]) -> None:
        self.pids = pids
        self.peak = dict.fromkeys(pids, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for n, pid in self.pids.items():
                self.peak[n] = max(self.peak[n], rss_kib(pid))

    def stop(self) -> dict[int, int]:
        self._stop.set()
        self._thread.join(5)
        return self.peak


def reader(path: str, stop: threading.Event, counts: dict[str, int], key: str) -> None:
    with evs.Client(path) as c:
        c.join([GROUP])
        while not stop.is_set():
            for _ in c.events(timeout=0.2):
                counts[key] = counts.get(key, 0) + 1
                if stop.is_set():
                    break


def sender(path: str, size: int, stop: threading.Event, counts: dict[str, int]) -> None:
    data = bytes(size)
    with evs.Client(path) as c:
        while not stop.is_set():
            try:
                c.mcast_groups([GROUP], data, timeout=0.5)
            except evs.TryAgain:
                counts["try again"] = counts.get("try again", 0) + 1
                continue
            counts["sent"] = counts.get("sent", 0) + 1


def phase(
    cluster: LocalCluster, name: str, size: int, seconds: float, stop_s: float
) -> dict[str, object]:
    ids = [1, 2, 3]
    stop = threading.Event()
    counts: dict[str, int] = {}
    threads = [
        threading.Thread(target=reader, args=(cluster.socket(n), stop, counts, f"read{n}"))
        for n in ids
    ]
    threads.append(threading.Thread(target=sender, args=(cluster.socket(1), size, stop, counts)))
    lazy = None
    if name == "never reads":
        lazy = evs.Client(cluster.socket(2))
        lazy.join([GROUP])
    sampler = Sampler({n: cluster.pid(n) for n in ids})
    for t in threads:
        t.start()
    deadline = time.monotonic() + seconds
    if name == "member stopped":
        time.sleep(seconds / 3)  # let the ring run first (a benchmark's schedule)
        cluster.kill(3, signal.SIGSTOP)
        time.sleep(stop_s)
        cluster.kill(3, signal.SIGCONT)
    time.sleep(max(0.0, deadline - time.monotonic()))
    stop.set()
    for t in threads:
        t.join(10)
    lazy_end = ""
    if lazy is not None:
        with evs.Client(cluster.socket(2)) as c:
            overflowed = c.status()["counters"].get("handles overflowed", 0)
        lazy_end = f"handles cut off at node 2: {overflowed}"
        lazy.close()
    return {"peak": sampler.stop(), "counts": counts, "lazy": lazy_end}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=65536)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--stop", type=float, default=0.8, help="SIGSTOP length, s")
    parser.add_argument("--netmtu", type=int, default=None)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="evs-mem-"))
    cluster = LocalCluster(root, nodes=3, netmtu=args.netmtu)
    try:
        for n in (1, 2, 3):
            cluster.start(n)
        with evs.Client(cluster.socket(1)) as c:
            deadline = time.monotonic() + 30
            while len(c.membership_get().members) < 3:
                if time.monotonic() > deadline:
                    raise SystemExit("the ring of 3 did not form within 30 s")
                time.sleep(0.1)  # polling a real cluster's state, bounded
        base = {n: rss_kib(cluster.pid(n)) for n in (1, 2, 3)}
        print(f"{args.size} B messages, netmtu {args.netmtu or 1500}, {args.seconds:g} s per phase")
        print(
            f"baseline RSS (MiB): {', '.join(f'node{n} {v / 1024:.1f}' for n, v in base.items())}"
        )
        for name in ("saturating", "never reads", "member stopped"):
            r = phase(cluster, name, args.size, args.seconds, args.stop)
            peak = r["peak"]
            assert isinstance(peak, dict)
            cells = ", ".join(f"node{n} {v / 1024:.1f}" for n, v in peak.items())
            extra = f"; the lazy client: {r['lazy']}" if r["lazy"] else ""
            print(f"{name:>15}: peak RSS (MiB) {cells}; counts {r['counts']}{extra}", flush=True)
    finally:
        cluster.stop_all()
        cluster.cleanup()


if __name__ == "__main__":
    main()
