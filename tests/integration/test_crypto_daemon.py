"""Wire security on real executives: a sealed ring forms and delivers, its datagrams carry no
plaintext, replayed and forged datagrams are counted drops that never reach the core, a
restarted node (a new boot id) is let back in, and a key others could read stops the start-up.

The capture (wiretap.py) is an AF_PACKET socket on the loopback interface (root only; skipped
otherwise): it sees every datagram to the cluster's port, including the unicasts between
127.0.0.N.
The cipher "none" run is the control that shows the capture would see the plaintext.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from wiretap import capture

import evs
from evs.cli._cluster import LocalCluster, free_port

EVS = [sys.executable, "-m", "evs.cli"]


def status(cluster: LocalCluster, n: int) -> dict[str, Any]:
    with evs.Client(cluster.socket(n)) as c:
        return c.status()


def wait_ring(clients: dict[int, evs.Client], members: tuple[int, ...], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for n, c in clients.items():
        while c.membership_get().members != members:
            assert time.monotonic() < deadline, f"node {n}: no ring {members}"
            c.dispatch(evs.DispatchFlags.ALL)
            time.sleep(0.05)


def deliveries(client: evs.Client, count: int, timeout: float) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"only {len(got)} of {count} deliveries"
        got += [
            e.data for e in client.events(timeout=min(left, 0.5)) if isinstance(e, evs.Delivery)
        ]
    return got


def crypto_drops(counters: dict[str, int]) -> int:
    return sum(v for k, v in counters.items() if k.startswith("crypto drop"))


def wait_crypto_drops(cluster: LocalCluster, n: int, target: int, timeout: float) -> dict[str, int]:
    """Node ``n``'s counters once it has counted ``target`` crypto drops in all."""
    deadline = time.monotonic() + timeout
    while True:
        counters: dict[str, int] = status(cluster, n)["counters"]
        if crypto_drops(counters) >= target:
            return counters
        assert time.monotonic() < deadline, counters
        time.sleep(0.1)  # polling another process's counters, bounded by the deadline


@pytest.mark.parametrize("cipher", ["chacha20-poly1305", "none"])
def test_sealed_ring_delivers_and_hides_the_plaintext(
    make_cluster: Callable[..., LocalCluster], cipher: str
) -> None:
    cluster = make_cluster(3, token=1000, cipher=cipher)
    marker = f"plaintext-{uuid.uuid4().hex}".encode()
    with capture(cluster.port) as cap:
        for n in (1, 2, 3):
            cluster.start(n)
        clients = {n: evs.Client(cluster.socket(n)) for n in (1, 2, 3)}
        for c in clients.values():
            c.join(["g"])
        wait_ring(clients, (1, 2, 3), 20)
        clients[2].mcast_joined(marker, evs.Guarantee.SAFE)
        for c in clients.values():
            assert marker in deliveries(c, 1, 15)
        taken = cap.taken()
    for c in clients.values():
        c.close()

    assert len(taken) > 20, "the capture saw no traffic"
    carrying = [d for _, d in taken if marker in d]
    st = status(cluster, 1)
    log = cluster.logs[1].read_text()
    if cipher == "none":  # the control: an unsealed ring shows the message on the wire
        assert carrying
        assert st["crypto"] == {"cipher": "none"}
        assert "wire security is off" in log
        return
    assert not carrying
    assert all(d[0] == 1 and len(d) >= 36 for _, d in taken)  # every datagram is sealed
    assert st["crypto"]["cipher"] == cipher
    assert st["crypto"]["boot_id"] >= 1
    assert st["counters"]["crypto opened"] > 0
    assert st["counters"]["crypto sealed"] > 0
    assert not any(k.startswith("crypto drop") for k in st["counters"])
    assert "cipher chacha20-poly1305" in log
    assert "wire security is off" not in log
    text = subprocess.run(
        [*EVS, "status", "--socket", cluster.socket(1)], capture_output=True, text=True, check=True
    )
    assert f"wire security: {cipher}" in text.stdout


def test_replayed_and_forged_datagrams_never_reach_the_core(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = make_cluster(3, token=1000)
    with capture(cluster.port) as cap:
        for n in (1, 2, 3):
            cluster.start(n)
        clients = {n: evs.Client(cluster.socket(n)) for n in (1, 2)}
        for c in clients.values():
            c.join(["g"])
        wait_ring(clients, (1, 2, 3), 20)
        clients[1].mcast_joined(b"before", evs.Guarantee.AGREED)
        deliveries(clients[2], 1, 15)
        recorded = [d for src, d in cap.taken() if src == "127.0.0.3"]
    assert recorded, "node 3 sent nothing"
    first_boot = status(cluster, 3)["crypto"]["boot_id"]
    cluster.kill(3)
    wait_ring(clients, (1, 2), 20)
    before = {n: status(cluster, n) for n in (1, 2)}

    # Node 3 is gone; this test takes its address and plays back what it recorded, then a
    # forgery of each kind (a changed byte, garbage) from the same address.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as imp:
        imp.bind(("127.0.0.3", cluster.port))
        for n in (1, 2):
            # one of node 3's datagrams that n did accept, with a fresh counter: the tag decides
            forged = bytearray(next(d for d in recorded if int.from_bytes(d[8:12]) in (0, n)))
            counter = int.from_bytes(forged[16:24], "big")
            forged[16:24] = (counter + 5000).to_bytes(8, "big")
            for data in [*recorded, bytes(forged), b"\x01" * 100, b"garbage"]:
                imp.sendto(data, (f"127.0.0.{n}", cluster.port))
    for n in (1, 2):
        old = before[n]["counters"]
        after = wait_crypto_drops(cluster, n, crypto_drops(old) + len(recorded) + 3, 15)
        drops = {k: v - old.get(k, 0) for k, v in after.items() if k.startswith("crypto drop")}
        assert sum(drops.values()) == len(recorded) + 3, drops
        refused_replays = sum(
            drops.get(f"crypto drop {why}", 0) for why in ("replay", "too_old", "wrong_destination")
        )
        assert refused_replays == len(recorded), drops  # a unicast for 1 is not for 2
        assert drops["crypto drop replay"] > 0, drops
        assert drops["crypto drop bad_tag"] == 1, drops  # the changed counter
        assert drops["crypto drop foreign_cluster"] == 1, drops  # b"\x01" * 100: version 1
        assert drops["crypto drop bad_version"] == 1, drops  # b"garbage"
        # nothing of it reached the core: no new core drop, no datagram counted from node 3
        assert {k: v for k, v in after.items() if k.startswith("drop ")} == {
            k: v for k, v in old.items() if k.startswith("drop ")
        }
        now = status(cluster, n)
        assert now["peers"].get("3") == before[n]["peers"].get("3")
        assert now["members"] == [1, 2]

    # A restarted node 3 has a larger boot id: its fresh datagrams are accepted again.
    cluster.start(3)
    assert status(cluster, 3)["crypto"]["boot_id"] > first_boot
    wait_ring(clients, (1, 2, 3), 30)
    clients[1].mcast_joined(b"after", evs.Guarantee.AGREED)
    assert b"after" in deliveries(clients[2], 1, 15)
    for c in clients.values():
        c.close()


def _daemon(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EVS, "daemon", "-c", str(config)], capture_output=True, text=True, timeout=30, check=False
    )


def _one_node_config(tmp_path: Path, crypto: str) -> Path:
    config = tmp_path / "evs.toml"
    config.write_text(
        f'[totem]\nnodeid = 1\n[[node]]\nnodeid = 1\naddr = "127.0.0.1:{free_port()}"\n'
        f'[ipc]\nsocket = "s.sock"\n[state]\ndir = "state"\n{crypto}'
    )
    return config


@pytest.mark.parametrize(
    ("crypto", "mode", "expect"),
    [
        ("", None, "key file /etc/evs/authkey" if not os.path.exists("/etc/evs/authkey") else ""),
        ('[crypto]\nkey_file = "key"\n', None, "cannot open: No such file or directory"),
        ('[crypto]\nkey_file = "key"\n', 0o644, "mode 0644 lets group or others at the key"),
        ('[crypto]\ncipher = "aes-256-gcm"\nkey_file = "key"\n', 0o440, "chmod 0400"),
    ],
)
def test_daemon_refuses_to_start_without_a_private_key(
    tmp_path: Path, crypto: str, mode: int | None, expect: str
) -> None:
    if not expect:
        pytest.skip("this machine has a key at the default path")
    if mode is not None:
        (tmp_path / "key").write_bytes(os.urandom(64))
        (tmp_path / "key").chmod(mode)
    r = _daemon(_one_node_config(tmp_path, crypto))
    assert r.returncode == 2
    assert expect in r.stderr
    assert "cannot start" in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "s.sock").exists()


def test_daemon_with_a_state_directory_in_use_says_so(tmp_path: Path) -> None:
    from evs.daemon.state_dir import StateDir  # noqa: PLC0415

    config = _one_node_config(tmp_path, '[crypto]\ncipher = "none"\n')
    with StateDir(tmp_path / "state"):
        r = _daemon(config)
    assert r.returncode == 2
    assert "is in use by pid" in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
