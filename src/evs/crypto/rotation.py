"""Online key rotation: the per-node state machine and its two ring messages (pure, no I/O).

Theory of operation. A node's keys move through three states for a rotation from key id k to
n = k + 1 (mod 256):

    IDLE      seal with k, open k          (before, and again after, with n in place of k)
    INSTALLED seal with k, open k and n
    SWITCHED  seal with n, open k and n

and then back to IDLE with n alone (k *retired*). Two nodes can talk both ways exactly when
each opens what the other seals, so IDLE(k)/INSTALLED/SWITCHED/IDLE(n) are pairwise compatible
only with their neighbours: a node that seals with n before some node can open n, or retires k
while some node still seals with k, cuts that node off. The rule that prevents both is
knowledge, not timing:

- a node switches to sealing with n only once it *knows* every required node has installed n;
- a node retires k only once it knows every required node has switched.

"Required" is fixed by the rotation's OFFER: by default every node of the configuration file
(so a node that is down stalls the rotation, harmlessly, until it comes back), or with
``members_only`` the members of the ring the rotation started in. The operator may *narrow* a
rotation in progress (another OFFER of the same key with fewer required nodes); a node's
required set only ever shrinks, and every decision is still "all of my required nodes", so
nodes that stay required keep the guarantee; the ones dropped need their key files copied.
Knowledge is two grow-only sets per node, ``installed`` and ``switched`` (switched implies
installed). They only ever grow, every node that joins them is truly in that state (a node
adds itself after the fact, and a switch or an install is never undone: both are persisted),
so merging two nodes' sets by union
is always sound, whatever partitions, merges or restarts happened in between. That makes the
protocol correct under partitions without any assumption about which configuration a message
is delivered in: the worst a partition can do is delay knowledge.

The ring carries two kinds of message on a reserved internal group (``evs.daemon.rekey``):

- OFFER(n, required, key): the new key, encrypted like every datagram under the keys in use.
  The operator's command makes the first one; a node that holds a rotation in progress sends
  it again after a regular configuration change when some member is not known to have the key
  and no lower-numbered member known to have it would (the lowest known holder always sends,
  so a member that lacks the key always gets it). A node installs an OFFER when n is one past
  its key and it has no other rotation in progress; a second, different OFFER for the same id
  (two operators at once) is refused the same way on every node, because the ring orders both.
- ACK(n, fingerprint, phase, installed, switched): what the sender knows. Sent after
  installing, after switching, and once after every regular configuration change by a node
  with a rotation in progress. A node that has finished (retired k: phase DONE) answers an
  OFFER or ACK of the key it now uses once per configuration with phase DONE and the nodes it
  knew to have switched when it retired (persisted with the key, so a restart keeps them):
  facts like any other, merged the same way.

So within one ring, a rotation takes the OFFER and two rounds of ACKs, with no datagram
refused (every receiver opens both keys throughout), and no configuration change. A node that
was partitioned away, down, or restarted picks the rotation up when it rejoins: a node that has
the key completes it on its own or with whoever it meets; a node that never got the key is
given it by the re-sent OFFER as long as some node still has the rotation in progress. The only
node that cannot be brought along is one that missed the whole rotation while ``members_only``
or a narrowing left it out (or whose key files were lost): every other node has retired k by
then, so its datagrams are refused as ``unknown_key`` on both sides. The operator copies the
key files from a healthy node (docs/daemon.md, "Key rotation").

The fingerprint (8 bytes of a domain-separated SHA-256 of the key) names a key in ACKs and in
``evs status`` without revealing it.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Protocol

from evs.crypto.names import KEY_BYTES_MAX, KEY_BYTES_MIN

__all__ = [
    "Ack",
    "KeyHost",
    "Offer",
    "Phase",
    "Rotation",
    "RotationError",
    "decode_message",
    "encode_message",
    "fingerprint",
]

#: Most node ids one message may list (the configuration file's limit is far lower).
NODES_MAX: Final = 4096
_OFFER: Final = 1
_ACK: Final = 2
_HEAD: Final = struct.Struct("!BB8s")
_COUNT: Final = struct.Struct("!H")
_FP_BYTES: Final = 8


class Phase(enum.IntEnum):
    """Where a node is in a rotation (the value travels in ACKs)."""

    IDLE = 0
    INSTALLED = 1
    SWITCHED = 2
    #: Not a state of a rotation in progress: "I retired the old key" (ACKs only).
    DONE = 3


def fingerprint(key: bytes) -> bytes:
    """A public 8-byte name of ``key`` (no use to an attacker: the key is 32+ random bytes)."""
    return hashlib.sha256(b"evs key fingerprint\0" + key).digest()[:_FP_BYTES]


@dataclass(frozen=True, slots=True)
class Offer:
    key_id: int
    required: tuple[int, ...]
    key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Ack:
    key_id: int
    fingerprint: bytes
    phase: Phase
    installed: frozenset[int]
    switched: frozenset[int]


def _nodes(nodes: Iterable[int]) -> bytes:
    ids = sorted(set(nodes))
    return _COUNT.pack(len(ids)) + b"".join(i.to_bytes(4, "big") for i in ids)


def encode_message(msg: Offer | Ack) -> bytes:
    if isinstance(msg, Offer):
        head = _HEAD.pack(_OFFER, msg.key_id, fingerprint(msg.key))
        return head + _nodes(msg.required) + msg.key
    head = _HEAD.pack(_ACK, msg.key_id, msg.fingerprint)
    return head + bytes([msg.phase]) + _nodes(msg.installed) + _nodes(msg.switched)


def _take_nodes(data: bytes, pos: int) -> tuple[frozenset[int], int] | None:
    if pos + 2 > len(data):
        return None
    (count,) = _COUNT.unpack_from(data, pos)
    pos += 2
    end = pos + 4 * count
    if count > NODES_MAX or end > len(data):
        return None
    ids = frozenset(int.from_bytes(data[i : i + 4], "big") for i in range(pos, end, 4))
    if 0 in ids:
        return None
    return ids, end


def decode_message(data: bytes) -> Offer | Ack | None:
    """The message in ``data``, or None if it is not a well-formed one (never raises)."""
    if len(data) < _HEAD.size:
        return None
    kind, key_id, fp = _HEAD.unpack_from(data)
    pos = _HEAD.size
    if kind == _OFFER:
        got = _take_nodes(data, pos)
        if got is None:
            return None
        required, pos = got
        key = bytes(data[pos:])
        if not required or not KEY_BYTES_MIN <= len(key) <= KEY_BYTES_MAX:
            return None
        if not hmac.compare_digest(fingerprint(key), fp):
            return None
        return Offer(key_id, tuple(sorted(required)), key)
    if kind == _ACK:
        if pos >= len(data) or data[pos] not in (1, 2, 3):
            return None
        phase = Phase(data[pos])
        got = _take_nodes(data, pos + 1)
        if got is None:
            return None
        installed, pos = got
        got = _take_nodes(data, pos)
        if got is None or got[1] != len(data):
            return None
        return Ack(key_id, fp, phase, installed, got[0])
    return None


class KeyHost(Protocol):
    """What a rotation does to the world: the wire's keys, the key files and the ring."""

    def install(self, key_id: int, key: bytes, required: tuple[int, ...]) -> None:
        """Open ``key_id`` too, and persist the key as the next one (raise OSError if not)."""

    def switch(self, key_id: int) -> None:
        """Seal with ``key_id`` from now on, and persist that (raise OSError if not)."""

    def narrow(self, key_id: int, required: tuple[int, ...]) -> None:
        """Persist a smaller required set for the pending key (raise OSError if not)."""

    def retire(self, old_id: int, new_id: int, switched: frozenset[int]) -> None:
        """Stop opening ``old_id``; persist ``new_id`` as the one key, with the nodes known to
        have switched to it (logs, never raises)."""

    def send(self, data: bytes, *, safe: bool) -> None:
        """Multicast ``data`` on the internal group (never lost: the host retries)."""

    def note(self, level: str, text: str) -> None:
        """A log line (``info`` or ``warning``) and, for warnings, a counter."""


class RotationError(Exception):
    """A rotation cannot start here and now; the text says why, for the operator."""


@dataclass(slots=True)
class _Pending:
    key_id: int
    key: bytes = field(repr=False)
    fp: bytes
    required: frozenset[int]
    phase: Phase
    installed: set[int] = field(default_factory=set)
    switched: set[int] = field(default_factory=set)


class Rotation:
    """One node's side of key rotation (see the module docstring); drive it with the
    ``on_*`` methods in the order the ring delivers, and ``start`` for the operator."""

    def __init__(
        self,
        host: KeyHost,
        me: int,
        key_id: int,
        key_fp: bytes,
        *,
        pending: tuple[int, bytes, Phase, Iterable[int]] | None = None,
        switched: Iterable[int] = (),
    ) -> None:
        """``pending``: (key id, key, INSTALLED or SWITCHED, required) of a rotation that was
        in progress when this node stopped; ``switched``: the nodes known to have switched to
        the key in use when it was rotated in (both from the key files)."""
        self.host = host
        self.me = me
        self.key_id = key_id
        self.key_fp = key_fp
        #: Nodes known to seal with the key in use (what a DONE answer tells).
        self.done_switched = frozenset(switched) | {me}
        self.members: frozenset[int] = frozenset({me})
        self.pending: _Pending | None = None
        #: Fingerprint of the key this node offered and has not yet seen delivered.
        self.proposed: bytes | None = None
        #: Why the last rotation this node proposed was refused (for ``evs rekey``).
        self.refused: str | None = None
        self._answered = False  # a DONE answer was sent in this configuration
        if pending is not None:
            key_id_, key, phase, required = pending
            self.pending = _Pending(
                key_id_, key, fingerprint(key), frozenset(required), phase, {me}
            )
            if phase is Phase.SWITCHED:
                self.pending.switched.add(me)

    # ------------------------------------------------------------------ operator

    def start(self, key: bytes, required: Iterable[int]) -> tuple[int, bytes]:
        """Offer ``key`` as the next one; (its key id, fingerprint). Raises RotationError."""
        if self.pending is not None:
            p = self.pending
            waiting = sorted(
                p.required - (p.installed if p.phase is Phase.INSTALLED else p.switched)
            )
            raise RotationError(
                f"a key rotation is in progress (key id {p.key_id}, {p.phase.name.lower()}, "
                f"waiting for nodes {waiting}): wait for it to finish, or narrow it to the "
                "current members (evs rekey --members-only, without a key)"
            )
        if self.proposed is not None:
            raise RotationError("a key rotation was offered here and is not yet delivered")
        if not KEY_BYTES_MIN <= len(key) <= KEY_BYTES_MAX:
            raise RotationError(f"a key must be {KEY_BYTES_MIN}..{KEY_BYTES_MAX} bytes")
        fp = fingerprint(key)
        if hmac.compare_digest(fp, self.key_fp):
            raise RotationError("the new key is the key in use")
        req = frozenset(required)
        if self.me not in req:
            raise RotationError(f"the required nodes {sorted(req)} must include this node")
        key_id = (self.key_id + 1) % 256
        self.proposed = fp
        self.refused = None
        self.host.send(encode_message(Offer(key_id, tuple(sorted(req)), key)), safe=True)
        return key_id, fp

    def narrow(self, required: Iterable[int]) -> tuple[int, bytes]:
        """Stop waiting for the nodes of a rotation in progress that are not in ``required``
        (the operator gave up on them); (key id, fingerprint). Raises RotationError."""
        p = self.pending
        if p is None:
            raise RotationError("no key rotation is in progress: nothing to narrow")
        req = p.required & frozenset(required)
        if self.me not in req:
            raise RotationError(f"the required nodes {sorted(req)} must include this node")
        if req == p.required:
            raise RotationError(
                f"the rotation to key id {p.key_id} requires only {sorted(req)} already: "
                "it waits for one of them"
            )
        self.host.send(encode_message(Offer(p.key_id, tuple(sorted(req)), p.key)), safe=True)
        return p.key_id, p.fp

    # ------------------------------------------------------------------ ring input

    def on_regular_configuration(self, members: Iterable[int]) -> None:
        """A new regular configuration: re-announce a rotation in progress."""
        self.members = frozenset(members)
        self._answered = False
        p = self.pending
        if p is None:
            return
        self._ack(p)
        holders = p.installed & self.members
        if not self.members <= p.installed and self.me == min(holders | {self.me}):
            self.host.send(
                encode_message(Offer(p.key_id, tuple(sorted(p.required)), p.key)), safe=True
            )

    def on_message(self, sender: int, data: bytes) -> None:
        """An internal message delivered by the ring (from an authenticated member)."""
        msg = decode_message(data)
        if msg is None:
            self.host.note("warning", f"malformed key rotation message from node {sender}")
        elif isinstance(msg, Offer):
            self._offer(sender, msg)
        else:
            self._ack_from(sender, msg)

    def _offer(self, sender: int, msg: Offer) -> None:
        fp = fingerprint(msg.key)
        own = sender == self.me and self.proposed is not None and fp == self.proposed
        if own:
            self.proposed = None
        p = self.pending
        if p is not None and p.key_id == msg.key_id and p.fp == fp:
            # a repeat of the rotation in progress (the ACKs say what we know), or the operator
            # narrowing it: required nodes only ever shrink
            narrowed = p.required & frozenset(msg.required)
            if narrowed != p.required:
                self._narrow(p, narrowed, sender)
            return
        if p is None and msg.key_id == self.key_id and fp == self.key_fp:
            self._answer_done()
            return
        why = None
        if p is not None:
            why = f"key id {p.key_id} is being rotated in already"
        elif msg.key_id != (self.key_id + 1) % 256:
            why = f"it is not the next key id after {self.key_id}"
        if why is None:
            try:
                self.host.install(msg.key_id, msg.key, msg.required)
            except (OSError, ValueError) as exc:
                why = f"it cannot be installed here: {exc}"
        if why is not None:
            text = f"refused key id {msg.key_id} offered by node {sender}: {why}"
            self.host.note("warning", text)
            if own:
                self.refused = text
            return
        p = _Pending(msg.key_id, msg.key, fp, frozenset(msg.required), Phase.INSTALLED, {self.me})
        self.pending = p
        self.host.note(
            "info",
            f"key id {msg.key_id} (offered by node {sender}) installed; "
            f"switching once nodes {sorted(p.required)} have it",
        )
        self._ack(p)
        self._progress(p)

    def _narrow(self, p: _Pending, required: frozenset[int], sender: int) -> None:
        try:
            self.host.narrow(p.key_id, tuple(sorted(required)))
        except (OSError, ValueError) as exc:
            self.host.note("warning", f"cannot persist the narrowed rotation: {exc}")
        left_out = sorted(p.required - required)
        p.required = required
        self.host.note(
            "info",
            f"key rotation to key id {p.key_id} narrowed by node {sender}: nodes {left_out} "
            "are no longer waited for (they will need the key files copied)",
        )
        self._progress(p)

    def _ack_from(self, sender: int, msg: Ack) -> None:
        p = self.pending
        if p is None:
            mine = msg.key_id == self.key_id and msg.fingerprint == self.key_fp
            if mine and msg.phase is not Phase.DONE:
                self._answer_done()
            return  # a rotation this node has not got yet: the OFFER will come
        if msg.key_id != p.key_id or msg.fingerprint != p.fp:
            self.host.note("warning", f"node {sender} acknowledged a key this node does not have")
            return
        p.installed |= msg.installed | msg.switched | {sender}
        p.switched |= msg.switched
        if msg.phase >= Phase.SWITCHED:
            p.switched.add(sender)
        self._progress(p)

    # ------------------------------------------------------------------ transitions

    def _progress(self, p: _Pending) -> None:
        if p.phase is Phase.INSTALLED and p.required <= p.installed:
            try:
                self.host.switch(p.key_id)
            except (OSError, ValueError) as exc:
                self.host.note("warning", f"cannot switch to key id {p.key_id}: {exc}")
                return
            p.phase = Phase.SWITCHED
            p.switched.add(self.me)
            self.host.note("info", f"sealing with key id {p.key_id}")
            self._ack(p)
        if p.phase is Phase.SWITCHED and p.required <= p.switched:
            old = self.key_id
            self.host.retire(old, p.key_id, frozenset(p.switched))
            self.key_id, self.key_fp = p.key_id, p.fp
            self.done_switched = frozenset(p.switched)
            self.pending = None
            self.host.note("info", f"key id {old} retired; key id {p.key_id} is the one key")

    def _ack(self, p: _Pending) -> None:
        msg = Ack(p.key_id, p.fp, p.phase, frozenset(p.installed), frozenset(p.switched))
        self.host.send(encode_message(msg), safe=False)

    def _answer_done(self) -> None:
        if self._answered:
            return
        self._answered = True
        done = self.done_switched
        msg = Ack(self.key_id, self.key_fp, Phase.DONE, done, done)
        self.host.send(encode_message(msg), safe=False)

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, object]:
        p = self.pending
        out: dict[str, object] = {"phase": "idle" if p is None else p.phase.name.lower()}
        if p is not None:
            out.update(
                key_id=p.key_id,
                fingerprint=p.fp.hex(),
                required=sorted(p.required),
                installed=sorted(p.installed),
                switched=sorted(p.switched),
            )
        if self.proposed is not None:
            out["proposed"] = self.proposed.hex()
        if self.refused is not None:
            out["refused"] = self.refused
        return out
