"""Reassembly across a configuration change: what a departed sender left half-sent.

The unpacker's fragment chains make the reset at install invisible in deliveries (a sender's
first packet on a new ring continues nothing, which already discards a stale chain). What the
reset does is bound memory: without it a member that left in the middle of a large message
would keep up to ``max_message_size`` bytes at every survivor for as long as its node id stays
silent. These scenarios pin that, and show the check fails when the reset is removed.
"""

from __future__ import annotations

import pytest

from evs.sim.scenario import Scenario
from evs.totem.groups import Unpacker


def leave_mid_message() -> Scenario:
    """Node 3 crashes while nodes 1 and 2 hold part of its 900 KB message.

    The message is about 670 packets. A lone sender of large messages sends a whole window per
    visit (70 packets), so it takes ten rotations; with token hops of 1.5 ms a rotation takes
    about 4.5 ms, and the 10 ms polls of ``run_until`` see it half-sent.
    """
    sc = Scenario(3, delay_min_ms=1.0, delay_mean_ms=0.5)
    sc.run_until_ring((1, 2, 3))
    sc.submit(3, 900_000)
    sc.run_until(lambda: sc.processor(1).unpacker.pending_bytes(3) > 0, 2000)
    sc.crash(3)
    sc.run_until_ring((1, 2), within_ms=10000)
    return sc


def test_a_departed_senders_partial_message_is_freed_at_install() -> None:
    sc = leave_mid_message()
    assert sc.processor(1).unpacker.pending_bytes(3) == 0
    assert sc.processor(2).unpacker.pending_bytes(3) == 0
    assert sc.delivered(1) == sc.delivered(2)  # the cut message reached nobody
    sc.assert_evs(quiet_end=True)


def test_without_the_reset_the_partial_message_stays(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mutant the check above exists for: it must be seen."""

    def keep(self: Unpacker, originator: int | None = None) -> None:
        if originator is not None:
            self._assemblies.pop(originator, None)

    monkeypatch.setattr(Unpacker, "reset", keep)
    sc = leave_mid_message()
    assert sc.processor(1).unpacker.pending_bytes(3) > 0
