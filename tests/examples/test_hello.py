"""examples/hello.py as a program against two real executives: it prints the current
configuration first, then its own messages in order; a handle on the other node gets the
same messages in the same order."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable

import evs
from evs.cli._cluster import LocalCluster
from examples.example_support import EXAMPLES, ring_formed, start_all, subprocess_env

COUNT = 4


def test_hello_prints_its_deliveries(make_cluster: Callable[..., LocalCluster]) -> None:
    cluster = make_cluster(2)
    start_all(cluster)
    ring_formed(cluster, (1, 2))
    with evs.Client(cluster.socket(2)) as other:
        other.join(["hello"])
        run = subprocess.run(
            [
                sys.executable,
                str(EXAMPLES / "hello.py"),
                "--socket",
                cluster.socket(1),
                "--count",
                str(COUNT),
            ],
            capture_output=True,
            text=True,
            timeout=20,
            env=subprocess_env(),
            check=False,
        )
        assert run.returncode == 0, run.stderr
        lines = run.stdout.splitlines()
        assert re.fullmatch(
            r"regular configuration \d+\.\d+: members \[1, 2\], joined \[1, 2\]", lines[0]
        ), lines
        found = [re.fullmatch(r"message from node 1 pid (\d+): (.*)", line) for line in lines[1:]]
        assert all(found), lines
        run_pid = int(found[0].group(1)) if found[0] else 0
        texts = [m.group(2) for m in found if m]
        assert texts == [f"hello {i} from node 1 pid {run_pid}" for i in range(COUNT)]

        seen: list[str] = []
        for ev in other.events(timeout=10):
            if isinstance(ev, evs.Delivery):
                assert (ev.nodeid, ev.pid) == (1, run_pid)
                seen.append(ev.data.decode())
                if len(seen) == COUNT:
                    break
        assert seen == texts
