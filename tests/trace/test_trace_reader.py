"""The trace schema of api.md section 4: what is accepted, and each way an event is refused,
with file:line and the reason."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from evs.trace import TraceError, iter_events, msg_sender, read_trace, validate_event

VALID: dict[str, dict[str, Any]] = {
    "send": {"t": 12.5, "node": 1, "ev": "send", "msg": "1:0:17", "guarantee": "agreed"},
    "deliver": {
        "t": 13.0,
        "node": 2,
        "ev": "deliver",
        "msg": "1:0:17",
        "sender": 1,
        "ring": "1.8",
        "guarantee": "agreed",
    },
    "confchg": {
        "t": 14.0,
        "node": 2,
        "ev": "confchg",
        "kind": "transitional",
        "ring": "1.8",
        "members": [1, 2],
        "left": [3],
        "joined": [],
    },
    "crash": {"t": 20.0, "node": 3, "ev": "crash"},
    "restart": {"t": 25, "node": 3, "ev": "restart"},
}


@pytest.mark.parametrize("kind", sorted(VALID))
def test_the_contract_examples_are_valid(kind: str) -> None:
    ev = VALID[kind]
    assert validate_event(ev) is ev


def test_optional_fields_are_accepted() -> None:
    for event in (
        {**VALID["send"], "ring": "1.8", "digest": "00ffAB", "extra": [1]},
        {**VALID["deliver"], "digest": "abc0", "pid": 77},
        {**VALID["confchg"], "kind": "regular"},
        {"t": 3.0, "node": 2, "ev": "gather", "reason": "token lost", "from": "operational"},
    ):
        assert validate_event(event) is event


def test_gather_event_needs_a_reason() -> None:
    with pytest.raises(TraceError, match="reason"):
        validate_event({"t": 3.0, "node": 2, "ev": "gather"})


def without(kind: str, key: str) -> dict[str, Any]:
    ev = copy.deepcopy(VALID[kind])
    del ev[key]
    return ev


def with_(kind: str, /, **changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(VALID[kind]), **changes}


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ([1, 2], "an event must be a JSON object, got list"),
        (with_("send", ev="explode"), '"ev" must be one of'),
        (without("crash", "ev"), '"ev" must be one of'),
        (without("crash", "t"), '"t" must be a finite number'),
        (with_("crash", t="1"), '"t" must be a finite number'),
        (with_("crash", t=float("nan")), '"t" must be a finite number'),
        (with_("crash", t=True), '"t" must be a finite number'),
        (without("restart", "node"), '"node" must be a node id'),
        (with_("restart", node=0), '"node" must be a node id'),
        (with_("restart", node=True), '"node" must be a node id'),
        (without("send", "msg"), '"msg" must be'),
        (with_("send", msg="1:0"), '"msg" must be'),
        (with_("send", msg="0:0:1"), '"msg" must be'),
        (with_("send", msg="a:0:1"), '"msg" must be'),
        (without("send", "guarantee"), '"guarantee" must be'),
        (with_("send", guarantee="fifo"), '"guarantee" must be'),
        (with_("send", guarantee=["safe"]), '"guarantee" must be'),
        (with_("send", ring="18"), '"ring" must be a ring id'),
        (with_("send", digest="xyz"), '"digest" must be a hex string'),
        (without("deliver", "sender"), '"sender" must be a node id'),
        (without("deliver", "ring"), '"ring" must be a ring id'),
        (with_("deliver", ring="1.²"), '"ring" must be a ring id'),
        (with_("deliver", ring=1.8), '"ring" must be a ring id'),
        (with_("deliver", digest=""), '"digest" must be a hex string'),
        (without("confchg", "kind"), '"kind" must be'),
        (with_("confchg", kind="other"), '"kind" must be'),
        (without("confchg", "members"), '"members" must be a list of node ids'),
        (with_("confchg", left=[0]), '"left" must be a list of node ids'),
        (with_("confchg", joined="1"), '"joined" must be a list of node ids'),
        (with_("confchg", members=[1, 1]), '"members" lists a node twice'),
    ],
)
def test_bad_events_are_refused_with_the_reason(obj: object, reason: str) -> None:
    with pytest.raises(TraceError) as info:
        validate_event(obj)
    assert reason in str(info.value)
    assert info.value.line is None


def test_read_trace_streams_file_order_and_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "node1.jsonl"
    path.write_text('{"t":1,"node":1,"ev":"crash"}\n\n  \n{"t":2,"node":1,"ev":"restart"}\n')
    assert [e["ev"] for e in read_trace(path)] == ["crash", "restart"]


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ('{"t":1,"node":1,"ev":"crash"}\n{"t":1,\n', 2, "invalid JSON"),
        ('\n\n{"t":1,"node":1,"ev":"send"}\n', 3, '"msg" must be'),
        ("7\n", 1, "an event must be a JSON object, got int"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, text: str, line: int, reason: str) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(text)
    with pytest.raises(TraceError) as info:
        list(read_trace(path))
    err = info.value
    assert (err.source, err.line) == (str(path), line)
    assert str(err).startswith(f"{path}:{line}: ")
    assert reason in err.reason


def test_undecodable_bytes_are_a_trace_error(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"t":1,"node":1,"ev":"crash"}\n\xff\n')
    with pytest.raises(TraceError, match="not UTF-8"):
        list(read_trace(path))


def test_iter_events_over_any_lines() -> None:
    lines = ['{"t":1,"node":4,"ev":"crash"}', "oops"]
    it = iter_events(lines, source="<mem>")
    assert next(it)["node"] == 4
    with pytest.raises(TraceError, match=r"^<mem>:2: invalid JSON"):
        next(it)


def test_msg_sender() -> None:
    assert msg_sender("12:3:456") == 12
