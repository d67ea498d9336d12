"""The key files of one executive across rotations: which key has which id, and what is pending.

Theory of operation: three files sit side by side, all written atomically (a temporary file,
fsync, rename, directory fsync) and readable by the owner only:

- ``KEY`` (the configuration's ``[crypto] key_file``): the key in use, raw bytes as written by
  ``evs keygen``;
- ``KEY.next``: the new key of a rotation in progress, raw bytes;
- ``KEY.state``: JSON naming the keys by id and fingerprint (never the key bytes), the nodes
  known to have switched to the key in use when it was rotated in, and for a pending key
  whether this node already seals with it and which nodes the rotation requires::

      {"version": 1, "key": {"id": 4, "fingerprint": "...", "switched": [1, 2, 3]},
       "next": {"id": 5, "fingerprint": "...", "sending": false, "required": [1, 2, 3]}}

Without ``KEY.state`` the key is id 0, as before rotations existed. A file's id is found by its
fingerprint, so every crash point between two writes reads back as a state the node really was
in: installing writes ``KEY.next`` and then the state (a ``KEY.next`` the state does not name is
ignored, and the ring offers the key again); switching rewrites the state with ``sending``;
retiring renames ``KEY.next`` over ``KEY`` (now the state's ``next`` fingerprint matches ``KEY``,
which reads as "retired") and then rewrites the state. A ``KEY`` that matches neither entry
(copied from elsewhere without its state file) stops the start-up with the fix in the message.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from evs.crypto.rotation import fingerprint
from evs.daemon.key_file import KeyFileError, read_key_file, write_private_file

__all__ = ["KeyStore", "StoredKeys"]

#: Largest state file read (it lists at most a few thousand node ids).
_STATE_MAX = 1 << 16


@dataclass(frozen=True, slots=True)
class StoredKeys:
    key_id: int
    key: bytes = field(repr=False)
    #: (key id, key, sealing with it already, required nodes) of a rotation in progress.
    next: tuple[int, bytes, bool, tuple[int, ...]] | None = field(default=None, repr=False)
    #: Nodes known to have switched to the key when it was rotated in.
    switched: tuple[int, ...] = ()


def _entry(obj: object, what: str) -> tuple[int, str]:
    if not isinstance(obj, dict):
        raise ValueError(f"{what} is not an object")
    key_id, fp = obj.get("id"), obj.get("fingerprint")
    if not isinstance(key_id, int) or not 0 <= key_id <= 255 or not isinstance(fp, str):
        raise ValueError(f"{what} needs an id 0..255 and a fingerprint")
    return key_id, fp


def _nodes(value: object) -> tuple[int, ...]:
    """A list of node ids from the state file; anything else reads as none known."""
    if not isinstance(value, list) or not all(
        isinstance(n, int) and 0 < n < 1 << 32 for n in value
    ):
        return ()
    return tuple(sorted(set(value)))


class KeyStore:
    """Reads and writes the key files around ``key_file`` (see the module docstring)."""

    def __init__(self, key_file: str | os.PathLike[str]) -> None:
        self.path = Path(key_file)
        self.next_path = self.path.with_name(self.path.name + ".next")
        self.state_path = self.path.with_name(self.path.name + ".state")
        self._state: dict[str, object] = {}

    def load(self) -> StoredKeys:
        """The keys to start with; raises KeyFileError (the message says how to fix it)."""
        key = read_key_file(self.path)
        fp = fingerprint(key).hex()
        state = self._read_state()
        if state is None:
            self._state = {"version": 1, "key": {"id": 0, "fingerprint": fp}}
            return StoredKeys(0, key)
        try:
            cur_id, cur_fp = _entry(state.get("key"), "key")
            nxt = state.get("next")
            nxt_entry = None if nxt is None else _entry(nxt, "next")
        except ValueError as exc:
            raise KeyFileError(f"key state file {self.state_path}: {exc}") from None
        if nxt_entry is not None and fp == nxt_entry[1]:
            # Stopped between renaming KEY.next over KEY and rewriting the state: retired.
            self._state = {"version": 1, "key": {"id": nxt_entry[0], "fingerprint": fp}}
            self._write_state()
            return StoredKeys(nxt_entry[0], key)
        if fp != cur_fp:
            raise KeyFileError(
                f"key file {self.path} is not the key {self.state_path} names (id {cur_id}): "
                f"copy both files (and {self.next_path.name}, if present) from a healthy node, "
                f"or remove {self.state_path} to use this key as id 0"
            )
        entry = state.get("key")
        switched = _nodes(entry.get("switched") if isinstance(entry, dict) else None)
        self._state = {
            "version": 1,
            "key": {"id": cur_id, "fingerprint": fp, "switched": list(switched)},
        }
        if nxt_entry is None or not isinstance(nxt, dict):
            return StoredKeys(cur_id, key, switched=switched)
        try:
            new_key = read_key_file(self.next_path)
        except KeyFileError:
            new_key = b""
        required = nxt.get("required")
        if (
            fingerprint(new_key).hex() != nxt_entry[1]
            or not isinstance(required, list)
            or not all(isinstance(n, int) and 0 < n < 1 << 32 for n in required)
        ):
            # not wholly written: the ring will offer it again
            return StoredKeys(cur_id, key, switched=switched)
        self._state["next"] = nxt
        sending = nxt.get("sending") is True
        return StoredKeys(cur_id, key, (nxt_entry[0], new_key, sending, tuple(required)), switched)

    def _read_state(self) -> dict[str, object] | None:
        try:
            with open(self.state_path, "rb") as f:
                raw = f.read(_STATE_MAX + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise KeyFileError(f"key state file {self.state_path}: {exc.strerror}") from None
        try:
            if len(raw) > _STATE_MAX:
                raise ValueError("too large")
            state = json.loads(raw)
        except ValueError as exc:
            raise KeyFileError(f"key state file {self.state_path}: not valid: {exc}") from None
        if not isinstance(state, dict) or state.get("version") != 1:
            raise KeyFileError(f"key state file {self.state_path}: not a version 1 state")
        return state

    def _write_state(self) -> None:
        data = json.dumps(self._state, sort_keys=True).encode() + b"\n"
        write_private_file(self.state_path, data, force=True, what="key state file")

    def check_writable(self) -> None:
        """Raise KeyFileError unless the key directory can take the files of a rotation."""
        parent = self.path.parent
        if not os.access(parent, os.W_OK | os.X_OK):
            raise KeyFileError(
                f"the key directory {parent} is not writable by this daemon: a rotation "
                "could not be persisted"
            )

    # ------------------------------------------------------------------ a rotation's steps

    def save_next(self, key_id: int, key: bytes, required: tuple[int, ...]) -> None:
        """Persist a newly installed key (raises KeyFileError)."""
        write_private_file(self.next_path, key, force=True)
        self._state["next"] = {
            "id": key_id,
            "fingerprint": fingerprint(key).hex(),
            "sending": False,
            "required": sorted(required),
        }
        self._write_state()

    def save_required(self, required: tuple[int, ...]) -> None:
        """A rotation in progress was narrowed to ``required`` (raises KeyFileError)."""
        nxt = self._state.get("next")
        if isinstance(nxt, dict):
            nxt["required"] = sorted(required)
            self._write_state()

    def save_sending(self) -> None:
        nxt = self._state.get("next")
        if isinstance(nxt, dict):
            nxt["sending"] = True
            self._write_state()

    def save_retired(self, switched: Iterable[int] = ()) -> None:
        """The pending key becomes the key (raises KeyFileError)."""
        nxt = self._state.get("next")
        if not isinstance(nxt, dict):
            return
        try:
            os.replace(self.next_path, self.path)
            fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise KeyFileError(f"key file {self.path}: cannot replace: {exc.strerror}") from None
        self._state = {
            "version": 1,
            "key": {
                "id": nxt["id"],
                "fingerprint": nxt["fingerprint"],
                "switched": sorted(set(switched)),
            },
        }
        with contextlib.suppress(KeyFileError):  # the rename alone already reads as retired
            self._write_state()
