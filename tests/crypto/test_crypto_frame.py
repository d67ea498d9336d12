"""Sealing and opening datagrams: round trips, and every way a datagram is refused."""

from __future__ import annotations

import struct

import pytest

from evs.crypto.frame import HEADER_SIZE, OVERHEAD, Keyring, Opener, Sealer
from evs.crypto.keys import datagram_aead
from evs.crypto.replay import REPLAY_WINDOW
from evs.totem.config import CRYPTO_RESERVE

KEY = bytes(range(64))
OTHER_KEY = bytes(range(1, 65))
CIPHERS = ("chacha20-poly1305", "aes-256-gcm")
NODES = (1, 2, 3)
#: The node whose opener the tests use.
ME = 3


def ring(cipher: str = "chacha20-poly1305", name: str = "alpha", key: bytes = KEY) -> Keyring:
    keyring = Keyring(cipher, name, NODES)
    keyring.install(0, key)
    return keyring


@pytest.mark.parametrize("cipher", CIPHERS)
@pytest.mark.parametrize("size", [0, 1, 64, 1400, 65000])
def test_round_trip(cipher: str, size: int) -> None:
    keys = ring(cipher)
    payload = bytes((i * 7) & 0xFF for i in range(size))
    sealed = Sealer(keys, 2, boot_id=9).seal(payload)
    assert len(sealed) == size + OVERHEAD
    assert payload[:32] not in sealed or size < 8  # the payload does not travel in the clear
    opener = Opener(keys, ME)
    assert opener.open(sealed, 2) == payload
    assert opener.opened == 1
    assert not opener.drops


def test_overhead_is_the_constant_and_fits_the_cores_reserve() -> None:
    assert Sealer(ring(), 1, 1).overhead == OVERHEAD == 40
    assert OVERHEAD <= CRYPTO_RESERVE


def test_nonces_never_repeat_and_counter_counts() -> None:
    sealer = Sealer(ring(), 1, boot_id=3)
    headers = {sealer.seal(b"x")[:HEADER_SIZE] for _ in range(100)}
    assert len(headers) == 100
    assert sealer.counter == 100
    assert struct.unpack("!BBHIIIQ", max(headers))[5:] == (3, 99)


def test_counter_refuses_to_wrap() -> None:
    sealer = Sealer(ring(), 1, boot_id=3)
    sealer.counter = (1 << 64) - 1
    sealer.seal(b"last")
    with pytest.raises(OverflowError):
        sealer.seal(b"one too many")


@pytest.mark.parametrize("cipher", CIPHERS)
def test_a_changed_byte_at_any_offset_is_dropped(cipher: str) -> None:
    keys = ring(cipher)
    sealed = Sealer(keys, 1, boot_id=1).seal(b"the quick brown fox")
    opener = Opener(keys, ME)
    for offset in range(len(sealed)):
        for flip in (0x01, 0x80):
            bad = bytearray(sealed)
            bad[offset] ^= flip
            assert opener.open(bytes(bad)) is None, offset
    assert opener.opened == 0
    assert sum(opener.drops.values()) == 2 * len(sealed)
    assert opener.drops["bad_tag"] > 0
    # and the genuine one still opens afterwards: no forgery moved the replay window
    assert opener.open(sealed) == b"the quick brown fox"


def test_truncated_at_every_length_is_dropped() -> None:
    keys = ring()
    sealed = Sealer(keys, 1, boot_id=1).seal(b"payload of some length")
    opener = Opener(keys, ME)
    for length in range(len(sealed)):
        assert opener.open(sealed[:length]) is None, length
    assert opener.drops["truncated"] == OVERHEAD  # too short to hold header and tag
    assert opener.drops["bad_tag"] == len(sealed) - OVERHEAD
    assert opener.open(sealed) is not None


def test_wrong_key_is_a_bad_tag() -> None:
    sealed = Sealer(ring(key=OTHER_KEY), 1, 1).seal(b"hello")
    opener = Opener(ring(), ME)
    assert opener.open(sealed) is None
    assert opener.drops == {"bad_tag": 1}


def test_other_cipher_same_key_is_a_bad_tag() -> None:
    sealed = Sealer(ring("aes-256-gcm"), 1, 1).seal(b"hello")
    opener = Opener(ring("chacha20-poly1305"), ME)
    assert opener.open(sealed) is None
    assert opener.drops == {"bad_tag": 1}


def test_foreign_cluster_is_recognised() -> None:
    sealed = Sealer(ring(name="beta"), 1, 1).seal(b"hello")
    opener = Opener(ring(name="alpha"), ME)
    assert opener.open(sealed) is None
    assert opener.drops == {"foreign_cluster": 1}


def test_cluster_name_is_bound_into_the_key_not_only_the_tag() -> None:
    """A forger who copies alpha's tag into beta's datagram still fails the tag check."""
    sealed = bytearray(Sealer(ring(name="beta"), 1, 1).seal(b"hello"))
    sealed[2:4] = ring(name="alpha").tag.to_bytes(2, "big")
    opener = Opener(ring(name="alpha"), ME)
    assert opener.open(bytes(sealed)) is None
    assert opener.drops == {"bad_tag": 1}


def test_old_or_future_wire_version_is_dropped() -> None:
    sealed = bytearray(Sealer(ring(), 1, 1).seal(b"hello"))
    opener = Opener(ring(), ME)
    for version in (0, 2, 255):
        sealed[0] = version
        assert opener.open(bytes(sealed)) is None
    assert opener.open(b"\x02") is None  # a short datagram of another version
    assert opener.drops == {"bad_version": 4}


def test_unknown_key_slot_and_unknown_sender() -> None:
    keys = ring()
    other = Keyring("chacha20-poly1305", "alpha", (*NODES, 9))
    other.install(5, KEY)
    other.install(0, KEY)
    opener = Opener(keys, ME)
    assert opener.open(Sealer(other, 1, 1, key_id=5).seal(b"x")) is None
    assert opener.open(Sealer(other, 9, 1, key_id=0).seal(b"x")) is None
    assert opener.drops == {"unknown_key": 1, "unknown_sender": 1}


def test_header_sender_must_match_the_transport_source() -> None:
    keys = ring()
    sealed = Sealer(keys, 1, 1).seal(b"x")
    opener = Opener(keys, ME)
    assert opener.open(sealed, source=2) is None
    assert opener.drops == {"wrong_sender": 1}
    assert opener.open(sealed, source=1) == b"x"


def test_a_unicast_opens_only_at_its_destination() -> None:
    keys = ring()
    sealer = Sealer(keys, 1, 1)
    for_two = sealer.seal(b"token for 2", dest=2)
    for_me = sealer.seal(b"token for 3", dest=ME)
    opener = Opener(keys, ME)
    assert opener.open(for_two) is None
    assert opener.drops == {"wrong_destination": 1}
    assert opener.open(for_me) == b"token for 3"
    assert Opener(keys, 2).open(for_two) == b"token for 2"


def test_per_sender_keys_differ() -> None:
    """Two senders may use the same (boot, counter): their keys differ, so nonces never collide."""
    a = datagram_aead(KEY, "alpha", "chacha20-poly1305", 1)
    b = datagram_aead(KEY, "alpha", "chacha20-poly1305", 2)
    nonce = bytes(12)
    assert a.encrypt(nonce, b"same", b"") != b.encrypt(nonce, b"same", b"")


def test_two_key_slots_accept_both_keys() -> None:
    keys = ring()
    keys.install(1, OTHER_KEY)
    opener = Opener(keys, ME)
    under_old = Sealer(keys, 3, 1, key_id=0)
    assert opener.open(Sealer(keys, 1, 1, key_id=0).seal(b"old")) == b"old"
    assert opener.open(Sealer(keys, 2, 1, key_id=1).seal(b"new")) == b"new"
    with pytest.raises(ValueError, match="at most 2"):
        keys.install(2, KEY)
    keys.remove(0)
    keys.install(2, KEY)
    assert opener.open(under_old.seal(b"retired")) is None
    assert opener.drops == {"unknown_key": 1}


def test_switching_keys_keeps_counting_so_the_window_accepts_it() -> None:
    keys = ring()
    keys.install(1, OTHER_KEY)
    sealer = Sealer(keys, 1, boot_id=4, key_id=0)
    opener = Opener(keys, ME)
    assert opener.open(sealer.seal(b"under 0")) == b"under 0"
    sealer.use_key(1)
    switched = sealer.seal(b"under 1")
    assert switched[1] == 1  # the key id in the header
    assert opener.open(switched) == b"under 1"
    assert opener.open(switched) is None
    assert opener.drops == {"replay": 1}
    with pytest.raises(ValueError, match="no key"):
        sealer.use_key(7)
    assert sealer.key_id == 1


def test_removed_slot_is_unknown() -> None:
    keys = ring()
    sealed = Sealer(keys, 1, 1).seal(b"x")
    keys.remove(0)
    opener = Opener(keys, ME)
    assert opener.open(sealed) is None
    assert opener.drops == {"unknown_key": 1}


def test_replay_of_a_recent_and_of_an_old_datagram() -> None:
    keys = ring()
    sealer = Sealer(keys, 1, boot_id=1)
    first = sealer.seal(b"first")
    opener = Opener(keys, ME)
    assert opener.open(first) == b"first"
    recent = sealer.seal(b"recent")
    assert opener.open(recent) == b"recent"
    assert opener.open(recent) is None
    assert opener.drops == {"replay": 1}
    for _ in range(REPLAY_WINDOW + 5):
        assert opener.open(sealer.seal(b"more")) is not None
    assert opener.open(first) is None
    assert opener.drops == {"replay": 1, "too_old": 1}


def test_reordering_within_the_window_is_accepted_once() -> None:
    keys = ring()
    sealer = Sealer(keys, 1, boot_id=1)
    sealed = [sealer.seal(i.to_bytes(2, "big")) for i in range(REPLAY_WINDOW)]
    opener = Opener(keys, ME)
    # newest first: every other one arrives behind it, still within the window
    opened = [opener.open(d) for d in reversed(sealed)]
    assert opened == [i.to_bytes(2, "big") for i in reversed(range(REPLAY_WINDOW))]
    assert all(opener.open(d) is None for d in sealed)
    assert opener.drops == {"replay": REPLAY_WINDOW}


def test_a_jump_beyond_the_window_leaves_older_ones_too_old() -> None:
    keys = ring()
    sealer = Sealer(keys, 1, boot_id=1)
    early = sealer.seal(b"early")
    sealer.counter = 5000
    opener = Opener(keys, ME)
    assert opener.open(sealer.seal(b"late")) == b"late"
    assert opener.open(early) is None
    assert opener.drops == {"too_old": 1}


def test_a_new_boot_replaces_the_old_and_the_old_is_refused() -> None:
    keys = ring()
    old = Sealer(keys, 1, boot_id=7)
    old_datagrams = [old.seal(b"old") for _ in range(3)]
    opener = Opener(keys, ME)
    assert opener.open(old_datagrams[0]) == b"old"
    new = Sealer(keys, 1, boot_id=8)  # the node restarted: counter starts again at 0
    assert opener.open(new.seal(b"new")) == b"new"
    assert opener.windows.boot_of(1) == 8
    assert opener.open(old_datagrams[1]) is None
    assert opener.drops == {"stale_boot": 1}
    # other senders are untouched
    assert opener.open(Sealer(keys, 2, boot_id=1).seal(b"two")) == b"two"


def test_cipher_none_is_the_identity() -> None:
    keys = Keyring("none", "alpha", NODES)
    sealer = Sealer(keys, 1, 1)
    assert sealer.overhead == 0
    assert sealer.seal(b"plain") == b"plain"
    assert Opener(keys, ME).open(b"plain") == b"plain"
    with pytest.raises(ValueError, match="no key"):
        keys.install(0, KEY)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Keyring("rot13", "a", NODES), "unknown cipher"),
        (lambda: Keyring("aes-256-gcm", "a", [0]), "sender ids"),
        (lambda: ring(key=b"short"), "32..4096"),
        (lambda: ring(key=bytes(4097)), "32..4096"),
        (lambda: Sealer(ring(), 1, -1), "boot id"),
        (lambda: Sealer(ring(), 1, 1 << 32), "boot id"),
        (lambda: Sealer(ring(), 4, 1), "no key"),
        (lambda: Sealer(ring(), 1, 1, key_id=1), "no key"),
        (lambda: ring().install(256, KEY), "key id"),
    ],
)
def test_local_misuse_is_refused(make: object, match: str) -> None:
    assert callable(make)
    with pytest.raises(ValueError, match=match):
        make()
