"""Live processors to bytes and back, whether the core runs as Python or compiled by mypyc.

Theory of operation. The harvest keeps processors caught between two inputs as pickles and
each round thaws a private copy. Plain pickle cannot do that for the compiled core
(tools/compile.py): an instance of a mypyc native class cannot be made without running its
``__init__``, so unpickling a ``Processor`` (or a ``MembershipState``, ``Packer``,
``_Assembly``) fails for want of the constructor's arguments; and mypyc's default
``__setstate__`` assigns attributes one by one, which a frozen dataclass (``Mcast``,
``CommitEntry``, ...) refuses. ``freeze`` therefore pickles every object of a class defined
in a hot module (``evs._compiled.HOT_MODULES``) its own way, compiled or not, so that the
pure-Python tests run the very path the compiled ones do:

* a dataclass as a call of its constructor with its fields (its public interface);
* any other object as a throwaway instance (the class called with no argument, or with the
  arbitrary valid ones of ``_BLANKS``), every attribute of which is then set to the
  original's: the attributes are those ``__getstate__`` returns (mypyc's lists every
  native attribute that is set; Python's gives the ``__dict__`` or the slots).

Everything else (classes, enums and exceptions of the hot modules, and ``TotemConfig``,
``RingId``, counters, deques) pickles as usual.

Not ``@mypyc_attr(serializable=True)``: a frozen dataclass with it still fails in
``__setstate__``, it needs mypy_extensions at run time (not a dependency of pyevs), and it
turns off mypyc's analysis of always-defined attributes for the class, so that every
attribute read on the hot path gets an is-it-set check.

A class with a required ``__init__`` argument that enters a processor's state later needs
an entry in ``_BLANKS``: without it both passes of tests/fuzz fail in ``thaw``.
"""

from __future__ import annotations

import dataclasses
import enum
import io
import pickle
from collections.abc import Callable
from typing import Any

from evs._compiled import HOT_MODULES
from evs.totem.config import TotemConfig
from evs.totem.groups import Packer, _Assembly
from evs.totem.membership import MembershipState
from evs.totem.processor import Processor
from evs.types import Guarantee

__all__ = ["freeze", "unfreeze"]

_HOT = frozenset(HOT_MODULES)

#: Throwaway instances of the hot classes whose ``__init__`` takes required arguments. Any
#: valid arguments do: every attribute is overwritten by the original's.
_BLANKS: dict[type, Callable[[], object]] = {
    Processor: lambda: Processor(TotemConfig(), 1),
    MembershipState: lambda: MembershipState(1),
    Packer: lambda: Packer(1024),
    _Assembly: lambda: _Assembly(0, None, 0, Guarantee.AGREED),
}


def _build(cls: type, fields: dict[str, object]) -> object:
    """A dataclass made again by its constructor (pickle's call)."""
    return cls(**fields)


def _blank(cls: type) -> object:
    """A throwaway instance of ``cls``, its state set next by ``_restore`` (pickle's call)."""
    make = _BLANKS.get(cls)
    return make() if make is not None else cls()


def _restore(obj: object, state: dict[str, object]) -> None:
    """Set every attribute of the original on the throwaway instance (pickle's call)."""
    for name, value in state.items():
        setattr(obj, name, value)


def _attributes(obj: object) -> dict[str, object]:
    """Every attribute that is set: mypyc's ``__getstate__`` gives a dict of them, Python's
    a dict (``__dict__``) or a (dict or None, slots) pair."""
    state = obj.__getstate__()
    if isinstance(state, tuple):
        instance, slots = state
        return {**(instance or {}), **(slots or {})}
    return dict(state) if isinstance(state, dict) else {}


class _Freezer(pickle.Pickler):
    """A pickler that rebuilds the hot modules' objects through their constructors."""

    def reducer_override(self, obj: Any) -> Any:
        cls = type(obj)
        if cls.__module__ not in _HOT or isinstance(obj, (type, enum.Enum, BaseException, tuple)):
            return NotImplemented  # named tuples (Mcast, Deliver, Sent) pickle as they are
        if dataclasses.is_dataclass(obj):
            fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init}
            return _build, (cls, fields)
        return _blank, (cls,), _attributes(obj), None, None, _restore


def freeze(proc: Processor) -> bytes:
    """``proc`` as bytes, its whole state, for ``unfreeze``."""
    buf = io.BytesIO()
    _Freezer(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(proc)
    return buf.getvalue()


def unfreeze(blob: bytes) -> Processor:
    """A new processor in the state ``freeze`` saw, outputs and all."""
    proc = pickle.loads(blob)
    if not isinstance(proc, Processor):
        raise TypeError(f"not a frozen Processor: {type(proc).__name__}")
    return proc
