"""CPU per token visit of a ring of real executives: in one process against one per process.

A ring of three ``Executive``s (no IPC, wire security off) runs on loopback (127.0.0.1-3);
node 1 submits one small message every ``--gap`` ms, so the token keeps rotating and never
settles into the representative's hold (a ring at low load, like ``evs bench --rate 500``).
Every executive counts the datagrams it receives (token visits and multicasts) and its CPU
time (``time.process_time``), measured over a ``--seconds`` window after a warm-up.

Three layouts run one after the other, the same code in each:

- ``one process``: the three executives share one asyncio loop (uvloop), so a hop from one
  to the next is a ``sendto`` and a ``recvfrom`` with no switch between processes;
- ``three processes``: one executive per process, as ``evs daemon`` runs them;
- ``three processes, one core``: the same, all pinned to CPU 0 (``os.sched_setaffinity``),
  so the cores do not wake each other and the ring runs as fast as one core allows.

The difference between the first two is what switching between processes adds to a visit on
this machine; the protocol and the runtime are the same. The figure per layout is the total
CPU time of the executives divided by the datagrams they received, and the rotation is three
hops' worth of wall time per visit.

    PYTHONPATH=src .venv/bin/python benchmarks/token_visit_cost.py [--seconds 3] [--gap 2]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from evs.cli._cluster import free_port
from evs.daemon.config_file import load_config, render_config
from evs.daemon.executive import Executive
from evs.types import Guarantee

NODES = (1, 2, 3)
#: How long the ring gets to form before the load starts, and the load before measuring.
FORM_S = 3.0
WARM_S = 1.0


def executive(nodeid: int, port: int, base: Path) -> Executive:
    where = base / str(nodeid)
    where.mkdir()
    nodes = {n: (f"127.0.0.{n}", port) for n in NODES}
    text = render_config(
        nodeid, nodes, socket=where / "evs.sock", state_dir=where / "state", cipher="none"
    )
    (where / "evs.toml").write_text(text)
    return Executive(load_config(where / "evs.toml"), ipc=False)


def load(exe: Executive, gap_s: float) -> None:
    """Submit one 64-byte message now and every ``gap_s`` seconds after."""
    loop = asyncio.get_running_loop()

    def tick() -> None:
        exe.driver.submit(exe.now(), (b"bench",), b"x" * 64, Guarantee.AGREED)
        exe.after_request()
        loop.call_later(gap_s, tick)

    tick()


async def run(ids: tuple[int, ...], port: int, seconds: float, gap_s: float) -> dict[str, Any]:
    """Run the executives ``ids`` on this loop; their datagrams and CPU over the window."""
    logging.getLogger("evs").setLevel(logging.ERROR)  # not the "wire security is off" warning
    base = Path(tempfile.mkdtemp(prefix="evs-visit-"))
    exes = [executive(n, port, base) for n in ids]
    for exe in exes:
        await exe.start()
    await asyncio.sleep(FORM_S)
    if 1 in ids:
        load(exes[ids.index(1)], gap_s)
    await asyncio.sleep(WARM_S)

    def received() -> int:
        return sum(exe.transport.counters["rx_datagrams"] for exe in exes)

    rx0, cpu0, wall0 = received(), time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    rx1, cpu1, wall1 = received(), time.process_time(), time.perf_counter()
    members = [list(exe.proc.members) for exe in exes]
    await asyncio.sleep(FORM_S)  # the others are still measuring: keep the ring up for them
    for exe in exes:
        await exe.stop(graceful=False)
    return {"rx": rx1 - rx0, "cpu_s": cpu1 - cpu0, "wall_s": wall1 - wall0, "members": members}


def child(nodeid: int, port: int, out: Any, *, seconds: float, gap_s: float, pin: bool) -> None:
    if pin:
        os.sched_setaffinity(0, {0})
    uvloop.install()
    out.send(asyncio.run(run((nodeid,), port, seconds, gap_s)))


def layout(name: str, parts: list[dict[str, Any]]) -> None:
    rx = sum(p["rx"] for p in parts)
    cpu = sum(p["cpu_s"] for p in parts)
    wall = max(p["wall_s"] for p in parts)
    whole = all(m == list(NODES) for p in parts for m in p["members"])
    if not rx or not whole:
        print(f"{name:28s} the ring did not form ({parts[0]['members']})")
        return
    print(
        f"{name:28s} {1e6 * cpu / rx:7.1f} us CPU per datagram received, "
        f"rotation {len(NODES) * 1e6 * wall / rx:6.0f} us, "
        f"executives' CPU {100 * cpu / wall:4.0f} % of one core"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measurement window")
    parser.add_argument("--gap", type=float, default=2.0, help="ms between node 1's messages")
    args = parser.parse_args()
    if not 0.1 <= args.seconds <= 60 or not 0.1 <= args.gap <= 1000:
        parser.error("--seconds must be within 0.1..60 and --gap within 0.1..1000 ms")
    gap_s = args.gap / 1000.0
    print(
        f"3 executives on loopback, node 1 sends 64 B every {args.gap:g} ms, "
        f"{args.seconds:g} s window; {os.cpu_count()} cores, Python {sys.version.split()[0]}"
    )
    uvloop.install()
    layout("one process", [asyncio.run(run(NODES, free_port(), args.seconds, gap_s))])
    ctx = multiprocessing.get_context("spawn")
    for name, pin in (("three processes", False), ("three processes, one core", True)):
        port = free_port()
        pipes, procs = [], []
        for n in NODES:
            mine, theirs = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=child,
                args=(n, port, theirs),
                kwargs={"seconds": args.seconds, "gap_s": gap_s, "pin": pin},
            )
            proc.start()
            pipes.append(mine)
            procs.append(proc)
        limit = 2 * FORM_S + WARM_S + args.seconds + 30.0
        if not all(p.poll(limit) for p in pipes):
            for proc in procs:
                proc.kill()
            print(f"{name}: an executive did not report within {limit:.0f} s")
            return 1
        parts = [p.recv() for p in pipes]
        for proc in procs:
            proc.join()
        layout(name, parts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
