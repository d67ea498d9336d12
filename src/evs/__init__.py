"""pyevs: group messaging with Extended Virtual Synchrony over the Totem single-ring protocol.

``Client`` and ``AsyncClient`` are imported on first use (module ``__getattr__``), so
``import evs`` stays light: no sockets, threads or asyncio until an application asks for them.
"""

import importlib
from typing import TYPE_CHECKING, Any

from evs._version import __version__
from evs.errors import AccessDenied, EvsError, InvalidArgument, NotConnected, TryAgain
from evs.types import (
    ConfigChange,
    Delivery,
    DispatchFlags,
    Event,
    Guarantee,
    Membership,
    RingId,
)

if TYPE_CHECKING:
    from evs.client.async_client import AsyncClient
    from evs.client.sync_client import Client
    from evs.daemon.node import Node

__all__ = [
    "AccessDenied",
    "AsyncClient",
    "Client",
    "ConfigChange",
    "Delivery",
    "DispatchFlags",
    "Event",
    "EvsError",
    "Guarantee",
    "InvalidArgument",
    "Membership",
    "Node",
    "NotConnected",
    "RingId",
    "TryAgain",
    "__version__",
]


_LAZY = {
    "Client": "evs.client.sync_client",
    "AsyncClient": "evs.client.async_client",
    "Node": "evs.daemon.node",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'evs' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
