"""Cost of wire security per datagram: seal and open, each cipher, small and full datagrams.

Runs ``Sealer.seal`` and ``Opener.open`` in memory (no sockets) on a fixed payload; the figure
is the best of several rounds of the mean, in microseconds per datagram, so a busy machine
shows it less. The replay window is exercised as in real traffic (every counter is new).

    .venv/bin/python benchmarks/crypto_frame.py [--count 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import time

from evs.crypto.frame import Keyring, Opener, Sealer

SIZES = (64, 1400)


def measure(cipher: str, size: int, count: int, rounds: int) -> tuple[float, float]:
    """Best (seal us, open us) per datagram over ``rounds`` rounds of ``count`` datagrams."""
    keyring = Keyring(cipher, "bench", [1, 2])
    keyring.install(0, bytes(range(64)))
    sealer = Sealer(keyring, 1, boot_id=1)
    opener = Opener(keyring, 2)
    payload = bytes(size)
    best_seal = best_open = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        sealed = [sealer.seal(payload) for _ in range(count)]
        t1 = time.perf_counter()
        opened = [opener.open(d, 1) for d in sealed]
        t2 = time.perf_counter()
        assert all(p == payload for p in opened), opener.drops
        best_seal = min(best_seal, (t1 - t0) / count * 1e6)
        best_open = min(best_open, (t2 - t1) / count * 1e6)
    return best_seal, best_open


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"{'cipher':<18} {'bytes':>5} {'seal us':>8} {'open us':>8} {'both us':>8}")
    for cipher in ("chacha20-poly1305", "aes-256-gcm"):
        for size in SIZES:
            seal, open_ = measure(cipher, size, args.count, args.rounds)
            print(f"{cipher:<18} {size:>5} {seal:>8.2f} {open_:>8.2f} {seal + open_:>8.2f}")


if __name__ == "__main__":
    main()
