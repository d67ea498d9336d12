"""hello: the smallest complete evs program.

The idea: an application connects to its local executive (``evs daemon``), joins a group, and
from then on sees one stream of events for that group: configuration changes (who is in the
ring) and messages, in an order that every other member of the group sees too. There is no
server and no leader in the application: the total order is the ring's.

This program connects, joins ``--group``, multicasts ``--count`` messages and prints every
event until its own messages have come back (a sender receives its own messages, in their
place in the total order, like everybody else). Run several copies against different
executives and they print the same messages in the same order.

    python examples/hello.py --socket /tmp/evs-cluster/node1/evs.sock --count 3

(``examples/local_cluster.py`` starts executives on loopback and prints their sockets.)
"""

from __future__ import annotations

import argparse
import os
import sys

import evs


def describe(ev: evs.Event) -> str:
    """One line for an event; the kind of configuration matters, so it is spelled out."""
    if isinstance(ev, evs.Delivery):
        return f"message from node {ev.nodeid} pid {ev.pid}: {ev.data.decode(errors='replace')}"
    kind = "transitional" if ev.transitional else "regular"
    line = f"{kind} configuration {ev.ring_id}: members {list(ev.members)}"
    if ev.left:
        line += f", left {list(ev.left)}"
    if ev.joined:
        line += f", joined {list(ev.joined)}"
    return line


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--socket", metavar="PATH", help="the executive's socket ($EVS_SOCKET)")
    p.add_argument("--group", default="hello", help="group to join (default: hello)")
    p.add_argument("--count", type=int, default=3, help="messages to send (default: 3)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for an event")
    args = p.parse_args(argv)

    try:
        # A Client is one handle on the executive; closing it (the with block) leaves the
        # group and ends the connection.
        with evs.Client(args.socket) as client:
            client.join([args.group])
            me = (client.nodeid, os.getpid())
            for i in range(args.count):
                # mcast_joined sends to every group this handle joined; it returns once the
                # executive has accepted the message, not when it is delivered: delivery is
                # an event like any other, below.
                client.mcast_joined(f"hello {i} from node {me[0]} pid {me[1]}".encode())
            mine = 0
            # events() yields until `timeout` seconds pass without one. The first event is
            # always the current regular configuration, before any message.
            for ev in client.events(timeout=args.timeout):
                print(describe(ev), flush=True)
                if isinstance(ev, evs.Delivery) and (ev.nodeid, ev.pid) == me:
                    mine += 1
                    if mine == args.count:
                        return 0
            print(f"hello: only {mine} of {args.count} own messages came back", file=sys.stderr)
            return 1
    except evs.EvsError as exc:
        print(f"hello: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
