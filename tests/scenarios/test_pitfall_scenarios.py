"""corosync's known pitfalls (protocol.md section 10), each as a scenario that must pass."""

from __future__ import annotations

from evs.sim.scenario import Scenario
from evs.totem.events import MembState
from evs.totem.messages import MessageType
from evs.types import Guarantee


def test_10_1_lagging_processor_catches_up_without_failing_to_receive() -> None:
    """Pitfall 1: a processor far behind must catch up through retransmissions."""
    sc = Scenario(3)
    sc.run_until_ring((1, 2, 3))
    sc.cluster.filters.append(lambda src, dst, data: dst == 3 and data[3] == MessageType.MCAST)
    sent = [sc.submit(1 + i % 2, 500) for i in range(300)]
    sc.run_ms(300)
    sc.cluster.filters.clear()
    sc.run_until(lambda: set(sent) <= set(sc.delivered(3)), within_ms=10000)
    assert sc.stat("gather: failed to receive") == 0
    assert sc.ring(3).members == (1, 2, 3)
    sc.assert_evs()


def test_10_12_simultaneous_restarts_never_produce_identical_ring_ids() -> None:
    sc = Scenario(3)
    sc.run_until_ring((1, 2, 3))
    for n in (1, 2, 3):
        sc.crash(n)
    for n in (1, 2, 3):
        sc.restart(n)
    sc.run_until_ring((1, 2, 3), within_ms=5000)
    rings = [e["ring"] for e in sc.cluster.trace if e["ev"] == "confchg"]
    firsts = [e for e in sc.cluster.trace if e["ev"] == "confchg" and e["kind"] == "regular"]
    assert int(firsts[-1]["ring"].split(".")[1]) > int(firsts[0]["ring"].split(".")[1])
    assert len(rings) >= 6
    sc.assert_evs()


def test_10_13_duplicate_commit_token_in_recovery_is_ignored() -> None:
    sc = Scenario(3)
    for _ in range(4):
        sc.duplicate_next(MessageType.COMMIT_TOKEN)
    sc.run_until_ring((1, 2, 3), within_ms=5000)
    assert sc.stat("commit token duplicate or stale") >= 1
    sent = [sc.submit(n, 100) for n in (1, 2, 3)]
    sc.run_until(lambda: set(sent) <= set(sc.delivered(2)), within_ms=2000)
    sc.assert_evs()


def test_10_14_message_fragmented_across_a_configuration_change_arrives_whole() -> None:
    """Pitfall 14: a large message cut by a configuration change is re-sent whole."""
    sc = Scenario(3)
    sc.run_until_ring((1, 2, 3))
    big = sc.cluster.submit(1, 300_000, Guarantee.AGREED)
    assert big is not None
    sc.run_ms(2)  # some fragments are out, most are still queued
    sc.crash(3)
    sc.run_until_ring((1, 2), within_ms=5000)
    sc.run_until(lambda: big in sc.delivered(2), within_ms=10000)
    sends = [e for e in sc.cluster.trace if e["ev"] == "send" and e["msg"] == big]
    deliveries = [e for e in sc.events(2, "deliver") if e["msg"] == big]
    assert len(sends) == 1
    assert len(deliveries) == 1
    assert deliveries[0]["digest"] == sends[0]["digest"]
    sc.assert_evs()


def test_10_15_multicast_delayed_behind_the_token_is_not_requested_at_once() -> None:
    """Pitfall 15: reordering must not turn into a retransmission storm (miss_count_const)."""
    sc = Scenario(4, static=True, reorder=0.5, reorder_delay_ms=1.0)
    sent = [sc.submit(1 + i % 4, 100) for i in range(200)]
    sc.run_until(lambda: all(set(sent) <= set(sc.delivered(n)) for n in (1, 2, 3, 4)), 5000)
    assert sc.stat("retransmit requested") < 20
    sc.assert_evs()


def test_10_24_senders_are_not_stuck_on_try_again_after_loss() -> None:
    """Pitfall 24: under loss a full queue must drain, so TryAgain always ends."""
    sc = Scenario(3, static=True, loss=0.1)
    per_round = []
    accepted = []
    for _ in range(20):
        taken = 0
        for _ in range(20):  # far more than the ring can carry in one round
            msgid = sc.cluster.submit(1, 60_000, Guarantee.SAFE)
            if msgid is not None:
                accepted.append(msgid)
                taken += 1
        per_round.append(taken)
        sc.run_ms(200)
    assert sc.stat("submit try again") > 0
    # Once the queue was full, room came back again and again: nobody is stuck.
    assert sum(per_round[-10:]) > 0, per_round
    sc.run_until(lambda: set(accepted) <= set(sc.delivered(3)), within_ms=60000)
    sc.assert_evs()


def test_consensus_timeout_fails_a_processor_that_answers_but_never_agrees() -> None:
    """GATHER -> GATHER on consensus timeout: a node whose JOINs nobody can use is failed."""
    sc = Scenario(3)
    sc.run_until_ring((1, 2, 3))
    # Node 3 hears nobody; the others hear node 3's JOINs, which never match theirs.
    sc.cluster.filters.append(lambda src, dst, data: dst == 3)
    sc.run_until(lambda: sc.ring(1).members == (1, 2), within_ms=10000)
    assert sc.ring(1).state is MembState.OPERATIONAL
    sc.cluster.filters.clear()
    sc.run_until_ring((1, 2, 3), within_ms=10000)
    sc.assert_evs()
