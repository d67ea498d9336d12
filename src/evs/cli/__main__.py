"""The ``evs`` command: argparse root; errors go to stderr with a non-zero exit, no traceback."""

from __future__ import annotations

import argparse
import sys

from evs._version import __version__
from evs.cli import bench as bench_cmd
from evs.cli import check as check_cmd
from evs.cli import daemon as daemon_cmd
from evs.cli import demo as demo_cmd
from evs.cli import fuzz as fuzz_cmd
from evs.cli import keygen as keygen_cmd
from evs.cli import listen as listen_cmd
from evs.cli import rekey as rekey_cmd
from evs.cli import send as send_cmd
from evs.cli import status as status_cmd
from evs.sim import cli as sim_cmd

#: Subcommand name -> module with ``add_parser`` and ``run`` (api.md section 2's order).
_COMMANDS = {
    "daemon": daemon_cmd,
    "keygen": keygen_cmd,
    "rekey": rekey_cmd,
    "status": status_cmd,
    "send": send_cmd,
    "listen": listen_cmd,
    "bench": bench_cmd,
    "demo": demo_cmd,
    "sim": sim_cmd,
    "check": check_cmd,
    "fuzz": fuzz_cmd,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evs", description="Group messaging with Extended Virtual Synchrony (Totem)."
    )
    parser.add_argument("--version", action="version", version=f"evs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _COMMANDS.values():
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(_COMMANDS[args.command].run(args))
    except KeyboardInterrupt:
        print("evs: interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError) as exc:
        print(f"evs {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
