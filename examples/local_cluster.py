"""local_cluster: start N real executives on loopback to run the other examples against.

The examples are ordinary applications: each needs an ``evs daemon`` on its host. On one
machine, 127.0.0.1..N are all local addresses, so N executives can form a real ring over UDP
without any network set-up. This helper writes their configurations (the same ones
``evs demo`` uses), starts them, prints each node's IPC socket, and stops them all on Ctrl-C
(SIGTERM: a graceful leave).

    python examples/local_cluster.py --nodes 3 --dir /tmp/evs-cluster

Then, in other terminals: ``python examples/hello.py --socket /tmp/evs-cluster/node1/evs.sock``
and so on. Kill a node to watch a configuration change: ``kill -9 <pid printed below>``.

It uses ``evs.cli._cluster.LocalCluster``, a helper of the package (not a public API), only
to avoid repeating the configuration file format here.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from evs.cli._cluster import LocalCluster


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Start N executives on 127.0.0.1..N.")
    p.add_argument("--nodes", type=int, default=3, help="executives to start (default 3)")
    p.add_argument("--dir", default="/tmp/evs-cluster", help="directory for configs, sockets")
    p.add_argument("--token", type=int, default=1000, help="token timeout in ms")
    args = p.parse_args(argv)

    cluster = LocalCluster(Path(args.dir), nodes=args.nodes, token=args.token)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        for n in cluster.ids:
            cluster.start(n)
            print(f"node {n}: pid {cluster.pid(n)}, socket {cluster.socket(n)}", flush=True)
        print("running; Ctrl-C stops every executive", flush=True)
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
