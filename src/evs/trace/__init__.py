"""The JSON Lines trace contract (api.md section 4): event builders, a writer, a reader.

Producers (the simulator, the daemon, applications) describe what happened one event per
line; ``evs.check`` judges it. This package knows the format and nothing of the protocol.
"""

from evs.trace.reader import (
    CONF_KINDS,
    EVENT_KINDS,
    GUARANTEES,
    TraceError,
    iter_events,
    msg_sender,
    read_trace,
    validate_event,
)
from evs.trace.writer import (
    TextSink,
    TraceWriter,
    confchg_event,
    crash_event,
    deliver_event,
    gather_event,
    payload_digest,
    restart_event,
    send_event,
)

__all__ = [
    "CONF_KINDS",
    "EVENT_KINDS",
    "GUARANTEES",
    "TextSink",
    "TraceError",
    "TraceWriter",
    "confchg_event",
    "crash_event",
    "deliver_event",
    "gather_event",
    "iter_events",
    "msg_sender",
    "payload_digest",
    "read_trace",
    "restart_event",
    "send_event",
    "validate_event",
]
