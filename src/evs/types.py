"""Public value types shared by every layer (the contract of ``api.md`` section 1).

These are plain immutable values: the protocol core produces them, the executive ships them
over IPC and the library hands them to applications, so they must not depend on any layer.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

from evs.errors import InvalidArgument

__all__ = [
    "ConfigChange",
    "Delivery",
    "DispatchFlags",
    "Event",
    "Guarantee",
    "Membership",
    "RingId",
    "group_names",
    "group_names_seen",
    "make_delivery",
]


class Guarantee(enum.IntEnum):
    """Delivery guarantee of a message; every level is also FIFO per sender."""

    #: Totally ordered: delivered once every earlier message is delivered.
    AGREED = 2
    #: Agreed, and delivered only once every member of the ring is known to hold it.
    SAFE = 3

    @property
    def label(self) -> str:
        return self.name.lower()


class DispatchFlags(enum.IntEnum):
    """How much ``Client.dispatch`` runs (values follow corosync's dispatch flags)."""

    ONE = 1
    ALL = 2
    BLOCKING = 3
    ONE_NONBLOCKING = 4


@dataclass(frozen=True, slots=True, order=True)
class RingId:
    """A ring (configuration) identity; ordered by ``seq`` first, printed as ``rep.seq``."""

    seq: int
    rep: int

    def __str__(self) -> str:
        return f"{self.rep}.{self.seq}"

    @classmethod
    def parse(cls, text: str) -> RingId:
        """Parse ``rep.seq``; raises ValueError with the offending text."""
        rep, sep, seq = text.partition(".")
        if not sep or not rep.isdigit() or not seq.isdigit():
            raise ValueError(f"ring id must look like 'rep.seq', got {text!r}")
        return cls(seq=int(seq), rep=int(rep))


@dataclass(frozen=True, slots=True)
class Delivery:
    """One application message delivered in the total order."""

    nodeid: int
    pid: int
    groups: tuple[bytes, ...]
    data: bytes
    guarantee: Guarantee


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """A transitional or regular configuration, delivered in the stream of messages."""

    ring_id: RingId
    transitional: bool
    members: tuple[int, ...]
    left: tuple[int, ...] = field(default=())
    joined: tuple[int, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Membership:
    """The local node id and the members of the last configuration change."""

    local_nodeid: int
    ring_id: RingId
    members: tuple[int, ...]


Event = Delivery | ConfigChange


def group_names_seen(
    groups: Iterable[str | bytes],
    seen: dict[object, tuple[bytes, ...]],
    *,
    name_max: int,
    count_max: int,
) -> tuple[bytes, ...]:
    """``group_names``, remembered in ``seen`` for a list or tuple of one plain name.

    A sender names the same group message after message (the library's sends, the executive's
    intake of them): checked once, then a dict lookup. Only exact str or bytes are remembered:
    a memoryview may hash like bytes but must still be refused. ``seen`` belongs to one set of
    limits (empty it when they change); it keeps at most 256 names."""
    given = cast(object, groups)  # compiled, a typed tuple would be checked item by item here
    key = None
    if (type(given) is tuple or type(given) is list) and len(given) == 1:
        name = given[0]
        if type(name) is bytes or type(name) is str:
            key = name
            names = seen.get(key)
            if names is not None:
                return names
    names = group_names(groups, name_max=name_max, count_max=count_max)
    if key is not None:
        if len(seen) >= 256:
            seen.clear()
        seen[key] = names
    return names


def group_names(
    groups: Iterable[str | bytes], *, name_max: int, count_max: int
) -> tuple[bytes, ...]:
    """Validated, de-duplicated group names in first-seen order; InvalidArgument otherwise.

    One rule for the library (checking against the limits its executive announced) and the
    executive's service (its own limits), so both refuse the same lists with the same words.
    """
    if isinstance(groups, (str, bytes)):
        raise InvalidArgument("groups must be an iterable of names, not a single str or bytes")
    try:
        items = list(groups)
    except TypeError:
        raise InvalidArgument("groups must be an iterable of str or bytes names") from None
    out: list[bytes] = []
    for g in items:
        if isinstance(g, str):
            name = g.encode()
        elif isinstance(g, bytes):
            name = g
        else:
            raise InvalidArgument(f"a group name must be str or bytes, got {type(g).__name__}")
        if not 1 <= len(name) <= name_max:
            raise InvalidArgument(
                f"group name {name[:80]!r} is {len(name)} bytes; names are 1..{name_max}"
            )
        if name not in out:
            out.append(name)
    if not out:
        raise InvalidArgument("at least one group name is needed")
    if len(out) > count_max:
        raise InvalidArgument(f"{len(out)} groups given; the limit is {count_max}")
    return tuple(out)


# Last: it needs Delivery above. Compiled in the compiled build (evs._delivery says why).
from evs._delivery import make_delivery  # noqa: E402
