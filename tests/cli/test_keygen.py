"""``evs keygen`` and the key file's reader: mode 0400, no silent overwrite, clear refusals."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from evs.cli.__main__ import main
from evs.daemon.key_file import KeyFileError, read_key_file, write_key_file


def test_writes_a_private_key_of_the_default_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "authkey"
    assert main(["keygen", "-o", str(key)]) == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o400
    data = key.read_bytes()
    assert len(data) == 64
    assert data != bytes(64)
    assert str(key) in capsys.readouterr().out
    assert read_key_file(key) == data
    assert [p.name for p in tmp_path.iterdir()] == ["authkey"]  # no temporary file left


def test_size_option_and_two_keys_differ(tmp_path: Path) -> None:
    assert main(["keygen", "-o", str(tmp_path / "a"), "-s", "32"]) == 0
    assert main(["keygen", "-o", str(tmp_path / "b"), "--size", "4096"]) == 0
    assert len((tmp_path / "a").read_bytes()) == 32
    assert len((tmp_path / "b").read_bytes()) == 4096
    assert (tmp_path / "a").read_bytes() != (tmp_path / "b").read_bytes()[:32]


@pytest.mark.parametrize("size", ["31", "4097", "0", "-5"])
def test_bad_size_is_refused(tmp_path: Path, size: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keygen", "-o", str(tmp_path / "k"), "-s", size]) == 2
    assert "32..4096" in capsys.readouterr().err
    assert not (tmp_path / "k").exists()


def test_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "authkey"
    key.write_bytes(b"precious")
    assert main(["keygen", "-o", str(key)]) == 1
    assert "--force" in capsys.readouterr().err
    assert key.read_bytes() == b"precious"
    assert main(["keygen", "-o", str(key), "--force"]) == 0
    assert len(key.read_bytes()) == 64
    assert stat.S_IMODE(key.stat().st_mode) == 0o400


def test_a_dangling_symlink_counts_as_existing(tmp_path: Path) -> None:
    link = tmp_path / "authkey"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(KeyFileError, match="exists"):
        write_key_file(link)
    assert not (tmp_path / "elsewhere").exists()


def test_missing_directory_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keygen", "-o", str(tmp_path / "no" / "such" / "authkey")]) == 2
    err = capsys.readouterr().err
    assert "cannot create" in err
    assert "No such file or directory" in err


def test_command_line_help_and_no_traceback(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "evs.cli", "keygen"]
    helped = subprocess.run([*argv, "--help"], capture_output=True, text=True, check=False)
    assert helped.returncode == 0
    assert "--force" in helped.stdout
    assert "0400" in helped.stdout
    key = tmp_path / "k"
    key.write_bytes(b"x")
    refused = subprocess.run([*argv, "-o", str(key)], capture_output=True, text=True, check=False)
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def _key(tmp_path: Path, data: bytes = bytes(range(48)), mode: int = 0o400) -> Path:
    path = tmp_path / "key"
    path.write_bytes(data)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o440, 0o404, 0o600 | 0o004, 0o640, 0o420, 0o402, 0o410])
def test_reader_refuses_a_key_others_can_reach(tmp_path: Path, mode: int) -> None:
    path = _key(tmp_path, mode=mode)
    with pytest.raises(KeyFileError, match=f"mode {mode:04o}.*chmod 0400") as caught:
        read_key_file(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("mode", [0o400, 0o600])
def test_reader_accepts_a_private_key(tmp_path: Path, mode: int) -> None:
    assert read_key_file(_key(tmp_path, mode=mode)) == bytes(range(48))


@pytest.mark.parametrize(("size", "match"), [(0, "0 bytes"), (31, "31 bytes"), (4097, "4097")])
def test_reader_refuses_a_bad_length(tmp_path: Path, size: int, match: str) -> None:
    with pytest.raises(KeyFileError, match=match):
        read_key_file(_key(tmp_path, data=b"k" * size))


def test_reader_refuses_missing_and_non_regular_files(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot open"):
        read_key_file(tmp_path / "missing")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(KeyFileError, match="not a regular file"):
        read_key_file(fifo)  # and does not hang waiting for a writer


def test_reader_never_puts_key_bytes_in_its_errors(tmp_path: Path) -> None:
    secret = b"S3CRET-KEY-BYTES" * 3
    with pytest.raises(KeyFileError) as caught:
        read_key_file(_key(tmp_path, data=secret, mode=0o644))
    assert "S3CRET" not in str(caught.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the file away")
def test_reader_refuses_a_key_owned_by_someone_else(tmp_path: Path) -> None:
    path = _key(tmp_path)
    os.chown(path, 12345, 12345)
    with pytest.raises(KeyFileError, match="owned by uid 12345"):
        read_key_file(path)
