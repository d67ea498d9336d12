"""A static ring of two, seen from its representative: the fixture of the token-level tests.

Node 1 is driven by hand: a test hands it the token node 2 would send back (``token_back``)
and reads what it sent, so one token visit at a time can be checked without a simulator.
"""

from __future__ import annotations

from evs.totem.config import TotemConfig
from evs.totem.messages import OrfToken
from evs.totem.processor import Processor
from evs.types import ConfigChange


def ring_of_two(**cfg: object) -> Processor:
    """Node 1 (the representative) of a static ring {1, 2}, after its first token visit."""
    p = Processor(TotemConfig(**cfg), 1, static_members=(1, 2))  # type: ignore[arg-type]
    p.start(0.0)
    assert any(isinstance(e, ConfigChange) for e in p.events)
    p.events.clear()
    p.outbox.clear()
    return p


def token_back(p: Processor, **fields: object) -> OrfToken:
    """The token as node 2 would return it to node 1 (one hop later, nothing changed)."""
    tok = OrfToken(
        sender=2,
        ring_id=p.ring_id,
        token_seq=p.ring.my_token_seq + 2,
        seq=p.ring.my_high_seq_received,
        aru=p.ring.my_aru,
        aru_addr=0,
        backlog=0,
        fcc=0,
        retrans_flg=False,
    )
    for key, value in fields.items():
        setattr(tok, key, value)
    return tok
