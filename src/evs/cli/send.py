"""``evs send GROUP MESSAGE``: multicast one message through the local executive.

With ``--lines`` and MESSAGE ``-``, every non-empty line of standard input is a message of its
own (without its newline), sent as it is read: the lines of one read are written to the
executive together (``Client.batch``), so a burst of lines costs few writes and a slow stream
(``tail -f``) is not held back.

Exit codes: 0 sent (the executive accepted it; it is delivered in total order to every
member that joined GROUP), 1 refused (flow control stayed full for ``--timeout``), 2 bad
arguments or no executive.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator

import evs
from evs.cli._common import add_socket_option, socket_path
from evs.ipc.codec import DATA_MAX

__all__ = ["add_parser", "run"]

#: Bytes ``--lines`` asks for per read of standard input.
_READ_CHUNK = 1 << 16
#: A longer line without its newline yet is handed on as it is (the executive refuses it
#: with its limit) rather than buffered for ever.
_LINE_MAX = DATA_MAX


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "send",
        help="multicast one message to a group",
        description="Multicast MESSAGE (text, or standard input with '-') to GROUP.",
    )
    p.add_argument("group", metavar="GROUP", help="group name (1..64 bytes)")
    p.add_argument("message", metavar="MESSAGE", help="the message text; '-' reads stdin")
    p.add_argument("--safe", action="store_true", help="SAFE delivery instead of AGREED")
    p.add_argument(
        "--lines",
        action="store_true",
        help="with MESSAGE '-': each non-empty line of standard input is one message",
    )
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for room")
    add_socket_option(p)


def run(args: argparse.Namespace) -> int:
    if args.lines and args.message != "-":
        print("evs send: --lines reads standard input: give MESSAGE as '-'", file=sys.stderr)
        return 2
    guarantee = evs.Guarantee.SAFE if args.safe else evs.Guarantee.AGREED
    sent = 0
    try:
        with evs.Client(socket_path(args)) as c:
            if args.lines:
                for lines in _read_lines(sys.stdin.buffer.fileno()):
                    with c.batch():
                        for line in lines:
                            c.mcast_groups([args.group], line, guarantee, timeout=args.timeout)
                            sent += 1
            else:
                data = sys.stdin.buffer.read() if args.message == "-" else args.message.encode()
                c.mcast_groups([args.group], data, guarantee, timeout=args.timeout)
    except evs.TryAgain as exc:
        print(f"evs send: {exc}{_after(args, sent)}", file=sys.stderr)
        return 1
    except evs.EvsError as exc:
        print(f"evs send: {exc}{_after(args, sent)}", file=sys.stderr)
        return 2
    return 0


def _after(args: argparse.Namespace, sent: int) -> str:
    return f" (after {sent} lines sent)" if args.lines else ""


def _read_lines(fd: int) -> Iterator[list[bytes]]:
    """The non-empty lines of ``fd``, as each read completes them (the last may lack "\n")."""
    rest = b""
    while chunk := os.read(fd, _READ_CHUNK):
        *lines, rest = (rest + chunk).split(b"\n")
        if len(rest) > _LINE_MAX:  # a line no message can carry: the send says so, and ends
            lines.append(rest)
            rest = b""
        if lines := [line for line in lines if line]:
            yield lines
    if rest:
        yield [rest]
