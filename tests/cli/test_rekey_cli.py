"""``evs rekey`` on the command line: help, refusals of bad arguments, no executive."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from evs.cli.__main__ import main

EVS = [sys.executable, "-m", "evs.cli", "rekey"]


def test_help_names_the_options() -> None:
    r = subprocess.run([*EVS, "--help"], capture_output=True, text=True, check=False)
    assert r.returncode == 0
    for option in ("--socket", "--key-file", "--members-only", "--timeout", "--no-wait"):
        assert option in r.stdout
    assert "no message lost" in r.stdout


@pytest.mark.parametrize("timeout", ["0", "-1", "abc", "nan", ""])
def test_a_bad_timeout_is_one_line_and_exit_2(
    tmp_path: Path, timeout: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rekey", "--socket", str(tmp_path / "s"), "--timeout", timeout]) == 2
    err = capsys.readouterr().err
    assert "--timeout" in err
    assert len(err.strip().splitlines()) == 1


def test_a_key_file_others_can_read_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "new"
    key.write_bytes(bytes(range(64)))
    key.chmod(0o644)
    assert main(["rekey", "--socket", str(tmp_path / "s"), "--key-file", str(key)]) == 2
    err = capsys.readouterr().err
    assert "chmod 0400" in err
    assert len(err.strip().splitlines()) == 1


def test_a_missing_key_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rekey", "--key-file", str(tmp_path / "absent")]) == 2
    assert "absent" in capsys.readouterr().err


def test_no_executive_is_exit_2_without_traceback(tmp_path: Path) -> None:
    sock = tmp_path / "none.sock"
    r = subprocess.run([*EVS, "--socket", str(sock)], capture_output=True, text=True, check=False)
    assert r.returncode == 2
    assert "none.sock" in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_wait_options_exclude_each_other(tmp_path: Path) -> None:
    r = subprocess.run(
        [*EVS, "--timeout", "5", "--no-wait"], capture_output=True, text=True, check=False
    )
    assert r.returncode == 2
    assert "Traceback" not in r.stderr


def test_status_text_shows_keys_and_a_rotation_in_progress() -> None:
    from evs.cli.status import format_status  # noqa: PLC0415

    st = {
        "nodeid": 1,
        "state": "operational",
        "ring_id": "1.4",
        "members": [1, 2],
        "crypto": {
            "cipher": "chacha20-poly1305",
            "key_in_use": 3,
            "keys_accepted": [3, 4],
            "boot_id": 7,
            "rotation": {
                "phase": "installed",
                "key_id": 4,
                "required": [1, 2, 3],
                "installed": [1, 2],
                "switched": [],
            },
        },
    }
    text = format_status(st)
    assert "key id 3 in use, accepted [3, 4]" in text
    assert "key rotation to key id 4: installed; required [1, 2, 3]" in text
