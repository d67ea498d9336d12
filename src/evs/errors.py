"""Exceptions of the public API; every message says what was wrong and what the limit is."""

from __future__ import annotations

__all__ = ["AccessDenied", "EvsError", "InvalidArgument", "NotConnected", "TryAgain"]


class EvsError(Exception):
    """Base class of every pyevs error."""


class TryAgain(EvsError):
    """Flow control holds the message back; retry later (corosync's CS_ERR_TRY_AGAIN)."""


class NotConnected(EvsError):
    """The executive is gone or the handle was closed."""


class InvalidArgument(EvsError):
    """A bad group name, a message too large, too many groups, or another bad argument."""


class AccessDenied(EvsError):
    """The executive refused this process."""
