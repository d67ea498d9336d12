"""What random loss costs a saturated simulated ring: throughput and token-loss recovery time.

Every processor keeps its send queue full (``Cluster.set_saturating``); every datagram to every
receiver is lost with probability ``--loss`` (tokens, data and retransmissions alike, drawn
from this benchmark's own random stream). Reported per loss rate, over ``--seconds`` of
simulated time after a warm-up:

* data packets stamped per simulated second (retransmissions excluded) and messages delivered
  per second per processor, and their ratio to the lossless run of the same ring;
* token-loss recovery: a token hop is lost when every copy of its first send was lost (one
  datagram, or ``token_copies_on_loss`` sent at the same instant); its recovery time is from
  that send until a re-sent copy reached the receiver;
* token retransmissions, duplicate tokens discarded, multicast retransmissions;
* membership changes (``--membership``: the ring is formed by the membership protocol, so a
  token that stays lost past the ``token`` timeout would show as a new configuration).

The figures are simulated time: they depend on the protocol and the network model (one-way
delay 0.05 ms + Exp(0.2 ms) by default), not on this machine's speed.

    .venv/bin/python benchmarks/token_loss.py [--nodes 3 5] [--loss 0 0.01 0.05] [--membership]
    .venv/bin/python benchmarks/token_loss.py --classic   # the fixed token_retransmit only
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import time

from evs.sim.cluster import Cluster
from evs.sim.options import SimOptions
from evs.totem.codec import cluster_id_for, decode, peek_type
from evs.totem.events import MembState
from evs.totem.messages import MessageType, OrfToken

_TOKEN = MessageType.ORF_TOKEN


@dataclasses.dataclass
class Result:
    packets_per_s: float
    delivered_per_s: float
    recoveries_ms: list[float]
    stats: dict[str, int]
    real_s: float


@dataclasses.dataclass(frozen=True)
class Setup:
    """What is simulated besides the loss rate."""

    seconds: float = 2.0
    membership: bool = False
    #: The fixed token_retransmit of corosync (no adaptive timeout, one token copy).
    classic: bool = False
    #: token_copies_on_loss (None: the default).
    copies: int | None = None
    delay_min_ms: float = 0.05
    delay_mean_ms: float = 0.2
    seed: int = 1


def run(nodes: int, loss: float, setup: Setup) -> Result:
    seconds = setup.seconds
    membership = setup.membership
    seed = setup.seed
    options = SimOptions(
        seed=seed,
        nodes=nodes,
        static_ring=not membership,
        duration_ms=seconds * 1000.0,
        rate=1.0,
        safe_fraction=0.0,
        large_fraction=0.0,
        queue_bytes_max=1 << 20,
        delay_min_ms=setup.delay_min_ms,
        delay_mean_ms=setup.delay_mean_ms,
    )
    config = options.totem_config()
    if setup.classic:
        config = dataclasses.replace(
            config, token_retransmit_min=config.token_retransmit_ms, token_copies_on_loss=1
        )
    elif setup.copies is not None:
        config = dataclasses.replace(config, token_copies_on_loss=setup.copies)
    cluster = Cluster(options, config=config)
    token_type = _TOKEN
    cid = cluster_id_for(config.cluster_name)
    rng = random.Random(seed * 7919 + int(loss * 1e6))
    # Per token hop (receiver, token_seq): when it was first sent, and whether every datagram
    # of that first send (one per copy, all sent at the same instant) was lost.
    first_send: dict[tuple[int, int], float] = {}
    first_lost: dict[tuple[int, int], bool] = {}
    arrived: dict[tuple[int, int], float] = {}
    copies_lost = [0]
    measuring = [False]

    def lose(src: int, dst: int, data: bytes) -> bool:
        if not measuring[0]:
            return False
        dropped = rng.random() < loss
        if peek_type(data) is token_type:
            tok = decode(data, cid)
            assert isinstance(tok, OrfToken)
            key = (dst, tok.token_seq)
            at = first_send.setdefault(key, cluster.now)
            if at == cluster.now:  # a copy of the first send
                first_lost[key] = first_lost.get(key, True) and dropped
            copies_lost[0] += dropped
        return dropped

    cluster.filters.append(lose)
    arrive = cluster._arrive  # a probe on the simulator's arrivals

    def probe_arrive(dst: int, data: bytes) -> None:
        if measuring[0] and peek_type(data) is token_type:
            tok = decode(data, cid)
            if isinstance(tok, OrfToken):
                arrived.setdefault((dst, tok.token_seq), cluster.now)
        arrive(dst, data)

    cluster._arrive = probe_arrive  # type: ignore[method-assign]
    for n in cluster.all_ids:
        cluster.start_node(n)
    warmup = 300.0 if membership else 200.0
    if membership:
        cluster.run_until(warmup, lambda: _one_ring(cluster))
    cluster.load_on = True
    cluster.set_saturating(True)
    cluster.run_until(cluster.now + 100.0)
    measuring[0] = True
    before = cluster.final_stats()
    started = time.perf_counter()
    t0 = cluster.now
    cluster.run_until(t0 + seconds * 1000.0)
    real = time.perf_counter() - started
    measuring[0] = False
    after = cluster.final_stats()
    span_s = seconds
    # A token hop is lost when every copy of its first send was; it is recovered when any
    # copy of that token (re-sent by the timer) reached the receiver.
    recoveries = [
        arrived[key] - at
        for key, at in first_send.items()
        if first_lost.get(key) and key in arrived
    ]
    keys = (
        "token retransmitted",
        "token duplicate",
        "mcast retransmitted",
        "retransmit requested",
        "rings installed",
        "token lost",
    )
    stats = {k: after[k] - before[k] for k in keys}
    stats["gathers"] = sum(v for k, v in after.items() if k.startswith("gather: ")) - sum(
        v for k, v in before.items() if k.startswith("gather: ")
    )
    stats["violations"] = len(cluster.violations)
    stats["token datagrams lost"] = copies_lost[0]
    return Result(
        packets_per_s=(after["mcast sent"] - before["mcast sent"]) / span_s,
        delivered_per_s=(after["deliveries"] - before["deliveries"]) / nodes / span_s,
        recoveries_ms=recoveries,
        stats=stats,
        real_s=real,
    )


def _one_ring(cluster: Cluster) -> bool:
    procs = [n.proc for n in cluster.nodes.values()]
    return all(
        p is not None and p.state is MembState.OPERATIONAL and len(p.memb_list) == len(procs)
        for p in procs
    )


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[3, 5])
    parser.add_argument("--loss", type=float, nargs="+", default=[0.0, 0.01, 0.05])
    parser.add_argument("--seconds", type=float, default=2.0, help="simulated seconds measured")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--membership", action="store_true", help="form the ring by membership")
    parser.add_argument(
        "--classic",
        action="store_true",
        help="corosync's fixed token_retransmit and one token copy",
    )
    parser.add_argument("--copies", type=int, help="token_copies_on_loss (default: the core's)")
    parser.add_argument("--delay-min", type=float, default=0.05, help="one-way delay floor, ms")
    parser.add_argument("--delay-mean", type=float, default=0.2, help="mean of its Exp part, ms")
    args = parser.parse_args()
    setup = Setup(
        seconds=args.seconds,
        membership=args.membership,
        classic=args.classic,
        copies=args.copies,
        delay_min_ms=args.delay_min,
        delay_mean_ms=args.delay_mean,
        seed=args.seed,
    )
    for n in args.nodes:
        base = None
        for loss in args.loss:
            r = run(n, loss, setup)
            if base is None:
                base = r.packets_per_s or 1.0
            rec = r.recoveries_ms
            s = r.stats
            recovery = (
                f"token datagrams lost {s['token datagrams lost']:4d}, hops lost {len(rec):4d}, "
                f"recovery p50 {_pct(rec, 0.5):6.2f} ms "
                f"p90 {_pct(rec, 0.9):6.2f} max {max(rec, default=0.0):6.1f} "
                f"mean {statistics.fmean(rec) if rec else 0.0:6.2f}"
            )
            print(
                f"N={n} loss={loss:.2f}: {r.packets_per_s / 1000:6.1f}k pkt/s "
                f"({r.packets_per_s / base:4.0%}), {r.delivered_per_s / 1000:6.1f}k msg/s per "
                f"processor; {recovery}; token resent {s['token retransmitted']}, duplicates "
                f"{s['token duplicate']}, mcast resent {s['mcast retransmitted']}, gathers "
                f"{s['gathers']}, violations {s['violations']} ({r.real_s:.0f} s real)",
                flush=True,
            )


if __name__ == "__main__":
    main()
