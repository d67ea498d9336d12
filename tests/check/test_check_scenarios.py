"""A realistic trace, as the simulator would write it: three nodes, a partition that closes
one ring differently on each side, and a merge. It must pass cleanly, from memory and from
files (one per node, or all in one), and each of a few one-line edits must be caught.
"""

# The trace below is kept one event per line, exactly as the contract writes it.
# ruff: noqa: E501

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evs.check import check_events, check_files
from evs.trace import TraceError

PARTITION_AND_MERGE = """
{"t": 1, "node": 1, "ev": "confchg", "kind": "regular", "ring": "1.4", "members": [1,2,3], "left": [], "joined": [1,2,3]}
{"t": 1, "node": 2, "ev": "confchg", "kind": "regular", "ring": "1.4", "members": [1,2,3], "left": [], "joined": [1,2,3]}
{"t": 1, "node": 3, "ev": "confchg", "kind": "regular", "ring": "1.4", "members": [1,2,3], "left": [], "joined": [1,2,3]}
{"t": 2, "node": 1, "ev": "send", "msg": "1:0:1", "guarantee": "agreed", "digest": "aa01"}
{"t": 2, "node": 3, "ev": "send", "msg": "3:0:1", "guarantee": "safe"}
{"t": 2.5, "node": 2, "ev": "send", "msg": "2:0:1", "guarantee": "agreed"}
{"t": 3, "node": 1, "ev": "deliver", "msg": "1:0:1", "sender": 1, "ring": "1.4", "guarantee": "agreed", "digest": "aa01"}
{"t": 3, "node": 2, "ev": "deliver", "msg": "1:0:1", "sender": 1, "ring": "1.4", "guarantee": "agreed", "digest": "aa01"}
{"t": 3, "node": 3, "ev": "deliver", "msg": "1:0:1", "sender": 1, "ring": "1.4", "guarantee": "agreed"}
{"t": 4, "node": 1, "ev": "deliver", "msg": "3:0:1", "sender": 3, "ring": "1.4", "guarantee": "safe"}
{"t": 4, "node": 2, "ev": "deliver", "msg": "3:0:1", "sender": 3, "ring": "1.4", "guarantee": "safe"}
{"t": 4, "node": 3, "ev": "deliver", "msg": "3:0:1", "sender": 3, "ring": "1.4", "guarantee": "safe"}
{"t": 5, "node": 3, "ev": "send", "msg": "3:0:2", "guarantee": "agreed", "ring": "1.4"}
{"t": 9, "node": 1, "ev": "confchg", "kind": "transitional", "ring": "1.4", "members": [1,2], "left": [3], "joined": []}
{"t": 9, "node": 1, "ev": "deliver", "msg": "2:0:1", "sender": 2, "ring": "1.4", "guarantee": "agreed"}
{"t": 9, "node": 1, "ev": "confchg", "kind": "regular", "ring": "1.8", "members": [1,2], "left": [], "joined": []}
{"t": 9, "node": 2, "ev": "confchg", "kind": "transitional", "ring": "1.4", "members": [1,2], "left": [3], "joined": []}
{"t": 9, "node": 2, "ev": "deliver", "msg": "2:0:1", "sender": 2, "ring": "1.4", "guarantee": "agreed"}
{"t": 9, "node": 2, "ev": "confchg", "kind": "regular", "ring": "1.8", "members": [1,2], "left": [], "joined": []}
{"t": 9, "node": 3, "ev": "confchg", "kind": "transitional", "ring": "1.4", "members": [3], "left": [1,2], "joined": []}
{"t": 9, "node": 3, "ev": "deliver", "msg": "3:0:2", "sender": 3, "ring": "1.4", "guarantee": "agreed"}
{"t": 9, "node": 3, "ev": "confchg", "kind": "regular", "ring": "3.8", "members": [3], "left": [], "joined": []}
{"t": 10, "node": 1, "ev": "send", "msg": "1:0:2", "guarantee": "agreed"}
{"t": 10, "node": 3, "ev": "send", "msg": "3:0:3", "guarantee": "safe"}
{"t": 11, "node": 2, "ev": "deliver", "msg": "1:0:2", "sender": 1, "ring": "1.8", "guarantee": "agreed"}
{"t": 11, "node": 1, "ev": "deliver", "msg": "1:0:2", "sender": 1, "ring": "1.8", "guarantee": "agreed"}
{"t": 11, "node": 3, "ev": "deliver", "msg": "3:0:3", "sender": 3, "ring": "3.8", "guarantee": "safe"}
{"t": 20, "node": 1, "ev": "confchg", "kind": "transitional", "ring": "1.8", "members": [1,2], "left": [], "joined": []}
{"t": 20, "node": 1, "ev": "confchg", "kind": "regular", "ring": "1.12", "members": [1,2,3], "left": [], "joined": [3]}
{"t": 20, "node": 2, "ev": "confchg", "kind": "transitional", "ring": "1.8", "members": [1,2], "left": [], "joined": []}
{"t": 20, "node": 2, "ev": "confchg", "kind": "regular", "ring": "1.12", "members": [1,2,3], "left": [], "joined": [3]}
{"t": 20, "node": 3, "ev": "confchg", "kind": "transitional", "ring": "3.8", "members": [3], "left": [], "joined": []}
{"t": 20, "node": 3, "ev": "confchg", "kind": "regular", "ring": "1.12", "members": [1,2,3], "left": [], "joined": [1,2]}
{"t": 21, "node": 2, "ev": "send", "msg": "2:0:2", "guarantee": "safe"}
{"t": 22, "node": 1, "ev": "deliver", "msg": "2:0:2", "sender": 2, "ring": "1.12", "guarantee": "safe"}
{"t": 22, "node": 2, "ev": "deliver", "msg": "2:0:2", "sender": 2, "ring": "1.12", "guarantee": "safe"}
{"t": 22, "node": 3, "ev": "deliver", "msg": "2:0:2", "sender": 2, "ring": "1.12", "guarantee": "safe"}
"""


def events() -> list[dict[str, Any]]:
    return [json.loads(line) for line in PARTITION_AND_MERGE.strip().splitlines()]


def test_partition_and_merge_passes_cleanly() -> None:
    report = check_events(events(), quiet_end=True)
    assert report.ok, report.render_text()
    assert report.counts == {"events": 37, "messages": 7, "nodes": 3, "configurations": 8}
    assert check_events(events(), handle_traces=True, compare_time=False).ok


def test_one_file_per_node_or_one_for_all(tmp_path: Path) -> None:
    paths = []
    for node in (1, 2, 3):
        path = tmp_path / f"node{node}.jsonl"
        path.write_text("".join(json.dumps(e) + "\n" for e in events() if e["node"] == node))
        paths.append(path)
    assert check_files(paths, quiet_end=True).ok
    together = tmp_path / "all.jsonl"
    together.write_text(PARTITION_AND_MERGE)
    report = check_files([str(together)], quiet_end=True)
    assert report.ok
    assert report.events == 37


def edit(index: int, **changes: Any) -> list[dict[str, Any]]:
    evs = events()
    evs[index] = {**evs[index], **changes}
    return evs


def drop(index: int) -> list[dict[str, Any]]:
    evs = events()
    del evs[index]
    return evs


@pytest.mark.parametrize(
    ("evs", "expected"),
    [
        (edit(7, digest="aa02"), {"1.2"}),  # bytes changed on the way to node 2
        (edit(8, ring="3.8"), {"1.3", "2.6"}),  # node 3 claims 1:0:1 in the wrong ring
        (drop(20), {"3"}),  # node 3 never delivers its own 3:0:2
        (drop(14), {"4"}),  # node 1 misses 2:0:1 in the transitional configuration
        (drop(17), {"3", "4"}),  # node 2 misses it too, and it is its own
        (drop(10), {"4", "6.4", "7.1"}),  # node 2 misses safe 3:0:1 before the partition
        (edit(32, members=[1, 3], joined=[1]), {"2.2"}),  # node 3's view of 1.12 differs
        (edit(32, joined=[1]), {"2.3"}),  # node 3 forgets that 2 joined
        (drop(36), {"1.4", "7.1"}),  # node 3 misses safe 2:0:2 at the (quiet) end
    ],
)
def test_one_line_edits_are_caught(evs: list[dict[str, Any]], expected: set[str]) -> None:
    report = check_events(evs, quiet_end=True)
    assert {v.property for v in report.violations} == expected, report.render_text()


def test_bad_in_memory_events_name_their_index() -> None:
    bad = events()
    bad[5] = {**bad[5], "guarantee": "fifo"}
    with pytest.raises(TraceError, match=r"^<events>:6: \"guarantee\" must be"):
        check_events(bad)


def test_interleaving_of_nodes_does_not_matter() -> None:
    by_node = sorted(events(), key=lambda e: e["node"])  # stable: each node keeps its order
    assert check_events(by_node, quiet_end=True).ok
    assert check_events(iter(reversed(by_node)), quiet_end=True).ok is False
