"""Online key rotation on real executives under load: ``evs rekey`` on one node, clients sending
all along; afterwards every message was delivered exactly once everywhere in one order (the EVS
checker on the handles' traces), no configuration changed, no datagram was refused, every node
seals with the new key and accepts only it, a datagram sealed with the retired key is a counted
drop, and a restarted node comes back with the new key from its key files."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from apptrace import TracedHandle, Traffic, wait_until

import evs
from evs.check import check_events
from evs.cli._cluster import LocalCluster
from evs.crypto.frame import Keyring, Sealer
from evs.daemon.key_file import read_key_file

IDS = (1, 2, 3)


def status(cluster: LocalCluster, n: int) -> dict[str, Any]:
    with evs.Client(cluster.socket(n)) as c:
        return c.status()


def delivered(handles: list[TracedHandle]) -> int:
    return sum(e["ev"] == "deliver" for h in handles for e in h.events)


def test_rekey_under_load_loses_nothing_and_changes_no_configuration(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = make_cluster(3, token=1000)
    old_key = read_key_file(cluster.key_file)
    for n in IDS:
        cluster.start(n)
    handles = [TracedHandle(n, 1, cluster.socket(n)) for n in IDS]
    traffic = Traffic(handles, period=0.01)
    traffic.sending = False  # until the ring of all three: every message is for every handle
    traffic.start()
    try:
        wait_until(
            lambda: all(h.last_conf is not None and h.last_conf.members == IDS for h in handles),
            20,
            "the ring of all three",
        )
        with traffic._lock:
            start = {h.nodeid: len(h.events) for h in handles}
        traffic.sending = True
        # deliveries count once per handle (3): 150 messages each side of the rotation
        wait_until(lambda: delivered(handles) > 3 * 150, 30, "traffic before the rotation")
        before = {n: status(cluster, n) for n in IDS}
        assert all(st["crypto"]["key_in_use"] == 0 for st in before.values())
        r = subprocess.run(
            [sys.executable, "-m", "evs.cli", "rekey", "--socket", cluster.socket(2)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        assert "key id 1" in r.stdout
        mark = delivered(handles)
        wait_until(lambda: delivered(handles) > mark + 3 * 155, 30, "traffic after the rotation")
        traffic.sending = False
        wait_until(lambda: traffic.settled(IDS), 30, "every handle to deliver everything")
    finally:
        traffic.stop()
        for h in handles:
            if h.client is not None:
                h.client.close()

    # exactly once, one order, at every receiver; one configuration only
    report = check_events(
        [e for h in handles for e in h.events], handle_traces=True, quiet_end=True
    )
    assert report.ok, report.render_text(20)
    sent = {e["msg"] for h in handles for e in h.events if e["ev"] == "send"}
    assert len(sent) > 300
    for h in handles:
        got = Counter(e["msg"] for e in h.events if e["ev"] == "deliver")
        assert set(got) == sent
        assert max(got.values()) == 1
        confs = [e for e in h.events[start[h.nodeid] :] if e["ev"] == "confchg"]
        assert not confs, confs  # no configuration change while the traffic ran
    for n in IDS:
        st = status(cluster, n)
        crypto = st["crypto"]
        assert crypto["key_in_use"] == 1, crypto
        assert crypto["keys_accepted"] == [1], crypto
        assert crypto["rotation"] == {"phase": "idle"}, crypto
        counters = st["counters"]
        assert counters["configuration changes"] == before[n]["counters"]["configuration changes"]
        assert not {k: v for k, v in counters.items() if k.startswith("crypto drop")}, counters
        assert counters["rekey retired"] == 1
        assert counters["rekey warnings"] == 0
        assert read_key_file(cluster.node_key_file(n)) != old_key

    # node 3 leaves; its address now sends a datagram sealed with the retired key
    cluster.terminate(3)
    assert cluster.wait(3) == 0
    keyring = Keyring("chacha20-poly1305", "demo", IDS)
    keyring.install(0, old_key)
    forged = Sealer(keyring, 3, boot_id=2**32 - 1, key_id=0).seal(b"old key, still valid?" * 4)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as imp:
        imp.bind(("127.0.0.3", cluster.port))
        for n in (1, 2):
            imp.sendto(forged, (f"127.0.0.{n}", cluster.port))

    def dropped() -> bool:
        return all(
            status(cluster, n)["counters"].get("crypto drop unknown_key", 0) == 1 for n in (1, 2)
        )

    wait_until(dropped, 15, "nodes 1 and 2 to count the old-key datagram")

    # node 3 restarts from its key files: the new key, and it joins the ring again
    cluster.start(3)
    assert status(cluster, 3)["crypto"]["keys_accepted"] == [1]
    with evs.Client(cluster.socket(3)) as c:
        deadline = time.monotonic() + 30
        while c.membership_get().members != IDS:
            assert time.monotonic() < deadline, "node 3 did not rejoin with the new key"
            c.dispatch(evs.DispatchFlags.ALL)
            time.sleep(0.05)  # polling the membership, bounded by the deadline


def test_a_node_left_out_of_a_rotation_is_cut_off_cleanly_and_brought_back(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = make_cluster(3, token=1000)
    for n in IDS:
        cluster.start(n)
    wait_until(lambda: status(cluster, 1)["members"] == list(IDS), 20, "the ring of all three")
    cluster.terminate(3)
    assert cluster.wait(3) == 0
    wait_until(lambda: status(cluster, 1)["members"] == [1, 2], 20, "the ring of 1 and 2")

    def rekey(n: int, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "evs.cli", "rekey", "--socket", cluster.socket(n), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    # by default node 3 is required: the rotation waits for it, nobody switches
    waiting = rekey(1, "--timeout", "1")
    assert waiting.returncode == 1
    assert "waiting for nodes [3]" in waiting.stderr
    crypto = status(cluster, 2)["crypto"]
    assert (crypto["key_in_use"], crypto["keys_accepted"]) == (0, [0, 1])
    # a second rotation meanwhile is refused, on any node, with the reason
    second = rekey(2, "--no-wait")
    assert second.returncode == 1
    assert "in progress" in second.stderr
    assert "waiting for nodes [3]" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    # node 2 killed and restarted meanwhile comes back from its key files where it was
    cluster.kill(2)
    cluster.start(2)
    crypto = status(cluster, 2)["crypto"]
    assert (crypto["key_in_use"], crypto["keys_accepted"]) == (0, [0, 1])
    assert crypto["rotation"]["phase"] == "installed"
    wait_until(lambda: status(cluster, 1)["members"] == [1, 2], 20, "1 and 2 together again")
    # node 3 comes back, takes the key from the ring, and the rotation finishes everywhere
    cluster.start(3)
    wait_until(
        lambda: all(status(cluster, n)["crypto"]["keys_accepted"] == [1] for n in IDS),
        30,
        "the rotation to finish once node 3 is back",
    )
    assert status(cluster, 3)["members"] == list(IDS)

    # --members-only while node 3 is away: it is left with the old key and cannot rejoin
    cluster.terminate(3)
    assert cluster.wait(3) == 0
    wait_until(lambda: status(cluster, 1)["members"] == [1, 2], 20, "the ring of 1 and 2")
    done = rekey(2, "--members-only", "--timeout", "30")
    assert done.returncode == 0, done.stderr
    cluster.start(3)
    wait_until(
        lambda: status(cluster, 1)["counters"].get("crypto drop unknown_key", 0) > 0,
        20,
        "node 3's old-key datagrams to be refused",
    )
    assert status(cluster, 1)["members"] == [1, 2]
    wait_until(lambda: status(cluster, 3)["members"] == [3], 20, "node 3 alone")
    # the operator brings it back: node 3 takes the cluster's key as its next one, alone
    back = rekey(3, "--members-only", "--key-file", str(cluster.node_key_file(1)))
    assert back.returncode == 0, back.stderr
    wait_until(lambda: status(cluster, 3)["members"] == list(IDS), 30, "node 3 back in the ring")
    for n in IDS:
        crypto = status(cluster, n)["crypto"]
        assert (crypto["key_in_use"], crypto["keys_accepted"]) == (2, [2])

    # a rotation stalled on a node that is gone is narrowed to the members by the operator
    cluster.terminate(3)
    assert cluster.wait(3) == 0
    wait_until(lambda: status(cluster, 1)["members"] == [1, 2], 20, "the ring of 1 and 2")
    assert rekey(1, "--no-wait").returncode == 0
    wait_until(
        lambda: status(cluster, 2)["crypto"]["rotation"].get("installed") == [1, 2],
        10,
        "the rotation to wait for node 3",
    )
    narrowed = rekey(2, "--members-only", "--timeout", "30")
    assert narrowed.returncode == 0, narrowed.stderr
    wait_until(
        lambda: all(status(cluster, n)["crypto"]["keys_accepted"] == [3] for n in (1, 2)),
        10,
        "the narrowed rotation to finish on 1 and 2",
    )


def test_rotation_across_a_partition(make_cluster: Callable[..., LocalCluster]) -> None:
    """In a lab of network namespaces (root): a rotation started while node 3 is partitioned
    away waits for it and finishes after the merge, with traffic throughout and no extra
    configuration change; a --members-only rotation leaves node 3 out without disturbing the
    others' ring, and the operator brings it back with the cluster's key."""
    cluster = make_cluster(3, netns=True, token=1000)
    assert cluster.lab is not None
    for n in IDS:
        cluster.start(n)
    handles = [TracedHandle(n, 1, cluster.socket(n)) for n in IDS]
    traffic = Traffic(handles, period=0.02)
    traffic.start()

    def ring_is(*rings: tuple[int, ...]) -> Callable[[], bool]:
        def ok() -> bool:
            for h in handles:
                want = next(r for r in rings if h.nodeid in r)
                c = h.last_conf
                if c is None or c.transitional or c.members != want:
                    return False
            return True

        return ok

    def crypto(n: int) -> dict[str, Any]:
        return dict(status(cluster, n)["crypto"])

    def rekey(n: int, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "evs.cli", "rekey", "--socket", cluster.socket(n), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    try:
        wait_until(ring_is(IDS), 20, "the ring of all three")
        cluster.lab.partition((1, 2), (3,))
        wait_until(ring_is((1, 2), (3,)), 20, "the partition")
        r = rekey(1, "--no-wait")
        assert r.returncode == 0, r.stderr
        wait_until(
            lambda: crypto(2)["rotation"].get("installed") == [1, 2], 10, "1 and 2 to install"
        )
        assert crypto(1)["key_in_use"] == 0  # nobody switches while 3 lacks the key
        cluster.lab.heal()
        wait_until(ring_is(IDS), 30, "the merged ring")
        with traffic._lock:
            merged = {h.nodeid: len(h.events) for h in handles}
        wait_until(lambda: all(crypto(n)["keys_accepted"] == [1] for n in IDS), 30, "the rotation")
        # traffic under the new key; it also lets the messages handed to an executive while
        # the merge ran (labelled with the old ring by their handles, so ``settled`` does not
        # wait for them) come through before the end is judged
        mark = delivered(handles)
        wait_until(lambda: delivered(handles) > mark + 100, 30, "traffic after the rotation")
        traffic.sending = False
        wait_until(lambda: traffic.settled(IDS), 30, "every handle to deliver everything")
    finally:
        traffic.stop()
        for h in handles:
            if h.client is not None:
                h.client.close()
    report = check_events(
        [e for h in handles for e in h.events], handle_traces=True, quiet_end=True
    )
    assert report.ok, report.render_text(20)
    for h in handles:
        after = [e for e in h.events[merged[h.nodeid] :] if e["ev"] == "confchg"]
        assert not after, after  # the rotation after the merge changed no configuration
    for n in IDS:
        counters = status(cluster, n)["counters"]
        assert not {k: v for k, v in counters.items() if k.startswith("crypto drop")}, counters

    # --members-only while 3 is away: 3 is left with key 1, the others go to key 2
    cluster.lab.partition((1, 2), (3,))
    wait_until(lambda: status(cluster, 1)["members"] == [1, 2], 20, "the partition again")
    done = rekey(1, "--members-only", "--timeout", "30")
    assert done.returncode == 0, done.stderr
    cluster.lab.heal()

    def refused(n: int) -> int:
        return int(status(cluster, n)["counters"].get("crypto drop unknown_key", 0))

    wait_until(lambda: refused(1) > 0 and refused(3) > 0, 20, "the key mismatch to show")
    changes = status(cluster, 1)["counters"]["configuration changes"]
    seen = refused(1)
    wait_until(lambda: refused(1) > seen + 5, 20, "more of node 3's datagrams refused")
    st = status(cluster, 1)
    assert st["members"] == [1, 2]
    assert st["counters"]["configuration changes"] == changes  # node 3 cannot disturb them
    back = rekey(3, "--members-only", "--key-file", str(cluster.node_key_file(1)))
    assert back.returncode == 0, back.stderr
    wait_until(lambda: status(cluster, 3)["members"] == list(IDS), 30, "node 3 back in the ring")
    assert all(crypto(n)["keys_accepted"] == [2] for n in IDS)
