"""The key files across a rotation: every crash point reads back as a state the node was in."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from evs.crypto.rotation import fingerprint
from evs.daemon.key_file import KeyFileError, write_private_file
from evs.daemon.key_store import KeyStore

OLD = bytes(range(40))
NEW = bytes(range(50, 114))


def _store(tmp_path: Path) -> KeyStore:
    write_private_file(tmp_path / "authkey", OLD)
    return KeyStore(tmp_path / "authkey")


def test_a_key_without_state_is_id_0(tmp_path: Path) -> None:
    stored = _store(tmp_path).load()
    assert (stored.key_id, stored.key, stored.next) == (0, OLD, None)
    assert not (tmp_path / "authkey.state").exists()


def test_the_steps_of_a_rotation_read_back(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.load()
    store.save_next(1, NEW, (1, 2, 3))
    for name in ("authkey.next", "authkey.state"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o400
    assert NEW.hex() not in (tmp_path / "authkey.state").read_text()
    assert KeyStore(tmp_path / "authkey").load().next == (1, NEW, False, (1, 2, 3))
    store.save_sending()
    assert KeyStore(tmp_path / "authkey").load().next == (1, NEW, True, (1, 2, 3))
    store.save_retired()
    stored = KeyStore(tmp_path / "authkey").load()
    assert (stored.key_id, stored.key, stored.next) == (1, NEW, None)
    assert not (tmp_path / "authkey.next").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["authkey", "authkey.state"]


def test_crash_after_the_rename_reads_as_retired(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.load()
    store.save_next(1, NEW, (1, 2))
    store.save_sending()
    os.replace(tmp_path / "authkey.next", tmp_path / "authkey")  # the state not yet rewritten
    stored = KeyStore(tmp_path / "authkey").load()
    assert (stored.key_id, stored.key, stored.next) == (1, NEW, None)


def test_a_next_key_the_state_does_not_name_is_ignored(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.load()
    write_private_file(tmp_path / "authkey.next", NEW)  # crash before the state was written
    assert KeyStore(tmp_path / "authkey").load().next is None


def test_a_copied_key_without_its_state_is_refused_with_the_fix(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.load()
    store.save_next(1, NEW, (1, 2))
    os.chmod(tmp_path / "authkey", 0o600)
    (tmp_path / "authkey").write_bytes(bytes(range(7, 47)))
    os.chmod(tmp_path / "authkey", 0o400)
    with pytest.raises(KeyFileError, match="copy both files"):
        KeyStore(tmp_path / "authkey").load()


@pytest.mark.parametrize(
    "state",
    [b"not json", b"[]", b'{"version": 2}', b'{"version": 1, "key": {"id": 300}}'],
)
def test_a_bad_state_file_is_a_clear_error(tmp_path: Path, state: bytes) -> None:
    _store(tmp_path)
    write_private_file(tmp_path / "authkey.state", state)
    with pytest.raises(KeyFileError, match="key state file"):
        KeyStore(tmp_path / "authkey").load()


def test_state_names_keys_by_fingerprint(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.load()
    store.save_next(1, NEW, (2, 1))
    state = json.loads((tmp_path / "authkey.state").read_text())
    assert state["key"] == {"id": 0, "fingerprint": fingerprint(OLD).hex()}
    assert state["next"]["required"] == [1, 2]


def test_unwritable_directory_is_reported(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    store = _store(tmp_path)
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(KeyFileError, match="not writable"):
            store.check_writable()
    finally:
        tmp_path.chmod(0o700)


def test_the_switched_nodes_survive_the_retirement(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.load()
    store.save_next(1, NEW, (1, 2, 3))
    store.save_sending()
    store.save_retired({3, 1, 2})
    assert KeyStore(tmp_path / "authkey").load().switched == (1, 2, 3)
