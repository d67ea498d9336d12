"""``evs check TRACE...``: verify the EVS properties on trace files (api.md section 2).

Exit codes: 0 when every property holds, 1 when some are violated (the first 50 are
printed, then a count), 2 when a trace cannot be read or breaks the format (one line on
stderr naming file:line, no traceback).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from evs.check import check_files
from evs.trace import TraceError

__all__ = ["add_parser", "main", "run"]

#: How many violations the text output shows before summarising the rest as a count.
SHOWN_MAX = 50

_DESCRIPTION = """\
Check the Extended Virtual Synchrony properties (protocol.md section 9) on JSON Lines trace
files (api.md section 4). Give one file per node, or files holding several nodes; events of
one node are taken in the order of the files and lines. "-" reads standard input.
Exit status: 0 all properties hold, 1 violations found, 2 unreadable or malformed trace."""


def _configure(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("traces", nargs="+", metavar="TRACE", help="trace file (JSON Lines) or -")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument(
        "--quiet-end",
        action="store_true",
        help="the run ended on a quiet, connected network: also check liveness (1.4), and "
        "hold nodes still in a configuration to what they owe",
    )
    p.add_argument(
        "--handle-traces",
        action="store_true",
        help="the traces come from application handles, whose first configuration may "
        "start mid-stream",
    )
    p.add_argument(
        "--local-clocks",
        action="store_true",
        help="nodes' t values come from separate clocks (daemons on several machines): do "
        "not compare times across nodes",
    )
    return p


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``check`` on the ``evs`` command's subparsers and return its parser."""
    p = subparsers.add_parser(
        "check",
        help="verify EVS properties on trace files",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return _configure(p)


def run(args: argparse.Namespace) -> int:
    """Run the check described by parsed ``args``; returns the exit status."""
    try:
        report = check_files(
            args.traces,
            quiet_end=args.quiet_end,
            handle_traces=args.handle_traces,
            compare_time=not args.local_clocks,
        )
    except TraceError as exc:
        print(f"evs check: invalid trace: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        name = exc.filename if exc.filename is not None else "trace"
        print(f"evs check: cannot read {name}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if args.json:
        print(report.to_json())
    else:
        print(report.render_text(limit=SHOWN_MAX))
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m evs.cli.check``) until the ``evs`` root wires it in."""
    parser = argparse.ArgumentParser(
        prog="evs check",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return run(_configure(parser).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
