"""CPU per message of the blocking client's own paths, against a stand-in daemon.

Why: in ``evs bench`` at 64 B the client processes (one sender, a receiver per node) take as
much of the machine's CPU as the three executives, so what the library costs per message
decides how much is left for the ring. This measures the library alone: a forked process plays
the daemon over a real Unix socket (it answers Hello, then either writes N deliveries at once
or reads and discards everything), and the client's thread CPU time is divided by N.

* ``events()``: iterate ``Client.events`` over N waiting deliveries (reads, decoding, taking).
* ``dispatch(ALL)``: the same through ``dispatch`` and an ``on_deliver`` callback.
* ``mcast_groups``: N windowed sends to one named group (encoding, the window, the write).
* ``async events()``: ``AsyncClient.events`` over N waiting deliveries (its reader task runs in
  the same thread, so its reads count too).

Best of ``--reps`` runs, each with a fresh connection::

    .venv/bin/python benchmarks/client_paths.py [--messages 200000] [--size 64] [--reps 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import tempfile
import time
from pathlib import Path

import evs
from evs.ipc.codec import FrameDecoder, encode, encode_delivery
from evs.ipc.messages import Hello, Welcome
from evs.types import Guarantee, make_delivery

#: The window the stand-in daemon announces: large enough that no send waits for credit.
WINDOW = (1 << 32) - 1


def _daemon(listener: socket.socket, mode: str, blob: bytes) -> None:
    """The stand-in daemon (child process): Welcome, then write ``blob`` or read to the end."""
    conn, _ = listener.accept()
    dec = FrameDecoder()
    hello = None
    while hello is None:
        dec.feed(conn.recv(65536))
        hello = next(dec, None)
    assert isinstance(hello, Hello)
    conn.sendall(encode(Welcome(hello.request_id, 1, 1, 1, 1 << 20, 64, 32, WINDOW)))
    if mode == "mcast_groups":
        while conn.recv(1 << 20):
            pass
    else:
        conn.sendall(blob)
        conn.recv(1)  # until the client closes


def run(mode: str, n: int, size: int) -> float:
    """Thread CPU ns per message of one run of ``mode``."""
    path = Path(tempfile.mkdtemp()) / "evs.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    blob = b""
    if mode != "mcast_groups":
        note = encode_delivery(make_delivery(2, 77, (b"g",), b"x" * size, Guarantee.AGREED))
        blob = note * n
    pid = os.fork()
    if pid == 0:
        try:
            _daemon(listener, mode, blob)
        finally:
            os._exit(0)
    listener.close()
    try:
        if mode == "async":
            return asyncio.run(_async_events(str(path), n))
        with evs.Client(str(path)) as client:
            if mode == "mcast_groups":
                data, groups = b"y" * size, ["g"]
                t0 = time.thread_time_ns()
                for _ in range(n):
                    client.mcast_groups(groups, data)
                return (time.thread_time_ns() - t0) / n
            time.sleep(0.3)  # the deliveries are on their way; reading starts with them
            # Counted, not kept: an application that keeps every delivery makes the cyclic
            # garbage collector walk them all, which is its cost, not the library's.
            got = 0

            def count(_: evs.Delivery) -> None:
                nonlocal got
                got += 1

            t0 = time.thread_time_ns()
            if mode == "events":
                for _ in client.events(timeout=2.0):
                    got += 1
                    if got == n:
                        break
            else:
                client.on_deliver = count
                while got < n and client.dispatch(evs.DispatchFlags.ONE, timeout=2.0):
                    client.dispatch(evs.DispatchFlags.ALL)
            spent = time.thread_time_ns() - t0
            if got != n:
                raise RuntimeError(f"{mode}: {got} of {n} deliveries")
            return spent / n
    finally:
        os.waitpid(pid, 0)
        path.unlink(missing_ok=True)
        path.parent.rmdir()


async def _async_events(path: str, n: int) -> float:
    async with evs.AsyncClient(path) as client:
        await asyncio.sleep(0.3)
        got = 0
        t0 = time.thread_time_ns()
        async for _ in client.events(timeout=2.0):
            got += 1
            if got == n:
                break
        spent = time.thread_time_ns() - t0
    if got != n:
        raise RuntimeError(f"async events(): {got} of {n} deliveries")
    return spent / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    print(f"{args.messages} messages of {args.size} B, best of {args.reps}, thread CPU time")
    for mode, label in (
        ("events", "events()"),
        ("dispatch", "dispatch(ALL)"),
        ("mcast_groups", "mcast_groups"),
        ("async", "async events()"),
    ):
        best = min(run(mode, args.messages, args.size) for _ in range(args.reps))
        print(f"  {label:>14}: {best / 1000:6.2f} us per message", flush=True)


if __name__ == "__main__":
    main()
