"""``evs daemon -c CONFIG``: the executive (api.md section 2).

Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT), 2 when the configuration is refused or
the executive cannot start: an unusable key file or state directory, an address it cannot
bind (the reason on stderr naming the file, key or address; no traceback).
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_parser", "run"]

_DESCRIPTION = """\
Run the executive: one Totem processor on UDP, with the IPC socket applications connect to.
The configuration is the TOML file of api.md section 3. SIGTERM or SIGINT leave the ring
gracefully and exit 0; SIGHUP reopens the log file and the trace."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("daemon", help="run the executive", description=_DESCRIPTION)
    p.add_argument("-c", "--config", required=True, metavar="CONFIG", help="TOML config file")
    p.add_argument(
        "-f",
        "--foreground",
        action="store_true",
        help="accepted for corosync users: evs daemon never forks (run it under systemd)",
    )


def run(args: argparse.Namespace) -> int:
    # Imported here: the executive's modules (asyncio, the core) load only for this command.
    from evs.daemon.config_file import ConfigFileError, load_config  # noqa: PLC0415
    from evs.daemon.key_file import KeyFileError  # noqa: PLC0415
    from evs.daemon.main import run_forever  # noqa: PLC0415
    from evs.daemon.state_dir import StateDirError  # noqa: PLC0415

    try:
        cfg = load_config(args.config)
    except ConfigFileError as exc:
        print(f"evs daemon: {exc}", file=sys.stderr)
        return 2
    try:
        return run_forever(cfg)
    except (OSError, KeyFileError, StateDirError) as exc:
        print(f"evs daemon: cannot start: {exc}", file=sys.stderr)
        return 2
