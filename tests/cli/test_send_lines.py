"""``evs send --lines``: standard input's lines, one message each, batched per read."""

from __future__ import annotations

import os
import threading

import pytest

from evs.cli.__main__ import main
from evs.cli.send import _read_lines
from evs.ipc.codec import DATA_MAX


def _lines_of(chunks: list[bytes]) -> list[list[bytes]]:
    """What ``_read_lines`` yields when a writer sends ``chunks``, one write each, waiting for
    each to be read before the next (so every read sees exactly one chunk)."""
    r, w = os.pipe()
    got: list[list[bytes]] = []
    read_one = threading.Semaphore(0)

    def reader() -> None:
        for lines in _read_lines(r):
            got.append(lines)
            read_one.release()

    t = threading.Thread(target=reader)
    t.start()
    try:
        for chunk in chunks:
            os.write(w, chunk)
            if b"\n" in chunk and chunk.strip(b"\n"):
                assert read_one.acquire(timeout=5)  # the read that completed lines yielded
    finally:
        os.close(w)
        t.join(5)
        os.close(r)
    assert not t.is_alive()
    return got


def test_lines_are_yielded_as_each_read_completes_them() -> None:
    assert _lines_of([b"a\nb\n", b"c\n\n\nd\n"]) == [[b"a", b"b"], [b"c", b"d"]]


def test_a_line_split_across_reads_is_one_message() -> None:
    assert _lines_of([b"x", b"yz\nlast"]) == [[b"xyz"], [b"last"]]


def test_empty_input_yields_nothing() -> None:
    assert _lines_of([]) == []


def test_lines_needs_standard_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["send", "g", "text", "--lines"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("evs send: --lines reads standard input")
    assert "Traceback" not in err


def test_a_line_longer_than_any_message_is_handed_on_not_buffered_for_ever() -> None:
    size = DATA_MAX + 10
    got = _lines_of([b"x" * size])
    pieces = [len(line) for lines in got for line in lines]
    assert pieces[0] > DATA_MAX  # handed on once past the limit (the send refuses it)
    assert sum(pieces) == size
