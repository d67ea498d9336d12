"""Properties of the opener: no input from the network makes it raise or accept a forgery."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from evs.crypto.frame import OVERHEAD, Keyring, Opener, Sealer
from evs.crypto.replay import ReplayWindows

KEY = bytes(range(64))


def _keys(cipher: str) -> Keyring:
    keys = Keyring(cipher, "alpha", (1, 2, 3))
    keys.install(0, KEY)
    return keys


KEYS = {c: _keys(c) for c in ("chacha20-poly1305", "aes-256-gcm")}


@settings(max_examples=500)
@given(
    cipher=st.sampled_from(sorted(KEYS)),
    data=st.binary(max_size=200),
    source=st.none() | st.integers(0, 2**32 - 1),
)
def test_open_never_raises_on_arbitrary_bytes(cipher: str, data: bytes, source: int | None) -> None:
    opener = Opener(KEYS[cipher], 3)
    assert opener.open(data, source) is None  # no forgery of 128-bit tags by chance
    assert sum(opener.drops.values()) == 1


@settings(max_examples=300)
@given(
    cipher=st.sampled_from(sorted(KEYS)),
    header=st.tuples(
        st.just(1),
        st.integers(0, 255),
        st.integers(0, 65535),
        st.integers(0, 5),
        st.integers(0, 5),
        st.integers(0, 2**32 - 1),
        st.integers(0, 2**64 - 1),
    ),
    body=st.binary(min_size=16, max_size=100),
)
def test_open_never_raises_on_well_formed_headers(
    cipher: str, header: tuple[int, int, int, int, int, int, int], body: bytes
) -> None:
    """Headers that pass the cheap checks reach the replay window and the AEAD, still safely."""
    keys = KEYS[cipher]
    opener = Opener(keys, 3)
    version, key_id, _, sender, dest, boot, counter = header
    data = struct.pack("!BBHIIIQ", version, key_id, keys.tag, sender, dest, boot, counter) + body
    assert opener.open(data) is None
    assert sum(opener.drops.values()) == 1


@settings(max_examples=200)
@given(
    payload=st.binary(max_size=300),
    boot=st.integers(0, 2**32 - 1),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=4),
)
def test_any_change_to_a_sealed_datagram_is_refused(
    payload: bytes, boot: int, flips: list[tuple[int, int]]
) -> None:
    keys = KEYS["chacha20-poly1305"]
    sealed = bytearray(Sealer(keys, 2, boot).seal(payload))
    assert len(sealed) == len(payload) + OVERHEAD
    for offset, mask in flips:
        sealed[offset % len(sealed)] ^= mask
    opener = Opener(keys, 3)
    changed = bytes(sealed) != Sealer(keys, 2, boot).seal(payload)
    assert (opener.open(bytes(sealed)) is None) == changed


@settings(max_examples=200)
@given(order=st.lists(st.integers(0, 149), max_size=400))
def test_reordered_and_duplicated_stream_is_accepted_exactly_once(order: list[int]) -> None:
    """Within the window, any arrival order and any duplication: each datagram once."""
    keys = KEYS["aes-256-gcm"]
    sealer = Sealer(keys, 1, 0)
    sealed = [sealer.seal(i.to_bytes(2, "big")) for i in range(150)]
    opener = Opener(keys, 3)
    accepted = [opener.open(sealed[i]) for i in order]
    payloads = [p for p in accepted if p is not None]
    assert sorted(payloads) == sorted({i.to_bytes(2, "big") for i in order})
    assert opener.drops["replay"] == len(order) - len(payloads)


@settings(max_examples=300)
@given(
    width=st.integers(1, 40),
    arrivals=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 100)), max_size=200),
)
def test_replay_window_matches_a_plain_model(width: int, arrivals: list[tuple[int, int]]) -> None:
    """The bitmap window against a set of everything seen: the same verdict every time."""
    windows = ReplayWindows(width)
    boot: int | None = None
    top = -1
    seen: set[tuple[int, int]] = set()
    for boot_id, counter in arrivals:
        if boot is not None and boot_id < boot:
            expect: str | None = "stale_boot"
        elif boot is None or boot_id > boot or counter > top:
            expect = None
        elif top - counter >= width:
            expect = "too_old"
        else:
            expect = "replay" if (boot_id, counter) in seen else None
        assert windows.check(5, boot_id, counter) == expect
        if expect is None:
            windows.accept(5, boot_id, counter)
            if boot is None or boot_id > boot:
                boot, top = boot_id, counter
            top = max(top, counter)
            seen.add((boot_id, counter))
