"""The ``evs`` command: argparse root; errors go to stderr with a non-zero exit, no traceback."""

from __future__ import annotations

import argparse
import sys

from evs._version import __version__
from evs.cli import check as check_cmd
from evs.cli import fuzz as fuzz_cmd
from evs.sim import cli as sim_cmd


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evs", description="Group messaging with Extended Virtual Synchrony (Totem)."
    )
    parser.add_argument("--version", action="version", version=f"evs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sim_cmd.add_parser(sub)
    check_cmd.add_parser(sub)
    fuzz_cmd.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        if args.command == "sim":
            return sim_cmd.run(args)
        if args.command == "fuzz":
            return fuzz_cmd.run(args)
        return check_cmd.run(args)
    except KeyboardInterrupt:
        print("evs: interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError) as exc:
        print(f"evs {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
