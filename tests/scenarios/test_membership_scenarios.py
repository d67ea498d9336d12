"""Membership: failures, partitions, merges, joins and leaves (protocol.md sections 5 and 10).

Each test is one case: it says what it proves, drives the simulated cluster into it, checks
the configurations the applications see, asserts the protocol branch that exists for the
case was taken (its counter), and runs the EVS checker over the whole trace.
"""

from __future__ import annotations

from typing import Any

from evs.sim.scenario import Scenario
from evs.totem.codec import cluster_id_for, encode
from evs.totem.config import TotemConfig
from evs.totem.events import MembState
from evs.totem.messages import Join, MessageType


def regular_rings(sc: Scenario, node: int) -> list[tuple[str, list[int]]]:
    return [(e["ring"], e["members"]) for e in sc.confchgs(node) if e["kind"] == "regular"]


def last_transitional(sc: Scenario, node: int) -> dict[str, Any]:
    return [e for e in sc.confchgs(node) if e["kind"] == "transitional"][-1]


def test_startup_forms_one_ring_and_applications_see_a_regular_configuration_first() -> None:
    sc = Scenario(3)
    took = sc.run_until_ring((1, 2, 3), within_ms=3000)
    assert took < 1500
    for n in (1, 2, 3):
        first = sc.confchgs(n)[0]
        assert first["kind"] == "regular"
        assert first["joined"] == [1, 2, 3]
    assert sc.stat("commit entered") >= 3
    assert sc.stat("recovery entered") >= 3
    sc.assert_evs()


def test_crash_of_a_member_gives_transitional_then_regular_configuration() -> None:
    sc = Scenario(4)
    sc.run_until_ring((1, 2, 3, 4))
    for n in (1, 2, 3, 4):
        sc.submit(n, 100)
    sc.run_ms(50)
    sc.crash(3)
    took = sc.run_until_ring((1, 2, 4), within_ms=5000)
    assert took <= 1500  # token loss (1000 ms) + silent timeout + commit and recovery
    trans = last_transitional(sc, 1)
    assert trans["members"] == [1, 2, 4]
    assert trans["left"] == [3]
    assert sc.stat("gather: token lost") >= 1
    sc.assert_evs()


def test_messages_of_the_old_ring_are_recovered_before_the_configuration_change() -> None:
    """Node 4 misses node 1's messages and node 1 dies: node 2 re-sends them in RECOVERY."""
    sc = Scenario(4)
    sc.run_until_ring((1, 2, 3, 4))
    sc.cluster.filters.append(lambda src, dst, data: src == 1 and dst == 4)
    sent = [sc.submit(1, 300) for _ in range(10)]
    sc.run_ms(20)
    sc.crash(1)
    sc.cluster.filters.clear()
    sc.run_until_ring((2, 3, 4), within_ms=5000)
    for n in (2, 3, 4):
        assert set(sent) <= set(sc.delivered(n))
    assert sc.stat("recovery messages sent") > 0
    sc.assert_evs()


def test_partition_forms_two_rings_and_healing_merges_them() -> None:
    sc = Scenario(5)
    sc.run_until_ring((1, 2, 3, 4, 5))
    sc.partition((1, 2), (3, 4, 5))
    sc.run_until_ring((1, 2), within_ms=5000)
    sc.run_until_ring((3, 4, 5), within_ms=5000)
    for n in (1, 2, 3, 4, 5):
        sc.submit(n, 64)
    sc.run_ms(100)
    sc.heal()
    took = sc.run_until_ring((1, 2, 3, 4, 5), within_ms=5000)
    assert took <= 1500
    assert sc.stat("gather: merge detect") + sc.stat("gather: foreign message") >= 1
    joined = regular_rings(sc, 3)[-1]
    assert joined[1] == [1, 2, 3, 4, 5]
    sc.assert_evs()


def test_busy_partitions_merge_through_foreign_messages() -> None:
    sc = Scenario(4)
    sc.run_until_ring((1, 2, 3, 4))
    sc.partition((1, 2), (3, 4))
    sc.run_until_ring((1, 2), within_ms=5000)
    sc.run_until_ring((3, 4), within_ms=5000)
    sc.heal()
    for n in (1, 2, 3, 4):
        sc.submit(n, 64)
    sc.run_until_ring((1, 2, 3, 4), within_ms=5000)
    assert sc.stat("gather: foreign message") >= 1
    sc.assert_evs()


def test_one_way_link_failure_ends_in_rings_that_agree() -> None:
    sc = Scenario(4)
    sc.run_until_ring((1, 2, 3, 4))
    sc.partition((1, 2), (3, 4), oneway=True)  # 1,2 -> 3,4 blocked; 3,4 -> 1,2 flows
    sc.run_ms(6000)
    for n in (1, 2, 3, 4):
        assert sc.ring(n).state is MembState.OPERATIONAL
    sc.heal()
    sc.run_until_ring((1, 2, 3, 4), within_ms=10000)
    sc.assert_evs()


def test_graceful_leave_is_faster_than_a_token_timeout() -> None:
    sc = Scenario(4)
    sc.run_until_ring((1, 2, 3, 4))
    sc.leave(4)
    took = sc.run_until_ring((1, 2, 3), within_ms=3000)
    assert took < sc.cluster.config.token
    assert sc.stat("gather: join received") >= 1
    assert last_transitional(sc, 1)["left"] == [4]
    sc.assert_evs()


def test_new_processor_joins_a_running_ring() -> None:
    sc = Scenario(4, start=(1, 2, 3))
    sc.run_until_ring((1, 2, 3))
    sent = [sc.submit(1, 100)]
    sc.run_ms(20)
    sc.cluster.start_node(4)
    sc.run_until_ring((1, 2, 3, 4), within_ms=5000)
    assert regular_rings(sc, 4)[0][1] == [1, 2, 3, 4]
    assert sc.confchgs(1)[-1]["joined"] == [4]
    assert set(sent) <= set(sc.delivered(2))
    sc.assert_evs()


def test_quick_restart_with_the_same_nodeid_is_a_new_member_not_its_old_self() -> None:
    """Restart before anyone noticed: the old incarnation leaves, the new one joins."""
    sc = Scenario(3)
    sc.run_until_ring((1, 2, 3))
    before = sc.ring(1).ring_id
    sc.crash(1)  # the representative, the case that once reused its ring id
    sc.run_ms(5)
    sc.restart(1)
    sc.run_until_ring((1, 2, 3), within_ms=5000)
    after = sc.ring(1).ring_id
    assert after.seq > before.seq
    trans = last_transitional(sc, 2)
    assert 1 in trans["left"]  # node 1's old incarnation left
    assert sc.confchgs(2)[-1]["joined"] == [1]  # and the new one joined
    sc.assert_evs()


def test_paused_processor_rejoins_cleanly() -> None:
    sc = Scenario(3)
    sc.run_until_ring((1, 2, 3))
    sc.pause(3, 2500)  # longer than the token timeout
    sc.run_until_ring((1, 2), within_ms=5000)
    sc.run_ms(2500)
    sc.run_until_ring((1, 2, 3), within_ms=5000)
    assert sc.processor(3).stats["pause detected"] >= 1
    assert sc.processor(3).stats["join dropped after a pause"] >= 1
    sc.assert_evs()


def test_send_join_spreads_the_first_joins_and_the_ring_still_forms() -> None:
    sc = Scenario(6, config=TotemConfig(send_join=80.0))
    sc.run_until_ring((1, 2, 3, 4, 5, 6), within_ms=5000)
    sc.crash(6)
    sc.run_until_ring((1, 2, 3, 4, 5), within_ms=5000)
    sc.assert_evs()


def test_lost_commit_token_is_retransmitted() -> None:
    sc = Scenario(3)
    dropped = sc.drop_next(MessageType.COMMIT_TOKEN, frm=1)
    sc.run_until_ring((1, 2, 3), within_ms=5000)
    assert dropped() == 1
    assert sc.stat("token retransmitted") >= 1
    sc.assert_evs()


def test_token_lost_in_recovery_abandons_the_ring_and_keeps_old_messages() -> None:
    sc = Scenario(3)
    sc.run_until_ring((1, 2, 3))
    sent = [sc.submit(n, 100) for n in (1, 2, 3)]
    sc.run_ms(30)
    sc.crash(3)
    # From the moment node 2 is in RECOVERY, every ordering token is lost for longer than
    # the token timeout: recovery fails and the processors gather again.
    until: list[float] = []

    def lose_tokens(src: int, dst: int, data: bytes) -> bool:
        if data[3] != MessageType.ORF_TOKEN:
            return False
        if not until and sc.ring(2).state is MembState.RECOVERY:
            until.append(sc.cluster.now + 1300)
        return bool(until) and sc.cluster.now < until[0]

    sc.cluster.filters.append(lose_tokens)
    sc.run_ms(4000)
    sc.run_until_ring((1, 2), within_ms=10000)
    assert sc.stat("recovery abandoned") >= 1
    for n in (1, 2):
        assert set(sent[:2]) <= set(sc.delivered(n))
    sc.assert_evs()


def test_failed_to_receive_excludes_the_processor_that_cannot_receive() -> None:
    """Node 3 gets the token but none of the multicasts: it excludes itself (corosync's rule)."""
    sc = Scenario(3, config=TotemConfig(fail_recv_const=10))
    sc.run_until_ring((1, 2, 3))
    sc.cluster.filters.append(
        lambda src, dst, data: dst == 3 and len(data) > 38 and data[3] == MessageType.MCAST
    )
    for _ in range(3):
        sc.submit(1, 100)
    sc.run_until(lambda: sc.ring(1).members == (1, 2), within_ms=10000)
    assert sc.stat("gather: failed to receive") >= 1
    sc.cluster.filters.clear()
    sc.run_until_ring((1, 2, 3), within_ms=10000)
    sc.assert_evs()


def test_join_that_lists_the_receiver_as_failed_is_ignored_when_operational() -> None:
    """Pitfall 10: acting on such a JOIN made two processors fail each other forever."""
    sc = Scenario(3)
    sc.run_until_ring((1, 2, 3))
    ring = sc.ring(3).ring_id
    blame = Join(sender=1, ring_seq=ring.seq, proc_list=(1, 2, 3), failed_list=(3,))
    sc.cluster._arrive(3, encode(blame, cluster_id_for("evs")))
    assert sc.stat("join ignored: lists me as failed") == 1
    assert sc.ring(3).state is MembState.OPERATIONAL
    assert sc.ring(3).ring_id == ring
    sc.assert_evs()


def test_late_packet_of_a_past_ring_is_stale_not_foreign() -> None:
    sc = Scenario(3)
    sc.run_until_ring((1, 2, 3))
    old = sc.ring(1).ring_id
    captured: list[bytes] = []

    def capture_one(src: int, dst: int, data: bytes) -> bool:
        if dst == 2 and data[3] == MessageType.MCAST and not captured:
            captured.append(data)
            return True
        return False

    sc.cluster.filters.append(capture_one)
    sc.submit(1, 100)
    sc.run_ms(20)
    sc.cluster.filters.clear()
    sc.crash(3)
    sc.run_until_ring((1, 2), within_ms=5000)
    assert captured
    assert sc.ring(2).ring_id != old
    sc.cluster._arrive(2, captured[0])  # the old ring's packet arrives very late
    sc.run_ms(300)
    assert sc.stat("stale packet of a past ring") >= 1
    assert sc.ring(2).state is MembState.OPERATIONAL
    sc.assert_evs()


def test_safe_messages_keep_their_guarantee_across_a_configuration_change() -> None:
    sc = Scenario(4, loss=0.05, seed=3)
    sc.run_until_ring((1, 2, 3, 4))
    for i in range(30):
        sc.submit(1 + i % 4, 100, safe=True)
    sc.run_ms(3)
    sc.crash(2)
    sc.run_until_ring((1, 3, 4), within_ms=8000)
    sc.run_ms(500)
    sc.assert_evs()


def test_simultaneous_failures_of_two_processors() -> None:
    sc = Scenario(5)
    sc.run_until_ring((1, 2, 3, 4, 5))
    sc.crash(2)
    sc.crash(4)
    sc.run_until_ring((1, 3, 5), within_ms=5000)
    assert last_transitional(sc, 1)["left"] == [2, 4]
    sc.assert_evs()


def test_ring_ids_increase_and_are_never_reused_after_restarts() -> None:
    sc = Scenario(3)
    sc.run_until_ring((1, 2, 3))
    for _ in range(3):
        sc.crash(1)
        sc.run_until_ring((2, 3), within_ms=5000)
        sc.restart(1)
        sc.run_until_ring((1, 2, 3), within_ms=5000)
    seqs = [int(ring.split(".")[1]) for ring, _ in regular_rings(sc, 2)]
    assert seqs == sorted(set(seqs))
    sc.assert_evs()


def test_recovery_resends_one_copy_of_each_missing_message() -> None:
    """A laggard far behind: each old message is re-sent once, not once per member."""
    sc = Scenario(4)
    sc.run_until_ring((1, 2, 3, 4))
    sc.cluster.filters.append(lambda src, dst, data: dst == 4 and data[3] == MessageType.MCAST)
    for i in range(400):
        sc.submit(1 + i % 3, 900)
    sc.run_ms(60)
    missing = sc.processor(2).ring.my_high_seq_received - sc.processor(4).ring.my_aru
    assert missing > 100
    sc.crash(1)
    sc.cluster.filters.clear()
    sc.run_until_ring((2, 3, 4), within_ms=10000)
    assert 0 < sc.stat("recovery messages sent") <= missing
    assert set(sc.delivered(2)) == set(sc.delivered(4))
    sc.assert_evs()
