"""Which of pyevs's hot modules run as mypyc-compiled extensions (``tools/compile.py``).

Benchmarks record it next to their figures, since compiled and pure-Python modules differ in
speed but not in behaviour.
"""

from __future__ import annotations

import importlib.util

#: The modules ``tools/compile.py`` compiles (its MODULES list, as module names).
HOT_MODULES = (
    "evs._delivery",
    "evs.totem.codec",
    "evs.totem.drops",
    "evs.totem.events",
    "evs.totem.groups",
    "evs.totem.invariants",
    "evs.totem.membership",
    "evs.totem.messages",
    "evs.totem.ordering",
    "evs.totem.processor",
    "evs.totem.recovery",
    "evs.totem.timers",
    "evs.runtime.driver",
    "evs.runtime.send_window",
    "evs.runtime.service",
    "evs.ipc.codec",
    "evs.ipc.messages",
    "evs.client.session",
    "evs.crypto.frame",
    "evs.crypto.replay",
    "evs.daemon.executive",
    "evs.daemon.ipc_server",
    "evs.daemon.udp",
    "evs.daemon.wire",
    # Not pyevs itself: ``evs bench``'s per-message bookkeeping, which shares the CPUs with
    # the executives it measures (corosync's cpgbench does the same work in C).
    "evs.cli._bench_verify",
)


def compiled_modules() -> list[str]:
    """The hot modules that would load from a compiled extension rather than a .py file."""
    out = []
    for name in HOT_MODULES:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None else None
        if origin is not None and not origin.endswith(".py"):
            out.append(name)
    return out
