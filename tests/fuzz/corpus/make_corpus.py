"""Write the committed seed corpus of the decoder fuzzers (run from the repository root).

    python tests/fuzz/corpus/make_corpus.py

open/: plaintext totem datagrams of simulated traffic (three of each kind, harvest seed 1) and
their cluster id; ipc/ and session/: byte streams a client sends to the executive and the
executive sends to a client (whole conversations and known-hostile shapes); config/: valid and
hostile configuration files. tests/fuzz/test_corpus.py runs each through its target's oracle,
as it is and mutated. Re-running this script rewrites the same files.
"""

from __future__ import annotations

from pathlib import Path

from evs.daemon.config_file import render_config
from evs.ipc.codec import DATA_MAX, FRAME_MAX, encode
from evs.ipc.messages import (
    IPC_VERSION,
    ConfChgNote,
    DeliverNote,
    Error,
    ErrorCode,
    Frame,
    Goodbye,
    Hello,
    Join,
    Leave,
    Mcast,
    MembershipGet,
    MembershipReply,
    Ok,
    RoomAgain,
    SendCredit,
    StatusGet,
    StatusReply,
    UsePipe,
    Welcome,
)
from evs.sim.fuzz import harvest
from evs.types import ConfigChange, Delivery, Guarantee, Membership, RingId

HERE = Path(__file__).parent
RING = RingId(8, 2)


def write(sub: str, name: str, data: bytes) -> None:
    d = HERE / sub
    d.mkdir(exist_ok=True)
    (d / name).write_bytes(data)


def main() -> None:
    corpus = harvest(1)
    write("open", "cluster_id", str(corpus.cluster_id).encode())
    for kind in sorted(corpus.packets):
        for i, p in enumerate(corpus.packets[kind][:3]):
            write("open", f"{kind}-{i}.bin", p)

    hello = encode(Hello(1, IPC_VERSION, 99))
    talk: list[Frame] = [
        Join(2, (b"chat",)),
        Mcast(3, None, Guarantee.AGREED, b"hello"),
        Mcast(0, (b"chat", b"x"), Guarantee.SAFE, b"w" * 300),
        MembershipGet(4),
        StatusGet(5),
        Leave(6, (b"chat",)),
    ]
    whole = hello + b"".join(encode(f) for f in talk)
    write("ipc", "conversation.bin", whole)
    write("ipc", "cut-mid-frame.bin", whole[:-3])
    write("ipc", "oversized.bin", hello + (FRAME_MAX + 1).to_bytes(4, "big") + b"\x04")
    write("ipc", "length-max.bin", b"\xff\xff\xff\xff")
    write("ipc", "length-zero.bin", hello + bytes(9))
    write("ipc", "unknown-kind.bin", hello + b"\x00\x00\x00\x05\x3f\x00\x00\x00\x07")
    write("ipc", "no-hello.bin", encode(StatusGet(1)))
    write("ipc", "old-version.bin", encode(Hello(1, 1, 99)))
    write("ipc", "client-sends-note.bin", hello + encode(RoomAgain()))
    # A connection that cannot pass descriptors (the harness's): refused, the socket goes on.
    write("ipc", "use-pipe-refused.bin", hello + encode(UsePipe(7)) + encode(StatusGet(8)))

    welcome = encode(Welcome(1, IPC_VERSION, 1, 1, DATA_MAX, 255, 255, 1 << 16))
    notes: list[Frame] = [
        Ok(2),
        DeliverNote(Delivery(2, 7, (b"chat",), b"data", Guarantee.AGREED)),
        ConfChgNote(ConfigChange(RING, False, (1, 2), (3,), (2,))),
        MembershipReply(3, Membership(1, RING, (1, 2))),
        StatusReply(4, "{}"),
        RoomAgain(),
    ]
    stream = welcome + b"".join(encode(f) for f in notes)
    write("session", "conversation.bin", stream)
    write("session", "cut-mid-frame.bin", stream[:-5])
    write("session", "goodbye.bin", welcome + encode(Goodbye("bye")))
    write("session", "error-0.bin", welcome + encode(Error(0, ErrorCode.ACCESS_DENIED, "no")))
    write("session", "credit-too-big.bin", welcome + encode(SendCredit(1 << 31)))
    write("session", "unknown-request.bin", welcome + encode(Ok(12345)))
    write("session", "request-frame.bin", welcome + encode(StatusGet(9)))
    write("session", "oversized.bin", welcome + (FRAME_MAX + 1).to_bytes(4, "big"))

    nodes = {1: ("10.0.0.1", 5405), 2: ("10.0.0.2", 5405), 3: ("10.0.0.3", 6000)}
    plain = render_config(1, nodes, socket="evs.sock", state_dir="state", cipher="none")
    write("config", "valid-none.toml", plain.encode())
    sealed = render_config(
        2, nodes, socket="evs.sock", state_dir="state", key_file="authkey", mode="udp"
    )
    write("config", "valid-udp-sealed.toml", sealed.encode())
    write("config", "empty.toml", b"")
    write("config", "not-utf8.toml", plain.encode()[:40] + b"\xff\xfe" + plain.encode()[40:])
    write("config", "token-nan.toml", plain.replace("[totem]", "[totem]\ntoken = nan").encode())
    write("config", "port-70000.toml", plain.replace("port = 5405", "port = 70000").encode())
    write(
        "config",
        "node-twice.toml",
        (plain + '\n[[node]]\nnodeid = 2\naddr = "10.0.0.9"\n').encode(),
    )
    write("config", "unknown-section.toml", (plain + "\n[nope]\nx = 1\n").encode())
    write("config", "node-as-table.toml", plain.replace("[[node]]", "[node]", 1).encode())
    write(
        "config",
        "huge-int.toml",
        plain.replace("nodeid = 1", "nodeid = 18446744073709551616", 1).encode(),
    )


if __name__ == "__main__":
    main()
