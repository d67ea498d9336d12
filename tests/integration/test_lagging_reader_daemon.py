"""Real executives: a lagging client holds its own node's senders (``[ipc] reader_hold_ms``)
instead of being cut off, and a client that never reads is given up on after the hold.

Small queues make it quick: a client may have 256 KiB waiting at its executive (plus its
socket's buffers), the node's senders are held once it is 128 KiB behind, and the core keeps
at most 64 KiB of this node's messages queued, which still reach the reader after the hold
begins. A reader on the other node reads in a thread throughout: the ring never waits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from apptrace import wait_until

import evs
from evs.cli._cluster import LocalCluster
from evs.cli.status import format_status

SIZE = 4096
EXTRA_TOTEM = "max_message_size = 65536\nqueue_bytes_max = 65536\n"


def ipc(hold_ms: int) -> str:
    return f"client_queue_bytes = 262144\nsend_window_bytes = 65536\nreader_hold_ms = {hold_ms}\n"


def start(make_cluster: Callable[..., LocalCluster], hold_ms: int) -> LocalCluster:
    cluster = make_cluster(2, token=1000, extra_totem=EXTRA_TOTEM, extra_ipc=ipc(hold_ms))
    cluster.start(1)
    cluster.start(2)
    return cluster


def message(i: int) -> bytes:
    return b"%08d" % i + bytes(SIZE - 8)


class Reader(threading.Thread):
    """Reads group g on one node in its own thread until it has ``want()`` messages."""

    def __init__(self, path: str) -> None:
        super().__init__(daemon=True)
        self.client = evs.Client(path)
        self.client.join(["g"])
        self.got: list[bytes] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                for e in self.client.events(timeout=0.1):
                    if isinstance(e, evs.Delivery):
                        self.got.append(e.data[:8])
        except BaseException as exc:
            self.error = exc


def ring_of_two(c: evs.Client) -> None:
    deadline = time.monotonic() + 20
    while c.membership_get().members != (1, 2):
        assert time.monotonic() < deadline, "no ring of nodes 1 and 2"
        time.sleep(0.05)


def counters(c: evs.Client) -> dict[str, int]:
    got: dict[str, int] = c.status()["counters"]
    return got


def test_a_lagging_reader_holds_its_nodes_sender_and_then_gets_everything(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = start(make_cluster, hold_ms=60000)
    lazy = evs.Client(cluster.socket(1))  # on the sender's node; reads nothing for now
    lazy.join(["g"])
    sender = evs.Client(cluster.socket(1))
    ring_of_two(sender)
    far = Reader(cluster.socket(2))
    far.start()
    try:
        sent = 0
        held = False
        for _ in range(4000):  # 8 MB of sends at most: far past every buffer if nothing held
            try:
                sender.mcast_groups(["g"], message(sent), timeout=1.0)
            except evs.TryAgain:
                # Held, or only a credit late on a busy machine (then send it again).
                if sender.status()["send_queue"]["held_for_readers"]:
                    held = True
                    break
            else:
                sent += 1
        assert held, "the sender never waited for its node's lagging reader"
        st = sender.status()
        assert st["send_queue"]["held_for_readers"] is True
        assert "sends are held while a lagging local client catches up" in format_status(st)
        assert st["send_queue"]["held_for_room"] > 0  # its window's sends wait at the executive
        c = counters(sender)
        assert c["send holds for local readers"] >= 1, c
        assert c["ipc overflow disconnects"] == 0, c
        assert c["local readers no longer waited for"] == 0, c
        assert sent > 20  # the buffers took some before the hold

        got: list[bytes] = []
        for e in lazy.events(timeout=10):
            if isinstance(e, evs.Delivery):
                got.append(e.data[:8])
                if len(got) == sent:
                    break
        assert got == [b"%08d" % i for i in range(sent)]
        sender.mcast_groups(["g"], message(sent), timeout=10.0)  # the hold ended
        for e in lazy.events(timeout=10):
            if isinstance(e, evs.Delivery):
                assert e.data[:8] == b"%08d" % sent
                break
        wait_until(lambda: len(far.got) == sent + 1 or far.error is not None, 20, "far reader")
        assert far.error is None, far.error
        assert far.got == [b"%08d" % i for i in range(sent + 1)]
        c = counters(sender)
        assert c["ipc overflow disconnects"] == 0, c
        assert sender.status()["send_queue"]["held_for_readers"] is False
    finally:
        far.stop.set()
        far.join(5)
        for client in (lazy, sender, far.client):
            client.close()


def test_a_reader_that_never_reads_is_given_up_on_and_cut_off(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = start(make_cluster, hold_ms=200)
    stuck = evs.Client(cluster.socket(1))
    stuck.join(["g"])
    sender = evs.Client(cluster.socket(1))
    ring_of_two(sender)
    far = Reader(cluster.socket(2))
    far.start()
    count = 300  # 1.2 MB: past the stuck client's socket buffers and both 256 KiB bounds
    try:
        for i in range(count):
            sender.mcast_groups(["g"], message(i), timeout=10.0)  # held 0.2 s at most
        wait_until(lambda: len(far.got) == count or far.error is not None, 20, "far reader")
        assert far.error is None, far.error
        assert far.got == [b"%08d" % i for i in range(count)]
        c = counters(sender)
        assert c["send holds for local readers"] >= 1, c
        assert c["local readers no longer waited for"] >= 1, c
        assert c["ipc overflow disconnects"] == 1, c
        with pytest.raises(evs.NotConnected, match="did not read its events"):
            for _ in stuck.events(timeout=10):
                pass
    finally:
        far.stop.set()
        far.join(5)
        for client in (stuck, sender, far.client):
            client.close()
