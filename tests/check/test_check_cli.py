"""``evs check``: exit 0 when every property holds, 1 on violations (at most 50 shown, then
a count), 2 on an unreadable or malformed trace, with one clear line on stderr."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from evs.cli import check as cli

GOOD = [
    {
        "t": 1,
        "node": 1,
        "ev": "confchg",
        "kind": "regular",
        "ring": "1.4",
        "members": [1, 2],
        "left": [],
        "joined": [1, 2],
    },
    {
        "t": 1,
        "node": 2,
        "ev": "confchg",
        "kind": "regular",
        "ring": "1.4",
        "members": [1, 2],
        "left": [],
        "joined": [1, 2],
    },
    {"t": 2, "node": 1, "ev": "send", "msg": "1:0:1", "guarantee": "agreed"},
    {
        "t": 3,
        "node": 1,
        "ev": "deliver",
        "msg": "1:0:1",
        "sender": 1,
        "ring": "1.4",
        "guarantee": "agreed",
    },
    {
        "t": 3,
        "node": 2,
        "ev": "deliver",
        "msg": "1:0:1",
        "sender": 1,
        "ring": "1.4",
        "guarantee": "agreed",
    },
]


def write(path: Path, events: list[dict[str, object]]) -> str:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return str(path)


def run(*argv: str) -> int:
    root = argparse.ArgumentParser(prog="evs")
    cli.add_parser(root.add_subparsers(dest="command"))
    args = root.parse_args(["check", *argv])
    return cli.run(args)


def test_exit_0_when_every_property_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(write(tmp_path / "t.jsonl", GOOD)) == 0
    out = capsys.readouterr().out
    assert "5 events" in out
    assert "all properties hold" in out


def test_exit_1_on_violations_and_prints_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dup = {**GOOD[4], "t": 4}
    assert run(write(tmp_path / "t.jsonl", [*GOOD, dup])) == 1
    out = capsys.readouterr().out
    assert "1.2 (no duplicate or altered delivery): node 2 delivered 1:0:1 twice" in out


def test_at_most_50_violations_are_printed_then_a_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dups = [{**GOOD[4], "t": 4 + i} for i in range(60)]
    assert run(write(tmp_path / "t.jsonl", GOOD + dups)) == 1
    out = capsys.readouterr().out
    assert out.count("delivered 1:0:1 twice") == 50
    assert "... and 10 more violation(s)" in out


def test_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dup = {**GOOD[4], "t": 4}
    assert run("--json", write(tmp_path / "t.jsonl", [*GOOD, dup])) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False
    assert doc["counts"] == {"events": 6, "messages": 1, "nodes": 2, "configurations": 1}
    assert doc["by_property"] == {"1.2": 1}
    (v,) = doc["violations"]
    assert v["property"] == "1.2"
    assert v["events"][1] == dup


def test_options_reach_the_checker(tmp_path: Path) -> None:
    path = write(tmp_path / "t.jsonl", GOOD[:3])  # 1 never delivers its own message
    assert run(path) == 0
    assert run("--quiet-end", path) == 1
    late = [*GOOD[:2], GOOD[3], {**GOOD[2], "t": 9}, GOOD[4]]  # delivered "before" the send
    path = write(tmp_path / "late.jsonl", late)
    assert run(path) == 1
    assert run("--local-clocks", path) == 1  # still: node 1 delivered before logging its send
    assert (
        run(
            "--local-clocks",
            write(tmp_path / "n2.jsonl", [GOOD[1], GOOD[4], GOOD[0], {**GOOD[2], "t": 9}]),
        )
        == 0
    )
    assert run("--handle-traces", write(tmp_path / "ok.jsonl", GOOD)) == 0


def test_files_in_order_per_node(tmp_path: Path) -> None:
    one = write(tmp_path / "1.jsonl", [GOOD[0], GOOD[2], GOOD[3]])
    two = write(tmp_path / "2.jsonl", [GOOD[1], GOOD[4]])
    assert run(one, two) == 0
    assert run(two, one) == 0


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ('{"t": 1, "node": 1, "ev": "crash"}\nnot json\n', ":2: invalid JSON"),
        ('{"t": 1, "node": 1, "ev": "explode"}\n', ':1: "ev" must be one of'),
        (
            '{"t": 1, "node": 1, "ev": "send", "msg": "1-0-1", "guarantee": "agreed"}\n',
            ':1: "msg" must be',
        ),
        (b"\xff\xfe\n", ":1: not UTF-8 text"),
    ],
)
def test_exit_2_on_a_malformed_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | bytes, needle: str
) -> None:
    path = tmp_path / "bad.jsonl"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    assert run(str(path)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("evs check: invalid trace: ")
    assert f"bad.jsonl{needle}" in captured.err
    assert "Traceback" not in captured.err


def test_exit_2_on_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(str(tmp_path / "nope.jsonl")) == 2
    err = capsys.readouterr().err
    assert "cannot read" in err
    assert "nope.jsonl" in err


def test_standalone_module_has_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("[1, 2]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "evs.cli.check", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "bad.jsonl:1: an event must be a JSON object" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert cli.main([write(tmp_path / "ok.jsonl", GOOD)]) == 0


def test_reads_standard_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(json.dumps(e) + "\n" for e in GOOD)))
    assert run("-") == 0
