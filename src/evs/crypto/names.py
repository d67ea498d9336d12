"""The names and sizes of wire security that commands and configuration need.

Kept apart from ``keys`` and ``frame`` so that reading a configuration or building the command
line does not load the ``cryptography`` package.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CIPHERS",
    "DEFAULT_CIPHER",
    "KEY_BYTES_DEFAULT",
    "KEY_BYTES_MAX",
    "KEY_BYTES_MIN",
    "NONE",
    "WIRE_VERSION",
]

#: Version of the datagram envelope; it is in every header and in every derived key's label.
WIRE_VERSION: Final = 1
#: The cipher that adds nothing (explicit opt-out).
NONE: Final = "none"
#: Accepted cipher names, "none" first.
CIPHERS: Final = (NONE, "chacha20-poly1305", "aes-256-gcm")
#: What a configuration gets unless it says otherwise: fast without AES instructions too.
DEFAULT_CIPHER: Final = "chacha20-poly1305"
KEY_BYTES_MIN: Final = 32
KEY_BYTES_MAX: Final = 4096
KEY_BYTES_DEFAULT: Final = 64
