"""The Rekey admin request over a real socket: served to root and the daemon's uid only, and a
host without key rotation says so; the client returns the executive's answer as a dict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import evs

from .conftest import Daemon, FakeHost


class RotatingHost(FakeHost):
    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[bytes, bool]] = []

    def rekey(self, key: bytes, members_only: bool) -> dict[str, Any]:
        self.asked.append((key, members_only))
        if key == b"busy":
            raise evs.InvalidArgument("a key rotation is in progress")
        return {"key_id": 1, "fingerprint": "00", "required": [1]}


def test_a_host_without_rotation_refuses(daemon: Daemon) -> None:
    with evs.Client(str(daemon.path)) as c, pytest.raises(evs.EvsError, match="cannot rotate"):
        c.rekey()


def test_the_answer_and_the_refusal_come_back(sock_path: Path) -> None:
    host = RotatingHost()
    d = Daemon(sock_path, host)
    try:
        with evs.Client(str(sock_path)) as c:
            assert c.rekey(b"k" * 40, members_only=True)["key_id"] == 1
            with pytest.raises(evs.InvalidArgument, match="in progress"):
                c.rekey(b"busy")
            assert c.status()["nodeid"] == 1  # the connection goes on
        assert host.asked == [(b"k" * 40, True), (b"busy", False)]
    finally:
        d.stop()


def test_other_users_may_not_rotate(sock_path: Path) -> None:
    host = RotatingHost()
    d = Daemon(sock_path, host, allowed_uids=[4242], credentials=lambda sock: (4242, 4242, 4242))
    try:
        with evs.Client(str(sock_path)) as c:
            with pytest.raises(evs.AccessDenied, match="only root and uid"):
                c.rekey()
            assert c.status()["nodeid"] == 1  # an ordinary client still
        assert host.asked == []
        assert d.counter("admin requests refused") == 1
    finally:
        d.stop()
