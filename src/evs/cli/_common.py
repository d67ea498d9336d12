"""Shared pieces of the client commands: the socket option and error reporting."""

from __future__ import annotations

import argparse
import os

__all__ = ["DEFAULT_SOCKET", "add_socket_option", "socket_path"]

#: The executive's default IPC socket (api.md section 3, ``[ipc] socket``).
DEFAULT_SOCKET = "/run/evs/evs.sock"


def add_socket_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--socket",
        metavar="PATH",
        default=None,
        help=f"the executive's IPC socket (default: $EVS_SOCKET, else {DEFAULT_SOCKET})",
    )


def socket_path(args: argparse.Namespace) -> str:
    return str(args.socket or os.environ.get("EVS_SOCKET") or DEFAULT_SOCKET)
