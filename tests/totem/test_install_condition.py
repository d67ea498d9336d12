"""The RECOVERY token logic and install condition (protocol.md section 5.7), visit by visit.

``recovery.on_token`` runs on every valid token in RECOVERY. These tests hand it tokens built
by the test and read what it decided: the retransmit flag, the install seq and when install
happens (``install`` is replaced by a recorder, since what install delivers is tested in
test_recovery_plans.py). End to end, these rules show only when recovery traffic and token
visits interleave unluckily, so the simulator's campaigns rarely exercise them.
"""

from __future__ import annotations

import pytest

from evs._compiled import compiled_modules
from evs.totem import recovery
from evs.totem.config import TotemConfig
from evs.totem.messages import OrfToken
from evs.totem.processor import Processor
from evs.types import RingId

RING = RingId(seq=12, rep=1)


@pytest.fixture
def installs(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    if "evs.totem.recovery" in compiled_modules():
        pytest.skip("replaces recovery.install: calls inside a compiled module do not see that")
    calls: list[float] = []
    monkeypatch.setattr(recovery, "install", lambda p, now: calls.append(now))
    return calls


def recovering() -> Processor:
    """A processor with nothing of its own to re-send (its recovery queue is empty)."""
    return Processor(TotemConfig(), 2)


def visit(p: Processor, now: float, *, seq: int, aru: int, flag: bool = False) -> OrfToken:
    tok = OrfToken(
        sender=1,
        ring_id=RING,
        token_seq=int(now),
        seq=seq,
        aru=aru,
        aru_addr=0,
        backlog=0,
        fcc=0,
        retrans_flg=flag,
    )
    recovery.on_token(p, now, tok)
    return tok


def test_only_the_member_that_set_retrans_flg_clears_it(installs: list[float]) -> None:
    """Another member still has old messages to re-send: its flag stays up, and no visit
    with the flag up counts toward install."""
    p = recovering()
    for now in range(1, 6):
        tok = visit(p, float(now), seq=3, aru=3, flag=True)
        assert tok.retrans_flg
        assert p.rec.retrans_flg_count == 0
    assert installs == []


def test_install_seq_is_the_token_seq_after_a_whole_rotation_with_the_flag_down(
    installs: list[float],
) -> None:
    """A member can re-send its whole queue in one visit without ever raising the flag, so
    the first visit with the flag down does not yet bound what was re-sent; the seq at the
    second one does (every member has had a visit with the flag down in between)."""
    p = recovering()
    visit(p, 1.0, seq=5, aru=5)
    visit(p, 2.0, seq=7, aru=5)  # someone re-sent 6 and 7 in one visit, flag still down
    assert p.rec.install_seq == 7
    visit(p, 3.0, seq=7, aru=6)
    visit(p, 4.0, seq=7, aru=6)
    assert installs == []  # the ring has not shown 7 received by all yet


def test_install_comes_after_two_rotations_showing_install_seq_received(
    installs: list[float],
) -> None:
    """Like safe delivery and freeing, one visit with aru >= install_seq does not prove every
    member holds install_seq: the aru is raised by one member at a time. Install waits for
    a second rotation."""
    p = recovering()
    visit(p, 1.0, seq=4, aru=4)
    visit(p, 2.0, seq=4, aru=4)  # install_seq = 4
    visit(p, 3.0, seq=4, aru=4)  # first rotation showing it received
    assert installs == []
    visit(p, 4.0, seq=4, aru=4)  # second rotation: install
    assert installs == [4.0]
