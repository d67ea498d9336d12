"""TraceWriter writes one compact JSON object per line that the reader reads back as is."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from evs.trace import (
    TraceError,
    TraceWriter,
    confchg_event,
    deliver_event,
    payload_digest,
    read_trace,
    send_event,
)
from evs.types import Guarantee, RingId


def write_all(w: TraceWriter) -> None:
    ring = RingId(seq=8, rep=1)
    w.confchg(1.0, 1, transitional=False, ring=ring, members=[2, 1], joined={1, 2})
    w.send(2.0, 1, "1:0:1", guarantee=Guarantee.SAFE, ring=ring, digest=payload_digest(b"x"))
    w.deliver(3.5, 1, "1:0:1", 1, ring, guarantee="safe", digest=payload_digest(b"x"))
    w.confchg(4.0, 1, transitional=True, ring="1.8", members=[1], left=[2])
    w.crash(5, 1)
    w.restart(6, 1)


def test_one_compact_object_per_line() -> None:
    sink = io.StringIO()
    w = TraceWriter(sink)
    write_all(w)
    lines = sink.getvalue().splitlines()
    assert w.count == len(lines) == 6
    assert lines[0] == (
        '{"t":1.0,"node":1,"ev":"confchg","kind":"regular","ring":"1.8",'
        '"members":[1,2],"left":[],"joined":[1,2]}'
    )
    assert lines[1].startswith(
        '{"t":2.0,"node":1,"ev":"send","msg":"1:0:1","guarantee":"safe","ring":"1.8","digest":"'
    )
    assert json.loads(lines[2])["digest"] == payload_digest(b"x")
    assert lines[4] == '{"t":5,"node":1,"ev":"crash"}'


def test_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    with TraceWriter(path) as w:
        write_all(w)
    first = list(read_trace(path))
    with TraceWriter(str(path), append=True) as w:
        w.write(send_event(7, 1, "1:1:1"))
    again = list(read_trace(path))
    assert again[:6] == first
    assert again[6] == {"t": 7, "node": 1, "ev": "send", "msg": "1:1:1", "guarantee": "agreed"}


def test_a_bad_event_is_refused_before_it_is_written() -> None:
    sink = io.StringIO()
    w = TraceWriter(sink)
    with pytest.raises(TraceError, match='"guarantee" must be'):
        w.send(1, 1, "1:0:1", guarantee="fifo")
    with pytest.raises(TraceError, match='"msg" must be'):
        w.write({"t": 1, "node": 1, "ev": "deliver", "msg": "x"})
    assert sink.getvalue() == ""
    TraceWriter(sink, validate=False).write({"anything": True})
    assert sink.getvalue() == '{"anything":true}\n'


def test_builders_match_the_contract_examples() -> None:
    assert deliver_event(13.0, 2, "1:0:17", 1, "1.8") == {
        "t": 13.0,
        "node": 2,
        "ev": "deliver",
        "msg": "1:0:17",
        "sender": 1,
        "ring": "1.8",
        "guarantee": "agreed",
    }
    assert confchg_event(14.0, 2, transitional=True, ring="1.8", members=[2, 1], left=[3]) == {
        "t": 14.0,
        "node": 2,
        "ev": "confchg",
        "kind": "transitional",
        "ring": "1.8",
        "members": [1, 2],
        "left": [3],
        "joined": [],
    }


def test_close_leaves_a_borrowed_sink_open() -> None:
    sink = io.StringIO()
    TraceWriter(sink).close()
    assert not sink.closed
