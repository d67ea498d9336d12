"""Wire security: pure bytes-to-bytes sealing of datagrams (no sockets, clock or randomness).

``keys`` turns the cluster key into per-sender AEAD keys, ``frame`` seals and opens datagrams,
``replay`` refuses what was seen before, ``names`` holds the cipher names and key sizes. The
executive reads the key file and persists the boot id; the code here only computes. This
package's top level re-exports only ``names``, so importing it does not load ``cryptography``:
import ``evs.crypto.frame`` for ``Keyring``, ``Sealer`` and ``Opener``.
"""

from evs.crypto.names import (
    CIPHERS,
    DEFAULT_CIPHER,
    KEY_BYTES_DEFAULT,
    KEY_BYTES_MAX,
    KEY_BYTES_MIN,
    NONE,
    WIRE_VERSION,
)

__all__ = [
    "CIPHERS",
    "DEFAULT_CIPHER",
    "KEY_BYTES_DEFAULT",
    "KEY_BYTES_MAX",
    "KEY_BYTES_MIN",
    "NONE",
    "WIRE_VERSION",
]
