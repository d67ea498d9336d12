"""Agreement on transitional configurations across nodes (2.2 for transitional ids, 2.4).

Theory of operation. A transitional configuration has no id of its own in the trace: its
``ring`` is the regular ring it closes, and after a partition each side installs its own
transitional configuration of the same old ring. So one is keyed by (old ring, next regular
ring), and 2.2 asks that one key mean one membership. For 2.4, nodes that closed the same
old ring with the same transitional members installed the same transitional configuration,
so they must go on to the same next ring (and, by construction, came from the same one).

Not judged: that every member of p's transitional configuration installs it too. A member
can fail while recovering into the next ring and go on elsewhere without crashing (the real
simulator produces this); to p it is as if that member had crashed. Regular ids were judged
during the replay (``history.py``).
"""

from __future__ import annotations

from evs.check.model import Epoch, History
from evs.check.report import Violation, violation

__all__ = ["check_transitional_agreement"]


def _ids(ids: frozenset[int]) -> str:
    return "[" + ",".join(map(str, sorted(ids))) + "]"


def _same_id(groups: dict[tuple[str, str], list[Epoch]], out: list[Violation]) -> None:
    for (ring, nxt), group in groups.items():
        ref = group[0]
        for e in group[1:]:
            if e.trans_members != ref.trans_members:
                assert e.trans_members is not None
                assert ref.trans_members is not None
                out.append(
                    violation(
                        "2.2",
                        f"the transitional configuration from {ring} to {nxt} has members "
                        f"{_ids(ref.trans_members)} at {ref.label()} but "
                        f"{_ids(e.trans_members)} at {e.label()}",
                        ref.trans_event,
                        e.trans_event,
                    )
                )


def _same_next(h: History, out: list[Violation]) -> None:
    """2.4: one transitional configuration (old ring and members) leads to one next ring."""
    first: dict[tuple[str, frozenset[int]], Epoch] = {}
    for e in h.epochs:
        if e.trans_members is None or e.next_ring is None:
            continue  # crashed in the transitional configuration, or the log ends there
        ref = first.setdefault((e.ring, e.trans_members), e)
        if ref.next_ring != e.next_ring:
            out.append(
                violation(
                    "2.4",
                    f"the transitional configuration {_ids(e.trans_members)} after {e.ring} "
                    f"leads to {ref.next_ring} at {ref.label()} but to {e.next_ring} at "
                    f"{e.label()}",
                    ref.trans_event,
                    e.trans_event,
                )
            )


def check_transitional_agreement(
    h: History, groups: dict[tuple[str, str], list[Epoch]], out: list[Violation]
) -> None:
    """2.2 for transitional configurations (by key) and 2.4 (by old ring and members)."""
    _same_id(groups, out)
    _same_next(h, out)
