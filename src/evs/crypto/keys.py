"""Cipher names and key derivation: one cluster key in, one AEAD object per purpose out.

Theory of operation: the operator distributes one secret, the cluster key (32..4096 random
bytes written by ``evs keygen``). It is never used as a cipher key itself. HKDF-SHA256
stretches it into separate 32-byte keys, with the cluster name as the salt and an ``info``
label that names the wire version, the cipher, the purpose and (for datagram keys) the sending
node. So two clusters sharing a key but not a name share no cipher key, a key derived for one
wire version or cipher is useless under another, and every sender has a key of its own: the
nonce (boot id, counter) then only has to be unique per sender, which the sender alone can
guarantee without coordination.

The AEAD objects are built once per (key slot, sender) and reused for every datagram: building
one costs more than sealing a small datagram.

This module is pure (no I/O, no clock, no randomness); reading the key file is the caller's job.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from evs.crypto.names import (
    CIPHERS,
    KEY_BYTES_MAX,
    KEY_BYTES_MIN,
    NONE,
    WIRE_VERSION,
)

__all__ = ["Aead", "check_cipher", "check_cluster_key", "cluster_tag", "datagram_aead"]

Aead = ChaCha20Poly1305 | AESGCM


def check_cluster_key(key: bytes) -> None:
    """Raise ValueError unless ``key`` has a usable length (says what is wrong, not the key)."""
    if not KEY_BYTES_MIN <= len(key) <= KEY_BYTES_MAX:
        raise ValueError(
            f"a cluster key must be {KEY_BYTES_MIN}..{KEY_BYTES_MAX} bytes, got {len(key)}"
        )


def check_cipher(cipher: str) -> None:
    if cipher not in CIPHERS:
        raise ValueError(f'unknown cipher "{cipher}" (known: {", ".join(CIPHERS)})')


def cluster_tag(cluster_name: str) -> int:
    """A public 16-bit tag of the cluster name, sent in the clear.

    It only lets a receiver tell "another cluster on this port" from "forged or wrong key";
    the authentication comes from the name being bound into every key.
    """
    digest = hashlib.sha256(b"evs cluster tag\0" + cluster_name.encode("utf-8")).digest()
    return int.from_bytes(digest[:2], "big")


def _derive(key: bytes, cluster_name: str, label: bytes) -> bytes:
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"evs cluster\0" + cluster_name.encode("utf-8"),
        info=b"evs wire v%d\0" % WIRE_VERSION + label,
    )
    return hkdf.derive(key)


def datagram_aead(key: bytes, cluster_name: str, cipher: str, sender: int) -> Aead:
    """The AEAD that seals (and opens) the datagrams of node ``sender``."""
    check_cluster_key(key)
    check_cipher(cipher)
    if cipher == NONE:
        raise ValueError('cipher "none" has no keys')
    label = cipher.encode("ascii") + b"\0datagram\0" + sender.to_bytes(4, "big")
    secret = _derive(key, cluster_name, label)
    return ChaCha20Poly1305(secret) if cipher == "chacha20-poly1305" else AESGCM(secret)
