"""Sans-I/O glue above the protocol core, shared by the executive, embedded Node and simulator.

``Driver`` feeds a ``Processor`` and collects what it wants sent (persisting the ring sequence
first); ``EvsService`` turns the core's deliveries and configurations into per-handle event
streams (groups, self delivery, first-join configuration, bounded queues, back-pressure).
Neither reads a clock, opens a socket or imports asyncio.
"""

from evs.runtime.driver import Driver
from evs.runtime.service import EvsService, Handle, ServiceHeader

__all__ = ["Driver", "EvsService", "Handle", "ServiceHeader"]
