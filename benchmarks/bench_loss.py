"""`evs bench` on real executives with random loss, with the new token handling or without it.

Runs ``evs bench`` (its arguments follow) with every executive dropping ``PERMILLE``/1000 of
the UDP datagrams it receives (the lab's nftables rule of tests/integration/test_faults.py,
so ``--netns`` and root are needed), and either the defaults (``new``) or corosync's fixed
token re-send (``classic``: token_retransmit = token_retransmit_min = 238 ms, one token copy).
A stopgap until ``evs bench`` takes a loss option itself; docs/benchmarks.md, "Random loss".

    .venv/bin/python benchmarks/bench_loss.py 50 new --netns --nodes 3 --sizes 1K --senders all
"""

from __future__ import annotations

import sys
from typing import Any

from evs.cli import _bench_run
from evs.cli.__main__ import main
from evs.cli._cluster import LocalCluster

CLASSIC = "token_retransmit = 238\ntoken_retransmit_min = 238\ntoken_copies_on_loss = 1\n"


def run(permille: int, core: str, bench_args: list[str]) -> int:
    extra = CLASSIC if core == "classic" else ""

    class LossyCluster(LocalCluster):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["extra_totem"] = extra
            super().__init__(*args, **kwargs)

        def start(self, n: int, timeout: float = 15.0) -> None:
            super().start(n, timeout)
            if permille and self.lab is not None:
                self.lab.loss(n, permille)

    # The bench builds its cluster by this name.
    _bench_run.LocalCluster = LossyCluster  # type: ignore[attr-defined]
    return main(["bench", *bench_args])


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[2] not in ("new", "classic"):
        sys.exit(__doc__)
    sys.exit(run(int(sys.argv[1]), sys.argv[2], sys.argv[3:]))
