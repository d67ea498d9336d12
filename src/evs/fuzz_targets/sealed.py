"""Target ``open``: sealed datagrams through ``Opener.open``, then the totem decoder.

Theory of operation: the corpus is real traffic. ``evs.sim.fuzz.harvest`` runs small
simulated clusters and keeps their datagrams of every type (tokens, mcasts, encapsulated
mcasts, JOINs, commit tokens, MERGE_DETECT); a keyring of three nodes (1, 2, 3, cipher
chacha20-poly1305 or, for odd seeds, aes-256-gcm, a key drawn from the seed) seals them.

Each case builds a fresh ``Opener`` for one node, sometimes primes its replay window with a
few authentic datagrams of the sender, then opens one fuzzed datagram (a unicast or a
broadcast, with or without the transport's source address; half of them through a
``SealedWire``'s ``on_datagrams``, the executive's own path, half to ``open`` directly),
made one of three ways:

* ``raw``: a sealed datagram with its bytes mutated after sealing (``engine.mutate``: bit
  flips, header fields, truncation, extension, splices with other sealed datagrams). The
  oracle is the AEAD's promise: unless the bytes came out unchanged, ``open`` must refuse it.
* ``header``: a header built field by field (version, key id, cluster tag, sender,
  destination, boot id, counter set to neighbours and extremes) and then sealed with the
  sender's real key, so every refusal reason and the replay window see authentic input.
  If it opens, the payload must be the one sealed.
* ``plain``: the *plaintext* mutated (the totem datagram, with ``engine.mutate``) and then
  sealed properly, so the decoder behind the seal gets hostile authenticated input. It must
  open, and give back exactly what was sealed.

Whatever opened goes where the wire hands it: ``evs.totem.codec.decode`` (``DecodeError``
is the only allowed exception), and a decoded plain mcast's payload through a fresh
group-layer ``Unpacker`` (which must never raise). ``open`` itself must never raise.
A case is one datagram plus the 0 to 3 that primed the window: all of them count as units.
"""

from __future__ import annotations

import logging
import struct
from collections import Counter
from random import Random

from evs.crypto.frame import HEADER_SIZE, Keyring, Opener, Sealer
from evs.crypto.names import WIRE_VERSION
from evs.daemon.wire import SealedWire
from evs.fuzz_targets.engine import Case, Escaped, mutate
from evs.sim.fuzz import harvest
from evs.totem.codec import decode
from evs.totem.drops import DecodeError
from evs.totem.groups import Unpacker
from evs.totem.messages import Mcast

__all__ = ["NODES", "SealedTarget", "behind_the_seal"]

NODES = (1, 2, 3)
_HEADER = struct.Struct("!BBHIIIQ")
_NONCE_AT = HEADER_SIZE - 12
_KEY_ID = 0


class _Corpus:
    def __init__(self, seed: int) -> None:
        corpus = harvest(seed)
        self.cluster_id = corpus.cluster_id
        self.plain: list[bytes] = [
            p for kind in sorted(corpus.packets) for p in corpus.packets[kind]
        ]
        rng = Random(f"open-corpus/{seed}")
        cipher = "aes-256-gcm" if seed % 2 else "chacha20-poly1305"
        self.keyring = Keyring(cipher, "fuzz", NODES)
        self.keyring.install(_KEY_ID, rng.randbytes(32))
        self.aeads = self.keyring.slots[_KEY_ID]
        self.tag = self.keyring.tag
        # Sealed copies, for splices.
        self.sealed = [
            self.seal(p, rng.choice(NODES), 0, 7, i) for i, p in enumerate(self.plain[:64])
        ]
        self.sealed_set = frozenset(self.sealed)

    def seal_header(self, header: bytes, payload: bytes, sender: int) -> bytes:
        return header + self.aeads[sender].encrypt(header[_NONCE_AT:], payload, header)

    def seal(self, payload: bytes, sender: int, dest: int, boot: int, counter: int) -> bytes:
        header = _HEADER.pack(WIRE_VERSION, _KEY_ID, self.tag, sender, dest, boot, counter)
        return self.seal_header(header, payload, sender)


def _near(rng: Random, value: int, top: int) -> int:
    pick = rng.randrange(6)
    if pick == 0:
        return 0
    if pick == 1:
        return top
    if pick == 2:
        return rng.randrange(top + 1)
    return max(0, min(top, value + rng.randint(-3, 3)))


class SealedTarget:
    name = "open"
    unit = "datagrams"

    def prepare(self, seed: int) -> Case:
        corpus = _Corpus(seed)
        return lambda rng, seen: _case(corpus, rng, seen)


def _case(c: _Corpus, rng: Random, seen: Counter[str]) -> int:
    how = rng.randrange(3)
    me = rng.choice(NODES)
    sender = rng.choice([n for n in NODES if n != me])
    boot = rng.choice((0, 1, 5, 1 << 31, (1 << 32) - 1))
    counter = rng.choice((0, 1, 100, 1 << 20, (1 << 64) - 2, rng.randrange(1 << 64)))
    dest = rng.choice((0, 0, me))
    if how == 2:  # hostile plaintext: make it open, so the decoder sees it
        opener = Opener(c.keyring, me)
        source = rng.choice((sender, None))
        primes = [(boot, counter - k) for k in range(1, rng.randrange(4) + 1) if counter >= k]
    else:
        opener = Opener(c.keyring, me, window=rng.choice((1, 64, 1024)))
        source = rng.choice((sender, sender, None, me))
        primes = [
            (_near(rng, boot, (1 << 32) - 1), _near(rng, counter, (1 << 64) - 1))
            for _ in range(rng.randrange(4))
        ]
    units = 0
    for prime_boot, prime_counter in primes:  # the replay window primed with authentic datagrams
        prime = c.seal(rng.choice(c.plain), sender, 0, prime_boot, prime_counter)
        units += 1
        if opener.open(prime, rng.choice((sender, None))) is None and not opener.drops:
            raise Escaped("a refusal was not counted")
    plain = rng.choice(c.plain)
    expect: bytes | None = None
    if how == 0:  # raw: mutated after sealing
        sealed = c.seal(plain, sender, dest, boot, counter)
        datagram = mutate(sealed, rng, c.sealed)
        # A splice may give back another authentic datagram whole (head cut at 0).
        forged = datagram != sealed and datagram not in c.sealed_set
    elif how == 1:  # header fields rewritten, then sealed with the sender's key
        fields = [WIRE_VERSION, _KEY_ID, c.tag, sender, dest, boot, counter]
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(fields))
            fields[i] = _near(rng, fields[i], (1, 255, 65535, 0xFFFFFFFF, 0xFFFFFFFF,
                                               0xFFFFFFFF, (1 << 64) - 1)[i])  # fmt: skip
        datagram = c.seal_header(_HEADER.pack(*fields), plain, sender)
        expect, forged = plain, False
    else:  # plain: hostile plaintext under a valid seal
        expect = mutate(plain, rng, c.plain)
        datagram = c.seal(expect, sender, dest, boot, counter)
        forged = False
    before = sum(opener.drops.values())
    if rng.random() < 0.5:
        payload = opener.open(datagram, source)
    else:  # through the executive's wire, as the transport hands it a batch
        got: list[tuple[int, bytes]] = []
        wire = SealedWire(Sealer(c.keyring, me, 1), opener, got.extend, clock=lambda: 0.0)
        log = logging.getLogger("evs.daemon")
        was_disabled, log.disabled = log.disabled, True  # it warns of every refusal
        try:
            wire.on_datagrams([(sender if source is None else source, datagram)])
        finally:
            log.disabled = was_disabled
        if len(got) > 1:
            raise Escaped(f"the wire delivered {len(got)} payloads of one datagram")
        payload = got[0][1] if got else None
    units += 1
    seen[("raw", "header", "plain")[how]] += 1
    if payload is None:
        seen["refused"] += 1
        if sum(opener.drops.values()) != before + 1:
            raise Escaped("a refusal was not counted exactly once")
        return units
    if forged:
        raise Escaped(f"a datagram altered after sealing was opened: {datagram.hex()}")
    if expect is not None and payload != expect:
        raise Escaped("open returned other bytes than were sealed")
    seen["opened"] += 1
    behind_the_seal(payload, c.cluster_id, seen)
    return units


def behind_the_seal(payload: bytes, cluster_id: int, seen: Counter[str]) -> None:
    """What an opened payload goes through: the totem decoder, then the group layer."""
    try:
        msg = decode(payload, cluster_id)
    except DecodeError as exc:
        seen["decode error " + exc.reason.value] += 1
        return
    seen["decoded " + type(msg).__name__] += 1
    if isinstance(msg, Mcast) and msg.inner is None:
        unpacker = Unpacker()
        messages = unpacker.feed(msg.system_from, msg.payload, msg.guarantee)
        seen["group messages"] += len(messages)
        seen.update("group drop " + k for k in unpacker.drops.elements())
