"""``evs listen GROUP...``: print deliveries and configuration changes as they come.

One line per event, flushed at once (so ``evs listen g | grep`` works): a delivery shows the
sender node and pid, the guarantee and the text (``--hex`` for binary data); a configuration
shows its kind, ring id and members, and who left or joined. ``--json`` prints one JSON object
per line instead. ``--count N`` exits after N deliveries; Ctrl-C exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys

import evs
from evs.cli._common import add_socket_option, socket_path

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "listen",
        help="print deliveries and configuration changes",
        description="Join GROUP... and print every delivery and configuration change.",
    )
    p.add_argument("groups", nargs="+", metavar="GROUP", help="group names to join")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--hex", action="store_true", help="show message data as hex")
    p.add_argument("--count", type=int, default=0, help="exit after this many deliveries")
    p.add_argument("--timeout", type=float, default=0, help="exit after this many idle seconds")
    add_socket_option(p)


def _line(ev: object, args: argparse.Namespace) -> str:
    if isinstance(ev, evs.Delivery):
        text = ev.data.hex() if args.hex else ev.data.decode(errors="replace")
        if args.json:
            return json.dumps(
                {
                    "ev": "deliver",
                    "nodeid": ev.nodeid,
                    "pid": ev.pid,
                    "groups": [g.decode(errors="replace") for g in ev.groups],
                    "guarantee": ev.guarantee.label,
                    "data": text,
                }
            )
        return f"node {ev.nodeid} pid {ev.pid} [{ev.guarantee.label}]: {text}"
    assert isinstance(ev, evs.ConfigChange)
    kind = "transitional" if ev.transitional else "regular"
    if args.json:
        return json.dumps(
            {
                "ev": "confchg",
                "kind": kind,
                "ring": str(ev.ring_id),
                "members": list(ev.members),
                "left": list(ev.left),
                "joined": list(ev.joined),
            }
        )
    extra = "".join(
        f", {name} {list(ids)}" for name, ids in (("left", ev.left), ("joined", ev.joined)) if ids
    )
    return f"-- {kind} configuration {ev.ring_id}: members {list(ev.members)}{extra}"


def run(args: argparse.Namespace) -> int:
    seen = 0
    try:
        with evs.Client(socket_path(args)) as c:
            c.join(args.groups)
            while True:
                got = False
                for ev in c.events(timeout=args.timeout or None):
                    got = True
                    print(_line(ev, args), flush=True)
                    if isinstance(ev, evs.Delivery):
                        seen += 1
                        if args.count and seen >= args.count:
                            return 0
                if not got and args.timeout:
                    return 0
    except KeyboardInterrupt:
        return 0
    except evs.EvsError as exc:
        print(f"evs listen: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
