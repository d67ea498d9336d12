"""Drawing of the simulator's options: valid, wide (small windows included), replayable."""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from evs.cli.__main__ import build_parser
from evs.sim.campaign import replay_command
from evs.sim.cli import _overrides
from evs.sim.options import SimOptions, draw_options
from evs.totem.config import ConfigError


def replayed(command: str) -> SimOptions:
    """The options ``evs sim`` would run for a printed replay command."""
    args = build_parser().parse_args(shlex.split(command)[1:])
    overrides = {k: v for k, v in _overrides(args).items() if v is not None}
    with_faults = not (args.no_faults or args.static_ring)
    return draw_options(args.seed, with_faults=with_faults, light=args.light, **overrides)


CASES: list[tuple[dict[str, Any], bool, bool]] = [
    ({}, True, False),
    ({}, True, True),
    ({"static_ring": True}, False, False),
    ({"nodes": 16, "window_size": 7}, True, True),
    ({"max_messages": 3, "saturate": (100.0, 900.0)}, True, False),
    ({"queue_bytes_max": 300_000, "huge_fraction": 0.0}, True, True),
    ({"loss": 0.1, "rate": 50.0, "token_ms": 400.0}, False, False),
]


@pytest.mark.parametrize(("overrides", "faults", "light"), CASES)
def test_the_replay_command_draws_the_same_options(
    overrides: dict[str, Any], faults: bool, light: bool
) -> None:
    for seed in range(1, 120):
        options = draw_options(seed, with_faults=faults, light=light, **overrides)
        command = replay_command(seed, overrides, faults, light, options)
        assert replayed(command) == options, command
        # Without the spelled-out values, the seed alone draws them again.
        assert replayed(replay_command(seed, overrides, faults, light)) == options


def test_drawn_flow_control_is_valid_and_often_small() -> None:
    drawn = [draw_options(seed, with_faults=True) for seed in range(1, 1001)]
    windows = [o.window_size for o in drawn]
    assert min(windows) == 5
    assert max(windows) == 200
    assert sum(w <= 15 for w in windows) > 150
    assert sum(o.max_messages == 1 for o in drawn) > 50
    assert all(1 <= o.max_messages <= o.window_size for o in drawn)
    assert all(o.sort_queue_slots > 2 * o.window_size for o in drawn)
    assert sum(o.sort_queue_slots <= 2 * o.window_size + 8 for o in drawn) > 250
    assert {o.queue_bytes_max for o in drawn} >= {1 << 20, 2 << 20}
    saturating = [o for o in drawn if o.saturating]
    assert 180 < len(saturating) < 320
    assert all(0 <= o.saturate[0] < o.saturate[1] <= o.duration_ms for o in saturating)
    kinds = {a.kind for o in drawn for a in o.faults}
    assert kinds == {
        "start",
        "crash",
        "restart",
        "pause",
        "partition",
        "oneway",
        "heal",
        "burst",
        "slow",
    }
    slow = [a for o in drawn for a in o.faults if a.kind == "slow"]
    assert all(0.8 <= a.value <= 0.98 and len(a.nodes) == 1 for a in slow)


def test_light_saturation_spans_are_short_and_their_queues_small() -> None:
    drawn = [draw_options(seed, with_faults=True, light=True) for seed in range(300)]
    assert all(o.saturate[1] - o.saturate[0] <= 300 for o in drawn)
    saturating = [o for o in drawn if o.saturating]
    assert len(saturating) > 40
    assert {o.queue_bytes_max for o in saturating} == {128 << 10, 256 << 10}
    assert {o.max_message_size for o in saturating} == {64 << 10}
    assert {o.max_message_size for o in drawn if not o.saturating} == {1 << 20}


def test_the_largest_message_always_fits() -> None:
    for seed in range(1, 200):
        options = draw_options(seed, with_faults=True)
        assert options.max_message_size >= options.largest_message()
        assert options.queue_bytes_max >= options.max_message_size
    small = draw_options(3, huge_fraction=0.0, queue_bytes_max=100_000)
    assert small.max_message_size == 100_000
    with pytest.raises(ValueError, match="largest message"):
        draw_options(3, huge_fraction=0.002, max_message_size=70_000)


def test_explicit_flow_values_win_and_drawn_ones_give_way() -> None:
    for seed in range(1, 60):
        assert draw_options(seed, max_messages=120).window_size >= 120
        assert 2 * draw_options(seed, sort_queue_slots=21).window_size < 21
        whole = draw_options(seed, saturate=(0.0, float("inf")))
        assert whole.saturate == (0.0, whole.duration_ms)
    with pytest.raises(ConfigError, match="max_messages"):
        draw_options(1, window_size=10, max_messages=11)
    with pytest.raises(ConfigError, match="sort_queue_slots"):
        draw_options(1, window_size=10, sort_queue_slots=20)


def test_options_are_printed() -> None:
    options = draw_options(7, window_size=9, max_messages=2, saturate=(10.0, 500.0))
    text = options.describe()
    assert "window=9 max_messages=2" in text
    assert "saturate=10-500ms" in text
