"""Writing JSON Lines traces (the contract of api.md section 4).

Theory of operation: the simulator and the daemon describe what each processor did as one
compact JSON object per line, so ``evs check`` (or anyone) can judge the run afterwards. The
event builders (``send_event`` ...) are plain functions returning dicts because the simulator
also checks its events in memory, without a file; ``TraceWriter`` only serialises them.
Events are validated before they are written by default: a producer bug should fail where it
happens, not later in the checker.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Protocol

from evs.trace.reader import validate_event
from evs.types import Guarantee, RingId

__all__ = [
    "TextSink",
    "TraceWriter",
    "confchg_event",
    "crash_event",
    "deliver_event",
    "gather_event",
    "payload_digest",
    "restart_event",
    "send_event",
]


class TextSink(Protocol):
    """Anything with ``write(str)``: an open text file, ``io.StringIO``, a socket wrapper."""

    def write(self, s: str, /) -> object: ...


def payload_digest(data: bytes) -> str:
    """A short hex digest of a payload for the optional ``digest`` field (bytes unchanged, 1.2)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


#: Each guarantee's trace spelling, looked up once: every send and delivery event needs one.
_LABELS: dict[Guarantee | str, str] = {g: g.label for g in Guarantee}


def _guarantee(g: Guarantee | str) -> str:
    label = _LABELS.get(g)
    if label is not None:
        return label
    return g.label if isinstance(g, Guarantee) else g


def send_event(
    t: float,
    node: int,
    msg: str,
    *,
    guarantee: Guarantee | str = Guarantee.AGREED,
    ring: RingId | str | None = None,
    digest: str | None = None,
) -> dict[str, Any]:
    """A ``send``; ``ring`` is the configuration it was sent in, when the producer knows it."""
    ev: dict[str, Any] = {"t": t, "node": node, "ev": "send", "msg": msg}
    ev["guarantee"] = _guarantee(guarantee)
    if ring is not None:
        ev["ring"] = str(ring)
    if digest is not None:
        ev["digest"] = digest
    return ev


def deliver_event(
    t: float,
    node: int,
    msg: str,
    sender: int,
    ring: RingId | str,
    *,
    guarantee: Guarantee | str = Guarantee.AGREED,
    digest: str | None = None,
) -> dict[str, Any]:
    """A ``deliver``; ``ring`` is the installed configuration (a transitional one's old ring)."""
    ev: dict[str, Any] = {"t": t, "node": node, "ev": "deliver", "msg": msg, "sender": sender}
    ev["ring"] = str(ring)
    ev["guarantee"] = _guarantee(guarantee)
    if digest is not None:
        ev["digest"] = digest
    return ev


def confchg_event(
    t: float,
    node: int,
    *,
    transitional: bool,
    ring: RingId | str,
    members: Iterable[int],
    left: Iterable[int] = (),
    joined: Iterable[int] = (),
) -> dict[str, Any]:
    """A ``confchg``; for a transitional one ``ring`` is the regular ring it closes."""
    return {
        "t": t,
        "node": node,
        "ev": "confchg",
        "kind": "transitional" if transitional else "regular",
        "ring": str(ring),
        "members": sorted(members),
        "left": sorted(left),
        "joined": sorted(joined),
    }


def crash_event(t: float, node: int) -> dict[str, Any]:
    """The end of an incarnation (the simulator knows it; a daemon trace may not say it)."""
    return {"t": t, "node": node, "ev": "crash"}


def restart_event(t: float, node: int) -> dict[str, Any]:
    """The start of a new incarnation: a fresh processor with no configuration yet."""
    return {"t": t, "node": node, "ev": "restart"}


def gather_event(t: float, node: int, *, reason: str, from_state: str) -> dict[str, Any]:
    """Informational: why a processor (re-)entered GATHER; checkers judge nothing by it."""
    return {"t": t, "node": node, "ev": "gather", "reason": reason, "from": from_state}


class TraceWriter:
    """Writes events as JSON Lines to a path (owned, closed by ``close``) or a text sink."""

    def __init__(
        self,
        sink: str | os.PathLike[str] | TextSink,
        *,
        validate: bool = True,
        append: bool = False,
    ) -> None:
        self._validate = validate
        self._owned = isinstance(sink, (str, os.PathLike))
        if isinstance(sink, (str, os.PathLike)):
            # Line buffering: a crash of the writer leaves whole lines for the checker.
            self._sink: TextSink = open(  # noqa: SIM115 - closed by close()
                sink, "a" if append else "w", encoding="utf-8", buffering=1
            )
        else:
            self._sink = sink
        self._dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
        self.count = 0

    def write(self, event: Mapping[str, Any]) -> None:
        """Write one event; raises TraceError (before writing) if it breaks the format."""
        if self._validate:
            validate_event(dict(event) if type(event) is not dict else event)
        self._sink.write(self._dumps(event) + "\n")
        self.count += 1

    def send(
        self,
        t: float,
        node: int,
        msg: str,
        *,
        guarantee: Guarantee | str = Guarantee.AGREED,
        ring: RingId | str | None = None,
        digest: str | None = None,
    ) -> None:
        self.write(send_event(t, node, msg, guarantee=guarantee, ring=ring, digest=digest))

    def deliver(
        self,
        t: float,
        node: int,
        msg: str,
        sender: int,
        ring: RingId | str,
        *,
        guarantee: Guarantee | str = Guarantee.AGREED,
        digest: str | None = None,
    ) -> None:
        self.write(deliver_event(t, node, msg, sender, ring, guarantee=guarantee, digest=digest))

    def confchg(
        self,
        t: float,
        node: int,
        *,
        transitional: bool,
        ring: RingId | str,
        members: Iterable[int],
        left: Iterable[int] = (),
        joined: Iterable[int] = (),
    ) -> None:
        self.write(
            confchg_event(
                t,
                node,
                transitional=transitional,
                ring=ring,
                members=members,
                left=left,
                joined=joined,
            )
        )

    def crash(self, t: float, node: int) -> None:
        self.write(crash_event(t, node))

    def restart(self, t: float, node: int) -> None:
        self.write(restart_event(t, node))

    def flush(self) -> None:
        flush = getattr(self._sink, "flush", None)
        if flush is not None:
            flush()

    def close(self) -> None:
        """Flush; close the file only if this writer opened it."""
        self.flush()
        if self._owned:
            close = getattr(self._sink, "close", None)
            if close is not None:
                close()

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
