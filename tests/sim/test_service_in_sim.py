"""The simulator runs the daemon's runtime: Driver and EvsService in every simulated process.

Every seed therefore tests the service layer too: handles join and leave groups, send to
joined and named groups, and each handle slot's trace (api.md section 4, per handle) is judged
by the checker in handle-trace mode beside the processors' trace. These tests pin what makes
that judgement worth something: the runs are deterministic, the traces really contain joins
again, leaves, sends and deliveries, and ``--trace`` writes files ``evs check`` accepts.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from evs.check import check_files
from evs.cli.__main__ import build_parser
from evs.sim.cli import run, slot_trace_path
from evs.sim.cluster import Cluster
from evs.sim.options import draw_options


def test_the_same_seed_gives_the_same_traces() -> None:
    options = draw_options(7, with_faults=True, light=True, handles=3)
    a, b = Cluster(options), Cluster(options)
    ra, rb = a.run(), b.run()
    assert ra.ok, ra.violations[:3]
    assert a.trace == b.trace
    assert a.handle_traces == b.handle_traces
    assert ra.stats == rb.stats


def test_handle_slots_join_leave_send_and_deliver() -> None:
    kinds: Counter[str] = Counter()
    slots = set()
    for seed in range(1, 5):
        options = draw_options(seed, with_faults=True, light=True)
        cluster = Cluster(options)
        result = cluster.run()
        assert result.ok, (seed, result.violations[:3])
        assert len(cluster.handle_traces) == options.handles
        slots.add(options.handles)
        for events in cluster.handle_traces:
            kinds.update(e["ev"] for e in events)
        # Handle-level deliveries are a projection of the processors': never more per slot.
        processor = sum(1 for e in cluster.trace if e["ev"] == "deliver")
        for events in cluster.handle_traces:
            assert sum(1 for e in events if e["ev"] == "deliver") <= processor
    assert slots == {1, 2, 3}
    # Leaves end a slot's incarnation, joins start one; both happen, with traffic in between.
    assert kinds["crash"] >= 20
    assert kinds["restart"] >= 20
    assert kinds["send"] > 1000
    assert kinds["deliver"] > 3 * kinds["send"]


def test_message_ids_come_from_the_service_header() -> None:
    options = draw_options(3, static_ring=True, nodes=3, handles=2, rate=100.0, duration_ms=1500.0)
    cluster = Cluster(options)
    result = cluster.run()
    assert result.ok, result.violations[:3]
    sent = [e["msg"] for e in cluster.trace if e["ev"] == "send"]
    assert sent
    for node in (1, 2, 3):
        counters = [int(m.split(":")[2]) for m in sent if m.startswith(f"{node}:")]
        assert counters == sorted(counters)  # node:incarnation:counter, counted by the service
    stats = result.stats
    assert stats["deliveries to handles"] > 0
    assert stats["messages delivered"] == stats["deliveries"]


@pytest.mark.parametrize("seed", [4])
def test_trace_option_writes_one_checkable_file_per_slot(
    seed: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "run.jsonl"
    args = build_parser().parse_args(
        ["sim", "--seed", str(seed), "--light", "--handles", "2", "--trace", str(path)]
    )
    assert run(args) == 0
    assert "2 handle slot(s) per process" in capsys.readouterr().out
    for k in range(2):
        slot = Path(slot_trace_path(str(path), k))
        lines = slot.read_text().splitlines()
        assert lines
        assert all(json.loads(line)["node"] >= 1 for line in lines)
        assert check_files([slot], quiet_end=True, handle_traces=True).ok
    assert check_files([path], quiet_end=True).ok


def test_a_refused_sender_hears_room_again() -> None:
    options = draw_options(5, static_ring=True, nodes=3, saturate=(100.0, 400.0), light=True)
    result = Cluster(options).run()
    assert result.ok, result.violations[:3]
    assert result.stats["saturation try again"] > 0
    assert result.stats["room again"] > 0
