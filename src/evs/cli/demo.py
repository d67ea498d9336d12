"""``evs demo``: a real three-node cluster on this machine, showing what EVS promises.

Theory of operation: the demo writes a configuration per node (udpu on 127.0.0.1-3, a state
directory and an IPC socket each, in a temporary directory), starts three ``evs daemon``
processes, and connects one ordinary ``evs.Client`` to each, exactly as an application
would. It then walks through the main job and prints each step with its time:

1. the ring forms; every client sees the same regular configuration;
2. every client multicasts; every client receives every message, in the same order;
3. one executive is killed with SIGKILL (no goodbye); the survivors see a transitional
   configuration (who left) and then a new regular one, and the failover time is printed;
4. messages keep flowing on the smaller ring; the killed executive restarts and merges back;
5. every executive is stopped with SIGTERM (a graceful leave) and the demo checks that all
   clients saw the same messages in the same order between the same configurations.

It needs nothing but loopback: 127.0.0.0/8 is all local on Linux.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from evs.cli._cluster import DemoClient, LocalCluster
from evs.crypto.names import CIPHERS, DEFAULT_CIPHER

__all__ = ["add_parser", "run"]

_DESCRIPTION = """\
Start three executives on 127.0.0.1-3 (generated configuration, temporary directory), connect a
client to each, exchange messages, kill one executive and restart it, and show the
configuration changes and timings at every step. Exit status 0 when every client saw the
same messages in the same order between the same configurations."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo", help="a local three-node cluster showing the main job", description=_DESCRIPTION
    )
    p.add_argument("--nodes", type=int, default=3, help="executives to start (2..9, default 3)")
    p.add_argument("--port", type=int, default=0, help="UDP port (default: a free one)")
    p.add_argument("--token", type=int, default=1000, help="token timeout, ms (default 1000)")
    p.add_argument("--messages", type=int, default=5, help="messages per client per phase")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--mode", choices=("udpu", "udp"), default="udpu", help="transport mode")
    p.add_argument(
        "--cipher",
        choices=CIPHERS,
        default=DEFAULT_CIPHER,
        help=f"wire security (default {DEFAULT_CIPHER}, with a key made for the demo)",
    )


class _Clock:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.t0


def run(args: argparse.Namespace) -> int:
    if not 2 <= args.nodes <= 9:
        print("evs demo: --nodes must be 2..9", file=sys.stderr)
        return 2
    clock = _Clock()

    def say(text: str) -> None:
        print(f"[{clock():6.2f} s] {text}", flush=True)

    tmp = tempfile.mkdtemp(prefix="evs-demo-")
    cluster = LocalCluster(
        Path(tmp),
        nodes=args.nodes,
        port=args.port,
        token=args.token,
        mode=args.mode,
        cipher=args.cipher,
    )
    print(
        f"pyevs demo: {args.nodes} executives on 127.0.0.1-{args.nodes} ({args.mode}, token "
        f"timeout {args.token} ms, cipher {args.cipher}); files in {tmp}"
    )
    try:
        return _walk(cluster, args, say)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        cluster.stop_all()
        if not args.keep:
            cluster.cleanup()


def _walk(cluster: object, args: argparse.Namespace, say: Callable[[str], None]) -> int:
    assert isinstance(cluster, LocalCluster)
    ids = list(range(1, args.nodes + 1))
    victim = ids[-1]
    start = time.monotonic()
    for n in ids:
        cluster.start(n)
    say(f"started executives {ids} (pids {[cluster.pid(n) for n in ids]})")
    clients = {n: DemoClient(n, cluster.socket(n)) for n in ids}
    say("connected one client to each executive; each joins group 'demo'")
    every = tuple(ids)
    for n, c in clients.items():
        conf = c.wait_config(lambda m: tuple(m.members) == every, timeout=15)
        if n == ids[0]:
            say(
                f"ring {conf.ring_id} formed with members {list(conf.members)} "
                f"({time.monotonic() - start:.2f} s after the first start)"
            )
    say("every client sees the same regular configuration")

    def exchange(senders: list[int], phase: str) -> None:
        for n in senders:
            for i in range(args.messages):
                clients[n].send(f"{phase}: message {i} from node {n}")
        expect = len(senders) * args.messages
        for n in senders:
            clients[n].wait_messages(phase, expect, timeout=15)
        first = clients[senders[0]].messages(phase)
        same = all(clients[n].messages(phase) == first for n in senders)
        say(
            f"{phase}: {expect} messages sent by {senders}, delivered to every client "
            f"{'in the same order' if same else 'IN DIFFERENT ORDERS'}"
        )
        if not same:
            raise SystemExit(1)

    exchange(ids, "all up")
    say(f"killing executive {victim} with SIGKILL (it says no goodbye)")
    killed_at = time.monotonic()
    cluster.kill(victim)
    clients.pop(victim).close()
    survivors = [n for n in ids if n != victim]
    for n in survivors:
        trans = clients[n].wait_config(lambda m: m.transitional and victim in m.left, timeout=15)
        reg = clients[n].wait_config(
            lambda m: not m.transitional and victim not in m.members, timeout=15
        )
        if n == survivors[0]:
            say(
                f"node {n} sees the transitional configuration {list(trans.members)} "
                f"(left: {list(trans.left)}), then the regular configuration {reg.ring_id} "
                f"{list(reg.members)}: failover took {time.monotonic() - killed_at:.2f} s"
            )
    exchange(survivors, "after the failure")
    say(f"restarting executive {victim}")
    merged_from = time.monotonic()
    cluster.start(victim)
    clients[victim] = DemoClient(victim, cluster.socket(victim))
    for n in ids:
        reg = clients[n].wait_config(lambda m: tuple(m.members) == every, timeout=15)
    say(
        f"ring {reg.ring_id} formed again with {list(reg.members)} "
        f"(merge took {time.monotonic() - merged_from:.2f} s); node {victim} joined"
    )
    exchange(ids, "merged")
    say("stopping every executive with SIGTERM (graceful leave)")
    for c in clients.values():
        c.close()
    for n in ids:
        cluster.terminate(n)
    codes = {n: cluster.wait(n) for n in ids}
    say(f"executives exited with {codes}")
    ok = all(code == 0 for code in codes.values())
    print(
        "demo finished: the same messages in the same order between the same "
        "configurations at every client"
        if ok
        else "demo finished with errors"
    )
    return 0 if ok else 1
