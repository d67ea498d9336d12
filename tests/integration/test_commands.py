"""The commands of api.md section 2 against real executives: `evs daemon` refusing bad
configuration, `evs status --json`, `evs send`/`evs listen`, SIGHUP reopening the log and
SIGTERM leaving the ring gracefully; every failure is one line on stderr, no traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import evs
from evs._compiled import HOT_MODULES, compiled_modules
from evs.cli._cluster import LocalCluster
from evs.daemon.main import GC_YOUNG

EVS = [sys.executable, "-m", "evs.cli"]


def run_evs(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EVS, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("[totem]\nbogus = 1\n", "totem.bogus"),
        ('[transport]\nmode = "tcp"\n', "transport.mode"),
        ("[totem]\ntoken = \n", "TOML syntax"),
        ("[totem]\nnodeid = 1\nwindow_size = 5\nmax_messages = 9\n", "max_messages"),
    ],
)
def test_daemon_refuses_bad_configuration_with_file_key_and_reason(
    tmp_path: Path, text: str, expect: str
) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text + '\n[[node]]\nnodeid = 1\naddr = "127.0.0.1"\n')
    r = run_evs("daemon", "-c", str(cfg))
    assert r.returncode == 2
    assert expect in r.stderr
    assert str(cfg) in r.stderr or "bad.toml" in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_client_commands_without_an_executive_fail_cleanly(tmp_path: Path) -> None:
    for args in (["status"], ["send", "g", "x"], ["listen", "g"]):
        r = run_evs(*args, "--socket", str(tmp_path / "none.sock"))
        assert r.returncode == 2, (args, r)
        assert "none.sock" in r.stderr
        assert "Traceback" not in r.stderr


def test_status_send_listen_and_signals(make_cluster: Callable[..., LocalCluster]) -> None:
    cluster = make_cluster(2, token=1000)
    cluster.start(1)
    cluster.start(2)
    watcher = evs.Client(cluster.socket(1))
    watcher.join(["w"])
    deadline = time.monotonic() + 15
    while watcher.membership_get().members != (1, 2):
        assert time.monotonic() < deadline
        watcher.dispatch(evs.DispatchFlags.ALL)
        time.sleep(0.05)

    st = json.loads(run_evs("status", "--json", "--socket", cluster.socket(1)).stdout)
    assert st["nodeid"] == 1
    assert st["state"] == "operational"
    assert st["members"] == [1, 2]
    assert st["ring_id"].count(".") == 1
    assert st["counters"]["rx_datagrams"] > 0
    assert "2" in st["peers"]
    # The executive's process froze its start-up objects and spaced its young collections.
    assert st["gc"]["thresholds"][0] == GC_YOUNG
    assert st["gc"]["frozen_objects"] > 1000
    # The executive runs this test's build (the compiled pass of scripts/check: every hot module).
    assert st["build"] == {
        "compiled_modules": len(compiled_modules()),
        "hot_modules": len(HOT_MODULES),
    }
    text = run_evs("status", "--socket", cluster.socket(2))
    assert text.returncode == 0
    assert "node 2: operational" in text.stdout
    assert "send queue: 0 messages (0 bytes) in the core, 0 held for room\n" in text.stdout

    listener = subprocess.Popen(
        [*EVS, "listen", "chat", "--count", "5", "--socket", cluster.socket(1)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first = listener.stdout.readline() if listener.stdout else ""
        assert first.startswith("-- regular configuration"), first
        for word in ("hello", "world"):
            r = run_evs("send", "chat", word, "--socket", cluster.socket(2))
            assert r.returncode == 0, r.stderr
        r = subprocess.run(
            [*EVS, "send", "chat", "-", "--lines", "--socket", cluster.socket(2)],
            input="one\n\ntwo\nthree",
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        out, _ = listener.communicate(timeout=20)
    finally:
        if listener.poll() is None:
            listener.kill()
    assert listener.returncode == 0
    # Deliveries only: a loaded machine may lose a token and show configuration lines too.
    lines = [line for line in out.strip().splitlines() if not line.startswith("--")]
    assert lines[0].startswith("node 2 pid ")
    assert lines[0].endswith("[agreed]: hello")
    assert lines[1].endswith("[agreed]: world")
    # --lines: one message per non-empty line, the last one without its newline too.
    assert [line.rsplit(": ", 1)[1] for line in lines[2:]] == ["one", "two", "three"]

    # SIGHUP: the log file is reopened (as after a rotation moved it away).
    log = cluster.logs[2]
    log.rename(log.with_suffix(".log.1"))
    os.kill(cluster.pid(2), signal.SIGHUP)
    deadline = time.monotonic() + 10
    while not (log.exists() and "reopened" in log.read_text()):
        assert time.monotonic() < deadline, "the log was not reopened after SIGHUP"
        time.sleep(0.05)

    # SIGTERM: a graceful leave, exit 0; the survivor's client sees node 2 leave.
    cluster.terminate(2)
    assert cluster.wait(2) == 0
    assert "leaving the ring" in log.read_text()
    changes = [e for e in watcher.events(timeout=10) if isinstance(e, evs.ConfigChange)]
    while not changes or changes[-1].members != (1,):
        more = [e for e in watcher.events(timeout=10) if isinstance(e, evs.ConfigChange)]
        assert more, f"no configuration without node 2: {changes}"
        changes += more
    assert changes[-2].transitional
    assert changes[-2].left == (2,)
    watcher.close()
