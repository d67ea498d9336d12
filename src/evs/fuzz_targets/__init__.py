"""Fuzzers of the decoders reachable from outside the node, beside the core's (docs/fuzzing.md).

Theory of operation: ``evs.sim.fuzz`` feeds the core hostile datagrams that decode; this
package covers every other door a peer, a client or an operator's file can push bytes
through, each as a *target* of one shared engine (``engine``: seeded cases, a byte mutator,
a watchdog, worker processes):

* ``open`` (``sealed``): sealed datagrams into ``Opener.open``, then the totem decoder and
  the group layer, the path ``SealedWire.on_datagrams`` hands to the core;
* ``ipc`` and ``session`` (``ipc``): IPC frame streams into the executive's connection and
  into the client's ``ClientSession``;
* ``config`` (``config``): configuration files into ``load_config``.

Each module's docstring gives its corpus, its mutations and its oracle. A run is a pure
function of (target, seed, count); ``evs fuzz --target T`` runs one.
"""

from __future__ import annotations

from evs.fuzz_targets.config import ConfigTarget
from evs.fuzz_targets.engine import Escaped, Failure, FuzzTarget, Hang, Report, mutate, run_cases
from evs.fuzz_targets.ipc import ExecutiveTarget, SessionTarget
from evs.fuzz_targets.sealed import SealedTarget

__all__ = [
    "TARGETS",
    "Escaped",
    "Failure",
    "FuzzTarget",
    "Hang",
    "Report",
    "mutate",
    "run_cases",
]

#: Target name -> target.
TARGETS: dict[str, FuzzTarget] = {
    t.name: t for t in (SealedTarget(), ExecutiveTarget(), SessionTarget(), ConfigTarget())
}
