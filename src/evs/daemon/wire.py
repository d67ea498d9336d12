"""Wire security between the executive and its UDP transport: seal going out, open coming in.

Theory of operation: the transport moves bytes and knows nothing of keys; the core reads and
writes plaintext and knows nothing of them either. ``SealedWire`` sits between: the transport
hands its received batch to ``on_datagrams``, which opens each datagram (authenticating it,
checking the header names the node whose address it came from and this node or every node as
its destination, refusing replays) and passes on
only the payloads that passed, so nothing a peer did not seal with the cluster key reaches the
core's decoder. ``send`` seals once and hands the datagram to the transport, which may copy it
to several peers (a broadcast in "udpu" mode): one nonce per datagram, not per copy, and each
receiver sees it once.

``build_wire`` reads the key files (``KeyStore``: the key in use and, when a key rotation was in
progress, the next key, sealing with it if this node had switched), takes a boot id from the
state directory (a new one at every start, persisted before use) and derives the keys; the key
bytes are not kept once the AEAD objects exist (the key rotation keeps a pending key until it
is retired), and are never logged. With cipher "none" it returns None and the executive
connects the transport straight to its own handler, at no cost.

``counters``: "crypto opened", "crypto sealed" and "crypto drop <reason>" (the reasons of
``evs.crypto.frame``), shown by ``evs status``. Refusals are also logged, at most one warning
per ``LOG_EVERY_S`` summing up what was refused since the last one (by reason, with the nodes
whose addresses sent it and a hint), so a node with the wrong key is visible in the log
without a flood letting an attacker fill the disk.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Final

from evs.crypto.frame import Keyring, Opener, Sealer
from evs.crypto.names import NONE
from evs.daemon.key_store import KeyStore, StoredKeys
from evs.daemon.state_dir import StateDir
from evs.totem.config import CRYPTO_RESERVE

__all__ = ["LOG_EVERY_S", "SealedWire", "build_wire"]

log = logging.getLogger("evs.daemon")

#: Seconds between two warnings about refused datagrams.
LOG_EVERY_S: Final = 10.0
_HINTS: Final = {
    "bad_tag": "a different cluster key or cipher, or altered in transit",
    "foreign_cluster": "another cluster name on this port",
    "bad_version": "not sealed (a peer with cipher none?) or another wire version",
    "unknown_key": "a key id this node does not have: a key rotation it missed? see "
    "docs/daemon.md, key rotation",
    "stale_boot": "an old boot of a restarted node (its clock went back, or a replay)",
    "replay": "seen before",
    "too_old": "older than the replay window",
}

OnDatagrams = Callable[[list[tuple[int, bytes]]], None]
Send = Callable[[int, bytes], None]


class SealedWire:
    """Seals and opens for one executive; ``connect`` it to the transport's ``send``."""

    __slots__ = (
        "_clock",
        "_deliver",
        "_logged_at",
        "_logged_drops",
        "_refused_from",
        "_send",
        "opener",
        "sealed",
        "sealer",
        "store",
        "stored",
    )

    def __init__(
        self,
        sealer: Sealer,
        opener: Opener,
        deliver: OnDatagrams,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if sealer.overhead > CRYPTO_RESERVE:  # the core's payload_max leaves only this much
            raise ValueError(f"sealing adds {sealer.overhead} bytes, over {CRYPTO_RESERVE}")
        self.sealer = sealer
        self.opener = opener
        self._deliver = deliver
        self._send: Send | None = None
        #: The key files and what they held at start-up (``build_wire`` sets them).
        self.store: KeyStore | None = None
        self.stored: StoredKeys | None = None
        self.sealed = 0
        self._clock = clock
        self._logged_at: float | None = None
        self._logged_drops: Counter[str] = Counter()
        #: Source node -> datagrams refused since the last warning.
        self._refused_from: Counter[int] = Counter()

    def connect(self, send: Send) -> None:
        self._send = send

    def on_datagrams(self, batch: list[tuple[int, bytes]]) -> None:
        """The transport's batch in, the authentic payloads on to the executive."""
        open_ = self.opener.open
        opened = []
        refused = self._refused_from
        for source, data in batch:
            payload = open_(data, source)
            if payload is not None:
                opened.append((source, payload))
            else:
                refused[source] += 1
        if refused:
            self._maybe_log()
        if opened:
            self._deliver(opened)

    def _maybe_log(self) -> None:
        now = self._clock()
        if self._logged_at is not None and now - self._logged_at < LOG_EVERY_S:
            return
        drops = self.opener.drops
        new = {k: v - self._logged_drops[k] for k, v in drops.items() if v > self._logged_drops[k]}
        reasons = ", ".join(
            f"{n} {k} ({_HINTS[k]})" if k in _HINTS else f"{n} {k}" for k, n in sorted(new.items())
        )
        senders = ", ".join(f"node {s}: {n}" for s, n in sorted(self._refused_from.items()))
        log.warning("refused %d datagrams: %s; from %s", sum(new.values()), reasons, senders)
        self._logged_at = now
        self._logged_drops = Counter(drops)
        self._refused_from.clear()

    def send(self, dest: int, data: bytes) -> None:
        send = self._send
        if send is None:
            raise RuntimeError("wire is not connected to a transport")
        self.sealed += 1
        send(dest, self.sealer.seal(data, dest))

    @property
    def counters(self) -> dict[str, int]:
        out = {"crypto opened": self.opener.opened, "crypto sealed": self.sealed}
        out.update(("crypto drop " + k, v) for k, v in self.opener.drops.items())
        return out

    def status(self) -> dict[str, object]:
        accepted = sorted(self.opener.keyring.slots)
        return {
            "cipher": self.opener.keyring.cipher,
            "key_in_use": self.sealer.key_id,
            "keys_accepted": accepted,
            "key_ids": accepted,
            "key_id": self.sealer.key_id,
            "boot_id": self.sealer.boot_id,
            "overhead": self.sealer.overhead,
        }


def build_wire(  # noqa: PLR0917 - one call site, in the executive
    cipher: str,
    key_file: str,
    cluster_name: str,
    nodeid: int,
    nodes: Iterable[int],
    state_dir: StateDir,
    deliver: OnDatagrams,
) -> SealedWire | None:
    """The wire of an executive, or None for cipher "none".

    Raises KeyFileError (unusable key file) or StateDirError (no boot id could be stored).
    """
    if cipher == NONE:
        return None
    keyring = Keyring(cipher, cluster_name, nodes)
    store = KeyStore(key_file)
    stored = store.load()
    keyring.install(stored.key_id, stored.key)
    sealing = stored.key_id
    if stored.next is not None:
        next_id, next_key, sending, _ = stored.next
        keyring.install(next_id, next_key)
        if sending:
            sealing = next_id
    boot_id = state_dir.next_boot_id(floor=int(time.time()))
    wire = SealedWire(
        Sealer(keyring, nodeid, boot_id, key_id=sealing), Opener(keyring, nodeid), deliver
    )
    wire.store = store
    wire.stored = stored
    return wire
