"""pyevs: group messaging with Extended Virtual Synchrony over the Totem single-ring protocol."""

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

__all__ = [
    "AccessDenied",
    "ConfigChange",
    "Delivery",
    "DispatchFlags",
    "Event",
    "EvsError",
    "Guarantee",
    "InvalidArgument",
    "Membership",
    "NotConnected",
    "RingId",
    "TryAgain",
    "__version__",
]
