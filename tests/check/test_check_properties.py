"""One hand-made trace that satisfies each property of protocol.md section 9, and minimal
traces that break it, each asserting exactly which property ids are reported.

When one bug necessarily breaks two properties (6.4 cannot fail without 4 or 6.1, for
example), the test names both, so a change in what the checker reports is noticed.
"""

from __future__ import annotations

from typing import Any

import pytest

from evs.check import Report, check_events
from evs.trace import (
    confchg_event,
    crash_event,
    deliver_event,
    msg_sender,
    restart_event,
    send_event,
)


class Trace:
    """A tiny trace builder: time advances one ms per event; left/joined are derived."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.reg_members: dict[int, list[int]] = {}
        self.trans_members: dict[int, list[int] | None] = {}

    @property
    def t(self) -> int:
        return len(self.events)

    def reg(self, node: int, ring: str, members: list[int], **kw: Any) -> Trace:
        trans = self.trans_members.get(node)
        joined = kw.pop("joined", sorted(set(members) - set(trans or [])))
        self.events.append(
            confchg_event(
                self.t, node, transitional=False, ring=ring, members=members, joined=joined, **kw
            )
        )
        self.reg_members[node], self.trans_members[node] = members, None
        return self

    def trans(self, node: int, ring: str, members: list[int], **kw: Any) -> Trace:
        left = kw.pop("left", sorted(set(self.reg_members.get(node, [])) - set(members)))
        self.events.append(
            confchg_event(
                self.t, node, transitional=True, ring=ring, members=members, left=left, **kw
            )
        )
        self.trans_members[node] = members
        return self

    def ring(self, ring: str, members: list[int], nodes: list[int] | None = None) -> Trace:
        for n in members if nodes is None else nodes:
            self.reg(n, ring, members)
        return self

    def send(self, node: int, msg: str, *, safe: bool = False, **kw: Any) -> Trace:
        g = "safe" if safe else "agreed"
        self.events.append(send_event(self.t, node, msg, guarantee=g, **kw))
        return self

    def dlv(self, node: int, ring: str, *msgs: str, safe: bool = False, **kw: Any) -> Trace:
        for msg in msgs:
            sender = kw.pop("sender", msg_sender(msg))
            self.events.append(
                deliver_event(
                    self.t, node, msg, sender, ring, guarantee="safe" if safe else "agreed", **kw
                )
            )
        return self

    def crash(self, node: int) -> Trace:
        self.events.append(crash_event(self.t, node))
        return self

    def restart(self, node: int) -> Trace:
        self.events.append(restart_event(self.t, node))
        self.reg_members.pop(node, None)
        self.trans_members.pop(node, None)
        return self

    def check(self, **kw: Any) -> Report:
        return check_events(self.events, **kw)

    def ids(self, **kw: Any) -> set[str]:
        return {v.property for v in self.check(**kw).violations}


def base() -> Trace:
    """Three nodes in 1.4; 1 and 2 each send one message that everyone delivers."""
    tr = Trace().ring("1.4", [1, 2, 3])
    tr.send(1, "1:0:1").send(2, "2:0:1")
    for n in (1, 2, 3):
        tr.dlv(n, "1.4", "1:0:1", "2:0:1")
    return tr


def split_off_3(tr: Trace, *, delivered: dict[int, list[str]] | None = None) -> Trace:
    """Node 3 leaves 1.4 (it crashed); 1 and 2 go on to 1.8 together."""
    for n in (1, 2):
        tr.trans(n, "1.4", [1, 2])
        tr.dlv(n, "1.4", *(delivered or {}).get(n, []))
        tr.reg(n, "1.8", [1, 2])
    return tr


def test_base_trace_holds_every_property() -> None:
    report = split_off_3(base().crash(3)).check()
    assert report.ok, report.render_text()
    assert report.counts == {"events": 16, "messages": 2, "nodes": 3, "configurations": 3}


def test_base_trace_holds_with_quiet_end() -> None:
    assert split_off_3(base().crash(3)).ids(quiet_end=True) == set()


# -- 1.1 every delivered message has one send, before the delivery --------------------------


def test_1_1_delivery_of_a_message_never_sent() -> None:
    assert base().dlv(2, "1.4", "1:0:9").ids() == {"1.1"}


def test_1_1_delivery_before_the_send_in_time() -> None:
    tr = Trace().ring("1.4", [1, 2]).dlv(2, "1.4", "1:0:1").send(1, "1:0:1")
    assert tr.ids() == {"1.1"}
    assert tr.ids(compare_time=False) == set()  # separate clocks: not judged


def test_1_1_own_delivery_logged_before_own_send() -> None:
    tr = Trace().ring("1.4", [1]).dlv(1, "1.4", "1:0:1").send(1, "1:0:1")
    assert tr.ids(compare_time=False) == {"1.1"}


def test_1_1_sender_field_disagrees_with_the_send() -> None:
    assert base().dlv(3, "1.4", "1:0:2", sender=2).ids() == {"1.1"}
    tr = Trace().ring("1.4", [1, 2]).send(1, "1:0:1").dlv(2, "1.4", "1:0:1", sender=2)
    assert tr.ids() == {"1.1"}


def test_1_1_two_sends_of_one_id() -> None:
    assert base().send(1, "1:0:1").ids() == {"1.1"}


def test_1_1_send_logged_by_another_node_than_the_id_names() -> None:
    assert Trace().ring("1.4", [1, 2]).send(2, "1:0:1").ids() == {"1.1"}


def test_1_1_sender_without_a_log_is_not_judged() -> None:
    assert Trace().ring("1.4", [1, 2]).dlv(1, "1.4", "9:0:1").ids() == set()


# -- 1.2 no duplicates, bytes unchanged ------------------------------------------------------


def test_1_2_duplicate_delivery() -> None:
    assert base().dlv(3, "1.4", "1:0:1").ids() == {"1.2"}


def test_1_2_digest_unchanged_holds_and_changed_is_caught() -> None:
    tr = Trace().ring("1.4", [1, 2]).send(1, "1:0:1", digest="ab12")
    assert tr.dlv(1, "1.4", "1:0:1", digest="AB12").ids() == set()
    assert tr.dlv(2, "1.4", "1:0:1", digest="ab13").ids() == {"1.2"}


def test_1_2_guarantee_changed() -> None:
    tr = Trace().ring("1.4", [1, 2]).send(1, "1:0:1", safe=True).dlv(2, "1.4", "1:0:1")
    assert tr.ids() == {"1.2"}


def test_1_2_a_restart_starts_a_fresh_incarnation() -> None:
    tr = base().crash(3).restart(3).reg(3, "3.8", [3]).dlv(3, "3.8", "1:0:1")
    assert tr.ids() == {"1.3"}  # not 1.2: the new incarnation never delivered it


# -- 1.3 delivered only in the configuration it was sent in (or its transitional) ----------


def test_1_3_delivery_in_the_transitional_configuration_after_c_holds() -> None:
    tr = Trace().ring("1.4", [1, 2]).send(2, "2:0:1").crash(2)
    tr.trans(1, "1.4", [1]).dlv(1, "1.4", "2:0:1").reg(1, "1.8", [1])
    assert tr.ids() == set()


def test_1_3_delivery_in_a_later_configuration() -> None:
    tr = Trace().ring("1.4", [1, 2]).send(2, "2:0:1").crash(2)
    tr.trans(1, "1.4", [1]).reg(1, "1.8", [1]).dlv(1, "1.8", "2:0:1")
    assert tr.ids() == {"1.3"}


def test_1_3_a_handle_send_delivered_in_a_later_configuration_holds() -> None:
    """A handle's send names no ring: the executive may put it on the ring after a change."""
    tr = Trace().ring("1.4", [1, 2]).send(1, "1:0:1")
    for n in (1, 2):
        tr.trans(n, "1.4", [1, 2]).reg(n, "1.8", [1, 2]).dlv(n, "1.8", "1:0:1")
    assert tr.ids(handle_traces=True) == set()
    assert tr.ids() == {"1.3", "3"}


def test_3_a_handle_send_never_delivered_goes_with_the_senders_last_configuration() -> None:
    """Still queued when its sender crashed in a later configuration: nothing is owed. A
    sender that lives on to a quiet end owes it in its last configuration."""
    tr = Trace().ring("1.4", [1, 2]).send(1, "1:0:1")
    for n in (1, 2):
        tr.trans(n, "1.4", [1, 2]).reg(n, "1.8", [1, 2])
    assert tr.ids(handle_traces=True, quiet_end=True) == {"1.4", "3"}
    tr.crash(1).trans(2, "1.8", [2]).reg(2, "1.12", [2])
    assert tr.ids(handle_traces=True, quiet_end=True) == set()


def test_1_3_send_ring_given_explicitly() -> None:
    tr = Trace().ring("1.4", [1, 2]).send(1, "1:0:1", ring="1.4").dlv(2, "1.4", "1:0:1")
    assert tr.ids() == set()


# -- 1.4 quiet end ---------------------------------------------------------------------------


def test_1_4_live_nodes_in_different_final_configurations() -> None:
    tr = base()
    tr.trans(1, "1.4", [1, 2]).reg(1, "1.8", [1, 2]).trans(2, "1.4", [1, 2]).reg(2, "1.8", [1, 2])
    tr.trans(3, "1.4", [3]).reg(3, "3.8", [3])
    assert tr.ids() == set()
    assert tr.ids(quiet_end=True) == {"1.4"}


def test_1_4_member_misses_a_message_of_the_final_configuration() -> None:
    tr = base().send(1, "1:0:2").dlv(1, "1.4", "1:0:2").dlv(2, "1.4", "1:0:2")
    assert tr.ids() == set()
    assert tr.ids(quiet_end=True) == {"1.4"}


def test_1_4_live_node_ends_in_a_transitional_configuration() -> None:
    tr = base().crash(3)
    split_off_3(tr).trans(1, "1.8", [1]).crash(2)
    assert tr.ids() == set()
    assert tr.ids(quiet_end=True) == {"1.4"}


# -- 2.1 self-inclusion ----------------------------------------------------------------------


def test_2_1_install_without_being_a_member() -> None:
    assert Trace().reg(1, "2.4", [2, 3]).ids() == {"2.1"}


# -- 2.2 one id, one membership ----------------------------------------------------------------


def test_2_2_regular_id_with_two_memberships() -> None:
    tr = Trace().reg(1, "1.4", [1, 2]).reg(2, "1.4", [1, 2, 3])
    assert tr.ids() == {"2.2"}


def test_2_2_transitional_key_with_two_memberships() -> None:
    tr = Trace().ring("1.4", [1, 2, 3])
    tr.trans(1, "1.4", [1, 2]).reg(1, "1.8", [1, 2, 3])
    tr.trans(2, "1.4", [1, 2, 3]).reg(2, "1.8", [1, 2, 3])
    assert tr.ids() == {"2.2"}


def test_2_2_partition_sides_may_close_one_ring_differently() -> None:
    tr = Trace().ring("1.4", [1, 2, 3])
    tr.trans(1, "1.4", [1, 2]).reg(1, "1.8", [1, 2]).trans(2, "1.4", [1, 2]).reg(2, "1.8", [1, 2])
    tr.trans(3, "1.4", [3]).reg(3, "3.8", [3])
    assert tr.ids() == set()


# -- 2.3 alternation and left/joined ----------------------------------------------------------


def test_2_3_regular_after_regular() -> None:
    assert Trace().reg(1, "1.4", [1]).reg(1, "1.8", [1], joined=[]).ids() == {"2.3"}


@pytest.mark.parametrize(
    ("trans_kw", "reg_kw"),
    [
        ({"left": []}, {}),  # left must be c - trans = [2]
        ({"joined": [2]}, {}),  # a transitional configuration joins nobody
        ({}, {"joined": []}),  # joined must be next - trans = [3]
        ({}, {"left": [2]}),  # a regular configuration after a transitional one has no left
    ],
)
def test_2_3_left_and_joined_lists(trans_kw: dict[str, Any], reg_kw: dict[str, Any]) -> None:
    tr = Trace().reg(1, "1.4", [1, 2]).trans(1, "1.4", [1], **trans_kw)
    assert tr.reg(1, "1.8", [1, 3], **reg_kw).ids() == {"2.3"}


def test_2_3_transitional_members_outside_the_configuration() -> None:
    tr = Trace().reg(1, "1.4", [1]).trans(1, "1.4", [1, 2], left=[]).reg(1, "1.8", [1, 2])
    assert tr.ids() == {"2.3"}


def test_2_3_transitional_names_another_ring() -> None:
    tr = Trace().reg(1, "1.4", [1]).trans(1, "1.2", [1]).reg(1, "1.8", [1])
    assert tr.ids() == {"2.3"}


def test_2_3_two_transitional_configurations_in_a_row() -> None:
    tr = Trace().reg(1, "1.4", [1]).trans(1, "1.4", [1]).trans(1, "1.4", [1]).reg(1, "1.8", [1])
    assert tr.ids() == {"2.3"}


def test_2_3_log_must_start_with_a_regular_configuration() -> None:
    assert Trace().trans(1, "1.4", [1]).reg(1, "1.8", [1]).ids() == {"2.3"}
    assert Trace().send(1, "1:0:1").reg(1, "1.4", [1]).ids() == {"2.3"}
    tr = Trace().reg(2, "2.4", [2]).send(2, "2:0:1").dlv(1, "2.4", "2:0:1")
    assert tr.ids() == {"2.3"}


def test_2_3_restart_starts_over_with_a_regular_configuration() -> None:
    tr = Trace().reg(1, "1.4", [1]).restart(1).send(1, "1:1:1").reg(1, "1.8", [1])
    assert tr.ids() == {"2.3"}
    assert Trace().reg(1, "1.4", [1]).restart(1).reg(1, "1.8", [1]).ids() == set()


def test_2_3_events_after_a_crash_without_restart() -> None:
    assert Trace().reg(1, "1.4", [1]).crash(1).send(1, "1:0:1").ids() == {"2.3"}


# -- 2.4 same transitional configuration, same neighbours ------------------------------------


def test_2_4_member_of_my_transitional_may_fail_into_another_ring() -> None:
    # 2 is in 1's transitional configuration but never installs 1.8: it failed while
    # recovering into it and went on alone, which to 1 is the same as a crash. Not judged.
    tr = Trace().ring("1.4", [1, 2, 3]).crash(3)
    tr.trans(1, "1.4", [1, 2]).reg(1, "1.8", [1, 2])
    tr.trans(2, "1.4", [2]).reg(2, "2.8", [2])
    assert tr.ids() == set()


def test_2_4_same_transitional_members_different_next_ring() -> None:
    tr = Trace().ring("1.4", [1, 2, 3]).crash(3)
    tr.trans(1, "1.4", [1, 2]).reg(1, "1.8", [1, 2])
    tr.trans(2, "1.4", [1, 2]).reg(2, "1.12", [1, 2])
    assert tr.ids() == {"2.4"}


# -- 2.5 ring seq increases ------------------------------------------------------------------


def test_2_5_ring_seq_goes_back() -> None:
    tr = Trace().reg(1, "1.8", [1]).trans(1, "1.8", [1]).reg(1, "1.4", [1])
    assert tr.ids() == {"2.5"}


def test_2_5_restart_reuses_a_ring_seq() -> None:
    tr = Trace().reg(1, "1.8", [1]).restart(1).reg(1, "1.8", [1])
    assert tr.ids() == {"2.5"}
    assert Trace().reg(1, "1.8", [1]).restart(1).reg(1, "1.12", [1]).ids() == set()


def test_2_5_a_handle_may_join_again_in_the_configuration_it_left() -> None:
    """A handle trace's incarnation is a join: leaving a group and joining it again in the
    same configuration repeats its seq, which a processor's restart never may."""
    tr = Trace().reg(1, "1.8", [1]).restart(1).reg(1, "1.8", [1])
    assert tr.ids(handle_traces=True) == set()
    assert tr.ids() == {"2.5"}
    back = Trace().reg(1, "1.8", [1]).restart(1).reg(1, "1.4", [1])
    assert back.ids(handle_traces=True) == {"2.5"}
    # Within one incarnation the seq must still grow.
    same = Trace().reg(1, "1.8", [1]).trans(1, "1.8", [1]).reg(1, "1.8", [1])
    assert "2.5" in same.ids(handle_traces=True)


# -- 2.6 events tagged with the installed configuration -------------------------------------


def test_2_6_delivery_tagged_with_another_ring() -> None:
    tr = Trace().ring("1.4", [1, 2]).send(1, "1:0:1").dlv(2, "1.99", "1:0:1")
    assert tr.ids() == {"1.3", "2.6"}


def test_2_6_ring_ids_compare_by_value() -> None:
    tr = Trace().ring("1.4", [1, 2]).send(1, "1:0:1", ring="01.04").dlv(2, "1.004", "1:0:1")
    assert tr.ids() == set()


def test_2_6_send_tagged_with_another_ring() -> None:
    tr = Trace().ring("1.4", [1, 2]).send(1, "1:0:1", ring="1.8")
    assert tr.ids() == {"2.6"}


def test_2_6_send_during_transitional_may_name_the_next_ring() -> None:
    tr = Trace().reg(1, "1.4", [1]).trans(1, "1.4", [1]).send(1, "1:0:1", ring="1.8")
    tr.reg(1, "1.8", [1]).dlv(1, "1.8", "1:0:1")
    assert tr.ids() == set()
    tr = Trace().reg(1, "1.4", [1]).trans(1, "1.4", [1]).send(1, "1:0:1", ring="1.12")
    assert tr.reg(1, "1.8", [1]).ids() == {"2.6"}


# -- 3 self-delivery -------------------------------------------------------------------------


def self_delivery_trace(*, sender_moves_on: bool) -> Trace:
    tr = Trace().ring("1.4", [1, 2, 3]).send(1, "1:0:1")
    tr.dlv(2, "1.4", "1:0:1").dlv(3, "1.4", "1:0:1")
    if sender_moves_on:
        tr.trans(1, "1.4", [1]).reg(1, "1.8", [1])
    return tr


def test_3_sender_installs_next_without_delivering_its_message() -> None:
    assert self_delivery_trace(sender_moves_on=True).ids() == {"3"}


def test_3_not_judged_while_the_sender_is_still_in_c_or_crashed() -> None:
    assert self_delivery_trace(sender_moves_on=False).ids() == set()
    crashed = self_delivery_trace(sender_moves_on=False).crash(1)
    assert crashed.ids(quiet_end=True) == {"1.4"}  # 1.4: a crashed member; but no 3


def test_3_quiet_end_makes_the_end_of_the_log_count() -> None:
    assert self_delivery_trace(sender_moves_on=False).ids(quiet_end=True) == {"1.4", "3"}


# -- 4 failure atomicity, 6.4 same sequence before the transitional -------------------------


def test_4_different_sets_in_the_transitional_configuration() -> None:
    tr = Trace().ring("1.4", [1, 2, 3]).send(3, "3:0:1").crash(3)
    assert split_off_3(tr, delivered={1: ["3:0:1"]}).ids() == {"4"}
    tr = Trace().ring("1.4", [1, 2, 3]).send(3, "3:0:1").crash(3)
    assert split_off_3(tr, delivered={1: ["3:0:1"], 2: ["3:0:1"]}).ids() == set()


def test_4_and_6_4_different_sets_in_c() -> None:
    tr = Trace().ring("1.4", [1, 2, 3]).send(3, "3:0:1").crash(3).dlv(1, "1.4", "3:0:1")
    assert split_off_3(tr).ids() == {"4", "6.4"}


def test_6_4_and_6_1_same_set_in_another_order() -> None:
    tr = Trace().ring("1.4", [1, 2, 3]).send(1, "1:0:1").send(2, "2:0:1").crash(3)
    tr.dlv(1, "1.4", "1:0:1", "2:0:1").dlv(2, "1.4", "2:0:1", "1:0:1")
    assert split_off_3(tr).ids() == {"6.1", "6.4"}


# -- 5 causal order --------------------------------------------------------------------------


def test_5_fifo_predecessor_never_delivered() -> None:
    tr = Trace().ring("1.4", [1, 2]).send(1, "1:0:1").send(1, "1:0:2").crash(1)
    assert tr.dlv(2, "1.4", "1:0:2").ids() == {"5"}


def test_5_delivered_before_send_predecessor_skipped() -> None:
    tr = Trace().ring("1.4", [1, 2, 3]).send(1, "1:0:1").dlv(2, "1.4", "1:0:1").send(2, "2:0:1")
    tr.dlv(2, "1.4", "2:0:1")
    assert tr.ids() == set()
    assert tr.dlv(3, "1.4", "2:0:1").ids() == {"5", "6.2"}


def test_5_transitive_chain_in_a_transitional_configuration() -> None:
    # 1 sends a; 2 delivers a and sends b (a -> b); 3 sends c after delivering b (b -> c).
    # 4 and 5 lose 1, 2 and 3; 4 delivers c in its transitional configuration, where gaps
    # are allowed, but it never delivered a: a -> c by transitivity.
    tr = Trace().ring("1.4", [1, 2, 3, 4, 5]).send(1, "1:0:1")
    tr.dlv(2, "1.4", "1:0:1").send(2, "2:0:1").dlv(2, "1.4", "2:0:1")
    tr.dlv(3, "1.4", "1:0:1", "2:0:1").send(3, "3:0:1").dlv(3, "1.4", "3:0:1")
    tr.crash(1).crash(2).crash(3)
    for n in (4, 5):
        tr.trans(n, "1.4", [4, 5])
    tr.dlv(4, "1.4", "3:0:1").dlv(5, "1.4", "3:0:1")
    ids = tr.ids()
    assert "5" in ids
    assert ids == {"5", "6.3"}  # c comes from outside the transitional configuration, too


def test_5_messages_of_other_configurations_are_not_related() -> None:
    tr = Trace().reg(1, "1.4", [1]).send(1, "1:0:1").trans(1, "1.4", [1]).reg(1, "1.8", [1])
    tr.send(1, "1:0:2").dlv(1, "1.8", "1:0:2")
    assert tr.ids() == {"3"}  # 1:0:1 lost by its sender (3), but 1:0:2 owes it nothing (5)


# -- 6.1 one total order ----------------------------------------------------------------------


def test_6_1_two_nodes_in_opposite_orders() -> None:
    tr = Trace().ring("1.4", [1, 2]).send(1, "1:0:1").send(2, "2:0:1")
    tr.dlv(1, "1.4", "1:0:1", "2:0:1").dlv(2, "1.4", "2:0:1", "1:0:1")
    assert tr.ids() == {"6.1"}


def test_6_1_opposite_orders_in_separate_transitional_configurations() -> None:
    tr = Trace().ring("1.4", [1, 2]).send(1, "1:0:1").send(2, "2:0:1")
    tr.trans(1, "1.4", [1]).dlv(1, "1.4", "1:0:1", "2:0:1").reg(1, "1.8", [1])
    tr.trans(2, "1.4", [2]).dlv(2, "1.4", "2:0:1", "1:0:1").reg(2, "2.8", [2])
    report = tr.check()
    assert {v.property for v in report.violations} == {"6.1"}
    assert "no single order" in report.violations[0].message


# -- 6.2 no gaps in a regular configuration ---------------------------------------------------


def test_6_2_gap_in_a_regular_configuration() -> None:
    tr = Trace().ring("1.4", [1, 2]).send(1, "1:0:1").send(2, "2:0:1")
    tr.dlv(1, "1.4", "1:0:1", "2:0:1")
    assert tr.dlv(2, "1.4", "1:0:1").ids() == set()  # a prefix: fine
    tr = Trace().ring("1.4", [1, 2]).send(1, "1:0:1").send(2, "2:0:1")
    tr.dlv(1, "1.4", "1:0:1", "2:0:1")
    assert tr.dlv(2, "1.4", "2:0:1").ids() == {"6.2"}


def test_6_2_handle_traces_allow_a_tail_in_the_first_configuration() -> None:
    tr = Trace().ring("1.4", [1, 2]).send(1, "1:0:1").send(1, "1:0:2").send(1, "1:0:3")
    tr.dlv(1, "1.4", "1:0:1", "1:0:2", "1:0:3").dlv(2, "1.4", "1:0:2", "1:0:3")
    assert tr.ids(handle_traces=True) == set()
    assert tr.ids() == {"5", "6.2"}
    tr = Trace().ring("1.4", [1, 2]).send(1, "1:0:1").send(2, "2:0:1").send(1, "1:0:2")
    tr.dlv(1, "1.4", "1:0:1", "2:0:1", "1:0:2").dlv(2, "1.4", "2:0:1", "1:0:2")
    assert tr.ids(handle_traces=True) == set()
    tr.dlv(2, "1.4", "1:0:1")
    assert tr.ids(handle_traces=True) == {"6.1"}


def test_6_2_handle_traces_still_judge_later_configurations() -> None:
    tr = Trace().reg(1, "1.4", [1]).trans(1, "1.4", [1]).reg(1, "1.8", [1, 2])
    tr.reg(2, "1.8", [1, 2]).send(1, "1:1:1").send(2, "2:0:1")
    tr.dlv(2, "1.8", "1:1:1", "2:0:1").dlv(1, "1.8", "2:0:1")
    assert tr.ids(handle_traces=True) == {"6.2"}


# -- 6.3 gaps in a transitional configuration only before members' messages ------------------


def gap_trace(*, sender_in_trans: bool) -> Trace:
    tr = Trace().ring("1.4", [1, 2, 3]).send(1, "1:0:1").send(3, "3:0:1")
    tr.dlv(1, "1.4", "1:0:1", "3:0:1").crash(1)
    members = [2, 3] if sender_in_trans else [2]
    for n in members:
        tr.trans(n, "1.4", members).dlv(n, "1.4", "3:0:1").reg(n, f"2.{8}", members)
    if not sender_in_trans:
        tr.crash(3)
    return tr


def test_6_3_post_gap_message_from_a_member_holds() -> None:
    assert gap_trace(sender_in_trans=True).ids() == set()


def test_6_3_post_gap_message_from_a_non_member() -> None:
    assert gap_trace(sender_in_trans=False).ids() == {"6.3"}


def test_6_3_gap_only_among_transitional_deliveries() -> None:
    tr = Trace().ring("1.4", [1, 2, 3]).send(2, "2:0:1").send(3, "3:0:1").crash(3)
    tr.trans(2, "1.4", [2]).dlv(2, "1.4", "2:0:1", "3:0:1").reg(2, "2.8", [2])
    tr.trans(1, "1.4", [1]).dlv(1, "1.4", "3:0:1").reg(1, "1.8", [1])
    report = tr.check()
    assert {v.property for v in report.violations} == {"6.3"}
    assert "no single order" in report.violations[0].message


# -- 7 safe delivery -------------------------------------------------------------------------


def safe_trace() -> Trace:
    tr = Trace().ring("1.4", [1, 2, 3]).send(1, "1:0:1", safe=True)
    return tr.dlv(1, "1.4", "1:0:1", safe=True).crash(1)


def test_7_1_safe_in_regular_missed_by_a_member() -> None:
    tr = safe_trace()
    for n in (2, 3):
        tr.trans(n, "1.4", [2, 3]).reg(n, "2.8", [2, 3])
    assert tr.ids() == {"7.1"}


def test_7_1_holds_when_members_deliver_it_in_the_transitional_configuration() -> None:
    tr = safe_trace()
    for n in (2, 3):
        tr.trans(n, "1.4", [2, 3]).dlv(n, "1.4", "1:0:1", safe=True).reg(n, "2.8", [2, 3])
    assert tr.ids() == set()


def test_7_1_not_owed_by_crashed_nodes_or_unfinished_logs() -> None:
    assert safe_trace().crash(2).ids() == set()
    assert safe_trace().ids(quiet_end=False) == set()


def test_7_2_safe_in_transitional_missed_by_a_member() -> None:
    tr = Trace().ring("1.4", [1, 2, 3]).send(1, "1:0:1", safe=True).crash(1)
    tr.trans(2, "1.4", [2, 3]).dlv(2, "1.4", "1:0:1", safe=True).reg(2, "2.8", [2, 3])
    tr.trans(3, "1.4", [2, 3]).reg(3, "2.8", [2, 3])
    assert tr.ids() == {"4", "7.2"}


def test_7_2_owed_only_by_members_that_installed_it() -> None:
    tr = Trace().ring("1.4", [1, 2, 3]).send(1, "1:0:1", safe=True).crash(1)
    tr.trans(2, "1.4", [2, 3]).dlv(2, "1.4", "1:0:1", safe=True).reg(2, "2.8", [2, 3])
    tr.trans(3, "1.4", [3]).reg(3, "3.8", [3])  # 3 failed into 2.8 and went on alone
    assert tr.ids() == set()
    assert tr.crash(2).ids(quiet_end=True) == set()
    tr = Trace().ring("1.4", [1, 2, 3]).send(1, "1:0:1", safe=True).crash(1)
    tr.trans(2, "1.4", [2, 3]).dlv(2, "1.4", "1:0:1", safe=True).reg(2, "2.8", [2, 3])
    tr.trans(3, "1.4", [2, 3])  # 3's log ends in t: owed only after a quiet end
    assert tr.ids() == set()
    assert tr.ids(quiet_end=True) == {"1.4", "7.2"}


# -- the report -----------------------------------------------------------------------------


def test_violation_names_nodes_messages_and_rings_and_carries_events() -> None:
    tr = Trace().ring("1.4", [1, 2]).send(1, "1:0:1").send(2, "2:0:1")
    tr.dlv(1, "1.4", "1:0:1", "2:0:1").dlv(2, "1.4", "2:0:1", "1:0:1")
    (v,) = tr.check().violations
    assert v.property == "6.1"
    assert v.name == "one total order"
    for word in ("1.4", "node 1", "node 2", "1:0:1", "2:0:1"):
        assert word in v.message
    assert {e["ev"] for e in v.events} == {"deliver"}
    assert len(v.events) == 4
