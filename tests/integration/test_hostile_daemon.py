"""Bad input never crashes the executive: garbage, truncated and foreign datagrams; malformed,
oversized and out-of-order IPC frames; a client that disconnects mid-frame; a client that
never reads; a flooding client. Each is a counted drop or a clear error to that client only;
the ring and the other clients carry on and nothing accepted is lost."""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from collections.abc import Callable

import pytest

import evs
from evs.cli._cluster import LocalCluster
from evs.ipc.codec import encode
from evs.ipc.messages import IPC_VERSION, Hello, Join, Mcast

FLOOD_SIZE = 60_000


def raw_ipc(path: str, data: bytes) -> bytes:
    """Connect, send ``data``, and read what the executive answers until it closes (bounded)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return out


def test_hostile_datagrams_and_ipc_frames_leave_the_executive_serving(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    # node 3 is configured but impersonated by this test; wire security off, so the garbage
    # reaches the core's decoder (test_crypto_daemon.py sends it to a sealed ring)
    cluster = make_cluster(3, token=1000, cipher="none")
    cluster.start(1)
    cluster.start(2)
    good = evs.Client(cluster.socket(1))
    peer = evs.Client(cluster.socket(2))
    good.join(["g"])
    peer.join(["g"])
    deadline = time.monotonic() + 15
    while good.membership_get().members != (1, 2):
        assert time.monotonic() < deadline, "no ring of 1 and 2"
        good.dispatch(evs.DispatchFlags.ALL)
        time.sleep(0.05)

    # Datagrams: from node 3's configured address (reaching the core's decoder) and from a
    # stranger (dropped by the transport).
    rng = random.Random(7)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as imp:
        imp.bind(("127.0.0.3", cluster.port))
        for _ in range(2000):
            size = rng.choice([0, 1, 3, 7, 16, 40, 200, 1400, 1472])
            data = bytes(rng.getrandbits(8) for _ in range(size))
            for n in (1, 2):
                imp.sendto(data, (f"127.0.0.{n}", cluster.port))
        imp.sendto(bytes(65_000), ("127.0.0.1", cluster.port))  # far over netmtu
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        stranger.bind(("127.0.0.9", 0))
        for _ in range(100):
            stranger.sendto(b"\x01" * 100, ("127.0.0.1", cluster.port))

    # IPC: garbage, an absurd length, a request before Hello, a wrong version, half a frame.
    path = cluster.socket(1)
    raw_ipc(path, os.urandom(64))
    raw_ipc(path, b"\xff\xff\xff\xff" + bytes(16))
    raw_ipc(path, encode(Join(1, (b"g",))))
    assert raw_ipc(path, encode(Hello(1, 999, os.getpid()))), "no answer to a wrong version"
    frame = encode(Hello(1, IPC_VERSION, os.getpid())) + encode(
        Mcast(2, None, evs.Guarantee.AGREED, b"x" * 5000)
    )
    raw_ipc(path, frame[: len(frame) - 100])

    # A client that never reads, while another floods its group.
    sleeper = evs.Client(cluster.socket(1))
    sleeper.join(["g"])
    flooder = evs.Client(cluster.socket(2))
    flooder.join(["g"])
    got: list[int] = []
    total = 400  # 24 MB: three times the default per-client bound of 8 MiB

    def read_all() -> None:  # the good client keeps reading while the flood goes on
        for ev in good.events(timeout=30):
            if isinstance(ev, evs.Delivery) and ev.nodeid == 2 and len(ev.data) > 4:
                got.append(int.from_bytes(ev.data[:4], "big"))
                if len(got) == total:
                    return

    reader = threading.Thread(target=read_all)
    reader.start()
    for k in range(total):
        flooder.mcast_joined(k.to_bytes(4, "big") + bytes(FLOOD_SIZE), timeout=30)
    reader.join(90)
    assert not reader.is_alive(), f"the good client got {len(got)} of {total}"
    assert got == list(range(total))
    sleeper.dispatch(evs.DispatchFlags.ALL)  # what arrived before the cut is still there
    with pytest.raises(evs.NotConnected, match="did not read its events"):
        sleeper.membership_get()

    peer.close()  # it did not read the flood either; a fresh handle checks the ring
    peer = evs.Client(cluster.socket(2))
    peer.join(["g"])
    good.mcast_joined(b"still here", evs.Guarantee.SAFE)
    assert any(
        isinstance(ev, evs.Delivery) and ev.data == b"still here" for ev in peer.events(timeout=10)
    )
    assert cluster.procs[1].poll() is None
    assert cluster.procs[2].poll() is None
    st = good.status()
    c = st["counters"]
    assert c["rx_unknown_source"] >= 100
    assert c["rx_over_mtu"] + c.get("rx_truncated", 0) >= 1
    assert sum(v for k, v in c.items() if k.startswith("drop ")) >= 1000, c
    bad_frames = ("malformed frames", "oversized frames", "protocol errors", "version mismatches")
    assert sum(c[f"ipc {k}"] for k in bad_frames) >= 4, c
    assert c["ipc oversized frames"] >= 1, c
    assert c["ipc protocol errors"] >= 1, c  # a request before Hello
    assert c["ipc version mismatches"] >= 1, c
    assert c["ipc disconnects mid-frame"] >= 1, c
    assert c["ipc overflow disconnects"] >= 1, c
    for cl in (good, peer, sleeper, flooder):
        cl.close()
