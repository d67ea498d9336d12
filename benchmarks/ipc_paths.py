"""CPU per message of the paths around the core, in one process, no I/O.

* ``executive fan-out``: the service hands N deliveries of one sender to one joined handle
  (``EvsService.feed``, untraced, as an executive without a trace) and the IPC server's
  encoding takes them off the handle's queue (``Handle.take_encoded``), then one join: what
  every executive does per message and receiving client.
* ``client decode``: the frames of those N deliveries fed to a ``ClientSession`` in 256 KiB
  reads and taken as events: what every receiving client does per message.
* ``Mcast decode``: N windowed sends as the executive's frame decoder reads them.
* ``client send``: ``ClientSession.send`` + ``data_to_send`` per message (no socket).

Best of 9 runs; pure Python unless PYTHONPATH selects the compiled build (tools/compile.py).

    .venv/bin/python benchmarks/ipc_paths.py [--sizes 64,1024,16384] [--messages 2000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from evs.client.session import ClientSession
from evs.daemon.ipc_server import _encode_event
from evs.ipc.codec import FrameDecoder, encode
from evs.ipc.messages import Mcast, Welcome
from evs.runtime.service import EvsService, ServiceHeader
from evs.totem.events import Deliver
from evs.types import Guarantee, RingId

READ = 256 * 1024


def best_us(fn: Callable[[], object], n: int, reps: int = 9) -> float:
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return min(out) / n * 1e6


def measure(size: int, n: int) -> dict[str, float]:
    groups = (b"bench-1-0",)
    svc = EvsService(1, lambda g, d, q: 0, traced=False)
    h = svc.open_handle(100)
    svc.join(h, [b"bench-1-0"])
    payload = ServiceHeader(4242, 1, 7).pack() + b"x" * size
    # Each with its own group tuple and name, as the core's decoder makes them.
    core_events = [
        Deliver(2, (bytes(bytearray(groups[0])),), payload, Guarantee.AGREED, RingId(1, 1))
        for _ in range(n)
    ]

    def fan_out() -> bytes:
        svc.feed(core_events)
        out: list[bytes] = []
        h.take_encoded(_encode_event, 1 << 40, out)
        return b"".join(out)

    blob = fan_out()

    def client_decode() -> None:
        s = ClientSession(1)
        for i in range(0, len(blob), READ):
            s.receive_data(blob[i : i + READ])
            while s.next_event() is not None:
                pass

    mblob = b"".join(encode(Mcast(0, None, Guarantee.AGREED, b"y" * size)) for _ in range(n))

    def mcast_decode() -> None:
        d = FrameDecoder()
        for i in range(0, len(mblob), READ):
            d.feed(mblob[i : i + READ])
            for _ in d:
                pass

    sender = ClientSession(1)
    sender.welcome = Welcome(0, 1, 1, 1, 1 << 20, 64, 32, 1 << 62)
    sender.joined.add(b"bench-1-0")
    data = b"z" * size

    def client_send() -> None:
        for _ in range(n):
            sender.send(None, data, Guarantee.AGREED)
            sender.data_to_send()

    return {
        "executive fan-out": best_us(fan_out, n),
        "client decode": best_us(client_decode, n),
        "Mcast decode": best_us(mcast_decode, n),
        "client send": best_us(client_send, n),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,1024,16384")
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    for size in (int(s) for s in args.sizes.split(",")):
        row = measure(size, args.messages)
        cells = ", ".join(f"{k} {v:.2f}" for k, v in row.items())
        print(f"{size:>6} B: {cells} (us per message)", flush=True)


if __name__ == "__main__":
    main()
