"""StateDir: numbers that survive restarts, written so a crash leaves the old or the new value.

Crash-safety argument, checked piece by piece below: a store writes a temporary file, fsyncs
it, renames it over the real file and fsyncs the directory. Before the rename the real file is
untouched (old value); rename is atomic (new value); the temporary file is never read. So the
three crash points (before, during, after the temp write) leave old, old, new. The tests kill
a writer process at arbitrary moments and check the file is always one whole stored value.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from evs.daemon.state_dir import StateDir, StateDirError

SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_creates_a_private_directory(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b"
    with StateDir(path) as sd:
        assert sd.path == path
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
        assert sd.load_ring_seq() == 0


def test_ring_seq_round_trip_and_survives_reopen(tmp_path: Path) -> None:
    with StateDir(tmp_path) as sd:
        sd.store_ring_seq(4)
        assert sd.load_ring_seq() == 4
        sd.store_ring_seq(2**64 - 1)
        assert sd.load_ring_seq() == 2**64 - 1
        sd.store_ring_seq(12)
    with StateDir(tmp_path) as sd:
        assert sd.load_ring_seq() == 12
    assert (tmp_path / "ring_seq").read_text() == "12\n"
    assert stat.S_IMODE((tmp_path / "ring_seq").stat().st_mode) == 0o600


@pytest.mark.parametrize("bad", [-1, 2**64])
def test_ring_seq_range(tmp_path: Path, bad: int) -> None:
    with StateDir(tmp_path) as sd, pytest.raises(ValueError, match=r"ring sequence must be 0\.\."):
        sd.store_ring_seq(bad)


def test_incarnation_increases_across_restarts(tmp_path: Path) -> None:
    with StateDir(tmp_path) as sd:
        assert sd.next_incarnation() == 1
        assert sd.next_incarnation() == 2
    with StateDir(tmp_path) as sd:
        assert sd.next_incarnation() == 3
        assert sd.load_ring_seq() == 0  # separate files


def test_incarnation_wraps_to_one(tmp_path: Path) -> None:
    (tmp_path / "incarnation").write_text(f"{2**32 - 1}\n")
    with StateDir(tmp_path) as sd:
        assert sd.next_incarnation() == 1


def test_boot_id_grows_across_restarts_and_respects_the_floor(tmp_path: Path) -> None:
    with StateDir(tmp_path) as sd:
        assert sd.next_boot_id() == 1
        assert sd.next_boot_id(floor=1000) == 1000
        assert sd.next_boot_id(floor=10) == 1001  # a clock that went back does not lower it
    with StateDir(tmp_path) as sd:
        assert sd.next_boot_id() == 1002
        assert sd.next_incarnation() == 1  # separate files
    assert (tmp_path / "boot_id").read_text() == "1002\n"


def test_lost_boot_id_file_still_grows_with_the_clock(tmp_path: Path) -> None:
    with StateDir(tmp_path) as sd:
        first = sd.next_boot_id(floor=1_700_000_000)
    (tmp_path / "boot_id").unlink()
    with StateDir(tmp_path) as sd:
        assert sd.next_boot_id(floor=1_700_000_005) > first


def test_boot_id_never_wraps(tmp_path: Path) -> None:
    (tmp_path / "boot_id").write_text(f"{2**32 - 1}\n")
    with StateDir(tmp_path) as sd, pytest.raises(StateDirError, match="boot ids used up"):
        sd.next_boot_id()
    assert (tmp_path / "boot_id").read_text() == f"{2**32 - 1}\n"


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"12",
        b"abc\n",
        b"-1\n",
        b"1 2\n",
        b"\xd9\xa3\n",
        b"1" * 30 + b"\n",
        b"18446744073709551616\n",
    ],
)
def test_corrupt_file_is_an_error_not_zero(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "ring_seq").write_bytes(content)
    with StateDir(tmp_path) as sd, pytest.raises(StateDirError) as info:
        sd.load_ring_seq()
    assert str(info.value).startswith(f"state file {tmp_path / 'ring_seq'} is corrupt")


def test_corrupt_incarnation_is_refused_too(tmp_path: Path) -> None:
    (tmp_path / "incarnation").write_bytes(b"x\n")
    with StateDir(tmp_path) as sd, pytest.raises(StateDirError, match="incarnation is corrupt"):
        sd.next_incarnation()


def test_second_holder_refused_with_pid(tmp_path: Path) -> None:
    with StateDir(tmp_path):
        with pytest.raises(StateDirError) as info:
            StateDir(tmp_path)
        assert str(info.value) == (
            f"state directory {tmp_path} is in use by pid {os.getpid()}: "
            "two executives cannot share one state directory"
        )
    with StateDir(tmp_path) as sd:  # released on close
        assert sd.load_ring_seq() == 0


def test_lock_held_by_another_process_names_it(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": SRC},
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline() == b"locked\n"
            with pytest.raises(StateDirError, match=f"in use by pid {holder.pid}:"):
                StateDir(tmp_path)
        finally:
            holder.kill()
    with StateDir(tmp_path):  # the kernel dropped the dead holder's lock
        pass


_HOLD = textwrap.dedent(
    """
    import sys
    from evs.daemon.state_dir import StateDir
    sd = StateDir(sys.argv[1])
    print("locked", flush=True)
    sys.stdin.read()
    """
)


def test_closed_state_dir_refuses_use(tmp_path: Path) -> None:
    sd = StateDir(tmp_path)
    sd.close()
    sd.close()
    with pytest.raises(StateDirError, match="was closed"):
        sd.store_ring_seq(1)


def test_path_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(StateDirError, match="cannot create"):
        StateDir(tmp_path / "f")


# ----------------------------------------------------------------------------- crash safety


def test_store_order_is_write_fsync_rename_fsync_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The durability sequence, observed: the rename happens only after the data is synced."""
    steps: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        steps.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src: str | Path, dst: str | Path) -> None:
        steps.append(f"rename {Path(src).name} -> {Path(dst).name}")
        real_replace(src, dst)

    with StateDir(tmp_path) as sd:
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)
        sd.store_ring_seq(7)
    assert steps == ["fsync file", "rename .ring_seq.tmp -> ring_seq", "fsync dir"]


def test_crash_before_rename_leaves_the_old_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with StateDir(tmp_path) as sd:
        sd.store_ring_seq(5)

        def crash(src: str | Path, dst: str | Path) -> None:
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(os, "replace", crash)
        with pytest.raises(StateDirError, match="cannot store 6: Input/output error"):
            sd.store_ring_seq(6)
        assert sd.load_ring_seq() == 5  # the half-done temp file is not read
        assert (tmp_path / ".ring_seq.tmp").read_text() == "6\n"
        monkeypatch.undo()
        sd.store_ring_seq(8)  # a leftover temp file is simply overwritten
        assert sd.load_ring_seq() == 8


def test_killed_writer_leaves_a_whole_value(tmp_path: Path) -> None:
    """SIGKILL a process storing 1, 2, 3, ... at arbitrary moments: the file is always whole,
    and never older than the last store that returned."""
    for round_ in range(3):
        with subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(tmp_path), str(10 * (round_ + 1))],
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": SRC},
        ) as writer:
            assert writer.stdout is not None
            returned = int(writer.stdout.readline())  # blocks until that many stores returned
            writer.send_signal(signal.SIGKILL)
        with StateDir(tmp_path) as sd:
            assert sd.load_ring_seq() >= returned


_WRITER = textwrap.dedent(
    """
    import sys
    from evs.daemon.state_dir import StateDir
    sd = StateDir(sys.argv[1])
    start = sd.load_ring_seq()
    seq = start
    while True:
        seq += 1
        sd.store_ring_seq(seq)
        if seq == start + int(sys.argv[2]):
            print(seq, flush=True)
    """
)
