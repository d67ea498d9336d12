"""Wire security: pure bytes-to-bytes sealing of datagrams (no sockets, clock or randomness).

``keys`` turns the cluster key into per-sender AEAD keys, ``frame`` seals and opens datagrams,
``replay`` refuses what was seen before. The executive reads the key file and persists the
boot id; the sans-I/O code here only computes.
"""

from evs.crypto.frame import HEADER_SIZE, OVERHEAD, TAG_SIZE, Keyring, Opener, Sealer
from evs.crypto.keys import (
    CIPHERS,
    KEY_BYTES_DEFAULT,
    KEY_BYTES_MAX,
    KEY_BYTES_MIN,
    NONE,
    WIRE_VERSION,
    check_cipher,
    check_cluster_key,
)
from evs.crypto.replay import REPLAY_WINDOW, ReplayWindows

__all__ = [
    "CIPHERS",
    "HEADER_SIZE",
    "KEY_BYTES_DEFAULT",
    "KEY_BYTES_MAX",
    "KEY_BYTES_MIN",
    "NONE",
    "OVERHEAD",
    "REPLAY_WINDOW",
    "TAG_SIZE",
    "WIRE_VERSION",
    "Keyring",
    "Opener",
    "ReplayWindows",
    "Sealer",
    "check_cipher",
    "check_cluster_key",
]
