"""The replay window at its edges: the last counter inside it and the first one outside."""

from __future__ import annotations

import pytest

from evs.crypto.replay import ReplayWindows

W = 64


def test_edges_of_the_window() -> None:
    windows = ReplayWindows(W)
    windows.accept(1, 7, 0)
    windows.accept(1, 7, W - 1)
    assert windows.check(1, 7, 0) == "replay"  # W - 1 behind: still inside, and seen
    assert windows.check(1, 7, 1) is None  # inside, not seen
    windows.accept(1, 7, W)
    assert windows.check(1, 7, 0) == "too_old"  # W behind: just outside
    assert windows.check(1, 7, 1) is None  # W - 1 behind: inside, never seen
    windows.accept(1, 7, 1)
    assert windows.check(1, 7, 1) == "replay"
    assert windows.check(1, 7, W - 1) == "replay"
    assert windows.check(1, 7, W) == "replay"


def test_a_jump_of_exactly_the_width_forgets_everything_before() -> None:
    windows = ReplayWindows(W)
    windows.accept(1, 7, 10)
    windows.accept(1, 7, 10 + W)
    assert windows.check(1, 7, 10) == "too_old"
    assert windows.check(1, 7, 11) is None
    assert windows.check(1, 7, 10 + W) == "replay"


def test_boots_and_senders_are_separate() -> None:
    windows = ReplayWindows(W)
    windows.accept(1, 7, 5)
    assert windows.check(2, 7, 5) is None  # another sender
    assert windows.check(1, 8, 5) is None  # a newer boot of the same sender
    windows.accept(1, 8, 0)
    assert windows.boot_of(1) == 8
    assert windows.check(1, 7, 6) == "stale_boot"
    assert windows.check(1, 8, 0) == "replay"
    assert windows.boot_of(2) is None


@pytest.mark.parametrize("width", [0, -1, 65537])
def test_width_is_bounded(width: int) -> None:
    with pytest.raises(ValueError, match="replay window"):
        ReplayWindows(width)
