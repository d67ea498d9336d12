"""``make_delivery``: how pyevs's own decoders build a ``Delivery``, compiled.

Theory of operation: every message becomes a ``Delivery`` once at every receiving client (its
IPC decoder), so building one is on the hottest path of the library. The public class is a
frozen, slotted dataclass in ``evs.types``, whose ``__init__`` stores each field through
``object.__setattr__``; ``make_delivery`` fills the slots directly instead, at half the cost.
The result is an ordinary, equal and equally frozen ``Delivery``; the callers pass fields of
the declared types (the class itself checks nothing either).

It lives in this leaf module, and ``evs.types`` re-exports it, because this module is one of
the hot modules ``tools/compile.py`` compiles: a compiled decoder then calls it without a
frame of interpreted code per message (a tenth off a client's ``events()``), while the value
types themselves stay plain Python classes. Import it from ``evs.types``: that module imports
this one once ``Delivery`` exists.
"""

from __future__ import annotations

from typing import Final

from evs.types import Delivery, Guarantee

__all__ = ["make_delivery"]

_new_object: Final = object.__new__
_set_nodeid, _set_pid, _set_groups, _set_data, _set_guarantee = (
    Delivery.__dict__[name].__set__ for name in ("nodeid", "pid", "groups", "data", "guarantee")
)


def make_delivery(
    nodeid: int, pid: int, groups: tuple[bytes, ...], data: bytes, guarantee: Guarantee
) -> Delivery:
    """``Delivery(...)`` without the dataclass's ``__init__`` (see the module docstring)."""
    d: Delivery = _new_object(Delivery)
    _set_nodeid(d, nodeid)
    _set_pid(d, pid)
    _set_groups(d, groups)
    _set_data(d, data)
    _set_guarantee(d, guarantee)
    return d
