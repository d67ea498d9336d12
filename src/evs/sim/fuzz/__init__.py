"""Hostile but decodable datagrams for a live Totem processor: the protocol core's fuzzer.

Theory of operation (docs/fuzzing.md has the whole story). ``harvest`` runs three small
simulated clusters and keeps real datagrams of every type and frozen processors caught
between two inputs in each membership state. A run (``fuzz``) is a sequence of rounds; each
thaws one snapshot as its target and feeds it ``ROUND`` datagrams from a ``Forge``: made
*fresh* for the target (its ring, its next hop and message numbers, its members) so that
they get past the first checks into the handlers, then broken by 0 to 3 byte-level
mutations. The oracle: ``receive`` and ``handle_timer`` never raise and never run long (a
watchdog turns an infinite loop into a reported ``Hang``), every datagram the target emits
decodes, and its state stays sane. Each round draws from its own named random stream, so
datagram ``i`` of seed ``S`` is replayed exactly (``replay``) by re-running round
``i // ROUND``: a run is a pure function of its seed.

The modules, from the bytes up:

* ``wire``: raw packing and reading of datagrams at docs/wire.md's offsets (no encoder);
* ``freeze``: processors to bytes and back, for the pure and the compiled core alike;
* ``harvest``: ``Snapshot``, ``Corpus`` and the harvest from simulated clusters;
* ``probe``: every read of a processor's internals (the forge's ``Target`` view, the
  before/after ``Glance``, the state invariants of ``check_state``);
* ``aim``: senders, rings and numbers drawn near what the target holds;
* ``payloads``: hostile group-layer payloads;
* ``mutate``: the ten mutations;
* ``forge``: ``Forge``, fresh datagrams of every kind, then mutated;
* ``report``: ``FuzzReport`` and ``Failure``;
* ``run``: the watchdog, the trial loop with its oracle, ``fuzz``, ``replay``, worker jobs.
"""

from __future__ import annotations

from evs.sim.fuzz.forge import Forge, Forged
from evs.sim.fuzz.harvest import Corpus, Snapshot, harvest
from evs.sim.fuzz.mutate import MUTATIONS
from evs.sim.fuzz.probe import check_state
from evs.sim.fuzz.report import Failure, FuzzReport
from evs.sim.fuzz.run import ROUND, Hang, fuzz, replay
from evs.sim.fuzz.wire import KINDS, fields_of, group_packet, kind_of

__all__ = [
    "KINDS",
    "MUTATIONS",
    "ROUND",
    "Corpus",
    "Failure",
    "Forge",
    "Forged",
    "FuzzReport",
    "Hang",
    "Snapshot",
    "check_state",
    "fields_of",
    "fuzz",
    "group_packet",
    "harvest",
    "kind_of",
    "replay",
]
