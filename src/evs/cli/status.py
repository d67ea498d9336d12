"""``evs status``: what the local executive knows: ring, state, members, counters.

Text output is for people (counters grouped, zeros hidden unless ``-v``); ``--json`` prints one
object with at least ``nodeid``, ``ring_id`` (``rep.seq``), ``state``, ``members`` and
``counters`` (api.md section 3), plus per-peer counters, drops, clients and uptime.
Exit codes: 0, or 2 when no executive answers on the socket.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import evs
from evs.cli._common import add_socket_option, socket_path

__all__ = ["add_parser", "format_status", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "status",
        help="ring id, state, members and counters of the local executive",
        description="Ask the local executive for its ring id, state, members and counters.",
    )
    add_socket_option(p)
    p.add_argument("--json", action="store_true", help="one JSON object (api.md section 3)")
    p.add_argument("-v", "--verbose", action="store_true", help="also show zero counters")


def format_status(st: dict[str, Any], *, verbose: bool = False) -> str:
    lines = [
        f"node {st['nodeid']}: {st['state']} on ring {st['ring_id']}, members {st['members']}",
    ]
    conf = st.get("configuration")
    if conf:
        lines.append(f"last regular configuration: {conf['ring_id']} {conf['members']}")
    for key in ("incarnation", "pid", "uptime_s", "clients"):
        if key in st:
            lines.append(f"{key.replace('_', ' ')}: {st[key]}")
    if "transport" in st:
        t = st["transport"]
        lines.append(f"transport: {t['mode']} on {t['bind']}:{t['port']}")
    crypto = st.get("crypto")
    if crypto:
        if crypto.get("cipher") == "none":
            lines.append("wire security: OFF (cipher none)")
        else:
            in_use = crypto.get("key_in_use", crypto.get("key_id"))
            lines.append(
                f"wire security: {crypto['cipher']}, key id {in_use} in use, "
                f"accepted {crypto.get('keys_accepted', crypto.get('key_ids'))}, "
                f"boot id {crypto.get('boot_id')}"
            )
            rotation = crypto.get("rotation") or {}
            if rotation.get("phase", "idle") != "idle":
                lines.append(
                    f"key rotation to key id {rotation.get('key_id')}: {rotation['phase']}; "
                    f"required {rotation.get('required')}, installed "
                    f"{rotation.get('installed')}, switched {rotation.get('switched')}"
                )
            if rotation.get("refused"):
                lines.append(f"key rotation refused: {rotation['refused']}")
    sq = st.get("send_queue")
    if sq:
        line = (
            f"send queue: {sq.get('messages', 0)} messages ({sq.get('bytes', 0)} bytes) in the "
            f"core, {sq.get('held_for_room', 0)} held for room"
        )
        if sq.get("held_for_readers"):
            line += "; this node's sends are held while a lagging local client catches up"
        lines.append(line)
    peers = st.get("peers") or {}
    if peers:
        lines.append(
            "peers (datagrams received): " + ", ".join(f"{k}: {v}" for k, v in peers.items())
        )
    counters = st.get("counters", {})
    shown = {k: v for k, v in sorted(counters.items()) if verbose or v}
    if shown:
        lines.append("counters:")
        width = max(len(k) for k in shown)
        lines.extend(f"  {k:<{width}}  {v}" for k, v in shown.items())
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        with evs.Client(socket_path(args)) as c:
            st = c.status()
    except evs.EvsError as exc:
        print(f"evs status: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(st, sort_keys=True))
    else:
        print(format_status(st, verbose=args.verbose))
    return 0
