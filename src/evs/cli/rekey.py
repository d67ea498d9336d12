"""``evs rekey [--socket S] [--key-file NEW] [--members-only] [--timeout S | --no-wait]``.

Theory of operation: the command asks ONE local executive (an admin request over its IPC
socket: root or the daemon's uid only) to start an online key rotation; the executive hands the
new key to every member over the ring itself, and the cluster switches to it and retires the
old one without losing a message or changing its configuration (``evs.crypto.rotation``). The
command then watches the local executive's status until the rotation has finished there: the
new key is the only one it accepts, which it only does once every required node seals with
the new key. Without ``--key-file`` the executive makes the key, so no key crosses the socket.

Exit codes: 0 the rotation finished (or, with ``--no-wait``, started); 1 refused (another
rotation in progress, access denied, ...) or not finished within ``--timeout`` (it goes on: the
status shows which nodes it waits for); 2 bad arguments, an unusable key file, or no executive
on the socket. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import evs
from evs.cli._common import add_socket_option, socket_path

__all__ = ["add_parser", "run"]

_DESCRIPTION = """\
Rotate the cluster key online: the local executive gives a new key to every node over the ring,
the nodes switch to it, and the old key is retired, with no message lost and no configuration
change. By default every node of the configuration must take the key before anyone switches
(a node that is down holds the rotation until it is back); --members-only requires only the
current members (a node that is away then needs the key files copied to it: see docs/daemon.md,
"Key rotation"); while a rotation waits for a node that is gone, --members-only without
--key-file narrows it to the current members. Only root and the daemon's user may rotate the
key."""

#: Seconds between two looks at the executive's status while waiting.
_POLL_S = 0.1


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("rekey", help="rotate the cluster key online", description=_DESCRIPTION)
    add_socket_option(p)
    p.add_argument(
        "--key-file",
        metavar="FILE",
        default=None,
        help="the new key (made by evs keygen); default: the executive makes one",
    )
    p.add_argument(
        "--members-only",
        action="store_true",
        help="require only the current members, not every configured node, to take the key",
    )
    wait = p.add_mutually_exclusive_group()
    wait.add_argument(
        "--timeout",
        metavar="SECONDS",
        default="60",
        help="how long to wait for the rotation to finish (default: 60)",
    )
    wait.add_argument("--no-wait", action="store_true", help="return once the rotation has started")


def _fail(text: str, code: int) -> int:
    print(f"evs rekey: {text}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    try:
        timeout = float(args.timeout)
    except ValueError:
        timeout = float("nan")
    if not timeout > 0:  # NaN too
        return _fail(f"--timeout must be a positive number of seconds, got {args.timeout!r}", 2)
    key = b""
    if args.key_file is not None:
        from evs.daemon.key_file import KeyFileError, read_key_file  # noqa: PLC0415

        try:
            key = read_key_file(args.key_file)
        except KeyFileError as exc:
            return _fail(str(exc), 2)
    try:
        with evs.Client(socket_path(args)) as c:
            try:
                started = c.rekey(key, members_only=args.members_only)
            except evs.NotConnected:
                raise
            except evs.EvsError as exc:
                return _fail(str(exc), 1)
            key_id = started.get("key_id")
            print(
                f"evs rekey: key id {key_id} (fingerprint {started.get('fingerprint')}) offered; "
                f"required nodes {started.get('required')}"
            )
            if args.no_wait:
                return 0
            return _wait(c, key_id, started.get("fingerprint"), timeout)
    except evs.EvsError as exc:
        return _fail(str(exc), 2)


def _wait(c: evs.Client, key_id: object, fp: object, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        crypto: dict[str, Any] = c.status().get("crypto") or {}
        rotation: dict[str, Any] = crypto.get("rotation") or {}
        if rotation.get("refused"):  # before success: a rival offer of the same id may win
            return _fail(str(rotation["refused"]), 1)
        ours = (crypto.get("fingerprints") or {}).get(str(key_id)) == fp
        if ours and crypto.get("key_in_use") == key_id and crypto.get("keys_accepted") == [key_id]:
            print(f"evs rekey: key id {key_id} is in use on every required node; old key retired")
            return 0
        if time.monotonic() >= deadline:
            phase = rotation.get("phase", "?")
            done = rotation.get("installed" if phase == "installed" else "switched", [])
            waiting = sorted(set(rotation.get("required", [])) - set(done))
            return _fail(
                f"key id {key_id} not yet in use everywhere after {timeout:g} s "
                f"(here: {phase}; waiting for nodes {waiting}); the rotation goes on",
                1,
            )
        time.sleep(_POLL_S)  # polling another process's status, bounded by the deadline
