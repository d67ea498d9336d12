"""``evs bench``: a tiny real run (structure, verification counted) and the verifier itself.

The real run is a subprocess (the command forks its client processes, which must not inherit
pytest's threads); the verifier is unit-tested on hand-made streams, so each kind of
violation is shown to be caught without needing a faulty executive.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evs.cli.__main__ import main
from evs.cli._bench_run import _notes, table
from evs.cli._bench_verify import HEADER, MIN_SIZE, ORDER_BLOCK, Payloads, Verifier
from evs.cli._bench_worker import compare_orders, percentile
from evs.cli._lab import lab_available
from evs.cli.bench import parse_rate, parse_sizes

SRC = Path(__file__).resolve().parents[2] / "src"


def test_tiny_run_reports_and_verifies() -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    argv = [sys.executable, "-m", "evs.cli", "bench", "--nodes", "2", "--sizes", "64"]
    argv += ["--senders", "one", "--seconds", "1", "--warmup", "0.3", "--json"]
    argv += ["--netmtu", "9000", "--keep"]  # the option reaches the executives (checked below)
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert {"date", "machine", "parameters", "points", "runs", "verified"} <= set(report)
    assert report["machine"]["cores"] >= 1
    assert report["parameters"]["nodes"] == 2
    assert report["parameters"]["netmtu"] == 9000
    kept = Path(r.stderr.split("files kept in ", 1)[1].split()[0])
    try:
        assert "netmtu = 9000" in (kept / "node1" / "evs.toml").read_text()
    finally:
        shutil.rmtree(kept)
    assert report["verified"] is True
    (run,) = report["runs"]
    assert run["size"] == 64
    assert run["senders"] == "one"
    assert run["verified"] is True
    assert run["violations"] == []
    # Executive counters that moved during the run (none of these in a healthy tiny run).
    assert run["executives"] == {}
    sent = run["sent"]["1"]
    assert sent > 0
    assert len(run["receivers"]) == 2
    for rec in run["receivers"]:
        # every receiver delivered (and checked) every message the sender sent, in one order
        assert rec["delivered"] == sent
        assert rec["violations"] == 0
        assert rec["window_msgs"] > 0
        assert rec["lat_samples"] > 0
        assert 0 < rec["lat_p50_ms"] <= rec["lat_p99_ms"]
    assert len({rec["order_hash"] for rec in run["receivers"]}) == 1
    (point,) = report["points"]
    assert point["msgs_per_s"] > 0
    assert point["MB_per_s"] == pytest.approx(point["msgs_per_s"] * 64 / 1e6, abs=1e-3)


def test_a_paced_run_keeps_its_rate() -> None:
    """--rate 100: the sender sends about 100 messages per second, not as fast as it can, and
    the report and the table say so (latency at low load, issue 9)."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    argv = [sys.executable, "-m", "evs.cli", "bench", "--nodes", "2", "--sizes", "64"]
    argv += ["--senders", "one", "--seconds", "1.5", "--warmup", "0.3", "--json"]
    argv += ["--rate", "100", "--cipher", "none"]
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["parameters"]["rate"] == 100
    (point,) = report["points"]
    # Paced: within a few messages of 100/s over the window; unpaced it is thousands.
    assert 70 <= point["msgs_per_s"] <= 130, point
    (run,) = report["runs"]
    assert 100 <= run["sent"]["1"] <= 250  # 1.8 s of sending at 100/s, plus the drain's end
    text = table(report)
    assert "each sender paced to 100 msgs/s" in text
    # "remote": the receivers on nodes that do not send, here node 2 alone (as corosync's lab)
    (other,) = [rec for rec in run["receivers"] if rec["node"] == 2]
    assert run["lat_p50_remote_ms"] == other["lat_p50_ms"]
    assert point["lat_p50_remote_ms"] == other["lat_p50_ms"]
    row = next(line for line in text.splitlines() if line.startswith("one "))
    assert row.split()[6] == f"{other['lat_p50_ms']:.2f}"


def test_a_batched_sender_delivers_every_message_verified() -> None:
    """--batch 16: the sender writes 16 messages at a time (Client.batch); every receiver
    still gets every message, in one order, and the report and the table say so."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    argv = [sys.executable, "-m", "evs.cli", "bench", "--nodes", "2", "--sizes", "64"]
    argv += ["--senders", "one", "--count", "1000", "--json", "--batch", "16"]
    argv += ["--cipher", "none"]
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["parameters"]["batch"] == 16
    assert report["verified"] is True
    (run,) = report["runs"]
    assert run["sent"]["1"] == 1000
    assert [rec["delivered"] for rec in run["receivers"]] == [1000, 1000]
    assert len({rec["order_hash"] for rec in run["receivers"]}) == 1
    assert "senders batch 16 messages (Client.batch)" in table(report)


@pytest.mark.parametrize(
    "argv",
    [
        ["--batch", "-1"],
        ["--batch", "5000"],
        ["--nodes", "1"],
        ["--sizes", "8"],
        ["--sizes", "1X"],
        ["--seconds", "0"],
        ["--seconds", "10000"],
        ["--reps", "0"],
        ["--sender-clients", "0"],
        ["--netmtu", "100"],
        ["--rate", "-1"],
        ["--rate", "2000000"],
        ["--netns", "--loss", "-1"],
        ["--netns", "--loss", "501"],
        ["--netns", "--shape", "100xbit"],
        ["--netns", "--shape", "fast"],
        ["--netns", "--shape", "1.5mbit"],
        ["--netns", "--shape", "10kbit"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("evs bench: ")
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--loss", "10"], "--loss needs --netns"),
        (["--shape", "100mbit"], "--shape needs --netns"),
        (["--netns", "--loss", "600"], "--loss must be 0..500"),
        (["--netns", "--shape", "100xbit"], "--shape: bad rate '100xbit'"),
        (["--netns", "--shape", "200gbit"], "outside 1mbit..100gbit"),
    ],
)
def test_loss_and_shape_arguments_say_what_is_wrong(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", *argv]) == 2
    assert said in capsys.readouterr().err


def test_missing_tools_and_root_are_clear_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without tc (or nft, or root) the command says what is missing; nothing is started."""
    real_which = shutil.which
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda t: None if t == "tc" else real_which(t))
    assert main(["bench", "--netns", "--shape", "100mbit"]) == 2
    assert "'tc' is not installed (apt install iproute2)" in capsys.readouterr().err
    monkeypatch.setattr(shutil, "which", lambda t: None if t == "nft" else "/bin/true")
    assert main(["bench", "--netns", "--loss", "10"]) == 2
    assert "'nft' is not installed (apt install nftables)" in capsys.readouterr().err
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["bench", "--netns", "--loss", "10"]) == 2
    assert "network namespaces need root" in capsys.readouterr().err


def test_parse_rate() -> None:
    assert parse_rate("100mbit") == ("100mbit", 100_000_000)
    assert parse_rate(" 1GBit ") == ("1gbit", 10**9)
    assert parse_rate("10mbps") == ("10mbps", 80_000_000)
    for bad in ("", "mbit", "100", "100 mbit", "-5mbit", "1e3mbit"):
        with pytest.raises(ValueError, match="bad rate"):
            parse_rate(bad)


def test_loss_and_shape_run_in_the_lab() -> None:
    """--loss 10 --shape 100mbit: the report records both, the loss rules dropped some of the
    cluster's datagrams during the run (their counters, read back), the rate caps passed its
    packets, and every delivery still verified (the protocol recovered every loss)."""
    why = lab_available(("ip", "nft", "tc"))
    if why:
        pytest.skip(why)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    argv = [sys.executable, "-m", "evs.cli", "bench", "--netns", "--nodes", "2", "--sizes"]
    argv += ["1K", "--senders", "one", "--seconds", "1", "--warmup", "0.3", "--json"]
    argv += ["--loss", "10", "--shape", "100mbit", "--cipher", "none"]
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    params = report["parameters"]
    assert params["loss_permille"] == 10
    assert params["shape"] == "100mbit"
    assert params["shape_bits_per_s"] == 100_000_000
    (run,) = report["runs"]
    assert run["verified"] is True
    assert run["notes"] == []
    net = run["network"]
    sent = run["sent"]["1"]
    assert sent > 0
    # Every datagram crosses two rate caps (its sender's end of the link, then the bridge's
    # end towards its receiver), so about half the packets counted there are the datagrams
    # the receivers' loss rules saw; about 1 % of those were dropped (expected ~80 here).
    assert net["shape_packets"] > 1000
    share = net["loss_dropped"] / (net["shape_packets"] / 2)
    assert 0.002 < share < 0.03, net
    for rec in run["receivers"]:
        assert rec["delivered"] == sent


def test_parse_sizes() -> None:
    assert parse_sizes("64,1K,16KiB,65536,1M") == [64, 1024, 16384, 65536, 1 << 20]
    with pytest.raises(ValueError, match="bad message size"):
        parse_sizes("64,,1K")


# ---------------------------------------------------------------- the verifier


def stream(size: int, order: list[tuple[int, int]]) -> list[tuple[int, bytes]]:
    p = Payloads(size)
    return [(s, p.make(s, q, 1000 + q)) for s, q in order]


def feed(v: Verifier, deliveries: list[tuple[int, bytes]]) -> list[int]:
    return [v.check(s, d) for s, d in deliveries]


INTERLEAVED = [(1, 0), (2, 0), (1, 1), (1, 2), (2, 1), (2, 2)]


@pytest.mark.parametrize("size", [MIN_SIZE, 64, 1024, 65536])
def test_a_good_stream_passes(size: int) -> None:
    v = Verifier(size)
    stamps = feed(v, stream(size, INTERLEAVED))
    assert stamps == [1000 + q for _, q in INTERLEAVED]
    v.finish({1: 3, 2: 3})
    assert v.violations == []
    assert v.violation_count == 0
    assert v.total == 6


def test_reordering_within_a_sender_is_caught() -> None:
    v = Verifier(64)
    feed(v, stream(64, [(1, 0), (1, 2), (1, 1)]))
    assert v.violation_count == 2
    assert "expected 1 (a gap" in v.violations[0]
    assert "duplicate or reordering" in v.violations[1]


def test_duplicate_is_caught() -> None:
    v = Verifier(64)
    feed(v, stream(64, [(1, 0), (1, 1), (1, 1), (1, 2)]))
    assert v.violation_count >= 1
    assert "seq 1, expected 2" in v.violations[0]


def test_gap_and_lost_tail_are_caught() -> None:
    v = Verifier(64)
    feed(v, stream(64, [(1, 0), (1, 2)]))
    v.finish({1: 4})
    assert "a gap" in v.violations[0]
    assert "1 of its 4 messages never delivered" in v.violations[1]


@pytest.mark.parametrize("offset", [0, 5, 12, 20, 26, HEADER.size, 40, 63])
def test_a_flipped_byte_anywhere_is_caught(offset: int) -> None:
    ((s, good),) = stream(64, [(1, 0)])
    bad = bytearray(good)
    bad[offset] ^= 0x40
    v = Verifier(64)
    assert v.check(s, bytes(bad)) == -1
    assert v.violation_count == 1


def test_wrong_length_and_wrong_sender_are_caught() -> None:
    ((s, good),) = stream(64, [(1, 0)])
    v = Verifier(64)
    assert v.check(s, good[:-1]) == -1
    assert v.check(2, good) == -1
    assert "executive says 2" in v.violations[1]


def test_a_body_of_another_message_is_caught() -> None:
    """A body intact in itself but belonging to another sequence number is not accepted."""
    p = Payloads(64)
    swapped = p.make(1, 0, 7)[: HEADER.size] + p.make(1, 1, 7)[HEADER.size :]
    v = Verifier(64)
    assert v.check(1, swapped) == -1
    assert "body corrupted" in v.violations[0]


def test_reading_the_order_hash_mid_stream_changes_nothing() -> None:
    """A receiver whose hash was looked at during the run (across block boundaries) ends with
    the same hash as one that was not, and the order still decides it."""
    messages = stream(64, [(1, i) for i in range(3 * ORDER_BLOCK)])
    a, b = Verifier(64), Verifier(64)
    seen = set()
    for i, (nodeid, data) in enumerate(messages):
        a.check(nodeid, data)
        b.check(nodeid, data)
        if i % 997 == 0:
            seen.add(b.order_hash)
    assert a.violation_count == b.violation_count == 0
    assert a.order_hash == b.order_hash
    assert len(seen) > 1  # the hash follows the stream


def test_different_total_orders_are_caught() -> None:
    a, b = Verifier(64), Verifier(64)
    feed(a, stream(64, INTERLEAVED))
    feed(b, stream(64, sorted(INTERLEAVED)))  # same messages, each FIFO, other total order
    assert a.violation_count == b.violation_count == 0
    same = {"total": a.total, "order_hash": a.order_hash}
    other = {"total": b.total, "order_hash": b.order_hash}
    assert compare_orders([same, dict(same)]) == []
    assert "disagree on the total order" in compare_orders([same, other])[0]


def test_only_the_first_violations_are_kept_but_all_counted() -> None:
    v = Verifier(64)
    feed(v, stream(64, [(1, 5)] * 30))
    assert v.violation_count == 30
    assert len(v.violations) == 10


def test_percentile() -> None:
    assert percentile([], 50) == 0
    assert percentile(list(range(101)), 50) == 50
    assert percentile(list(range(101)), 99) == 99


def test_several_sending_clients_of_one_node_are_separate_streams() -> None:
    """Sender ids carry the client's index above the node id; each stream has its own seqs."""
    a, b = 1, 1 | 1 << 16
    p = Payloads(64)
    v = Verifier(64)
    for d in (p.make(a, 0, 1), p.make(b, 0, 1), p.make(b, 1, 1), p.make(a, 1, 1)):
        assert v.check(1, d) == 1
    v.finish({a: 2, b: 2})
    assert v.violations == []
    assert v.check(2, p.make(b, 2, 1)) == -1  # stream of node 1 delivered as node 2's


# ---------------------------------------------------------------- a run that got little


def receiver_result(**kw: object) -> dict[str, object]:
    """The fields of a receiver's result the run's notes read; a good receiver by default."""
    r: dict[str, object] = {
        "config_changes": 0,
        "first_config_change": "",
        "window_msgs": 100,
        "drain_stopped": "",
    }
    r.update(kw)
    return r


def test_notes_say_why_a_run_got_little() -> None:
    assert _notes({1: receiver_result(), 2: receiver_result()}, counted=True) == []
    broke = receiver_result(
        config_changes=3,
        first_config_change="ConfigChange(members=(2,))",
        window_msgs=0,
        drain_stopped="nothing delivered for 10 s while 5 messages were missing",
    )
    notes = _notes({1: receiver_result(), 2: broke}, counted=True)
    assert notes[0].startswith(
        "the ring broke during the run: configuration changes at node 2 (3); "
        "the first at node 2: ConfigChange(members=(2,))"
    )
    assert notes[1:] == [
        "node 2: delivered nothing in the window (its ring broke); its rate is 0",
        "node 2: stopped draining: nothing delivered for 10 s while 5 messages were missing",
    ]
    # a receiver that got nothing although its ring held
    assert _notes({1: receiver_result(window_msgs=0)}, counted=True) == [
        "node 1: delivered nothing in the window (nothing arrived); its rate is 0"
    ]
    # --count runs have no window: a zero window count says nothing there
    assert _notes({1: receiver_result(window_msgs=0)}, counted=False) == []


def test_table_shows_the_network_conditions_and_notes() -> None:
    params = {
        "nodes": 3,
        "network": "netns (veth + bridge)",
        "loss_permille": 50,
        "shape": "100mbit",
        "mode": "udpu",
        "netmtu": 1500,
        "token_ms": 1000,
        "cipher": "none",
        "count": None,
        "seconds": 2.0,
        "warmup_s": 0.5,
        "reps": 1,
        "sender_clients": 1,
        "profiled": False,
    }
    machine = {
        "cpu": "x",
        "cores": 2,
        "kernel": "k",
        "python": "3.11",
        "event_loop": "asyncio",
        "loadavg": [1.0, 1.0, 1.0],
    }
    point = {
        "senders": "one",
        "size": 1024,
        "msgs_per_s": 0.0,
        "MB_per_s": 0.0,
        "lat_p50_ms": 0.0,
        "lat_p99_ms": 0.0,
        "cpu_us_per_msg": {"executives": 1.0, "clients": 1.0},
        "verified": False,
    }
    run = {
        "label": "1 KiB, one sender",
        "network": {
            "loss_dropped": 1234,
            "shape_packets": 5000,
            "shape_bytes": 1,
            "shape_drops": 7,
            "shape_overlimits": 40,
        },
        "notes": ["node 2: delivered nothing in the window (its ring broke); its rate is 0"],
    }
    report = {
        "date": "d",
        "parameters": params,
        "machine": machine,
        "points": [point],
        "runs": [run],
        "load_after": [1.0, 1.0, 1.0],
    }
    text = table(report)
    first = text.splitlines()[0]
    assert "5 % of datagrams dropped at each receiver" in first
    assert "links capped at 100mbit each way" in first
    assert (
        "1 KiB, one sender: 1,234 datagrams dropped by the loss rules; 5,000 packets through "
        "the rate caps, 40 held back, 7 dropped"
    ) in text
    assert "1 KiB, one sender: node 2: delivered nothing in the window" in text
    row = next(line for line in text.splitlines() if line.startswith("one "))
    assert row.split()[6] == "-"  # no remote p50 known for this point


def test_a_killed_run_takes_its_executives_and_namespaces_with_it() -> None:
    """SIGTERM (kill, timeout) ends a run as Ctrl-C does: the finally that stops the
    executives and deletes the lab's namespaces runs (it once did not, and a killed run's
    executives loaded every later measurement)."""
    why = lab_available(("ip",))
    if why:
        pytest.skip(why)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    argv = [sys.executable, "-m", "evs.cli", "bench", "--netns", "--nodes", "2", "--sizes"]
    argv += ["64", "--senders", "one", "--seconds", "60", "--cipher", "none"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    prefix = f"evs{proc.pid % 100_000}-"
    try:
        daemons: list[int] = []
        deadline = time.monotonic() + 60
        while len(daemons) < 2:  # both executives running in the run's namespaces
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run's executives never started"
            time.sleep(0.1)
            daemons = [
                int(pid)
                for n in (1, 2)
                for pid in subprocess.run(
                    ["ip", "netns", "pids", f"{prefix}n{n}"],
                    capture_output=True,
                    text=True,
                    check=False,
                ).stdout.split()
            ]
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert b"interrupted by SIGTERM" in err
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    assert prefix not in left.stdout
    for pid in daemons:
        assert not Path(f"/proc/{pid}").exists() or b"zombie" in _status(pid), pid


def _status(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/status").read_bytes().lower()
    except OSError:
        return b"zombie"
