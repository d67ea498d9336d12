"""Key rotation in the executive: the pure ``Rotation`` bound to the wire, key files and ring.

Theory of operation: ``KeyManager`` is the ``KeyHost`` of one executive's ``Rotation`` (see
``evs.crypto.rotation`` for the protocol and why it is safe under partitions). It

- hears the ring through the service's ``internal`` hook: messages whose service header has the
  ``FLAG_INTERNAL`` flag (only an executive writes it; a client's message always has flags 0)
  and every configuration change, in delivery order, so no client ever sees a key message
  whichever groups it joined;
- multicasts on the reserved group ``INTERNAL_GROUP`` through the core like any message, so the
  key travels sealed under the keys in use; an OFFER goes SAFE, an ACK AGREED. A message the
  core's send queue has no room for waits in ``outbox`` and is retried after every step
  (``flush``). The outbox is bounded (64 messages; a rotation needs a handful per
  configuration): past that a message is dropped with a warning, which only delays the
  rotation until the next configuration change re-announces it;
- installs, switches and retires key slots in the wire's ``Keyring`` and ``Sealer`` and persists
  each step (``KeyStore``) before it takes effect; a step that cannot be persisted is not taken
  (the rotation waits, visibly, instead of a restart later bringing back the wrong keys);
- starts a rotation for ``evs rekey`` (an admin IPC request, root or the daemon's uid only).

Nothing from the ring raises out of here: a malformed or refused message is a warning in the
log (never with key bytes) and a counter ("rekey warnings"); steps are counted as "rekey
installed", "rekey switched", "rekey retired".
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

from evs.crypto.names import KEY_BYTES_DEFAULT
from evs.crypto.rotation import Phase, Rotation, RotationError, fingerprint
from evs.daemon.key_file import KeyFileError
from evs.daemon.wire import SealedWire
from evs.errors import EvsError, InvalidArgument, TryAgain
from evs.runtime.service import FLAG_INTERNAL, HEADER, HEADER_VERSION, SIZE, EvsService
from evs.totem.events import Deliver
from evs.types import ConfigChange, Guarantee

__all__ = ["INTERNAL_GROUP", "KeyManager"]

log = logging.getLogger("evs.daemon")

#: The group the executives' key messages travel on (a client's messages to it are its own).
INTERNAL_GROUP = b"\x00evs.keys"
#: Most rotation messages waiting for room in the core's send queue.
_OUTBOX_MAX = 64

Submit = Callable[[tuple[bytes, ...], bytes, Guarantee], int]


class KeyManager:
    """One executive's key rotation (see the module docstring)."""

    def __init__(
        self,
        wire: SealedWire,
        service: EvsService,
        submit: Submit,
        nodes: Iterable[int],
    ) -> None:
        assert wire.store is not None
        assert wire.stored is not None
        self.wire = wire
        self.store = wire.store
        self.service = service
        self._submit = submit
        self.nodes = tuple(sorted(set(nodes)))
        self.outbox: list[tuple[bytes, Guarantee]] = []
        self.counters: dict[str, int] = {
            "rekey installed": 0,
            "rekey switched": 0,
            "rekey retired": 0,
            "rekey warnings": 0,
            "rekey messages": 0,
        }
        stored = wire.stored
        pending = None
        if stored.next is not None:
            next_id, next_key, sending, required = stored.next
            phase = Phase.SWITCHED if sending else Phase.INSTALLED
            pending = (next_id, next_key, phase, required)
            log.info("key rotation to key id %d in progress (%s): resuming it", next_id, phase.name)
        self.rotation = Rotation(
            self,
            wire.sealer.sender,
            stored.key_id,
            fingerprint(stored.key),
            pending=pending,
            switched=stored.switched,
        )
        service.internal = self.on_internal

    # ------------------------------------------------------------------ ring input

    def on_internal(self, ev: Deliver | ConfigChange) -> None:
        try:
            if isinstance(ev, ConfigChange):
                if not ev.transitional:
                    self.rotation.on_regular_configuration(ev.members)
            elif ev.groups == (INTERNAL_GROUP,):
                self.counters["rekey messages"] += 1
                self.rotation.on_message(ev.sender, ev.data[SIZE:])
            else:
                self.note("warning", f"internal message from node {ev.sender} on another group")
        except Exception:  # a bug here must not take the ring down
            self.counters["rekey warnings"] += 1
            log.exception("key rotation: internal error")

    # ------------------------------------------------------------------ KeyHost

    def install(self, key_id: int, key: bytes, required: tuple[int, ...]) -> None:
        try:
            self.store.save_next(key_id, key, required)
        except KeyFileError as exc:
            raise OSError(str(exc)) from None
        self.wire.opener.keyring.install(key_id, key)
        self.counters["rekey installed"] += 1

    def narrow(self, key_id: int, required: tuple[int, ...]) -> None:
        try:
            self.store.save_required(required)
        except KeyFileError as exc:
            raise OSError(str(exc)) from None

    def switch(self, key_id: int) -> None:
        try:
            self.store.save_sending()
        except KeyFileError as exc:
            raise OSError(str(exc)) from None
        self.wire.sealer.use_key(key_id)
        self.counters["rekey switched"] += 1

    def retire(self, old_id: int, new_id: int, switched: frozenset[int]) -> None:
        if self.wire.sealer.key_id != new_id:  # never seal with a key just removed
            self.wire.sealer.use_key(new_id)
        self.wire.opener.keyring.remove(old_id)
        self.counters["rekey retired"] += 1
        try:
            self.store.save_retired(switched)
        except KeyFileError as exc:
            self.note("warning", f"key id {new_id} could not be made the key file: {exc}")

    def send(self, data: bytes, *, safe: bool) -> None:
        header = HEADER.pack(HEADER_VERSION, FLAG_INTERNAL, os.getpid(), 0, 0)
        guarantee = Guarantee.SAFE if safe else Guarantee.AGREED
        if len(self.outbox) >= _OUTBOX_MAX:
            self.note("warning", "key rotation outbox full: a message was dropped")
            return
        self.outbox.append((header + data, guarantee))
        self.flush()

    def flush(self) -> None:
        """Hand waiting rotation messages to the core, in order, while it has room."""
        while self.outbox:
            payload, guarantee = self.outbox[0]
            try:
                self._submit((INTERNAL_GROUP,), payload, guarantee)
            except TryAgain:
                return
            except InvalidArgument as exc:
                self.note("warning", f"a key rotation message was refused by the core: {exc}")
            del self.outbox[0]

    def note(self, level: str, text: str) -> None:
        if level == "warning":
            self.counters["rekey warnings"] += 1
            log.warning("key rotation: %s", text)
        else:
            log.info("key rotation: %s", text)

    # ------------------------------------------------------------------ operator

    def start(self, key: bytes, *, members_only: bool = False) -> dict[str, Any]:
        """Begin a rotation to ``key`` (empty: a new random key); raises EvsError.

        ``members_only`` without a key while a rotation is in progress narrows that one to the
        current members instead (the operator gives up waiting for the others)."""
        given = bool(key)
        if not key:
            key = os.urandom(KEY_BYTES_DEFAULT)
        if members_only:
            regular = self.service.regular
            required = tuple(regular.members) if regular is not None else (self.rotation.me,)
        else:
            required = self.nodes
        try:
            self.store.check_writable()
            if members_only and self.rotation.pending is not None and not given:
                key_id, fp = self.rotation.narrow(required)
            else:
                key_id, fp = self.rotation.start(key, required)
        except KeyFileError as exc:
            raise EvsError(str(exc)) from None
        except RotationError as exc:
            raise InvalidArgument(str(exc)) from None
        log.info(
            "key rotation to key id %d (fingerprint %s) offered; required nodes %s",
            key_id,
            fp.hex(),
            list(required),
        )
        return {"key_id": key_id, "fingerprint": fp.hex(), "required": list(required)}

    def status(self) -> dict[str, Any]:
        keyring = self.wire.opener.keyring
        rot = self.rotation
        fps = {str(rot.key_id): rot.key_fp.hex()}
        if rot.pending is not None:
            fps[str(rot.pending.key_id)] = rot.pending.fp.hex()
        return {
            "key_in_use": self.wire.sealer.key_id,
            "keys_accepted": sorted(keyring.slots),
            "fingerprints": fps,
            "rotation": rot.status(),
        }
