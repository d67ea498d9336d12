"""``evs send GROUP MESSAGE``: multicast one message through the local executive.

Exit codes: 0 sent (the executive accepted it; it is delivered in total order to every
member that joined GROUP), 1 refused (flow control stayed full for ``--timeout``), 2 bad
arguments or no executive.
"""

from __future__ import annotations

import argparse
import sys

import evs
from evs.cli._common import add_socket_option, socket_path

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "send",
        help="multicast one message to a group",
        description="Multicast MESSAGE (text, or standard input with '-') to GROUP.",
    )
    p.add_argument("group", metavar="GROUP", help="group name (1..64 bytes)")
    p.add_argument("message", metavar="MESSAGE", help="the message text; '-' reads stdin")
    p.add_argument("--safe", action="store_true", help="SAFE delivery instead of AGREED")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for room")
    add_socket_option(p)


def run(args: argparse.Namespace) -> int:
    data = sys.stdin.buffer.read() if args.message == "-" else args.message.encode()
    guarantee = evs.Guarantee.SAFE if args.safe else evs.Guarantee.AGREED
    try:
        with evs.Client(socket_path(args)) as c:
            c.mcast_groups([args.group], data, guarantee, timeout=args.timeout)
    except evs.TryAgain as exc:
        print(f"evs send: {exc}", file=sys.stderr)
        return 1
    except evs.EvsError as exc:
        print(f"evs send: {exc}", file=sys.stderr)
        return 2
    return 0
