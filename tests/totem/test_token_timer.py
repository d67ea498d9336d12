"""Token retransmission under loss (protocol.md section 4.4; docs/protocol.md, "Token
retransmission").

A lost token is re-sent after about one observed rotation on a busy ring, the wait doubles per
re-send of the same token up to ``token_retransmit``, an idle ring keeps the fixed timer, a
rotation that needed a re-send is no sample, and while the ring shows loss the token goes out
in ``token_copies_on_loss`` identical copies. Whatever arrives twice is processed once: the
receiver drops every copy at or below the last ``token_seq`` it accepted.
"""

from __future__ import annotations

import pytest

from evs.totem.codec import cluster_id_for, decode, encode
from evs.totem.config import ConfigError, TotemConfig
from evs.totem.events import BROADCAST
from evs.totem.messages import Mcast, OrfToken, RtrEntry
from evs.totem.ordering import LOSS_MEMORY_VISITS
from evs.totem.processor import Processor
from evs.totem.timers import Timer
from evs.types import Guarantee

from .ring import ring_of_two, token_back

CID = cluster_id_for("evs")
#: One rotation of the test ring, ms.
ROTATION = 1.0


def tokens_to_successor(p: Processor) -> list[OrfToken]:
    out = []
    for dest, data in p.outbox:
        if dest == 2:
            tok = decode(data, CID)
            assert isinstance(tok, OrfToken)
            out.append(tok)
    return out


def busy_visits(p: Processor, count: int, start: float = 1.0) -> float:
    """``count`` token visits ``ROTATION`` apart, each stamping a new message (a busy ring);
    returns the time of the last one."""
    now = start
    for i in range(count):
        now = start + i * ROTATION
        p.submit(now, [b"g"], b"m%d" % i, Guarantee.AGREED)
        p.receive(now, encode(token_back(p), CID))
    return now


def retransmit_due(p: Processor) -> float:
    at = p.timers.deadline(Timer.TOKEN_RETRANSMIT)
    assert at is not None
    return at


def test_a_lost_token_is_resent_after_about_one_rotation_not_token_retransmit() -> None:
    p = ring_of_two(token_retransmit_min=0.5)
    last = busy_visits(p, 40)
    # The rotation is learnt: about one rotation, far below the fixed 238 ms.
    assert p.ring.rotation_ms == pytest.approx(ROTATION, abs=0.01)
    wait = retransmit_due(p) - last
    assert ROTATION <= wait <= 2 * ROTATION
    assert p.config.token_retransmit_ms > 200
    sent = tokens_to_successor(p)[-1]
    p.outbox.clear()
    p.handle_timer(last + wait)  # the token did not come back: it is re-sent, unchanged
    (again,) = tokens_to_successor(p)
    assert again == sent
    assert p.stats["token retransmitted"] == 1


def test_the_floor_bounds_the_adaptive_timeout_from_below() -> None:
    p = ring_of_two()  # token_retransmit_min: the default 2 ms, above 1 ms rotations
    last = busy_visits(p, 40)
    assert retransmit_due(p) - last == pytest.approx(p.config.token_retransmit_min_ms)
    assert p.config.token_retransmit_min_ms == 2.0


def test_each_resend_of_the_same_token_doubles_the_wait_up_to_token_retransmit() -> None:
    p = ring_of_two(token_retransmit_min=0.5)
    last = busy_visits(p, 40)
    first = retransmit_due(p) - last
    sent = tokens_to_successor(p)[-1]
    now = last
    waits = []
    for _ in range(12):  # the successor never answers
        due = retransmit_due(p)
        waits.append(due - now)
        now = due
        p.outbox.clear()
        p.handle_timer(now)
        assert tokens_to_successor(p) == [sent]
    ceiling = p.config.token_retransmit_ms
    expected = [min(ceiling, first * 2**k) for k in range(12)]
    assert waits == pytest.approx(expected)
    assert waits[-1] == pytest.approx(ceiling)
    assert p.stats["token retransmitted"] == 12


def test_the_next_token_resets_the_back_off() -> None:
    p = ring_of_two(token_retransmit_min=0.5)
    last = busy_visits(p, 40)
    first = retransmit_due(p) - last
    for _ in range(3):
        p.handle_timer(retransmit_due(p))
    now = retransmit_due(p) - 1.0
    busy_visits(p, 1, start=now)  # the token came back at last
    assert p.ring.token_resends == 0
    assert retransmit_due(p) - now == pytest.approx(first, rel=0.5)


def test_a_rotation_that_needed_a_resend_is_not_a_sample() -> None:
    p = ring_of_two(token_retransmit_min=0.5)
    last = busy_visits(p, 40)
    learnt = p.ring.rotation_ms
    p.handle_timer(retransmit_due(p))  # lost: re-sent once
    busy_visits(p, 1, start=last + 50.0)  # back 50 ms later
    assert p.ring.rotation_ms == learnt  # the 50 ms measured the loss, not the ring


def test_an_idle_ring_keeps_the_fixed_token_retransmit() -> None:
    p = ring_of_two(token_retransmit_min=0.5)
    last = busy_visits(p, 40)
    assert retransmit_due(p) - last < 5.0
    idle = p.config.seqno_unchanged_const // 2
    now = last
    # The seq stops moving: nobody sends. The first such visit still sees our last message's
    # seq as new; the count of unchanged visits starts at the next.
    for _ in range(idle + 1):
        now += ROTATION
        p.receive(now, encode(token_back(p), CID))
    assert retransmit_due(p) - now == pytest.approx(p.config.token_retransmit_ms)


def test_without_a_rotation_sample_the_timer_is_the_fixed_one() -> None:
    p = ring_of_two()  # one visit so far (the ring's first token): no rotation measured
    assert p.ring.rotation_ms < 0
    assert retransmit_due(p) == pytest.approx(p.config.token_retransmit_ms)


def test_a_duplicate_token_is_processed_once() -> None:
    p = ring_of_two()
    last = busy_visits(p, 5)
    p.submit(last + 0.5, [b"g"], b"late", Guarantee.AGREED)
    tok = token_back(p)
    p.outbox.clear()
    p.receive(last + 1.0, encode(tok, CID))
    first = list(p.outbox)
    assert [dest for dest, _ in first].count(BROADCAST) == 1  # "late" stamped once
    state = (p.ring.my_token_seq, p.ring.my_high_seq_received, p.ring.my_aru)
    deadlines = (p.timers.deadline(Timer.TOKEN), retransmit_due(p))
    for k in range(3):  # re-sent copies of the same hop, late
        p.outbox.clear()
        p.receive(last + 1.5 + k, encode(tok, CID))
        assert p.outbox == []
    assert (p.ring.my_token_seq, p.ring.my_high_seq_received, p.ring.my_aru) == state
    # A rejected copy resets no timer (protocol.md 4.4), nor samples the rotation.
    assert (p.timers.deadline(Timer.TOKEN), retransmit_due(p)) == deadlines
    assert p.stats["token duplicate"] == 3


def test_the_token_goes_in_copies_while_the_ring_shows_loss() -> None:
    p = ring_of_two()
    p.submit(1.0, [b"g"], b"x", Guarantee.AGREED)
    p.receive(1.0, encode(token_back(p), CID))
    assert len(tokens_to_successor(p)) == 1  # no sign of loss: one copy
    p.outbox.clear()
    # Node 2 asks for seq 1 again: the network loses datagrams.
    rtr = [RtrEntry(p.ring_id, 1)]
    p.receive(2.0, encode(token_back(p, aru=0, aru_addr=2, rtr_list=rtr), CID))
    copies = tokens_to_successor(p)
    assert len(copies) == p.config.token_copies_on_loss == 2
    assert copies[0] == copies[1]
    resent = [m for d, m in p.outbox if d == BROADCAST]
    assert isinstance(decode(resent[0], CID), Mcast)
    now = 2.0
    for _ in range(LOSS_MEMORY_VISITS - 1):  # loss stays in memory for a while
        now += ROTATION
        p.outbox.clear()
        p.receive(now, encode(token_back(p), CID))
        assert len(tokens_to_successor(p)) == 2
    p.outbox.clear()
    p.receive(now + ROTATION, encode(token_back(p), CID))
    assert len(tokens_to_successor(p)) == 1  # LOSS_MEMORY_VISITS visits, this one included


def test_own_holes_count_as_loss_and_one_copy_turns_it_off() -> None:
    p = ring_of_two(miss_count_const=1, token_copies_on_loss=1)
    p.receive(1.0, encode(token_back(p, seq=1, aru=0, aru_addr=2), CID))  # seq 1 never came
    assert [e.seq for e in tokens_to_successor(p)[0].rtr_list] == [1]
    assert p.ring.loss_visits == LOSS_MEMORY_VISITS
    assert len(tokens_to_successor(p)) == 1


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"token_retransmit_min": 0.0}, "token_retransmit_min"),
        ({"token_retransmit_min": 300.0}, "token_retransmit_min"),
        ({"token_retransmit": 10.0, "hold": 5.0, "token_retransmit_min": 11.0}, "at most"),
        ({"token_copies_on_loss": 0}, "token_copies_on_loss"),
        ({"token_copies_on_loss": 5}, "token_copies_on_loss"),
    ],
)
def test_bad_retransmit_settings_are_refused(fields: dict[str, float], why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        TotemConfig(**fields)  # type: ignore[arg-type]


def test_the_floor_defaults_to_2_ms_or_token_retransmit_when_lower() -> None:
    assert TotemConfig().token_retransmit_min_ms == 2.0
    cfg = TotemConfig(token_retransmit=1.5, hold=1.0)
    assert cfg.token_retransmit_min_ms == 1.5
    fixed = TotemConfig(token_retransmit_min=TotemConfig().token_retransmit_ms)
    assert fixed.token_retransmit_min_ms == fixed.token_retransmit_ms


def test_a_held_token_is_released_without_the_back_off_of_the_token_before() -> None:
    p = ring_of_two(token_retransmit_min=0.5)
    last = busy_visits(p, 40)
    first = retransmit_due(p) - last
    now = last
    while not p.ring.holding:  # nobody sends: the representative ends up holding the token
        p.handle_timer(retransmit_due(p))  # each token of the idle ring re-sent once, late
        assert p.ring.token_resends == 1
        now = retransmit_due(p) + 1.0
        p.receive(now, encode(token_back(p), CID))
    assert p.ring.token_resends == 0
    p.outbox.clear()
    p.submit(now + 1.0, [b"g"], b"wake", Guarantee.AGREED)  # new data: release the held token
    p.handle_timer(now + 1.0)  # the holder's visit with it, at once (tests/totem/test_held_token)
    assert len(tokens_to_successor(p)) == 1
    assert retransmit_due(p) - (now + 1.0) == pytest.approx(first)
