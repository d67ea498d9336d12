"""Seeded randomness: one seed, independent named streams.

Every random choice of a run comes from here, so ``(seed, options)`` replays a run exactly.
Streams are derived by name (not by draw order), so adding a draw to one component does not
shift the choices of another.
"""

from __future__ import annotations

import hashlib
import random

__all__ = ["derive"]


def derive(seed: int, name: str) -> random.Random:
    """An independent PRNG for component ``name`` of the run with ``seed``."""
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))
