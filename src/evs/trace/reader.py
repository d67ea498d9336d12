"""Reading and validating JSON Lines traces (the contract of api.md section 4).

Theory of operation: a trace is judged by ``evs.check``, which must be able to trust the shape
of every event, so the reader's one job is to hand out events whose required keys and types
are right, and to stop at the first bad line with ``file:line`` and the reason, so a person
can find it. Extra keys pass through untouched: producers may add fields, and the checker
uses two of them when present (``digest`` on send and deliver, ``ring`` on send).

Validation is on the checker's hot path (the simulator checks ~100k in-memory events per run),
so it is written as straight-line type tests rather than a generic schema walker.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from evs.errors import EvsError

__all__ = [
    "CONF_KINDS",
    "EVENT_KINDS",
    "GUARANTEES",
    "TraceError",
    "iter_events",
    "msg_sender",
    "read_trace",
    "validate_event",
]

EVENT_KINDS = ("send", "deliver", "confchg", "crash", "restart", "gather")
GUARANTEES = frozenset({"agreed", "safe"})
CONF_KINDS = frozenset({"transitional", "regular"})

_MSG_RE = re.compile(r"[1-9][0-9]*:[0-9]+:[0-9]+")
_RING_RE = re.compile(r"[0-9]+\.[0-9]+")
_HEX_RE = re.compile(r"[0-9a-fA-F]+")


class TraceError(EvsError):
    """A trace line or event that breaks the format; names the source and line when known."""

    def __init__(self, reason: str, *, source: str | None = None, line: int | None = None):
        self.reason = reason
        self.source = source
        self.line = line
        where = source if line is None else f"{source or '<trace>'}:{line}"
        super().__init__(reason if where is None else f"{where}: {reason}")


def msg_sender(msg: str) -> int:
    """The sender node id named by a message id ``sender:incarnation:counter``."""
    return int(msg[: msg.index(":")])


def _fail(reason: str) -> None:
    raise TraceError(reason)


def _need_msg(obj: dict[str, Any]) -> None:
    msg = obj.get("msg")
    if type(msg) is not str or _MSG_RE.fullmatch(msg) is None:
        _fail(f'"msg" must be "<sender>:<incarnation>:<counter>", got {msg!r}')


def _need_ring(obj: dict[str, Any], key: str = "ring") -> None:
    ring = obj.get(key)
    if type(ring) is not str or _RING_RE.fullmatch(ring) is None:
        _fail(f'"{key}" must be a ring id "rep.seq", got {ring!r}')


def _need_guarantee(obj: dict[str, Any]) -> None:
    g = obj.get("guarantee")
    if type(g) is not str or g not in GUARANTEES:
        _fail(f'"guarantee" must be "agreed" or "safe", got {g!r}')


def _allow_digest(obj: dict[str, Any]) -> None:
    if "digest" in obj:
        d = obj["digest"]
        if type(d) is not str or _HEX_RE.fullmatch(d) is None:
            _fail(f'"digest" must be a hex string, got {d!r}')


def _need_nodes(obj: dict[str, Any], key: str) -> None:
    ids = obj.get(key)
    if type(ids) is not list or any(type(n) is not int or n < 1 for n in ids):
        _fail(f'"{key}" must be a list of node ids (positive integers), got {ids!r}')
    elif len(set(ids)) != len(ids):
        _fail(f'"{key}" lists a node twice: {ids!r}')


def _check_send(obj: dict[str, Any]) -> None:
    _need_msg(obj)
    _need_guarantee(obj)
    if "ring" in obj:
        _need_ring(obj)
    _allow_digest(obj)


def _check_deliver(obj: dict[str, Any]) -> None:
    _need_msg(obj)
    sender = obj.get("sender")
    if type(sender) is not int or sender < 1:
        _fail(f'"sender" must be a node id (positive integer), got {sender!r}')
    _need_ring(obj)
    _need_guarantee(obj)
    _allow_digest(obj)


def _check_confchg(obj: dict[str, Any]) -> None:
    kind = obj.get("kind")
    if type(kind) is not str or kind not in CONF_KINDS:
        _fail(f'"kind" must be "transitional" or "regular", got {kind!r}')
    _need_ring(obj)
    for key in ("members", "left", "joined"):
        _need_nodes(obj, key)


def _check_nothing(obj: dict[str, Any]) -> None:
    del obj


def _check_gather(obj: dict[str, Any]) -> None:
    """Informational: why a processor (re-)entered GATHER; the checker does not judge it."""
    if type(obj.get("reason")) is not str:
        _fail(f'"reason" must be a string, got {obj.get("reason")!r}')


_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "send": _check_send,
    "deliver": _check_deliver,
    "confchg": _check_confchg,
    "crash": _check_nothing,
    "restart": _check_nothing,
    "gather": _check_gather,
}


def validate_event(obj: object) -> dict[str, Any]:
    """Return ``obj`` if it is a well-formed trace event, else raise TraceError saying why."""
    if type(obj) is not dict:
        raise TraceError(f"an event must be a JSON object, got {type(obj).__name__}")
    kind = obj.get("ev")
    check = _CHECKS.get(kind) if type(kind) is str else None
    if check is None:
        raise TraceError(f'"ev" must be one of {", ".join(EVENT_KINDS)}; got {kind!r}')
    t = obj.get("t")
    if (type(t) is not int and type(t) is not float) or not math.isfinite(t):
        raise TraceError(f'"t" must be a finite number of milliseconds, got {t!r}')
    node = obj.get("node")
    if type(node) is not int or node < 1:
        raise TraceError(f'"node" must be a node id (positive integer), got {node!r}')
    check(obj)
    return obj


def iter_events(lines: Iterable[str], *, source: str = "<trace>") -> Iterator[dict[str, Any]]:
    """Parse and validate JSON Lines from any iterable of text lines; blank lines are skipped."""
    lineno = 0
    it = iter(lines)
    while True:
        try:
            line = next(it)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            raise TraceError(
                f"not UTF-8 text ({exc.reason})", source=source, line=lineno + 1
            ) from None
        lineno += 1
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise TraceError(f"invalid JSON: {exc}", source=source, line=lineno) from None
        try:
            yield validate_event(obj)
        except TraceError as exc:
            raise TraceError(exc.reason, source=source, line=lineno) from None


def read_trace(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Stream the validated events of one trace file, in file order."""
    source = os.fspath(path)
    with open(source, encoding="utf-8") as f:
        yield from iter_events(f, source=source)
