"""JOIN handling on a running ring, one rule per case (protocol.md section 5.3).

Each case injects one JOIN into a member of a formed ring and checks the branch it must take.
Breaking these rules rarely breaks an EVS property (a token loss or a consensus timeout
settles the change later), so the EVS checker alone would not notice: the cases pin the
rule itself, then run the checker over the trace as usual.
"""

from __future__ import annotations

from evs.sim.scenario import Scenario
from evs.totem.codec import cluster_id_for, encode
from evs.totem.events import MembState
from evs.totem.messages import Join

CID = cluster_id_for("evs")


def test_a_members_join_naming_the_current_ring_starts_a_change_at_once() -> None:
    """A member that lost the token sends JOINs with the current ring's seq: that is news
    (it left this ring), not a stale JOIN of an older ring, so we gather without waiting
    for our own token timeout."""
    sc = Scenario(3)
    sc.run_until_ring((1, 2, 3))
    ring = sc.ring(3).ring_id
    news = Join(sender=2, ring_seq=ring.seq, proc_list=(1, 2, 3), failed_list=())
    sc.cluster._arrive(3, encode(news, CID))
    assert sc.ring(3).state is MembState.GATHER
    assert sc.stat("join ignored: stale") == 0
    sc.run_until_ring((1, 2, 3))
    sc.assert_evs()


def test_a_members_join_naming_an_older_ring_is_stale() -> None:
    sc = Scenario(3)
    sc.run_until_ring((1, 2, 3))
    ring = sc.ring(3).ring_id
    old = Join(sender=2, ring_seq=ring.seq - 1, proc_list=(1, 2, 3), failed_list=())
    sc.cluster._arrive(3, encode(old, CID))
    assert sc.stat("join ignored: stale") == 1
    assert sc.ring(3).state is MembState.OPERATIONAL
    assert sc.ring(3).ring_id == ring
    sc.assert_evs()
