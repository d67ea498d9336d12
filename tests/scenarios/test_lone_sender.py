"""A lone sender of large messages takes the whole window; a second sender still gets in.

The lone-sender rule (docs/protocol.md) lets a member whose token shows no other backlog send
a whole window per visit. Another member that queues a message reports its backlog at its
next visit, and from the lone sender's next visit the window is shared again: the newcomer's
message goes out about a rotation later than under the usual rule, never after the lone
sender's whole backlog.
"""

from __future__ import annotations

from evs.sim.scenario import Scenario


def test_a_second_sender_gets_in_while_a_lone_sender_fills_the_window() -> None:
    sc = Scenario(3, queue_bytes_max=2 << 20)  # two such messages queued at once
    sc.run_until_ring((1, 2, 3))
    sc.submit(1, 900_000)  # about 670 packets each: some 20 rotations of a whole window
    sc.submit(1, 900_000)
    sc.run_ms(2.0)
    lone = sc.processor(1).packer
    assert lone.queued_messages() == 2, "the lone sender is still on its first message"
    sent_before = sc.stat("mcast sent")
    msg = sc.submit(2, 100)
    took = sc.run_until_delivered(msg, (1, 2, 3), within_ms=50.0)
    assert lone.queued_messages() > 0, "the lone sender's backlog outlasted the newcomer's"
    assert took <= 20.5, f"the second sender waited {took:.1f} ms"  # (run_until polls 10 ms)
    # The lone sender kept sending meanwhile: the window was shared, not handed over.
    assert sc.stat("mcast sent") > sent_before
    sc.run_until(lambda: lone.queued_messages() == 0, 2000.0)
    sc.assert_evs(quiet_end=False)
