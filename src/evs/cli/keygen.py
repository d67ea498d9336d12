"""``evs keygen [-o FILE] [-s BYTES] [--force]``: make the cluster key (api.md section 3).

Exit codes: 0 written, 1 the file exists and ``--force`` was not given, 2 bad arguments or the
file cannot be written (the reason on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import sys

from evs.crypto import KEY_BYTES_DEFAULT, KEY_BYTES_MAX, KEY_BYTES_MIN

__all__ = ["add_parser", "run"]

#: Where ``[crypto] key_file`` points by default.
DEFAULT_KEY_FILE = "/etc/evs/authkey"

_DESCRIPTION = f"""\
Write a new cluster key: {KEY_BYTES_DEFAULT} random bytes by default, to a file only its owner
may read (mode 0400). Copy the same file to every node (it is the [crypto] key_file of each
executive's configuration) and keep it secret: whoever has it can join the ring and read every
message. An existing file is never replaced without --force."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("keygen", help="write a new cluster key file", description=_DESCRIPTION)
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        default=DEFAULT_KEY_FILE,
        help=f"where to write the key (default: {DEFAULT_KEY_FILE})",
    )
    p.add_argument(
        "-s",
        "--size",
        metavar="BYTES",
        type=int,
        default=KEY_BYTES_DEFAULT,
        help=f"key length, {KEY_BYTES_MIN}..{KEY_BYTES_MAX} (default: {KEY_BYTES_DEFAULT})",
    )
    p.add_argument("--force", action="store_true", help="replace an existing key file")


def run(args: argparse.Namespace) -> int:
    from evs.daemon.key_file import KeyFileError, KeyFileExists, write_key_file  # noqa: PLC0415

    if not KEY_BYTES_MIN <= args.size <= KEY_BYTES_MAX:
        print(
            f"evs keygen: --size must be {KEY_BYTES_MIN}..{KEY_BYTES_MAX} bytes, got {args.size}",
            file=sys.stderr,
        )
        return 2
    try:
        write_key_file(args.output, args.size, force=args.force)
    except KeyFileExists as exc:
        print(f"evs keygen: {exc}", file=sys.stderr)
        return 1
    except KeyFileError as exc:
        print(f"evs keygen: {exc}", file=sys.stderr)
        return 2
    print(f"evs keygen: wrote a {args.size}-byte key to {args.output} (mode 0400)")
    return 0
