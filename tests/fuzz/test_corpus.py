"""The committed seed corpus (tests/fuzz/corpus, written by make_corpus.py) through the
decoder fuzzers' oracles: each file as it is, and 40 mutations of it.

These are the inputs a fuzzer's generated corpus might drift away from: whole conversations
and the known-hostile shapes (an oversized length, a cut frame, a request before Hello, a
credit larger than what is outstanding, a config with nan or a port of 70000). Each must end
in a documented outcome. A planted defect shows the checks can fail.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from pathlib import Path
from random import Random
from typing import Any

import pytest

from evs.client.session import ClientSession
from evs.crypto.frame import Keyring, Opener, Sealer
from evs.daemon.config_file import ConfigFileError, load_config
from evs.fuzz_targets import mutate
from evs.fuzz_targets.ipc import converse, feed_session
from evs.fuzz_targets.sealed import behind_the_seal
from evs.ipc.messages import SendCredit
from evs.types import Guarantee

from .planting import plant

CORPUS = Path(__file__).parent / "corpus"
MUTANTS = 40


def _files(sub: str) -> list[Path]:
    return sorted(p for p in (CORPUS / sub).iterdir() if p.suffix in (".bin", ".toml"))


def _inputs(path: Path) -> list[bytes]:
    data = path.read_bytes()
    rng = Random(path.name)
    return [data] + [mutate(data, rng) for _ in range(MUTANTS)]


def test_the_corpus_is_there() -> None:
    for sub, least in (("open", 10), ("ipc", 8), ("session", 8), ("config", 8)):
        assert len(_files(sub)) >= least, sub


@pytest.mark.parametrize("path", _files("open"), ids=lambda p: p.name)
def test_open_corpus(path: Path) -> None:
    cluster_id = int((CORPUS / "open" / "cluster_id").read_text())
    keyring = Keyring("chacha20-poly1305", "corpus", (1, 2, 3))
    keyring.install(0, bytes(range(32)))
    sealer, opener = Sealer(keyring, 2, boot_id=1), Opener(keyring, 1)
    first: Counter[str] = Counter()
    for i, data in enumerate(_inputs(path)):
        assert opener.open(sealer.seal(data), 2) == data
        behind_the_seal(data, cluster_id, first if i == 0 else Counter())
    # The original is real traffic: it decodes.
    assert any(k.startswith("decoded ") for k in first), first


def _executive(chunks: list[bytes]) -> Counter[str]:
    seen: Counter[str] = Counter()
    asyncio.run(converse(chunks, os.geteuid(), seen))
    return seen


@pytest.mark.parametrize("path", _files("ipc"), ids=lambda p: p.name)
def test_ipc_corpus(path: Path) -> None:
    for data in _inputs(path):
        _executive([data])
        if len(data) < 400:
            _executive([data[i : i + 1] for i in range(len(data))])


def test_the_ipc_conversation_is_served() -> None:
    seen = _executive([(CORPUS / "ipc" / "conversation.bin").read_bytes()])
    assert seen["requests"] == 7
    assert seen["wrote Welcome"] == 1
    assert seen["wrote Ok"] == 3  # join, mcast, leave
    assert seen["wrote MembershipReply"] == 1
    assert seen["wrote StatusReply"] == 1


def _session(chunks: list[bytes]) -> Counter[str]:
    session = ClientSession(99)
    rids = [
        session.hello_id,
        session.join([b"chat"]),
        session.membership_get(),
        session.status_get(),
    ]
    session.send([b"chat"], b"w" * 100, Guarantee.AGREED)
    session.data_to_send()
    seen: Counter[str] = Counter()
    feed_session(session, rids, chunks, seen)
    return seen


@pytest.mark.parametrize("path", _files("session"), ids=lambda p: p.name)
def test_session_corpus(path: Path) -> None:
    for data in _inputs(path):
        _session([data])
        _session([data, b""])
        if len(data) < 400:
            _session([data[i : i + 1] for i in range(len(data))])


def test_the_session_conversation_is_read() -> None:
    seen = _session([(CORPUS / "session" / "conversation.bin").read_bytes()])
    assert seen["still open"] == 1
    assert seen["event Delivery"] == 1
    assert seen["event ConfigChange"] == 1
    assert seen["result Welcome"] == 1
    assert seen["result Ok"] == 1
    assert seen["result MembershipReply"] == 1
    assert seen["result StatusReply"] == 1


def test_a_planted_session_defect_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    real = ClientSession._on_frame

    def broken(self: ClientSession, frame: Any) -> bool:
        if isinstance(frame, SendCredit):
            raise ValueError("planted")
        return real(self, frame)

    plant(monkeypatch, ClientSession, "_on_frame", broken)
    with pytest.raises(ValueError, match="planted"):
        _session([(CORPUS / "session" / "credit-too-big.bin").read_bytes()])


@pytest.mark.parametrize("path", _files("config"), ids=lambda p: p.name)
def test_config_corpus(path: Path, tmp_path: Path) -> None:
    target = tmp_path / "evs.toml"
    outcomes = []
    for data in _inputs(path):
        target.write_bytes(data)
        try:
            load_config(target)
        except ConfigFileError as exc:
            outcomes.append("refused" if exc.file and exc.key and exc.reason else repr(exc))
        else:
            outcomes.append("loaded")
    assert outcomes[0] == ("loaded" if path.name.startswith("valid") else "refused")
    assert set(outcomes) <= {"loaded", "refused"}, outcomes
