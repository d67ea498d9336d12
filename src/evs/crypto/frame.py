"""Sealing and opening datagrams: a 24-byte header, the AEAD ciphertext, a 16-byte tag.

Theory of operation: every datagram on the wire is

    version u8 | key id u8 | cluster tag u16 | sender u32 | destination u32 | boot id u32
    | counter u64 | ciphertext | tag[16]

(big-endian). The whole header is the AEAD's associated data, so none of it can be changed
without the tag failing; the nonce is the header's last 12 bytes, (boot id, counter). The
destination is the node a unicast was sealed for, or 0 for a datagram every node receives, so
a token sealed for one node cannot be played to another. The key is the sender's own
(``keys.datagram_aead``), so a nonce needs to be unique per sender only: the counter never
repeats within a boot (the ``Sealer`` counts, and refuses to wrap), and the caller gives every
start a boot id larger than any before it (persisted in the state directory), so a (key,
nonce) pair is never used twice.

``Opener.open`` never raises on what the network sends. It checks, in order: the length and
version byte, the cluster tag, the key slot, that the sender has a key, that the destination
is this node or everyone, the replay window (a cheap refusal before decrypting), then the tag;
only a datagram that authenticated moves the replay window and returns its plaintext, so
nothing parses a byte a peer did not seal with the cluster key. Every refusal is counted in
``drops`` under a short stable reason: truncated, bad_version, foreign_cluster, unknown_key,
unknown_sender, wrong_sender (the header names another node than the transport's source
address), wrong_destination, stale_boot, too_old, replay, bad_tag.

Two of the 256 key slots can be filled at once (``Keyring.install``), so an online key rotation
(``evs.crypto.rotation``) can accept both the old and the new key while senders switch.

With cipher "none" a ``Sealer`` returns the payload unchanged (``overhead`` 0) and an
``Opener`` returns every datagram as it is.

Cost (cryptography 49, CPython 3.11, this 2-core VM while other benchmarks ran, best of 5-7
rounds of 20,000 by ``python benchmarks/crypto_frame.py``), seal + open per datagram:
chacha20-poly1305 3.4-5.3 us at 64 B and 5.4-7.7 us at 1400 B; aes-256-gcm 2.7-4.6 us and
3.9-6.1 us (the lower figures on the quieter runs). About 1.5 us of an open is the Python
around the AEAD call (header, slices, replay window).
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Iterable
from typing import Final

from cryptography.exceptions import InvalidTag

from evs.crypto.keys import (
    Aead,
    check_cipher,
    check_cluster_key,
    cluster_tag,
    datagram_aead,
)
from evs.crypto.names import NONE, WIRE_VERSION
from evs.crypto.replay import REPLAY_WINDOW, ReplayWindows

__all__ = ["HEADER_SIZE", "OVERHEAD", "TAG_SIZE", "Keyring", "Opener", "Sealer"]

_HEADER: Final = struct.Struct("!BBHIIIQ")
HEADER_SIZE: Final = _HEADER.size  # 24
_NONCE_AT: Final = HEADER_SIZE - 12
TAG_SIZE: Final = 16
#: Bytes a sealed datagram is longer than its payload.
OVERHEAD: Final = HEADER_SIZE + TAG_SIZE
#: Key slots that may hold a key at once (current and next).
SLOTS_MAX: Final = 2
_U32: Final = (1 << 32) - 1
_COUNTER_END: Final = 1 << 64


class Keyring:
    """The derived keys of one cluster: per key slot, one AEAD per admitted sender."""

    __slots__ = ("cipher", "cluster_name", "senders", "slots", "tag")

    def __init__(self, cipher: str, cluster_name: str, senders: Iterable[int]) -> None:
        check_cipher(cipher)
        self.cipher = cipher
        self.cluster_name = cluster_name
        self.tag = cluster_tag(cluster_name)
        self.senders = tuple(sorted(set(senders)))
        for sender in self.senders:
            if not 0 < sender <= _U32:
                raise ValueError(f"sender ids must be 1..{_U32}, got {sender}")
        #: key id -> sender -> AEAD
        self.slots: dict[int, dict[int, Aead]] = {}

    @property
    def plain(self) -> bool:
        return self.cipher == NONE

    def install(self, key_id: int, cluster_key: bytes) -> None:
        """Fill slot ``key_id`` (0..255) with the keys derived from ``cluster_key``."""
        if self.plain:
            raise ValueError('cipher "none" takes no key')
        if not 0 <= key_id <= 255:
            raise ValueError(f"key id must be 0..255, got {key_id}")
        check_cluster_key(cluster_key)
        if key_id not in self.slots and len(self.slots) >= SLOTS_MAX:
            raise ValueError(f"at most {SLOTS_MAX} key slots may be filled; remove one first")
        self.slots[key_id] = {
            s: datagram_aead(cluster_key, self.cluster_name, self.cipher, s) for s in self.senders
        }

    def remove(self, key_id: int) -> None:
        self.slots.pop(key_id, None)


class Sealer:
    """Seals this node's datagrams under one key slot; counts its nonces itself."""

    __slots__ = (
        "_aead",
        "_pack",
        "boot_id",
        "counter",
        "key_id",
        "keyring",
        "overhead",
        "sender",
        "tag",
    )

    def __init__(self, keyring: Keyring, sender: int, boot_id: int, key_id: int = 0) -> None:
        """``boot_id`` (0..2**32-1) must be larger than any this sender used with this key."""
        if not 0 <= boot_id <= _U32:
            raise ValueError(f"boot id must be 0..{_U32}, got {boot_id}")
        self.keyring = keyring
        self.sender = sender
        self.boot_id = boot_id
        self.key_id = key_id
        self.tag = keyring.tag
        #: The next datagram's counter.
        self.counter = 0
        self._pack = _HEADER.pack
        self._aead: Aead | None = None
        self.overhead = 0
        if not keyring.plain:
            self.use_key(key_id)
            self.overhead = OVERHEAD

    def use_key(self, key_id: int) -> None:
        """Seal from now on under slot ``key_id`` (a key change). The counter goes on: the
        receivers' replay window is per sender and boot, not per key."""
        slot = self.keyring.slots.get(key_id)
        if slot is None or self.sender not in slot:
            raise ValueError(f"no key for sender {self.sender} in key slot {key_id}")
        self._aead = slot[self.sender]
        self.key_id = key_id

    def seal(self, payload: bytes, dest: int = 0) -> bytes:
        """The datagram that carries ``payload`` to node ``dest`` (0: every node); each call
        uses a fresh nonce."""
        aead = self._aead
        if aead is None:
            return payload
        counter = self.counter
        if counter >= _COUNTER_END:
            raise OverflowError("datagram counter exhausted for this boot id: restart the node")
        self.counter = counter + 1
        header = self._pack(
            WIRE_VERSION, self.key_id, self.tag, self.sender, dest, self.boot_id, counter
        )
        return header + aead.encrypt(header[_NONCE_AT:], payload, header)


class Opener:
    """Authenticates datagrams from the keyring's senders; refusals are counted, not raised."""

    __slots__ = ("_unpack", "drops", "keyring", "me", "opened", "windows")

    def __init__(self, keyring: Keyring, me: int, window: int = REPLAY_WINDOW) -> None:
        """``me``: this node's id; unicasts sealed for another node are refused."""
        self.keyring = keyring
        self.me = me
        self.windows = ReplayWindows(window)
        self.drops: Counter[str] = Counter()
        self.opened = 0
        self._unpack = _HEADER.unpack_from

    def open(self, datagram: bytes, source: int | None = None) -> bytes | None:
        """The payload of an authentic, fresh datagram, else None (and a counted drop).

        ``source``: the node the transport saw it come from, when known; the header must agree.
        """
        keyring = self.keyring
        if keyring.plain:
            self.opened += 1
            return datagram
        if len(datagram) < OVERHEAD or datagram[0] != WIRE_VERSION:
            reason = "bad_version" if datagram and datagram[0] != WIRE_VERSION else "truncated"
            self.drops[reason] += 1
            return None
        _, key_id, tag, sender, dest, boot, counter = self._unpack(datagram)
        slot = keyring.slots.get(key_id)
        if tag != keyring.tag:
            reason = "foreign_cluster"
        elif slot is None:
            reason = "unknown_key"
        elif sender not in slot:
            reason = "unknown_sender"
        elif source is not None and sender != source:
            reason = "wrong_sender"
        elif dest and dest != self.me:
            reason = "wrong_destination"
        else:
            refused = self.windows.check(sender, boot, counter)
            if refused is None:
                try:
                    payload = slot[sender].decrypt(
                        datagram[_NONCE_AT:HEADER_SIZE],
                        datagram[HEADER_SIZE:],
                        datagram[:HEADER_SIZE],
                    )
                except InvalidTag:
                    refused = "bad_tag"
                else:
                    self.windows.accept(sender, boot, counter)
                    self.opened += 1
                    return payload
            reason = refused
        self.drops[reason] += 1
        return None
