"""SealedWire between executive and transport: sealed out with the destination, only
authentic payloads in, drops counted; build_wire reads the key and takes a boot id."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from evs.crypto.frame import Keyring, Opener, Sealer
from evs.daemon.key_file import KeyFileError, write_key_file
from evs.daemon.state_dir import StateDir
from evs.daemon.wire import LOG_EVERY_S, SealedWire, build_wire

KEY = bytes(range(64))


def keyring() -> Keyring:
    keys = Keyring("chacha20-poly1305", "c", (1, 2, 3))
    keys.install(0, KEY)
    return keys


def test_seals_out_opens_in_and_counts_drops() -> None:
    keys = keyring()
    delivered: list[list[tuple[int, bytes]]] = []
    sent: list[tuple[int, bytes]] = []
    wire = SealedWire(Sealer(keys, 1, 5), Opener(keys, 1), delivered.append)
    wire.connect(lambda dest, data: sent.append((dest, data)))
    wire.send(2, b"token")
    wire.send(0, b"mcast")
    assert [d for d, _ in sent] == [2, 0]
    assert all(b"token" not in data and b"mcast" not in data for _, data in sent)
    # node 2 can open the token sealed for it; node 3 cannot
    assert Opener(keys, 2).open(sent[0][1], 1) == b"token"
    assert Opener(keys, 3).open(sent[0][1], 1) is None

    peer = Sealer(keys, 2, 9)
    good, other = peer.seal(b"hello", 1), peer.seal(b"again", 0)
    wire.on_datagrams([(2, good), (2, good), (3, good), (2, b"junk"), (2, other)])
    assert delivered == [[(2, b"hello"), (2, b"again")]]
    wire.on_datagrams([(2, good)])  # nothing authentic and new: no call at all
    assert len(delivered) == 1
    assert wire.counters == {
        "crypto opened": 2,
        "crypto sealed": 2,
        "crypto drop replay": 2,
        "crypto drop wrong_sender": 1,
        "crypto drop bad_version": 1,
    }
    assert wire.status()["boot_id"] == 5


def test_send_before_connect_is_a_local_error() -> None:
    keys = keyring()
    wire = SealedWire(Sealer(keys, 1, 1), Opener(keys, 1), lambda batch: None)
    with pytest.raises(RuntimeError, match="not connected"):
        wire.send(2, b"x")


def test_build_wire_reads_the_key_and_takes_a_new_boot_id_each_time(tmp_path: Path) -> None:
    key = tmp_path / "authkey"
    write_key_file(key)
    with StateDir(tmp_path / "state") as sd:
        assert build_wire("none", str(key), "c", 1, (1, 2), sd, lambda b: None) is None
        first = build_wire("aes-256-gcm", str(key), "c", 1, (1, 2), sd, lambda b: None)
        second = build_wire("aes-256-gcm", str(key), "c", 1, (1, 2), sd, lambda b: None)
    assert first is not None
    assert second is not None
    assert second.sealer.boot_id > first.sealer.boot_id
    assert (tmp_path / "state" / "boot_id").read_text() == f"{second.sealer.boot_id}\n"
    # the two agree on the keys: one seals, the other opens
    assert second.opener.open(first.sealer.seal(b"x", 0), 1) == b"x"


def test_build_wire_refuses_a_readable_key(tmp_path: Path) -> None:
    key = tmp_path / "authkey"
    key.write_bytes(os.urandom(64))
    key.chmod(0o644)
    with StateDir(tmp_path / "state") as sd, pytest.raises(KeyFileError, match="0644"):
        build_wire("chacha20-poly1305", str(key), "c", 1, (1, 2), sd, lambda b: None)


def test_refusals_are_logged_at_most_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    keys = keyring()
    other = Keyring("chacha20-poly1305", "c", (1, 2, 3))
    other.install(0, bytes(64))  # the wrong key
    now = [100.0]
    wire = SealedWire(Sealer(keys, 1, 1), Opener(keys, 1), lambda batch: None, lambda: now[0])
    wrong = Sealer(other, 2, 1)
    caplog.set_level(logging.WARNING, logger="evs.daemon")
    wire.on_datagrams([(2, wrong.seal(b"x")) for _ in range(3)])
    wire.on_datagrams([(3, b"plain")])
    now[0] += LOG_EVERY_S - 1
    wire.on_datagrams([(2, wrong.seal(b"x"))])
    assert [r.getMessage() for r in caplog.records] == [
        "refused 3 datagrams: 3 bad_tag (a different cluster key or cipher, or altered in "
        "transit); from node 2: 3"
    ]
    now[0] += 1
    wire.on_datagrams([(2, wrong.seal(b"x"))])
    assert caplog.records[-1].getMessage() == (
        "refused 3 datagrams: 2 bad_tag (a different cluster key or cipher, or altered in "
        "transit), 1 bad_version (not sealed (a peer with cipher none?) or another wire "
        "version); from node 2: 2, node 3: 1"
    )
    assert len(caplog.records) == 2
    assert wire.counters["crypto drop bad_tag"] == 5
